"""Real A2D2 frames in the loop.

Coarse class groups, the flat-folder reader, the real lidar's frame conventions, the evaluator's
real-frame measures and ``evaluate --data`` on ``test/data/real_a2d2`` (eleven unmodified A2D2
preview frames from nine drives: camera + label for all, lidar for ten, ``label3D`` for five).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bev_mtl_ros.data.a2d2 import A2D2Dataset
from bev_mtl_ros.data.classes import (COARSE_GROUP_NAMES, COARSE_GROUPS, COARSE_IGNORED,
                                      coarse_group_lut)
from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES
from bev_mtl_ros.train.evaluate import NODE_SCORE_THRESHOLD, EvalAccumulator
from bev_mtl_ros.model.contract import ModelContract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "test", "data", "real_a2d2")
SHARED_REAL = os.path.join(ROOT, "..", "shared", "a2d2", "real")
MODEL = os.path.join(ROOT, "models", "bev_mtl_default.onnx")
#: the drives (A2D2 scene stamps) of the eleven frames: two drives hold two frames each
DRIVES = ["20180810142822", "20180925101535", "20180925135056", "20181107132300",
          "20181107133258", "20181108084007", "20181108091945", "20181204135952",
          "20181204170238"]
PNG_ONLY = "20181107133258/000000250"
WITH_BOXES = ["20180810142822/000000426", "20180925101535/000011230",
              "20180925135056/000003556", "20181108084007/000029570",
              "20181108091945/000005828"]


def test_coarse_groups_cover_every_class_once():
    members = [c for g in COARSE_GROUPS.values() for c in g]
    assert len(members) == len(set(members))
    assert sorted(members + list(COARSE_IGNORED)) == sorted(A2D2_SEMANTIC_CLASSES)
    assert COARSE_GROUP_NAMES == ("drivable", "other flat", "vehicle", "human+bike",
                                  "object/sign/pole", "nature", "sky", "building")
    lut = coarse_group_lut()
    cid = A2D2_SEMANTIC_CLASSES.index
    assert lut[cid("Dashed line")] == 0 and lut[cid("Curbstone")] == 1 and lut[cid("Tractor")] == 2
    assert lut[cid("Bicycle")] == 3 and lut[cid("Animals")] == 4 and lut[cid("Buildings")] == 7
    assert (lut[cid("Ego car")] == 255 and lut[255] == 255
            and lut[len(A2D2_SEMANTIC_CLASSES)] == 255)
    with pytest.raises(ValueError, match="no coarse group"):
        coarse_group_lut(("Car", "Spaceship"))


def test_coarse_miou_known_answer():
    """Four pixels with a known coarse mIoU.

    street->street, solid line->street (same group), sidewalk->car, ego car ignored.
    """
    cid = A2D2_SEMANTIC_CLASSES.index
    gt = np.array([[cid("RD normal street"), cid("Solid line"), cid("Sidewalk"), cid("Ego car")]],
                  np.uint8)
    pred = np.array([[cid("RD normal street"), cid("RD normal street"), cid("Car"), cid("Sky")]],
                    np.uint8)
    acc = EvalAccumulator(ModelContract())
    acc.add_semantic(pred, gt)
    rep = acc.report()
    coarse = rep["semantic_coarse"]
    assert coarse["per_class_iou"] == {"drivable": 1.0, "other flat": 0.0}
    assert coarse["miou"] == pytest.approx(0.5)
    assert coarse["pixel_accuracy"] == pytest.approx(2 / 3)
    # 38-class: street 1/2 (one FP from the solid line), solid line 0, sidewalk 0, ego car 0
    assert rep["semantic"]["per_class_iou"]["RD normal street"] == pytest.approx(0.5)
    assert rep["semantic"]["pixel_accuracy"] == pytest.approx(0.25)


def test_committed_real_frames_are_the_shared_originals():
    names = sorted(n for n in os.listdir(REAL) if n != "README.md")
    exts = [os.path.splitext(n)[1] for n in names]
    assert (exts.count(".png"), exts.count(".npz"), exts.count(".json")) == (22, 10, 15)
    if not os.path.isdir(SHARED_REAL):
        pytest.skip("../shared/a2d2/real not beside the checkout: byte comparison not possible")
    for n in names:
        with open(os.path.join(REAL, n), "rb") as a, open(os.path.join(SHARED_REAL, n), "rb") as b:
            assert a.read() == b.read(), n


def test_flat_folder_reader():
    ds = A2D2Dataset(REAL, require=("camera", "label"))
    assert len(ds) == 11
    assert ds.scenes == DRIVES
    rep = ds.scan_report()
    assert rep["missing"] == {"camera": 0, "lidar": 1, "label": 0, "label3D": 6}
    assert rep["missing_frames"]["lidar"] == [PNG_ONLY]
    k = [f.key for f in ds.frames].index(PNG_ONLY)          # camera PNG without its JSON sidecar
    f = ds.load_frame(k)
    assert f.image.shape == (1208, 1920, 3) and f.semantic.shape == (1208, 1920)
    assert f.points.shape == (0, 3) and f.paths["lidar"] is None and f.cam_tstamp is None
    # the label image is mostly known classes (undistortion leaves an unlabelled border = 255)
    assert np.mean(f.semantic != 255) > 0.9
    lidar = A2D2Dataset(REAL)                                # default: frames with lidar
    assert len(lidar) == 10 and [r.key for r in lidar.skipped] == [PNG_ONLY]
    assert sorted(r.key for r in lidar.frames if r.paths["label3D"]) == WITH_BOXES
    with pytest.raises(FileNotFoundError):
        A2D2Dataset(os.path.join(ROOT, "test", "golden"))


def test_real_lidar_conventions():
    """Real lidar: view-frame points, ``row``/``col`` in the undistorted image, boxes on cars.

    Projecting the points with the undistorted ``CamMatrix`` gives the files' ``row``/``col``;
    every ``label3D`` box holds lidar points, most of them labelled vehicle through row/col in
    the undistorted label (26 boxes, all Car/VanSUV/Truck).
    """
    from bev_mtl_ros.data.calibration import project_view_points
    from bev_mtl_ros.data.drivable import frame_point_classes
    from bev_mtl_ros.train.metrics import detection_point_categories, points_in_boxes
    ds = A2D2Dataset(REAL)
    n_boxes = 0
    for k, rec in enumerate(ds.frames):
        f = ds.load_frame(k, load_image=False)
        row, col, front = project_view_points(f.points, ds.cam.cam_matrix)
        assert front.all()
        np.testing.assert_allclose(row, f.row, atol=0.01)
        np.testing.assert_allclose(col, f.col, atol=0.01)
        if not len(f.boxes):
            continue
        cls = frame_point_classes(f)
        assert (points_in_boxes(f.points, f.boxes).sum(0) >= 12).all(), rec.key
        verdicts, _dom, _n = detection_point_categories(f.boxes, f.points, cls)
        assert verdicts == ["vehicle"] * len(f.boxes), rec.key
        n_boxes += len(f.boxes)
    assert n_boxes == 26


def _put(pts, cls, x, y, name, n):
    for k in range(n):
        pts.append([x + 0.1 * (k % 5), y + 0.1 * (k // 5), -1.0])
        cls.append(A2D2_SEMANTIC_CLASSES.index(name))


def test_real_detection_measures_known_answer():
    """Clutter, unlabelled vehicles, recall@2 m and false positives of two hand-made frames."""
    c = ModelContract()
    car, truck, ped = (c.detection_classes.index(n) for n in ("Car", "Truck", "Pedestrian"))
    acc = EvalAccumulator(c)

    def det(x, y):
        return [x, y, -1.0, 4.0, 2.0, 1.6, 0.0]
    # frame A, no label3D: a Car on building points (clutter), a Truck on car points (unlabelled
    # vehicle), a Car on building points below the node's threshold (not counted)
    pts, cls = [], []
    _put(pts, cls, 10.0, 0.0, "Buildings", 6)
    _put(pts, cls, 20.0, 0.0, "Car", 6)
    _put(pts, cls, 30.0, 0.0, "Buildings", 6)
    row = acc.add_real_detections("A", [det(10, 0), det(20, 0), det(30, 0)], [0.9, 0.8, 0.3],
                                  [car, truck, car], np.array(pts), np.array(cls, np.uint8))
    assert row == {"key": "A", "label3D": False, "detections": 2, "clutter": 1,
                   "unlabelled_vehicle": 1}
    assert acc.report()["detection_at_2m"]["available"] is False   # no boxes: not scored
    # frame B, label3D: boxes at (20, 0) and (30, 5) in range, one at x = 100 out of range
    gt = np.array([det(20, 0), det(30, 5), det(100, 0)])
    pts, cls = [], []
    _put(pts, cls, 40.0, -5.0, "Car", 6)
    _put(pts, cls, 50.0, 0.0, "Car", 6)
    _put(pts, cls, 60.0, 3.0, "Nature object", 6)
    row = acc.add_real_detections(
        "B", [det(21.5, 0), det(40, -5), det(50, 0), det(60, 3), det(30, 5)],
        [0.9, 0.9, 0.9, 0.9, 0.2], [car, car, ped, car, car], np.array(pts),
        np.array(cls, np.uint8), gt_boxes=gt, all_boxes=gt)
    # found: the box at (20, 0) (1.5 m); the (30, 5) one only by a detection below threshold.
    # matched: 21.5; excused: the Car on car points; FP: the Pedestrian on car points and the
    # Car on the tree
    assert row == {"key": "B", "label3D": True, "detections": 4, "gt_boxes": 2, "found": 1,
                   "false_positives": 2, "unlabelled_vehicle_car_truck": 1, "clutter": 1,
                   "unlabelled_vehicle": 2}
    # frame C, label3D but no label image: nothing can excuse a detection
    acc.add_real_detections("C", [det(40, -5)], [0.9], [car], np.zeros((0, 3)), None,
                            gt_boxes=np.zeros((0, 7)))
    rep = acc.report()
    a = rep["detection_at_2m"]
    assert (a["frames"], a["gt_boxes"], a["found"], a["detections"], a["false_positives"],
            a["unlabelled_vehicle"]) == (2, 2, 1, 5, 3, 1)
    assert a["recall"] == 0.5 and a["false_positives_per_frame"] == 1.5
    assert a["score_threshold"] == NODE_SCORE_THRESHOLD and a["radius_m"] == 2.0
    b = rep["detection_point_labels"]
    assert (b["frames"], b["frames_with_boxes"], b["detections"], b["near_box"]) == (2, 1, 6, 1)
    assert b["clutter_false_positives"] == 2 and b["clutter_false_positives_per_frame"] == 1.0
    assert b["unlabelled_vehicle"] == 3
    assert b["verdicts"] == {"clutter": 2, "vehicle": 3, "person_bike": 0, "road": 0,
                             "mixed": 0, "no_points": 0}
    assert b["clutter_by_detection_class"] == {"Car": 2}
    assert b["clutter_by_point_class"] == {"Buildings": 1, "Nature object": 1}
    assert [r["key"] for r in rep["per_frame"]] == ["A", "B", "C"]
    assert rep["counts"]["frames"] == 0                            # no AP frame was added


def test_evaluate_real_frames_cli(tmp_path):
    """``evaluate --data`` on the eleven real frames, fused and lidar only.

    Detection (AP, recall@2 m) is scored on the five frames with ``label3D`` only; the clutter
    count and the drivable IoUs on the ten with lidar; semantics on all eleven (fused run).
    """
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "bev_mtl_ros.cli", "evaluate", "--data", REAL,
                           "--model", MODEL, "--out", str(out), "--render", "3", "--no-progress",
                           "--camera-input", "both"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Semantic (8 coarse groups) mIoU over 8 classes present" in proc.stdout
    assert "Lidar only (camera_valid = 0), same frames:" in proc.stdout
    assert "5 frames with label3D: recall@2m" in proc.stdout
    rep = json.loads((out / "report.json").read_text())
    for run, r in (("fused", rep), ("lidar_only", rep["lidar_only"])):
        assert r["camera_input"] == run and r["source"]["camera_input"] == "both"
        assert r["counts"]["frames"] == 5 and r["detection"]["num_gt"]["Car"] == 25
        assert r["detection"]["num_gt"]["Truck"] == 1
        a = r["detection_at_2m"]
        assert a["frames"] == 5 and a["gt_boxes"] == 26 and 0 <= a["found"] <= 26
        assert a["recall"] == a["found"] / 26
        assert a["false_positives_per_frame"] == a["false_positives"] / 5
        b = r["detection_point_labels"]
        assert b["frames"] == 10 and b["frames_with_boxes"] == 5
        assert sum(b["verdicts"].values()) + b["near_box"] == b["detections"]
        assert len(r["per_frame"]) == 10
        assert sorted(f["key"] for f in r["per_frame"] if f["label3D"]) == WITH_BOXES
        assert r["drivable"]["observed_frames"] == 10 and 0 < r["drivable"]["iou_observed"] < 1
        assert r["counts"]["frames_with_drivable_gt"] == 10
    assert rep["counts"]["frames_with_semantic_gt"] == 11
    assert rep["lidar_only"]["semantic"]["available"] is False
    assert 0.0 < rep["semantic"]["miou"] < 1.0 and 0.0 < rep["semantic_coarse"]["miou"] < 1.0
    assert set(rep["semantic_coarse"]["per_class_iou"]) == set(COARSE_GROUP_NAMES)
    assert len(list((out / "frames").glob("*_semantic.png"))) == 3
    assert (out / "pr_curves.png").exists()


def test_real_camera_dataset_and_mixing():
    import torch
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.dataset import (InMemoryDataset, MixedDataset, RealCameraDataset,
                                           collate_batch)
    c = ModelContract()
    real = RealCameraDataset(REAL, c, repeats=3, augment=AugmentConfig(), seed=5)
    assert len(real) == 33 and real.num_frames == 11 and PNG_ONLY in real.keys
    w, h = c.image_size
    a, b = real[1], real[1]
    assert a["image"].shape == (3, h, w) and a["camera_valid"] == 1.0 and a["det_valid"] == 0.0
    # reproducible
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["semantic"], b["semantic"])
    assert not torch.equal(real[1]["image"], real[12]["image"])  # same frame, another crop
    assert (a["drivable"] == 255).all() and a["targets"]["mask"].sum() == 0
    assert (a["semantic"] != 255).float().mean() > 0.5
    synth = InMemoryDataset([{"points": np.zeros((10, 4), np.float32),
                              "boxes": np.zeros((0, 7), np.float32),
                              "labels": np.zeros(0, np.int64), "drivable": None}], c)
    mixed = MixedDataset([synth, real])
    assert len(mixed) == 34 and mixed[0]["det_valid"] == 1.0 and mixed[33]["det_valid"] == 0.0
    mixed.seed = 9
    assert real.seed == 9 and synth.seed == 9
    _inputs, targets, _meta = collate_batch([mixed[0], mixed[3]])
    assert targets["det_valid"].tolist() == [1.0, 0.0]


def test_real_box_frames_join_the_training_set(tmp_path):
    """real_data.box_repeats lists the five real lidar + label3D frames as full samples."""
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.dataset import A2D2TrainDataset, RealCameraDataset
    from bev_mtl_ros.train.train import build_train_set
    c = ModelContract()
    cfg = {"seed": 0, "camera_dropout": 0.0, "real_data": {"repeats": 2, "box_repeats": 3}}
    synth = A2D2TrainDataset(REAL, c, require=("lidar", "label3D"))  # stands in for synthetic
    assert synth.num_frames == 5 and len(synth) == 5
    _ds, mixed = build_train_set(REAL, cfg, c, AugmentConfig(enabled=False),
                                 cache_dir=str(tmp_path / "cache"), real_data=REAL)
    kinds = [type(p) for p in mixed.parts]
    assert kinds == [A2D2TrainDataset, RealCameraDataset, A2D2TrainDataset]
    boxes = mixed.parts[2]
    assert boxes.num_frames == 5 and len(boxes) == 15
    assert sorted(fr.key.split("/")[-1] for fr in boxes.reader.frames) == sorted(
        k.split("/")[1] for k in WITH_BOXES)
    a, b = boxes[1], boxes[6]                  # the same frame, listed twice
    assert a["det_valid"] == 1.0 and a["camera_valid"] == 1.0
    assert a["targets"]["mask"].sum() > 0      # CenterPoint targets from the label3D boxes
    assert a["meta"]["key"] == b["meta"]["key"]
    assert (a["drivable"] != 255).any()        # a drivable label from the real points
    cfg["real_data"]["box_repeats"] = 0
    _ds, mixed = build_train_set(REAL, cfg, c, AugmentConfig(enabled=False),
                                 cache_dir=str(tmp_path / "cache"), real_data=REAL)
    assert len(mixed.parts) == 2


def test_real_camera_dataset_decodes_large_sets_on_access():
    """Above ``preload_limit`` frames are decoded per item, with the very same samples."""
    import torch
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.dataset import RealCameraDataset
    c = ModelContract()
    held = RealCameraDataset(REAL, c, repeats=2, augment=AugmentConfig(), seed=3)
    lazy = RealCameraDataset(REAL, c, repeats=2, augment=AugmentConfig(), seed=3, preload_limit=2)
    assert held.preloaded is not None and lazy.preloaded is None
    assert lazy.num_frames == held.num_frames == 11 and len(lazy) == len(held) == 22
    for i in (0, 16):
        a, b = held[i], lazy[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["semantic"], b["semantic"])


def test_detection_loss_skips_camera_only_items():
    """A camera-only item adds nothing to the detection loss.

    The loss of a batch with a camera-only item equals the detection loss of the valid item alone.
    """
    import torch
    from bev_mtl_ros.model.losses import MultiTaskLoss
    g = torch.Generator().manual_seed(0)
    B, K, H, W, M = 2, 4, 8, 8, 3
    out = {"heatmap": torch.randn(B, K, H, W, generator=g),
           "offset": torch.randn(B, 2, H, W, generator=g),
           "z": torch.randn(B, 1, H, W, generator=g), "size": torch.randn(B, 3, H, W, generator=g),
           "rot": torch.randn(B, 2, H, W, generator=g)}
    hm = torch.zeros(B, K, H, W)
    hm[0, 1, 3, 4] = 1.0
    hm[1, 2, 5, 5] = 1.0   # a "target" on the camera-only item: must not count
    tg = {"heatmap": hm, "indices": torch.tensor([[28, 0, 0], [45, 0, 0]]),
          "mask": torch.tensor([[1., 0, 0], [1., 0, 0]]),
          "offset": torch.rand(B, M, 2, generator=g), "z": torch.rand(B, M, 1, generator=g),
          "size": torch.rand(B, M, 3, generator=g), "rot": torch.rand(B, M, 2, generator=g)}
    loss = MultiTaskLoss()
    tasks, _ = loss.task_losses(out, {**tg, "det_valid": torch.tensor([1.0, 0.0])})
    ref, _ = loss.task_losses({k: v[:1] for k, v in out.items()},
                              {k: v[:1] for k, v in tg.items()})
    assert torch.allclose(tasks["detection"], ref["detection"])
    both, _ = loss.task_losses(out, tg)
    assert not torch.allclose(both["detection"], ref["detection"])
    none, _ = loss.task_losses(out, {**tg, "det_valid": torch.zeros(2)})
    assert "detection" not in none


def test_clutter_false_positives_in_the_report():
    """A detection on a tree (no road user near) counts; one next to a car does not.

    Frames without clutter are not counted.
    """
    acc = EvalAccumulator(ModelContract())
    tree = np.array([[20.0, 5.0, -1.0, 1.0, 1.0, 6.0, 0.0]])
    car = np.array([[20.0, -5.0, -1.0, 4.5, 1.9, 1.6, 0.0]])
    pred = np.array([[20.2, 5.1, -1.0, 0.8, 0.8, 1.8, 0.0], [20.0, -5.2, -1.0, 4.5, 1.9, 1.6, 0.0],
                     [20.0, 5.0, -1.0, 0.8, 0.8, 1.8, 0.0]])
    scores = np.array([0.9, 0.9, 0.2])          # the third is below the node's threshold
    labels = np.array([2, 0, 2])                 # Pedestrian, Car, Pedestrian
    clutter = np.concatenate([tree, car + [0, 0.5, 0, 0, 0, 0, 0]])
    acc.add_clutter(pred, scores, labels, car, clutter)
    acc.add_clutter(pred, scores, labels, car, np.zeros((0, 7)))
    cfp = acc.report()["detection"]["clutter_false_positives"]
    assert cfp["count"] == 1 and cfp["frames"] == 1 and cfp["per_frame"] == 1.0
    assert cfp["score_threshold"] == NODE_SCORE_THRESHOLD
    # per-class thresholds: a Pedestrian threshold above 0.9 drops the detection on the tree
    acc = EvalAccumulator(ModelContract())
    acc.operating_threshold = [0.4, 0.4, 0.95, 0.4]
    acc.add_clutter(pred, scores, labels, car, clutter)
    assert acc.report()["detection"]["clutter_false_positives"]["count"] == 0


def test_evaluator_threshold_is_the_nodes():
    """The clutter count and the operating point are scored at the node's own default thresholds.

    The evaluator's constant, the node's parameter defaults (``score_threshold`` and the
    shipped model's ``class_score_thresholds``) and config/perception.yaml agree.
    """
    import yaml
    from bev_mtl_ros.ros.params import NODE_PARAMETERS
    cfg = yaml.safe_load(open(os.path.join(ROOT, "config", "perception.yaml")))
    assert cfg["/**"]["ros__parameters"]["score_threshold"] == NODE_SCORE_THRESHOLD
    assert NODE_PARAMETERS["score_threshold"][0] == NODE_SCORE_THRESHOLD
    # the per-class overrides: the evaluator's default operating point is the node's
    from bev_mtl_ros.train.evaluate import node_operating_thresholds
    classes = ModelContract().detection_classes
    assert cfg["/**"]["ros__parameters"]["class_score_thresholds"] == \
        NODE_PARAMETERS["class_score_thresholds"][0]
    assert node_operating_thresholds(classes) == [NODE_SCORE_THRESHOLD] * len(classes)


def test_semantic_pixel_counts_and_enet_weights_from_the_training_mix():
    """Counts follow the labels and the repeats; the config's ``enet`` weighting uses them."""
    from bev_mtl_ros.model.losses import enet_class_weights
    from bev_mtl_ros.train.config import ConfigError
    from bev_mtl_ros.train.dataset import (InMemoryDataset, MixedDataset, RealCameraDataset,
                                           semantic_pixel_counts)
    from bev_mtl_ros.train.model_setup import build_loss
    c = ModelContract()
    n = len(c.semantic_classes)
    w, h = c.image_size
    sem = np.full((h, w), 255, np.uint8)
    sem[:10] = 3                                   # 10 rows of class 3, the rest ignored
    synth = InMemoryDataset([{"points": np.zeros((0, 4), np.float32),
                              "boxes": np.zeros((0, 7), np.float32),
                              "labels": np.zeros(0, np.int64), "drivable": None,
                              "semantic": sem}] * 2, c)
    counts = semantic_pixel_counts(synth, n)
    assert counts.shape == (n,) and counts[3] == 2 * 10 * w and counts.sum() == counts[3]
    one, three = (RealCameraDataset(REAL, c, repeats=r) for r in (1, 3))
    real1, real3 = semantic_pixel_counts(one, n), semantic_pixel_counts(three, n)
    np.testing.assert_allclose(real3, 3 * real1)
    direct = sum(np.bincount(one.raw(k)["semantic"].ravel(), minlength=256)[:n]
                 for k in range(one.num_frames))
    np.testing.assert_allclose(real1, direct)
    mixed = MixedDataset([synth, three])
    np.testing.assert_allclose(semantic_pixel_counts(mixed, n), counts + real3)
    loss = build_loss({"loss": {"semantic_class_weights": "enet", "semantic_enet_c": 1.1}}, mixed)
    np.testing.assert_allclose(loss.semantic_class_weights.numpy(),
                               enet_class_weights(counts + real3, 1.1).numpy())
    assert build_loss({"loss": {}}, mixed).semantic_class_weights is None
    for bad in ({"semantic_class_weights": "median"}, {"semantic_class_weights": [1.0, 2.0]},
                {"semantic_class_weight": "enet"}):         # the last one: a misspelt key
        with pytest.raises(ConfigError):
            build_loss({"loss": bad}, mixed)


def test_data_semantic_false_ignores_only_the_data_frames_labels(tmp_path):
    """``data: {semantic: false}``: the --data frames lose their semantic label, nothing else.

    The real frames (camera-only and box frames) keep theirs.
    """
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.train import build_train_set
    c = ModelContract()
    cfg = {"seed": 0, "camera_dropout": 0.0, "real_data": {"repeats": 1, "box_repeats": 1}}
    kw = dict(cache_dir=str(tmp_path / "cache"), real_data=REAL)
    ds_on, _ = build_train_set(REAL, cfg, c, AugmentConfig(enabled=False), **kw)
    cfg["data"] = {"semantic": False}
    ds_off, mixed = build_train_set(REAL, cfg, c, AugmentConfig(enabled=False), **kw)
    on, off = ds_on[0], ds_off[0]
    assert (on["semantic"] != 255).float().mean() > 0.5
    assert (off["semantic"] == 255).all()
    assert torch.equal(on["drivable"], off["drivable"]) and torch.equal(on["image"], off["image"])
    assert torch.equal(on["targets"]["heatmap"], off["targets"]["heatmap"])
    assert off["camera_valid"] == 1.0 and off["det_valid"] == 1.0
    for part in mixed.parts[1:]:              # the real camera frames and real box frames
        assert (part[0]["semantic"] != 255).float().mean() > 0.5


def test_street_model_files_agree_and_reproduce_their_card_figures(tmp_path):
    """The opt-in street model (models/bev_mtl_street.*, config/train_street.yaml).

    Its ONNX graph and checkpoint carry the same contract (colour-matched normalisation, the
    ``espnetv2_s4`` head) and agree on the network outputs; ``evaluate`` on the eleven real frames
    reproduces the committed report (``bev_mtl_street.real_eval.json``: coarse mIoU 0.610, pixel
    accuracy 0.932), the card's fit figures.
    """
    from bev_mtl_ros.model.network import random_inputs
    from bev_mtl_ros.runtime.backends import create_backend
    from bev_mtl_ros.runtime.checkpoint import load_checkpoint
    onnx_path = os.path.join(ROOT, "models", "bev_mtl_street.onnx")
    net, contract, _ = load_checkpoint(onnx_path[:-5] + ".pt")
    assert net.widths["semantic_head"] == "espnetv2_s4"
    assert contract.image_mean == pytest.approx((0.697, 0.6245, 0.6323))
    ort = create_backend(onnx_path, backend="onnxruntime")
    assert ort.contract.to_dict() == contract.to_dict()
    inputs = random_inputs(contract, 3000)
    with torch.no_grad():
        ref = net.eval()(*inputs)
    got = ort.infer(*(t.numpy() for t in inputs))
    for k in ("heatmap", "semantic", "drivable"):  # the graph applies the sigmoid on two
        want = torch.sigmoid(ref[k]) if k in ("heatmap", "drivable") else ref[k]
        assert np.abs(got[k] - want.numpy()).max() < 1e-3, k
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "bev_mtl_ros.cli", "evaluate", "--data", REAL,
                           "--model", onnx_path, "--backend", "onnxruntime", "--out", str(out),
                           "--render", "0", "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    card = json.loads(open(onnx_path[:-5] + ".real_eval.json").read())
    assert card["semantic_coarse"]["miou"] == pytest.approx(0.610, abs=0.001)
    for key in ("semantic_coarse", "semantic"):
        assert rep[key]["miou"] == pytest.approx(card[key]["miou"], abs=0.003), key
        assert rep[key]["pixel_accuracy"] == pytest.approx(card[key]["pixel_accuracy"], abs=0.003)
