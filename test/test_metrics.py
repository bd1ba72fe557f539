"""Hand-computed cases for bev_mtl_ros.train.metrics (AP, rotated BEV IoU, segmentation IoU)."""

import math

import numpy as np
import pytest

from bev_mtl_ros.geometry import box_corners_bev, rotated_bev_iou
from bev_mtl_ros.train.metrics import (ConfusionMatrix, DetectionEvaluator, DrivableEvaluator,
                                       SemanticEvaluator, average_precision, binary_iou)

CLASSES = ("Car", "Pedestrian")


def box(x, y, length=4.0, w=2.0, yaw=0.0):
    return [x, y, -1.0, length, w, 1.5, yaw]


# --------------------------------------------- test oracle: rotated BEV IoU by polygon clipping
def _clip_polygon(subject, a, b):
    """Sutherland-Hodgman: keep the part of ``subject`` left of the directed edge a->b."""
    def side(p):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    out = []
    n = len(subject)
    for i in range(n):
        cur, nxt = subject[i], subject[(i + 1) % n]
        sc, sn = side(cur), side(nxt)
        if sc >= 0:
            out.append(cur)
        if (sc >= 0) != (sn >= 0):
            out.append(cur + sc / (sc - sn) * (nxt - cur))
    return out


def _polygon_area(poly):
    if len(poly) < 3:
        return 0.0
    p = np.asarray(poly)
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1))
                           - np.dot(p[:, 1], np.roll(p[:, 0], -1))))


