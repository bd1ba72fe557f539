"""Real A2D2 frames in the loop.

Coarse class groups, the flat-folder reader and ``evaluate --data`` on camera + label frames
(``test/data/real_a2d2``, four unmodified A2D2 frames).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

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
    names = sorted(n for n in os.listdir(REAL) if n.endswith(".png"))
    assert len(names) == 8
    if not os.path.isdir(SHARED_REAL):
        pytest.skip("../shared/a2d2/real not beside the checkout: byte comparison not possible")
    for n in names:
        with open(os.path.join(REAL, n), "rb") as a, open(os.path.join(SHARED_REAL, n), "rb") as b:
            assert a.read() == b.read(), n


def test_flat_folder_reader():
    ds = A2D2Dataset(REAL, require=("camera", "label"))
    assert len(ds) == 4
    assert ds.scenes == ["20180810142822", "20181107132300", "20181107133258", "20181108091945"]
    f = ds.load_frame(0)
    assert f.image.shape == (1208, 1920, 3) and f.semantic.shape == (1208, 1920)
    assert f.points.shape == (0, 3) and f.paths["lidar"] is None
    # the label image is mostly known classes (undistortion leaves an unlabelled border = 255)
    assert np.mean(f.semantic != 255) > 0.9
    with pytest.raises(FileNotFoundError):
        A2D2Dataset(os.path.join(ROOT, "test", "golden"))


def test_evaluate_real_frames_cli(tmp_path):
    """Camera + label frames: semantics scored (38 classes and 8 groups).

    Detection and drivable are reported as not available, exit code 0.
    """
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "bev_mtl_ros.cli", "evaluate", "--data", REAL,
                           "--model", MODEL, "--out", str(out), "--render", "4", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Detection: not available" in proc.stdout
    assert "Semantic (8 coarse groups) mIoU over 8 classes present" in proc.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["detection"]["available"] is False and rep["drivable"]["available"] is False
    assert rep["counts"]["frames_with_semantic_gt"] == 4
    assert 0.0 < rep["semantic"]["miou"] < 1.0 and 0.0 < rep["semantic_coarse"]["miou"] < 1.0
    assert set(rep["semantic_coarse"]["per_class_iou"]) == set(COARSE_GROUP_NAMES)
    assert len(list((out / "frames").glob("*_semantic.png"))) == 4
    assert not (out / "pr_curves.png").exists()


def test_real_camera_dataset_and_mixing():
    import torch
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.dataset import (InMemoryDataset, MixedDataset, RealCameraDataset,
                                           collate_batch)
    c = ModelContract()
    real = RealCameraDataset(REAL, c, repeats=3, augment=AugmentConfig(), seed=5)
    assert len(real) == 12
    w, h = c.image_size
    a, b = real[1], real[1]
    assert a["image"].shape == (3, h, w) and a["camera_valid"] == 1.0 and a["det_valid"] == 0.0
    # reproducible
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["semantic"], b["semantic"])
    assert not torch.equal(real[1]["image"], real[5]["image"])   # same frame, another crop
    assert (a["drivable"] == 255).all() and a["targets"]["mask"].sum() == 0
    assert (a["semantic"] != 255).float().mean() > 0.5
    synth = InMemoryDataset([{"points": np.zeros((10, 4), np.float32),
                              "boxes": np.zeros((0, 7), np.float32),
                              "labels": np.zeros(0, np.int64), "drivable": None}], c)
    mixed = MixedDataset([synth, real])
    assert len(mixed) == 13 and mixed[0]["det_valid"] == 1.0 and mixed[12]["det_valid"] == 0.0
    mixed.seed = 9
    assert real.seed == 9 and synth.seed == 9
    _inputs, targets, _meta = collate_batch([mixed[0], mixed[3]])
    assert targets["det_valid"].tolist() == [1.0, 0.0]


def test_real_camera_dataset_decodes_large_sets_on_access():
    """Above ``preload_limit`` frames are decoded per item, with the very same samples."""
    import torch
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.dataset import RealCameraDataset
    c = ModelContract()
    held = RealCameraDataset(REAL, c, repeats=2, augment=AugmentConfig(), seed=3)
    lazy = RealCameraDataset(REAL, c, repeats=2, augment=AugmentConfig(), seed=3, preload_limit=2)
    assert held.preloaded is not None and lazy.preloaded is None
    assert lazy.num_frames == held.num_frames == 4 and len(lazy) == len(held) == 8
    for i in (0, 5):
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
    acc.add_clutter(pred, scores, car, np.concatenate([tree, car + [0, 0.5, 0, 0, 0, 0, 0]]))
    acc.add_clutter(pred, scores, car, np.zeros((0, 7)))
    cfp = acc.report()["detection"]["clutter_false_positives"]
    assert cfp["count"] == 1 and cfp["frames"] == 1 and cfp["per_frame"] == 1.0
    assert cfp["score_threshold"] == NODE_SCORE_THRESHOLD


def test_evaluator_threshold_is_the_nodes():
    """The clutter count and the operating point are scored at the node's own default threshold.

    The evaluator's constant, the node's parameter default and config/perception.yaml agree.
    """
    import yaml
    from bev_mtl_ros.ros.params import NODE_PARAMETERS
    cfg = yaml.safe_load(open(os.path.join(ROOT, "config", "perception.yaml")))
    assert cfg["/**"]["ros__parameters"]["score_threshold"] == NODE_SCORE_THRESHOLD
    assert NODE_PARAMETERS["score_threshold"][0] == NODE_SCORE_THRESHOLD


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
