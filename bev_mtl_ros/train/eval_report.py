"""The evaluation report's files: ``report.json``, ``summary.txt`` and ``pr_curves.png``.

The report is the dict of :meth:`bev_mtl_ros.train.evaluate.EvalAccumulator.report` (AP per class
and criterion, drivable IoU, semantic mIoU, counts, timings, notes; ``_``-prefixed keys hold
in-memory extras such as the PR curves and are not written). NaN is written as JSON ``null`` and
printed as ``n/a``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Dict, List, Optional

import numpy as np

LOG = logging.getLogger("bev_mtl_ros.evaluate")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _threshold(t: Any) -> str:
    """Format an operating threshold: one for every class, or one per class (a list)."""
    if isinstance(t, (list, tuple)):
        return "the class thresholds " + "/".join(f"{float(x):.2f}" for x in t)
    return f"{float(t):.2f}"


def _fmt(v: Optional[float]) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:5.3f}"


def _semantic_lines(title: str, sem: Dict[str, Any], per_class: bool) -> List[str]:
    lines = [f"{title} mIoU over {sem['classes_present']} classes present: {_fmt(sem['miou'])}  "
             f"(pixel accuracy {_fmt(sem['pixel_accuracy'])})"]
    if per_class:
        for c, v in sorted(sem["per_class_iou"].items(), key=lambda kv: -kv[1]):
            lines.append(f"  {c:<24}{_fmt(v)}")
    return lines


def _real_frame_lines(rep: Dict[str, Any]) -> List[str]:
    """Return the lines of the operating-point measures and the drivable IoUs.

    ``detection_at_2m``, ``detection_point_labels``, ``drivable``; a report without some of
    them prints what it has.
    """
    lines: List[str] = []
    a = rep.get("detection_at_2m")
    if a and a["available"]:
        lines.append(f"Detection at score >= {_threshold(a['score_threshold'])}, "
                     f"{a['frames']} frames with label3D: recall@{a['radius_m']:g}m "
                     f"{_fmt(a['recall'])} "
                     f"({a['found']} of {a['gt_boxes']} boxes in range), false positives per "
                     f"frame {_fmt(a['false_positives_per_frame'])} ({a['false_positives']} of "
                     f"{a['detections']} detections; unlabelled Car/Truck on vehicle points not "
                     f"counted: {a['unlabelled_vehicle']})")
    b = rep.get("detection_point_labels")
    if b and b["available"]:
        v = b["verdicts"]
        by_cls = ", ".join(f"{c} {n}" for c, n in sorted(b["clutter_by_detection_class"].items()))
        on = ", ".join(f"{c} {n}" for c, n in sorted(b["clutter_by_point_class"].items(),
                                                     key=lambda kv: -kv[1]))
        lines.append(f"Detections judged by their lidar points' labels ({b['frames']} frames with "
                     f"lidar + label, score >= {_threshold(b['score_threshold'])}, "
                     f"{b['detections']} detections, {b['near_box']} near a label3D box): "
                     "clutter false positives "
                     f"{b['clutter_false_positives']} = "
                     f"{_fmt(b['clutter_false_positives_per_frame'])} per frame"
                     + (f" (as {by_cls}; on {on})" if by_cls else "")
                     + f"; unlabelled vehicle {b['unlabelled_vehicle']} = "
                     f"{_fmt(b['unlabelled_vehicle_per_frame'])} per frame; road surface "
                     f"{v['road']}, person/bike {v['person_bike']}, mixed {v['mixed']}, no "
                     f"points {v['no_points']}")
    drv = rep["drivable"]
    if drv.get("available", True):
        line = "Drivable area IoU (BEV): training label " + _fmt(drv["iou"])
        if drv.get("observed_available"):
            c = drv["observed_cells"]
            line += (f", observed ground truth {_fmt(drv['iou_observed'])} ({c['drivable']} "
                     f"drivable / {c['not_drivable']} not drivable cells in "
                     f"{drv['observed_frames']} frames)")
        lines.append(line)
    else:
        lines.append("Drivable area IoU: not available (no frame with lidar + labels)")
    return [""] + lines


def summary_text(rep: Dict[str, Any]) -> str:
    """Return a readable summary table of a report.

    Tasks without any scorable frame print "not available".
    """
    det = rep["detection"]
    keys = list(det["ap"].keys())
    classes = list(det["num_gt"].keys())
    lines = [f"frames with detection scoring: {rep['counts']['frames']}  (GT boxes outside the "
             f"BEV range ignored: {rep['counts']['gt_boxes_out_of_range']}); with semantic "
             f"labels: {rep['counts']['frames_with_semantic_gt']}", ""]
    if det.get("available", True):
        lines += ["Detection AP (BEV centre distance / rotated BEV "
                  "IoU), " + det["ap_mode"] + " AP",
                  f"{'class':<12}{'#gt':>6} " + " ".join(f"{k:>10}" for k in keys)]
        for c in classes:
            lines.append(f"{c:<12}{det['num_gt'][c]:>6} "
                         + " ".join(f"{_fmt(det['ap'][k][c]):>10}" for k in keys))
        lines.append(f"{'mAP':<12}{'':>6} " + " ".join(f"{_fmt(det['map'][k]):>10}" for k in keys))
        op = det.get("at_threshold")
        if op and op["per_class"]:
            lines.append(f"At score >= {_threshold(op['score_threshold'])} "
                         f"({op['criterion']}): "
                         + ", ".join(f"{c} precision {_fmt(v['precision'])} recall "
                                     f"{_fmt(v['recall'])}"
                                     for c, v in op["per_class"].items()))
        cfp = det.get("clutter_false_positives")
        if cfp and cfp["frames"]:
            lines.append(f"False positives on clutter (score >= "
                         f"{_threshold(cfp['score_threshold'])}, within {cfp['radius_m']:.1f} m): "
                         f"{cfp['count']} in {cfp['frames']} "
                         f"frames = {cfp['per_frame']:.2f} per frame")
    else:
        lines.append("Detection: not available (no frame with lidar and label3D boxes)")
    lines += _real_frame_lines(rep)
    if rep["semantic"].get("available", True):
        lines += _semantic_lines("Semantic (A2D2 merged classes)", rep["semantic"], per_class=True)
        if "semantic_coarse" in rep:
            lines += _semantic_lines("Semantic (8 coarse groups)", rep["semantic_coarse"],
                                     per_class=True)
    else:
        lines.append("Semantics: not available (no frame with camera + label)")
    if "lidar_only" in rep:
        lo = rep["lidar_only"]
        lines += ["", "Lidar only (camera_valid = 0), same frames:"]
        if lo["detection"].get("available", True):
            maps = lo["detection"]["map"]
            lines.append("  detection mAP " + ", ".join(f"{k} {_fmt(v)}" for k, v in maps.items()))
        lines += ["  " + ln for ln in _real_frame_lines(lo) if ln]
    if rep.get("timings_ms"):
        lines += ["", "Pipeline timings (ms): "
                  + ", ".join(f"{k} {v['mean']:.1f}" for k, v in rep["timings_ms"].items())]
    for n in rep.get("notes", []):
        lines.append("note: " + n)
    return "\n".join(lines) + "\n"


def plot_pr_curves(rep: Dict[str, Any], path: str) -> Optional[str]:
    """Plot the PR curves to a PNG and return its path; None when matplotlib is unavailable.

    One panel per class with ground truth, one line per criterion.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.warning("matplotlib not installed: no PR-curve plot")
        return None
    curves = rep["_curves"]
    classes = [c for c, n in rep["detection"]["num_gt"].items()
               if n > 0] or list(rep["detection"]["num_gt"])
    fig, axes = plt.subplots(1, max(1, len(classes)), figsize=(4 * max(1, len(classes)), 4),
                             squeeze=False)
    for ax, c in zip(axes[0], classes):
        for key, per_class in curves.items():
            r = per_class[c]
            if r.recall.size:
                ax.plot(np.concatenate([[0], r.recall]),
                        np.concatenate([[1 if r.precision[0] > 0 else 0], r.precision]),
                        label=f"{key} AP {_fmt(r.ap)}")
        ax.set_title(f"{c} ({rep['detection']['num_gt'][c]} GT)")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(rep: Dict[str, Any], out_dir: str) -> Dict[str, str]:
    """Write report.json, summary.txt and pr_curves.png; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "report.json"),
             "summary": os.path.join(out_dir, "summary.txt")}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(_jsonable(rep), f, indent=2)
    with open(paths["summary"], "w", encoding="utf-8") as f:
        f.write(summary_text(rep))
    png = (plot_pr_curves(rep, os.path.join(out_dir, "pr_curves.png"))
           if rep["detection"].get("available", True) else None)
    if png:
        paths["pr_curves"] = png
    return paths
