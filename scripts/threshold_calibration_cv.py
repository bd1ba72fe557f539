#!/usr/bin/env python3
"""Score threshold choices on a finished cross-validation, without running the network again.

Issue 25, item 5 (per-class threshold calibration inside the cross-validation). Every fold of
``bev-mtl-ros crossval`` keeps the detection records of its training drives
(``fold_<drive>/calibration_records.json``) and of its held-out drive (``fold_<drive>/eval/
report.json``, fused and lidar-only). For each way of choosing thresholds below, the thresholds
are chosen on the training drives' records only and the held-out drive is scored at them
(:func:`bev_mtl_ros.train.thresholds.score_records`); the table gives mean ± std over the folds
(``bev_mtl_ros.train.crossval.summarise``):

* ``node``: the node's one threshold (0.40) for every class, no calibration;
* ``one``: one threshold for every class, the grid value with the best objective;
* ``per_class``: per-class thresholds (``calibrate_class_thresholds``, what crossval reports as
  ``*_calibrated``), objective found - false;
* ``per_class_w0.5``: the same with a false detection weighing half a found box.

Usage::

    python scripts/threshold_calibration_cv.py build/cv_recipe [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Dict, List

import numpy as np

from bev_mtl_ros.train.crossval import summarise
from bev_mtl_ros.train.evaluate import NODE_SCORE_THRESHOLD, model_contract
from bev_mtl_ros.train.thresholds import (THRESHOLD_GRID, calibrate_class_thresholds,
                                          calibration_gain, records_of, score_records)


def one_threshold(records: List[Dict[str, Any]]) -> float:
    """The grid value with the best objective for every class (ties: closest to the node's)."""
    values = sorted(set(THRESHOLD_GRID) | {NODE_SCORE_THRESHOLD})
    gains = [calibration_gain(records, v) for v in values]
    return min((v for v, g in zip(values, gains) if g == max(gains)),
               key=lambda v: abs(v - NODE_SCORE_THRESHOLD))


def arms(records: List[Dict[str, Any]], num_classes: int) -> Dict[str, Any]:
    """Thresholds of every arm, chosen on ``records`` (the fold's training drives)."""
    return {
        "node": NODE_SCORE_THRESHOLD,
        "one": one_threshold(records),
        "per_class": calibrate_class_thresholds(records, num_classes,
                                                NODE_SCORE_THRESHOLD)["thresholds"],
        "per_class_w0.5": calibrate_class_thresholds(records, num_classes, NODE_SCORE_THRESHOLD,
                                                     false_weight=0.5)["thresholds"],
    }


def main() -> int:
    """Print the table; 0, or 2 when the folder holds no fold with records."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crossval_dir")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    per_arm: Dict[str, Dict[str, Dict[str, float]]] = {}
    chosen: Dict[str, Dict[str, Any]] = {}
    for name in sorted(os.listdir(args.crossval_dir)):
        fold = os.path.join(args.crossval_dir, name)
        cal_path = os.path.join(fold, "calibration_records.json")
        rep_path = os.path.join(fold, "eval", "report.json")
        if not (name.startswith("fold_") and os.path.isfile(cal_path)
                and os.path.isfile(rep_path)):
            continue
        with open(cal_path, encoding="utf-8") as f:
            cal = json.load(f)
        with open(rep_path, encoding="utf-8") as f:
            rep = json.load(f)
        drive = name[len("fold_"):]
        classes = model_contract(os.path.join(fold, "run", "model.pt")).detection_classes
        chosen[drive] = arms(cal, len(classes))
        for arm, t in chosen[drive].items():
            m: Dict[str, float] = {}
            for run, suffix in (("fused", ""), ("lidar_only", "_lidar_only")):
                s = score_records(records_of(rep, runs=[run]), t)
                m.update({"recall_2m" + suffix: s["recall"],
                          "false_positives_per_frame" + suffix: s["false_positives_per_frame"],
                          "clutter_per_frame" + suffix: s["clutter_per_frame"]})
            per_arm.setdefault(arm, {})[drive] = {
                k: (float("nan") if v is None else float(v)) for k, v in m.items()}
    if not chosen:
        print(f"{args.crossval_dir}: no fold with calibration_records.json (crossval --rescore)",
              file=sys.stderr)
        return 2
    summaries = {arm: summarise(folds) for arm, folds in per_arm.items()}
    metrics = list(next(iter(summaries.values())))
    print(f"{len(chosen)} folds; thresholds chosen on each fold's training drives\n")
    print("| metric | " + " | ".join(summaries) + " |")
    print("|---|" + "---|" * len(summaries))
    for metric in metrics:
        cells = []
        for s in summaries.values():
            v = s[metric]
            std = "" if math.isnan(v["std"]) else f" ± {v['std']:.2f}"
            cells.append("n/a" if math.isnan(v["mean"]) else f"{v['mean']:.3f}{std} ({v['n']})")
        print(f"| {metric} | " + " | ".join(cells) + " |")
    print(f"\nthresholds per fold ({', '.join(classes)}):")
    for drive, a in chosen.items():
        print(f"  {drive}: one {a['one']:.2f}; per_class "
              f"{np.round(a['per_class'], 2).tolist()}; per_class_w0.5 "
              f"{np.round(a['per_class_w0.5'], 2).tolist()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"summaries": summaries, "thresholds": chosen}, f, indent=1,
                      allow_nan=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
