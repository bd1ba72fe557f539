"""Per-class score thresholds: detection records, their scoring and the calibration.

The records of ``EvalAccumulator.add_real_detections`` must give back the accumulator's own
real-frame measure at the node's threshold (one definition, two code paths), other thresholds
must score by hand-counted answers, and the calibration must move a class's threshold only as
far as its frames ask.
"""

import math

import numpy as np
import pytest

from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES, ModelContract
from bev_mtl_ros.train.evaluate import NODE_SCORE_THRESHOLD, EvalAccumulator
from bev_mtl_ros.train.thresholds import (calibrate_class_thresholds, calibration_gain,
                                          records_of, score_records)


def _points(spec):
    """Lidar points and their A2D2 classes: 6 points of class ``name`` around each (x, y)."""
    pts, cls = [], []
    for x, y, name in spec:
        for k in range(6):
            pts.append([x + 0.1 * (k % 5), y + 0.1 * (k // 5), -1.0])
            cls.append(A2D2_SEMANTIC_CLASSES.index(name))
    return np.array(pts, np.float64).reshape(-1, 3), np.array(cls, np.uint8)


def _box(x, y):
    return [x, y, -1.0, 4.0, 2.0, 1.6, 0.0]


@pytest.fixture()
def accumulated():
    """Three hand-made lidar frames through ``add_real_detections`` (as test_real_frames)."""
    c = ModelContract()
    car, truck, ped = (c.detection_classes.index(n) for n in ("Car", "Truck", "Pedestrian"))
    acc = EvalAccumulator(c)
    # A, no label3D: Car on a building (clutter), Truck on car points (unlabelled vehicle),
    # Car on a building at 0.3 (below the node's threshold)
    pts, cls = _points([(10, 0, "Buildings"), (20, 0, "Car"), (30, 0, "Buildings")])
    acc.add_real_detections("A", [_box(10, 0), _box(20, 0), _box(30, 0)], [0.9, 0.8, 0.3],
                            [car, truck, car], pts, cls)
    # B, label3D with boxes at (20, 0), (30, 5) and one out of range: a match at 21.5, an
    # excused Car on car points, a Pedestrian on car points and a Car on a tree (false
    # positives), the (30, 5) box seen only at 0.2
    gt = np.array([_box(20, 0), _box(30, 5), _box(100, 0)])
    pts, cls = _points([(40, -5, "Car"), (50, 0, "Car"), (60, 3, "Nature object")])
    acc.add_real_detections("B", [_box(21.5, 0), _box(40, -5), _box(50, 0), _box(60, 3),
                                  _box(30, 5)],
                            [0.9, 0.9, 0.9, 0.9, 0.2], [car, car, ped, car, car], pts, cls,
                            gt_boxes=gt, all_boxes=gt)
    # C, label3D without a label image
    acc.add_real_detections("C", [_box(40, -5)], [0.9], [car], np.zeros((0, 3)), None,
                            gt_boxes=np.zeros((0, 7)))
    return acc, (car, truck, ped)


def test_records_reproduce_the_accumulators_measure(accumulated):
    acc, _ = accumulated
    rep = acc.report()
    s = score_records(acc.records, NODE_SCORE_THRESHOLD)
    a, b = rep["detection_at_2m"], rep["detection_point_labels"]
    assert (s["gt_boxes"], s["found"], s["box_frames"], s["false_positives"]) == (
        a["gt_boxes"], a["found"], a["frames"], a["false_positives"]) == (2, 1, 2, 3)
    assert s["recall"] == a["recall"] == 0.5
    assert s["false_positives_per_frame"] == a["false_positives_per_frame"] == 1.5
    assert (s["clutter"], s["labelled_frames"]) == (b["clutter_false_positives"], b["frames"])
    assert s["clutter_per_frame"] == b["clutter_false_positives_per_frame"] == 1.0
    assert [r["key"] for r in acc.records] == ["A", "B", "C"]
    assert acc.records[0]["matched"] is None and acc.records[2]["verdicts"] is None
    assert len(acc.records[1]["scores"]) == 5           # below the threshold too


def test_per_class_thresholds_known_answer(accumulated):
    acc, (car, truck, ped) = accumulated
    t = np.full(len(acc.contract.detection_classes), NODE_SCORE_THRESHOLD)
    t[car] = 0.15       # the Car at 0.2 finds the (30, 5) box, the Car at 0.3 on A is clutter
    t[ped] = 0.95       # the Pedestrian on car points is gone
    s = score_records(acc.records, t)
    assert (s["found"], s["recall"]) == (2, 1.0)
    assert s["false_positives"] == 2                    # B's tree Car, C's Car
    assert s["clutter"] == 3                            # A: two building Cars; B: the tree Car
    assert calibration_gain(acc.records, t) == 2 - 2 - 2     # found - FPs - clutter on A
    with pytest.raises(ValueError, match="has no threshold"):
        score_records(acc.records, [0.4])


def _record(scores, labels, matched=None, verdicts=None, near_gt=None, gt_labels=None):
    n = len(scores)
    return {"key": "x", "scores": scores, "labels": labels, "verdicts": verdicts,
            "matched": matched, "excused": None if matched is None else [False] * n,
            "near_gt": near_gt, "gt_labels": gt_labels}


def test_calibration_moves_a_class_only_as_far_as_its_frames_ask():
    # class 0: a true box at 0.7 and clutter at 0.45 (frame without boxes) -> 0.50
    # class 1: a true box found only at 0.30, nothing false -> 0.30 (not lower)
    # class 2: no box, a clutter detection at 0.5 -> stays at the base 0.40 (its recall unseen)
    recs = [_record([0.7, 0.3], [0, 1], matched=[True, True], verdicts=["vehicle", "vehicle"],
                    near_gt=[[0], [1]], gt_labels=[0, 1]),
            _record([0.45, 0.5], [0, 2], verdicts=["clutter", "clutter"])]
    cal = calibrate_class_thresholds(recs, 3, 0.40, min_boxes=1)
    assert cal["thresholds"] == [0.5, 0.3, 0.4] and cal["boxes_per_class"] == [1, 1, 0]
    # with the default of five boxes per class nothing here may move
    assert calibrate_class_thresholds(recs, 3, 0.40)["thresholds"] == [0.4, 0.4, 0.4]
    assert (cal["base_gain"], cal["gain"]) == (1 - 2, 2 - 1)
    assert cal["at_base"]["recall"] == 0.5 and cal["calibrated"]["recall"] == 1.0
    assert cal["calibrated"]["clutter"] == 1
    with pytest.raises(ValueError):
        calibrate_class_thresholds([], 3, 0.4)
    with pytest.raises(ValueError):
        calibrate_class_thresholds(recs, 3, 1.5)


def test_records_of_pools_runs_and_refuses_reports_without_records():
    fused = {"camera_input": "fused", "detection_records": [_record([0.5], [0])],
             "lidar_only": {"camera_input": "lidar_only",
                            "detection_records": [_record([0.6], [0]), _record([], [])]}}
    assert len(records_of(fused)) == 3
    assert len(records_of(fused, runs=["lidar_only"])) == 2
    s = score_records(records_of(fused, runs=["fused"]), 0.4)
    assert s["kept"] == 1 and math.isnan(s["recall"]) and math.isnan(s["clutter_per_frame"])
    with pytest.raises(KeyError, match="keep_records"):
        records_of({"camera_input": "fused"})


def test_class_score_thresholds_parameter_round_trip_and_refusals():
    from bev_mtl_ros.ros.params import (StartupError, make_postprocess_config,
                                        parse_class_thresholds)
    from bev_mtl_ros.train.thresholds import parameter_value
    classes = ["Car", "Truck", "Pedestrian", "Cyclist"]
    text = parameter_value(classes, [0.5, 0.35, 0.6, 0.4])
    assert text == "Car:0.50,Truck:0.35,Pedestrian:0.60,Cyclist:0.40"
    assert parse_class_thresholds(text, classes) == {"Car": 0.5, "Truck": 0.35,
                                                     "Pedestrian": 0.6, "Cyclist": 0.4}
    assert parse_class_thresholds("", classes) == {}
    # the classes not named keep score_threshold
    cfg = make_postprocess_config(0.4, "circle", classes, " Pedestrian : 0.7 ")
    assert cfg.class_thresholds(classes).tolist() == [0.4, 0.4, 0.7, 0.4]
    assert make_postprocess_config(0.3, "circle", classes).class_thresholds(classes).tolist() \
        == [0.3] * 4
    for bad, why in (("Bus:0.5", "not one of the model's detection classes"),
                     ("Car=0.5", "is not Class:value"), ("Car:0.5,Car:0.6", "twice"),
                     ("Car:1.5", "in [0, 1]"), ("Car:high", "in [0, 1]")):
        with pytest.raises(StartupError, match="class_score_thresholds") as e:
            parse_class_thresholds(bad, classes)
        assert why in str(e.value)


def test_calibrate_thresholds_cli_on_the_real_frames(tmp_path, capsys):
    """``bev-mtl-ros calibrate-thresholds`` with the shipped model on the eleven real frames.

    Its measure at the node's threshold is the committed real-frame report's (fused and
    lidar-only pooled), the calibration does not lower the objective, and the printed parameter
    parses back to the thresholds.
    """
    import json
    import os

    from bev_mtl_ros.cli import main
    from bev_mtl_ros.ros.params import parse_class_thresholds
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model = os.path.join(root, "models", "bev_mtl_default.onnx")
    out = tmp_path / "cal.json"
    assert main(["calibrate-thresholds", "--model", model, "--data",
                 os.path.join(root, "test", "data", "real_a2d2"), "--backend", "onnxruntime",
                 "--json", str(out)]) == 0
    cal = json.loads(out.read_text())
    with open(os.path.join(root, "models", "bev_mtl_default.real_eval.json")) as f:
        rep = json.load(f)
    runs = (rep["detection_at_2m"], rep["lidar_only"]["detection_at_2m"])
    assert cal["at_base"]["found"] == sum(r["found"] for r in runs)
    assert cal["at_base"]["false_positives"] == sum(r["false_positives"] for r in runs)
    assert cal["gain"] >= cal["base_gain"]
    assert parse_class_thresholds(cal["parameter"], cal["classes"]) == dict(
        zip(cal["classes"], cal["thresholds"]))
    assert f'class_score_thresholds: "{cal["parameter"]}"' in capsys.readouterr().out
