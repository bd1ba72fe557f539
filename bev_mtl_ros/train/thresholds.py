"""Per-class score thresholds for real frames: detection records, their scoring and calibration.

Issue 25, item 5: the detector's operating point on real lidar is the node's one score
threshold (``score_threshold``, config/perception.yaml) for every class. Here the real-frame
detection measure of :meth:`bev_mtl_ros.train.evaluate.EvalAccumulator.add_real_detections`
(recall at 2 m, false positives per frame, clutter per frame) is recomputed for *any* set of
per-class thresholds from *detection records* - every in-range detection of a frame down to the
pipeline's floor, with what it hit - without running the network again; and a set of per-class
thresholds is chosen on calibration frames. ``bev-mtl-ros calibrate-thresholds --model M
[--data DIR]`` prints them as the node's ``class_score_thresholds`` parameter; the
cross-validation (``train/crossval.py``) calibrates on each fold's training drives and scores the
held-out drive at them.

A detection record of one frame (``EvalAccumulator.records``, JSON-compatible):

* ``key``: frame name; ``scores`` (P,) and ``labels`` (P,) of the frame's in-range detections
  (indices into the contract's detection classes);
* ``verdicts``: (P,) point-label verdicts
  (:func:`~bev_mtl_ros.train.metrics.detection_point_categories`: ``clutter``, ``vehicle``, ...)
  or None when the frame has no label image;
* ``matched``: (P,) bool, a ``label3D`` box within 2 m, or None on a frame without ``label3D``;
* ``excused``: (P,) bool, a Car/Truck on mostly vehicle-labelled points (an unlabelled vehicle,
  not a false positive), None like ``matched``;
* ``near_gt``: for each scored ground-truth box (mapped class, centre in range) the indices of
  the detections within 2 m of it, None like ``matched``; ``gt_labels``: those boxes' classes.

Definitions (the issue's): a box is *found* when a detection at or above its class threshold lies
within 2 m; on a ``label3D`` frame a kept detection with no box within 2 m is a *false positive*
unless excused; on every labelled lidar frame a kept, unmatched detection with the verdict
``clutter`` is a *clutter* false positive.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

#: a class moves from the base threshold only with at least this many ground-truth boxes in the
#: calibration frames: without boxes its recall cost cannot be seen, only its false detections
MIN_CLASS_BOXES = 5
#: candidate thresholds of :func:`calibrate_class_thresholds`
THRESHOLD_GRID = tuple(round(0.20 + 0.05 * i, 2) for i in range(13))      # 0.20 .. 0.80

Thresholds = Union[float, Sequence[float], np.ndarray]


def kept_at(scores, labels, thresholds: Thresholds) -> np.ndarray:
    """(P,) bool: the detections whose score is at or above their class's threshold.

    Args:
        scores: (P,) detection scores; labels: (P,) indices into the detection classes.
        thresholds: one threshold for every class, or (K,) per class.
    Raises:
        ValueError: a label without a threshold.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    t = np.asarray(thresholds, np.float64)
    if t.ndim == 0:
        return s >= float(t)
    lab = np.asarray(labels, np.int64).reshape(-1)
    if len(lab) and lab.max() >= len(t):
        raise ValueError(f"detection label {lab.max()} has no threshold ({len(t)} given)")
    return s >= t[lab]


def frame_outcome(rec: Dict[str, Any], keep: np.ndarray) -> Dict[str, int]:
    """Count one frame's outcome for the kept detections of its record (the issue's measure).

    Args:
        rec: the frame's detection record (module docstring).
        keep: (P,) bool, the record's detections that pass the threshold.
    Returns:
        {"gt_boxes", "found", "false_positives", "unlabelled_vehicle"} (0 on a frame without
        ``label3D``) and "clutter" (kept, unmatched detections with the verdict ``clutter``; 0
        without a label image).
    """
    out = {"gt_boxes": 0, "found": 0, "false_positives": 0, "unlabelled_vehicle": 0,
           "clutter": 0}
    unmatched = keep.copy()
    if rec["matched"] is not None:
        matched = np.asarray(rec["matched"], bool)
        excused = np.asarray(rec["excused"], bool) & keep
        out["gt_boxes"] = len(rec["near_gt"])
        out["found"] = sum(bool(keep[np.asarray(d, np.int64)].any()) for d in rec["near_gt"])
        out["false_positives"] = int((keep & ~matched & ~excused).sum())
        out["unlabelled_vehicle"] = int(excused.sum())
        unmatched &= ~matched
    if rec["verdicts"] is not None:
        clutter = np.array([v == "clutter" for v in rec["verdicts"]], bool)
        out["clutter"] = int((unmatched & clutter).sum())
    return out