def rotated_bev_iou_reference(boxes_a, boxes_b):
    """Compute a slow, plain rotated BEV IoU of (N, 7) x (M, 7) boxes.

    Pair loop, polygon clipping: the oracle for :func:`bev_mtl_ros.geometry.rotated_bev_iou`.
    Returns (N, M) float64.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 7)
    out = np.zeros((len(a), len(b)))
    ca, cb = box_corners_bev(a), box_corners_bev(b)
    for i in range(len(a)):
        for j in range(len(b)):
            poly = list(ca[i])
            for k in range(4):
                poly = _clip_polygon(poly, cb[j][k], cb[j][(k + 1) % 4])
                if not poly:
                    break
            inter = _polygon_area(poly)
            union = a[i, 3] * a[i, 4] + b[j, 3] * b[j, 4] - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_vectorised_iou_matches_the_oracle():
    rng = np.random.default_rng(3)
    b = np.zeros((60, 7))
    b[:, :2] = rng.uniform(-4, 4, (60, 2))
    b[:, 3:6] = rng.uniform(0.3, 5, (60, 3))
    b[:, 6] = rng.uniform(-4, 4, 60)
    b[5] = b[4]                                                     # identical pair
    np.testing.assert_allclose(rotated_bev_iou(b, b[:40]), rotated_bev_iou_reference(b, b[:40]),
                               atol=1e-9)


def test_perfect_predictions_ap_one():
    ev = DetectionEvaluator(CLASSES)
    gt = np.array([box(10, 0), box(20, 5)])
    ev.add_frame(gt, [0.9, 0.8], [0, 0], gt, [0, 0])
    ev.add_frame(np.array([box(30, -3, 0.8, 0.8)]), [0.7], [1], np.array([box(30, -3, 0.8, 0.8)]),
                 [1])
    res = ev.compute()
    for key in ("dist@0.5m", "dist@1m", "dist@2m", "dist@4m", "iou@0.5"):
        assert res["ap"][key]["Car"] == pytest.approx(1.0)
        assert res["ap"][key]["Pedestrian"] == pytest.approx(1.0)
        assert res["map"][key] == pytest.approx(1.0)
    assert res["num_gt"] == {"Car": 2, "Pedestrian": 1}


def test_no_predictions_ap_zero_and_no_ground_truth_nan_excluded():
    ev = DetectionEvaluator(CLASSES)
    # Car: 1 GT, no prediction -> AP 0. Pedestrian: no GT, one false positive -> NaN, not in mAP.
    ev.add_frame(np.array([box(5, 5, 0.8, 0.8)]), [0.9], [1], np.array([box(10, 0)]), [0])
    res = ev.compute()
    assert res["ap"]["dist@2m"]["Car"] == 0.0
    assert math.isnan(res["ap"]["dist@2m"]["Pedestrian"])
    assert res["map"]["dist@2m"] == 0.0  # mean over {Car} only
    empty = DetectionEvaluator(CLASSES)
    empty.add_frame(np.zeros((0, 7)), [], [], np.zeros((0, 7)), [])
    assert math.isnan(empty.compute()["map"]["dist@2m"])


def test_false_positive_ranked_above_true_positive():
    ev = DetectionEvaluator(CLASSES)
    # FP (score .9) then TP (.8); 1 GT: precision [0, .5], recall [0, 1] -> envelope .5 -> AP .5
    ev.add_frame(np.array([box(40, 10), box(10.3, 0)]), [0.9, 0.8], [0, 0], np.array([box(10, 0)]),
                 [0])
    res = ev.compute()
    assert res["ap"]["dist@1m"]["Car"] == pytest.approx(0.5)
    curve = res["curves"]["dist@1m"]["Car"]
    assert curve.precision.tolist() == [0.0, 0.5] and curve.recall.tolist() == [0.0, 1.0]


def test_interpolated_area_hand_case():
    # TP .9, FP .8, TP .7 with 2 GT: p = [1, .5, 2/3], r = [.5, .5, 1]
    # envelope [1, 2/3, 2/3]: AP = .5*1 + 0 + .5*2/3 = 5/6
    ev = DetectionEvaluator(CLASSES)
    ev.add_frame(np.array([box(10, 0), box(50, 30), box(20, 5)]), [0.9, 0.8, 0.7], [0, 0, 0],
                 np.array([box(10, 0), box(20, 5)]), [0, 0])
    assert ev.compute()["ap"]["dist@2m"]["Car"] == pytest.approx(5 / 6)
    assert (average_precision(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))
            == pytest.approx(5 / 6))


def test_distance_thresholds_and_greedy_matching():
    ev = DetectionEvaluator(CLASSES)
    # prediction 1.5 m from the GT: FP at 0.5 m and 1 m, TP at 2 m and 4 m;
    # a second prediction 0.2 m away but lower score is a duplicate -> FP once the GT is taken.
    ev.add_frame(np.array([box(11.5, 0), box(10.2, 0)]), [0.9, 0.5], [0, 0],
                 np.array([box(10, 0)]), [0])
    ap = ev.compute()["ap"]
    # 0.5/1 m: first FP, second TP -> AP .5; 2/4 m: first TP, second duplicate FP -> AP 1
    assert ap["dist@0.5m"]["Car"] == pytest.approx(0.5)
    assert ap["dist@1m"]["Car"] == pytest.approx(0.5)
    assert ap["dist@2m"]["Car"] == pytest.approx(1.0)
    assert ap["dist@4m"]["Car"] == pytest.approx(1.0)


def test_predictions_do_not_match_other_classes_or_frames():
    ev = DetectionEvaluator(CLASSES)
    ev.add_frame(np.array([box(10, 0)]), [0.9], [1], np.array([box(10, 0)]), [0])  # wrong class
    ev.add_frame(np.zeros((0, 7)), [], [], np.zeros((0, 7)), [])
    res = ev.compute()
    assert res["ap"]["dist@2m"]["Car"] == 0.0
    assert math.isnan(res["ap"]["dist@2m"]["Pedestrian"])


def test_nuscenes_mode():
    # perfect -> 1 ; FP above TP: interpolated precision .5 everywhere -> (.5 - .1) / .9
    assert (average_precision(np.array([1.0]), np.array([1.0]),
                              mode="nuscenes") == pytest.approx(1.0))
    assert (average_precision(np.array([0.0, 0.5]), np.array([0.0, 1.0]),
                              mode="nuscenes") == pytest.approx(0.4 / 0.9))
    with pytest.raises(ValueError):
        average_precision(np.array([1.0]), np.array([1.0]), mode="voc07")


@pytest.mark.parametrize("impl", [rotated_bev_iou_reference, rotated_bev_iou])
def test_rotated_bev_iou_known_values(impl):
    a = np.array([box(0, 0, 4, 2)], np.float32)
    shifted = np.array([box(2, 0, 4, 2)], np.float32)        # overlap 2x2=4, union 12
    square = np.array([box(0, 0, 2, 2)], np.float32)
    # octagon 8(sqrt2-1), union 8-that
    diamond = np.array([box(0, 0, 2, 2, math.pi / 4)], np.float32)
    far = np.array([box(50, 0)], np.float32)
    assert impl(a, a)[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert impl(a, shifted)[0, 0] == pytest.approx(1 / 3, abs=1e-5)
    oct_area = 8 * (math.sqrt(2) - 1)
    assert impl(square, diamond)[0, 0] == pytest.approx(oct_area / (8 - oct_area), abs=1e-4)
    assert impl(a, far)[0, 0] == pytest.approx(0.0)
    assert impl(a, np.zeros((0, 7), np.float32)).shape == (1, 0)


def test_iou_criterion_in_evaluator():
    ev = DetectionEvaluator(CLASSES, distance_thresholds=(2.0,), iou_thresholds=(0.5,))
    # IoU 1/3 (< .5) but centre distance 2 m (<= 2 m)
    ev.add_frame(np.array([box(12, 0)]), [0.9], [0], np.array([box(10, 0)]), [0])
    ap = ev.compute()["ap"]
    assert ap["iou@0.5"]["Car"] == 0.0 and ap["dist@2m"]["Car"] == pytest.approx(1.0)


def test_add_frame_validates():
    ev = DetectionEvaluator(CLASSES)
    with pytest.raises(ValueError, match="length"):
        ev.add_frame(np.zeros((2, 7)), [0.5], [0, 0], np.zeros((0, 7)), [])
    with pytest.raises(ValueError, match="label"):
        ev.add_frame(np.zeros((1, 7)), [0.5], [5], np.zeros((0, 7)), [])


def test_semantic_iou_hand_case():
    ev = SemanticEvaluator(("road", "car", "sky"))
    gt = np.array([[0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 2]])  # the ignored pixel's prediction does not count
    ev.add(pred, gt)
    res = ev.compute()
    # road: TP 1, FN 1 -> .5 ; car: TP 1, FP 1 -> .5 ; sky absent from GT -> excluded
    assert res["per_class_iou"] == {"road": 0.5, "car": 0.5}
    assert res["miou"] == pytest.approx(0.5) and res["classes_present"] == 2
    assert res["pixel_accuracy"] == pytest.approx(2 / 3)
    # predicting an absent class where GT is road lowers road's IoU but sky stays excluded
    ev.add(np.array([[2]]), np.array([[0]]))
    res = ev.compute()
    assert (res["per_class_iou"]["road"] == pytest.approx(1 / 3)
            and "sky" not in res["per_class_iou"])


def test_confusion_rejects_bad_labels():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="label id"):
        cm.add(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="size"):
        cm.add(np.array([0, 1]), np.array([0]))


def test_drivable_iou_with_ignore():
    ev = DrivableEvaluator()
    ev.add(np.array([[1, 1, 0, 1]]), np.array([[1, 0, 1, 255]], np.uint8))
    # TP 1, FP 1, FN 1 -> 1/3 ; ignored cell's prediction 1 does not count
    assert ev.iou() == pytest.approx(1 / 3)
    assert binary_iou(np.array([[1, 1, 0, 1]]), np.array([[1, 0, 1, 255]])) == pytest.approx(1 / 3)
    assert math.isnan(binary_iou(np.zeros((2, 2)), np.zeros((2, 2))))


def test_report_files_and_nan_handling(tmp_path):
    import json

    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.train.eval_report import summary_text, write_report
    from bev_mtl_ros.train.evaluate import EvalAccumulator
    from bev_mtl_ros.viz import render_frame
    c = ModelContract()
    acc = EvalAccumulator(c)
    # one Car TP, one Car out of the BEV range (ignored), no Pedestrian GT
    acc.add_detections(np.array([box(10, 0)]), [0.9], [0], np.array([box(10.2, 0), box(-5, 0)]),
                       [0, 0])
    gw, gh = c.grid_size
    acc.add_drivable(np.ones((gh, gw), np.uint8), np.full((gh, gw), 1, np.uint8))
    # resized to the label size
    acc.add_semantic(np.zeros((4, 4), np.uint8), np.zeros((8, 8), np.uint8))
    rep = acc.report()
    assert rep["counts"]["gt_boxes_out_of_range"] == 1
    assert rep["detection"]["ap"]["dist@2m"]["Car"] == pytest.approx(1.0)
    assert rep["drivable"]["iou"] == 1.0 and rep["semantic"]["miou"] == 1.0
    paths = write_report(rep, str(tmp_path))
    data = json.load(open(paths["json"]))
    assert data["detection"]["ap"]["dist@2m"]["Pedestrian"] is None  # NaN -> null
    assert data["detection"]["map"]["dist@2m"] == pytest.approx(1.0)
    text = summary_text(rep)
    assert "Car" in text and "n/a" in text
    png = render_frame(str(tmp_path / "f.png"), c, np.array([[10.0, 0.0, -1.0, 5.0]], np.float32),
                       np.array([box(10, 0)]), np.array([box(10.5, 0.5)]), np.array([0.8]),
                       image=np.zeros((302, 480, 3), np.uint8),
                       cam_matrix=np.array([[421.8, 0, 244.2], [0, 421.8, 152.0], [0, 0, 1]]),
                       drivable=np.ones((gh, gw), np.uint8))
    import cv2
    img = cv2.imread(png)
    assert img is not None and img.shape[0] == int(81.92 * 6)


def test_evaluate_bag_matches_by_stamp(tmp_path):
    """Bag mode end to end: a converted synthetic bag evaluated against itself.

    The ground-truth topic used as the "detections" gives AP 1 for every class with ground truth;
    a second bag holding only half of the frames leaves the other frames without output (counted,
    recall halves).
    """
    from bev_mtl_ros.data.synth import generate
    from bev_mtl_ros.data.to_bag import convert
    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.train.evaluate import GT_BOXES_TOPIC, evaluate_bag
    generate(str(tmp_path / "syn"), scenes=1, frames=2, seed=5, width=96, height=64)
    convert(str(tmp_path / "syn"), str(tmp_path / "bag"), progress=False)
    c = ModelContract()
    rep = evaluate_bag(str(tmp_path / "bag"), c, detections_topic=GT_BOXES_TOPIC,
                       out_dir=str(tmp_path / "ev"))
    assert rep["counts"]["frames"] == 2 and rep["counts"]["frames_without_output"] == 0
    present = [k for k, n in rep["detection"]["num_gt"].items() if n > 0]
    assert present
    for k in present:
        assert rep["detection"]["ap"]["dist@0.5m"][k] == pytest.approx(1.0)
        assert rep["detection"]["ap"]["iou@0.5"][k] == pytest.approx(1.0, abs=1e-6)
    assert (tmp_path / "ev" / "report.json").is_file()
    convert(str(tmp_path / "syn"), str(tmp_path / "half"), max_frames=1, progress=False)
    rep2 = evaluate_bag(str(tmp_path / "half"), c, gt_bag=str(tmp_path / "bag"),
                        detections_topic=GT_BOXES_TOPIC)
    assert rep2["counts"]["frames_without_output"] == 1
    assert sum(rep2["detection"]["num_gt"].values()) == sum(rep["detection"]["num_gt"].values())


def test_clutter_false_positives_known_answer():
    from bev_mtl_ros.train.metrics import bev_distance_to_boxes, clutter_false_positives
    clutter = np.array(
        [
            [10.0, 5.0, -1.0, 0.2, 0.2, 4.0, 0.0],  # pole at (10, 5)
            [20.0, -6.0, -1.0, 10.0, 1.0, 1.5, 0.0],
        ]
    )  # hedge along x 15..25 at y=-6
    gt = np.array([box(10.0, 6.2, length=0.6, w=0.6)])                # pedestrian next to the pole
    pred = np.array(
        [
            box(10.0, 5.5),  # 0.4 m from the pole and from the GT pedestrian -> not counted
            box(24.0, -6.9),  # 0.4 m from the hedge footprint -> counted
            box(30.0, -6.0),  # 5 m from the hedge -> not counted
            box(18.0, -5.9),  # inside the hedge, low score -> not counted
            box(15.0, -6.0),
        ]
    )  # on the hedge's end -> counted
    scores = np.array([0.9, 0.8, 0.9, 0.2, 0.5])
    assert clutter_false_positives(pred, scores, gt, clutter, 0.35, 0.5) == 2
    # without GT the first one counts too; a larger threshold drops the 0.5 one
    assert clutter_false_positives(pred, scores, np.zeros((0, 7)), clutter, 0.35, 0.5) == 3
    assert clutter_false_positives(pred, scores, gt, clutter, 0.6, 0.5) == 1
    assert clutter_false_positives(pred, scores, gt, np.zeros((0, 7)), 0.35, 0.5) == 0
    # footprint distance of a rotated box: 90 deg yaw swaps length and width
    d = bev_distance_to_boxes(
        np.array([[0.0, 3.0], [3.0, 0.0]]), np.array([[0, 0, 0, 4.0, 2.0, 1.0, math.pi / 2]])
    )
    np.testing.assert_allclose(d[:, 0], [1.0, 2.0], atol=1e-12)
    with pytest.raises(ValueError):
        clutter_false_positives(pred, scores[:2], gt, clutter, 0.35, 0.5)
    with pytest.raises(ValueError):
        clutter_false_positives(pred, scores, gt, clutter, 0.35, -1.0)


def test_operating_point_known_answer():
    """Precision/recall at a score threshold are read off the PR curve.

    They are the values at the last kept detection.
    """
    from bev_mtl_ros.train.metrics import DetectionEvaluator, operating_point
    ev = DetectionEvaluator(["Car"], distance_thresholds=[2.0], iou_thresholds=[])
    gt = np.array([[10.0, 0, 0, 4, 2, 1.5, 0], [20.0, 5, 0, 4, 2, 1.5, 0],
                   [30.0, -5, 0, 4, 2, 1.5, 0]])
    pred = np.array([[10.2, 0, 0, 4, 2, 1.5, 0], [40.0, 0, 0, 4, 2, 1.5, 0],
                     [20.1, 5, 0, 4, 2, 1.5, 0]])
    ev.add_frame(pred, np.array([0.9, 0.6, 0.4]), np.zeros(3, int), gt, np.zeros(3, int))
    curve = ev.compute()["curves"]["dist@2m"]["Car"]
    assert operating_point(curve, 0.5) == {"precision": 0.5, "recall": 1 / 3, "kept": 2}
    op = operating_point(curve, 0.3)
    assert op["kept"] == 3 and op["precision"] == 2 / 3 and op["recall"] == 2 / 3
    op = operating_point(curve, 0.95)
    assert op["kept"] == 0 and op["recall"] == 0.0 and np.isnan(op["precision"])


# --------------------------------------------- detections judged by their points' labels
_CLS = {n: i for i, n in enumerate(__import__("bev_mtl_ros.model.contract", fromlist=["x"])
                                   .A2D2_SEMANTIC_CLASSES)}


def test_points_in_boxes_rotated_and_margin():
    from bev_mtl_ros.train.metrics import points_in_boxes
    b = np.array([[10.0, 0.0, 0.0, 4.0, 2.0, 2.0, math.pi / 2]])    # 4 m along y after the yaw
    pts = np.array([[10.0, 1.9, 0.0], [11.2, 0.0, 0.0], [10.9, 0.0, 0.0], [10.0, 0.0, 1.2],
                    [10.0, 2.0, -1.0]])
    np.testing.assert_array_equal(points_in_boxes(pts, b)[:, 0], [True, False, True, False, True])
    np.testing.assert_array_equal(points_in_boxes(pts, b, margin=0.25)[:, 0],
                                  [True, True, True, True, True])
    assert points_in_boxes(np.zeros((0, 3)), b).shape == (0, 1)
    with pytest.raises(ValueError, match="margin"):
        points_in_boxes(pts, b, margin=-0.1)


def test_detection_point_categories_known_answer():
    """A box on building points is clutter, one on car points a vehicle; sky does not vote."""
    from bev_mtl_ros.train.metrics import MIXED, NO_POINTS, detection_point_categories
    boxes = np.array([box(10.0, 0.0), box(20.0, 0.0), box(30.0, 0.0), box(40.0, 0.0),
                      box(50.0, 0.0)])
    pts, cls = [], []

    def put(x, name, n, z=-1.0):
        for k in range(n):
            pts.append([x + 0.1 * k, 0.0, z])
            cls.append(_CLS[name] if name else 255)
    put(10.0, "Buildings", 3)
    put(10.0, "Car", 1)                      # 3 of 4 voters are clutter -> clutter
    put(10.0, "Sky", 5)                      # sky and unlabelled points do not vote
    put(10.0, None, 5)
    put(20.0, "Truck", 2)
    put(20.0, "Car", 1)                      # vehicle 3 of 4 -> vehicle; dominant Truck
    put(20.0, "Poles", 1)
    put(30.0, "Pedestrian", 1)               # 1 person, 1 road: no category above half -> mixed
    put(30.0, "RD normal street", 1)
    put(40.0, "Sky", 4)                      # only non-voters -> no points
    put(50.0, "Nature object", 3, z=3.0)     # above the box (z -1.75..-0.25): outside
    put(60.0, "Car", 4)                      # in no box
    verdicts, dominant, voters = detection_point_categories(boxes, np.array(pts),
                                                            np.array(cls, np.uint8))
    assert verdicts == ["clutter", "vehicle", MIXED, NO_POINTS, NO_POINTS]
    assert dominant.tolist() == [_CLS["Buildings"], _CLS["Truck"], dominant[2], -1, -1]
    assert dominant[2] in (_CLS["Pedestrian"], _CLS["RD normal street"])
    assert voters.tolist() == [4, 4, 2, 0, 0]
    assert detection_point_categories(np.zeros((0, 7)), np.array(pts), np.array(cls))[0] == []
    with pytest.raises(ValueError, match="point classes"):
        detection_point_categories(boxes, np.array(pts), np.array(cls[:-1]))