def score_records(records: Sequence[Dict[str, Any]], thresholds: Thresholds) -> Dict[str, Any]:
    """Score detection records at per-class thresholds: the real-frame detection measure.

    Args:
        records: detection records (module docstring), one per lidar frame.
        thresholds: one score threshold for every class, or (K,) per detection class.
    Returns:
        {"gt_boxes", "found", "recall" (NaN without boxes), "box_frames", "false_positives",
        "false_positives_per_frame" (over ``label3D`` frames), "labelled_frames", "clutter",
        "clutter_per_frame" (over frames with a label image), "clutter_without_boxes" (on
        frames without ``label3D``), "kept"}: at a scalar threshold equal to
        ``EvalAccumulator``'s ``detection_at_2m`` / ``detection_point_labels`` (both count
        through :func:`frame_outcome`).
    Raises:
        ValueError: a detection label without a threshold.
    """
    out = {"gt_boxes": 0, "found": 0, "box_frames": 0, "false_positives": 0,
           "labelled_frames": 0, "clutter": 0, "clutter_without_boxes": 0, "kept": 0}
    for rec in records:
        keep = kept_at(rec["scores"], rec["labels"], thresholds)
        o = frame_outcome(rec, keep)
        out["kept"] += int(keep.sum())
        out["box_frames"] += int(rec["matched"] is not None)
        out["labelled_frames"] += int(rec["verdicts"] is not None)
        for k in ("gt_boxes", "found", "false_positives", "clutter"):
            out[k] += o[k]
        if rec["matched"] is None:
            out["clutter_without_boxes"] += o["clutter"]
    nan = float("nan")
    out["recall"] = out["found"] / out["gt_boxes"] if out["gt_boxes"] else nan
    out["false_positives_per_frame"] = (out["false_positives"] / out["box_frames"]
                                        if out["box_frames"] else nan)
    out["clutter_per_frame"] = (out["clutter"] / out["labelled_frames"]
                                if out["labelled_frames"] else nan)
    return out


def calibration_gain(records: Sequence[Dict[str, Any]], thresholds: Thresholds,
                     false_weight: float = 1.0) -> float:
    """Return the calibration objective: boxes found minus ``false_weight`` x false detections.

    False detections: the false positives of ``label3D`` frames plus the clutter false
    positives of frames without ``label3D`` (on those frames nothing else can be judged). With
    ``false_weight`` 1 a missed box and a false box weigh the same (the issue's targets ask for
    both: recall >= 0.8, <= 1 false positive per frame).
    """
    s = score_records(records, thresholds)
    return s["found"] - float(false_weight) * (s["false_positives"] + s["clutter_without_boxes"])


def calibrate_class_thresholds(records: Sequence[Dict[str, Any]], num_classes: int,
                               base: float,
                               grid: Sequence[float] = THRESHOLD_GRID,
                               passes: int = 2, false_weight: float = 1.0,
                               min_boxes: int = MIN_CLASS_BOXES) -> Dict[str, Any]:
    """Choose one score threshold per detection class on calibration frames.

    Coordinate ascent on :func:`calibration_gain` from ``base`` for every class with at least
    ``min_boxes`` ground-truth boxes in the frames (the others keep ``base``: a class without
    boxes there, e.g. pedestrians in the eleven real frames, would only be pushed up by its false
    detections, its missed people unseen): each pass visits them in order and moves a class to
    the grid value with the highest gain; of
    equal gains it takes the value closest to ``base`` (so a class that the frames cannot judge
    - no box, no false detection - stays at ``base``, and a threshold moves only as far as the
    frames' scores ask for).

    Args:
        records: detection records of the calibration frames (module docstring); pool the
            fused and lidar-only runs to get one set for both of the node's paths.
        num_classes: K, the contract's number of detection classes.
        base: the starting threshold (the node's ``score_threshold``), in [0, 1].
        grid: candidate thresholds; passes: coordinate-ascent passes (>= 1).
        false_weight: weight of a false detection against a found box in the objective.
        min_boxes: ground-truth boxes a class needs to be calibrated.
    Returns:
        {"thresholds": K floats, "gain": the objective at them, "base_gain": at ``base``,
        "at_base": :func:`score_records` at ``base``, "calibrated": at the thresholds,
        "boxes_per_class": K ground-truth box counts}.
    Raises:
        ValueError: no record, num_classes < 1, base outside [0, 1], empty grid, passes < 1.
    """
    if not records:
        raise ValueError("calibrate_class_thresholds: no detection record to calibrate on")
    if num_classes < 1 or not 0.0 <= float(base) <= 1.0 or not len(grid) or passes < 1:
        raise ValueError(f"calibrate_class_thresholds: num_classes {num_classes}, base {base}, "
                         f"{len(grid)} grid values, {passes} passes")
    t = np.full(num_classes, float(base))
    boxes = np.bincount(np.array([g for r in records for g in (r.get("gt_labels") or [])],
                                 np.int64), minlength=num_classes)[:num_classes]
    base_gain = calibration_gain(records, t, false_weight)
    for _ in range(passes):
        for k in np.flatnonzero(boxes >= int(min_boxes)):
            values = sorted(set(float(v) for v in grid) | {float(t[k])})
            gains = []
            for v in values:
                trial = t.copy()
                trial[k] = v
                gains.append(calibration_gain(records, trial, false_weight))
            top = max(gains)
            # of the best values, the one closest to base: the smallest change the frames justify
            t[k] = min((v for v, g in zip(values, gains) if g == top),
                       key=lambda v: (abs(v - float(base)), v))
    best = calibration_gain(records, t, false_weight)
    return {"thresholds": [float(x) for x in t], "gain": best, "base_gain": base_gain,
            "at_base": score_records(records, float(base)),
            "calibrated": score_records(records, t),
            "boxes_per_class": [int(b) for b in boxes]}


def records_of(report: Dict[str, Any], runs: Optional[Sequence[str]] = None
               ) -> List[Dict[str, Any]]:
    """Return the detection records of an ``evaluate_dataset(..., keep_records=True)`` report.

    Args:
        report: the fused report (``lidar_only`` nested with ``camera_input="both"``) or a
            single run's report.
        runs: which runs to pool: ``"fused"``/``"lidar_only"`` (default: every run present).
    Raises:
        KeyError: a report evaluated without ``keep_records``.
    """
    reports = {report.get("camera_input", "fused"): report}
    if "lidar_only" in report:
        reports["lidar_only"] = report["lidar_only"]
    out: List[Dict[str, Any]] = []
    for name, rep in reports.items():
        if runs is None or name in runs:
            if "detection_records" not in rep:
                raise KeyError("the report has no detection_records: evaluate with "
                               "keep_records=True")
            out += rep["detection_records"]
    return out


def parameter_value(classes: Sequence[str], thresholds: Sequence[float]) -> str:
    """Return the node parameter ``class_score_thresholds`` for per-class thresholds.

    ``"Car:0.50,Truck:0.35,..."`` in the contract's class order (read back by
    :func:`bev_mtl_ros.ros.params.parse_class_thresholds`).
    """
    return ",".join(f"{c}:{float(t):.2f}" for c, t in zip(classes, thresholds))


# ------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros calibrate-thresholds``."""
    parser.add_argument("--data", default="test/data/real_a2d2",
                        help="A2D2-format frames with lidar and labels (default: the real "
                             "frames of test/data/real_a2d2)")
    parser.add_argument("--model", required=True, help=".onnx or .pt model")
    parser.add_argument("--backend", default="auto", help="auto | onnxruntime | pytorch")
    parser.add_argument("--base", type=float, default=None,
                        help="starting threshold of every class (default: the node's "
                             "score_threshold)")
    parser.add_argument("--json", default=None, help="also write the result as JSON here")


def main(args: argparse.Namespace) -> int:
    """Calibrate per-class thresholds on ``--data`` and print them; 0, or 2 on bad input."""
    import json

    from bev_mtl_ros.train.evaluate import (NODE_SCORE_THRESHOLD, evaluate_dataset,
                                            model_contract)
    base = NODE_SCORE_THRESHOLD if args.base is None else float(args.base)
    try:
        classes = list(model_contract(args.model).detection_classes)
        rep = evaluate_dataset(args.data, args.model, None, backend=args.backend,
                               num_render=0, camera_input="both", keep_records=True)
        cal = calibrate_class_thresholds(records_of(rep), len(classes), base)
    except (FileNotFoundError, ValueError) as e:
        print(f"calibrate-thresholds: {e}", file=sys.stderr)
        return 2
    print(f"calibrated on {args.data} (fused and lidar-only runs pooled), from {base:.2f}:")
    for c, t in zip(classes, cal["thresholds"]):
        print(f"  {c:<12} {t:.2f}")
    for name in ("at_base", "calibrated"):
        s = cal[name]
        print(f"  {name:<11} recall@2m {s['recall']:.3f}  false positives/frame "
              f"{s['false_positives_per_frame']:.2f}  clutter/frame {s['clutter_per_frame']:.2f}"
              f"  (objective {cal['gain' if name == 'calibrated' else 'base_gain']})")
    value = parameter_value(classes, cal["thresholds"])
    print(f'node parameter: class_score_thresholds: "{value}"')
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(cal, classes=classes, parameter=value), f, indent=1, allow_nan=True)
    return 0
