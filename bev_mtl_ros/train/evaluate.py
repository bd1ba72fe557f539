"""``bev-mtl-ros evaluate``: detection AP, drivable IoU and semantic mIoU of a model or a run.

Two sources::

    bev-mtl-ros evaluate --data A2D2_DIR --model models/bev_mtl_default.onnx --out EVAL_DIR
    [--backend auto] bev-mtl-ros evaluate --bag OUT_BAG [--gt-bag INPUT_BAG]
    --model-contract/--model M --out EVAL_DIR

``--data`` runs ``runtime.pipeline.PerceptionPipeline`` on every frame of an A2D2-format directory
and compares with its labels: 3D boxes (A2D2 classes mapped through the model contract's
``box_class_map``; unmapped classes are dropped), BEV drivable labels (``data/drivable.py``) and
the semantic label image (at the input image's resolution). Frames may lack modalities, and each
is scored on what it has (:func:`evaluate_dataset`): detection AP and ``detection_at_2m`` only on
frames with lidar *and* ``label3D`` boxes (a real A2D2 frame without ``label3D`` is not scored for
detection); ``detection_point_labels`` (clutter false positives judged by the label classes of
the lidar points inside each detection) and the drivable IoUs on frames with lidar and a label
image; semantics on frames with a camera image and a label. A frame without lidar is run with an
empty cloud. A task no frame could score is reported as not available (``"available": false``),
not as an error. Semantics are scored over the contract's classes (A2D2's 38 merged classes) and
over the eight coarse groups of ``data/classes.py`` (``semantic_coarse``). ``--camera-input
off`` runs the network without the image (camera_valid = 0, lidar only), ``both`` both ways
(the lidar-only report under ``"lidar_only"``), so fused and lidar-only detection compare on the
same frames.

``--bag`` compares the node's recorded outputs with the ground truth of the input bag, matched by
header stamp (exact nanoseconds): ``/perception_node/detections`` vs ``/a2d2/ground_truth/boxes``
(vision_msgs/Detection3DArray; class_id = detection class or A2D2 class name), and
``/perception_node/semantic`` vs ``/a2d2/ground_truth/semantic`` (mono8 class ids) when both exist.
Ground-truth messages without a node output with the same stamp count as frames with no predictions
(reported as ``frames_without_output``); outputs without ground truth are skipped and counted.

Evaluation region: only ground-truth boxes whose centre lies inside the contract's BEV range (x, y)
are evaluated (the model cannot see the others); predictions outside it are dropped as well.
Metric definitions: see ``train/metrics.py`` (AP = area under the interpolated PR curve, NaN for
classes without ground truth and excluded from mAP; data-set level IoUs; mIoU over classes
present).

Outputs in ``--out``: ``report.json`` (everything), ``summary.txt`` (readable table),
``pr_curves.png`` (matplotlib, one panel per class, a curve per distance threshold), all written by
``train/eval_report.py``, and ``frames/*.png`` (a few frames, rendered by ``bev_mtl_ros/viz.py``
with OpenCV: BEV with lidar, ground truth (green) and predictions (red), plus the camera image with
the boxes projected; semantic panels).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from bev_mtl_ros.data.bag_io import (detections_to_arrays, image_to_array, read_bag_messages,
                                     stamp_ns)
from bev_mtl_ros.data.classes import COARSE_GROUP_NAMES, POINT_CATEGORY_NAMES, coarse_group_lut
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.train.eval_report import summary_text, write_report
from bev_mtl_ros.train.metrics import (MIXED, NO_POINTS, DetectionEvaluator, DrivableEvaluator,
                                       SemanticEvaluator, centre_distance_bev,
                                       clutter_false_positives, detection_point_categories,
                                       operating_point)
from bev_mtl_ros.train.thresholds import frame_outcome, kept_at
from bev_mtl_ros.viz import RENDER_STYLES, render_frame, render_semantic

LOG = logging.getLogger("bev_mtl_ros.evaluate")

DETECTIONS_TOPIC = "/perception_node/detections"
SEMANTIC_TOPIC = "/perception_node/semantic"
GT_BOXES_TOPIC = "/a2d2/ground_truth/boxes"
GT_SEMANTIC_TOPIC = "/a2d2/ground_truth/semantic"
#: The node's default ``score_threshold`` (config/perception.yaml). The evaluator's operating
#: point is the node's default per-class thresholds (:func:`node_operating_thresholds`: this,
#: overridden per class by ``class_score_thresholds``); the precision/recall at it and the
#: clutter false-positive counts are scored there. Override with ``--operating-threshold``.
NODE_SCORE_THRESHOLD = 0.40
#: A detection within this many metres (BEV) of a clutter footprint, and not that close to a
#: ground-truth box, counts as a false positive on clutter.
CLUTTER_RADIUS_M = 1.0
#: Real-frame detection measure (issue 25): a box is found when a detection's BEV centre lies
#: within this many metres of its centre; a detection with no box that close is unmatched.
MATCH_RADIUS_M = 2.0
#: Detection classes whose unmatched detections on mostly vehicle-labelled points are not false
#: positives in ``detection_at_2m`` (A2D2's 3D labels miss some parked vehicles).
VEHICLE_DETECTION_CLASSES = ("Car", "Truck")
#: ``--camera-input`` choices: the camera image (fused), none (lidar only, camera_valid = 0), or
#: both runs on every frame.
CAMERA_INPUTS = ("on", "off", "both")
#: Verdicts of a detection judged by its points (``metrics.detection_point_categories``).
VERDICTS = POINT_CATEGORY_NAMES + (MIXED, NO_POINTS)


def node_operating_thresholds(classes: Sequence[str]) -> List[float]:
    """Return the node's default score threshold of each class (parameter defaults).

    ``score_threshold`` for every class, overridden by ``class_score_thresholds``
    (``bev_mtl_ros.ros.params``, equal to config/perception.yaml), in ``classes`` order.
    """
    from bev_mtl_ros.ros.params import default_postprocess_config
    return [float(t) for t in default_postprocess_config(classes).class_thresholds(classes)]


def _operating_threshold(value: Optional[Union[float, Sequence[float]]],
                         classes: Sequence[str]) -> Union[float, List[float]]:
    """``evaluate_dataset``'s operating threshold: None = the node's; equal values -> one."""
    t = node_operating_thresholds(classes) if value is None else value
    if np.ndim(t) == 0:
        return float(t)
    t = [float(x) for x in t]
    return t[0] if t and all(x == t[0] for x in t) else t


def in_range_mask(boxes: np.ndarray, contract: ModelContract) -> np.ndarray:
    """(N,) bool: box centre inside the contract's BEV range in x and y."""
    b = np.asarray(boxes, np.float64).reshape(-1, 7)
    x0, y0, _, x1, y1, _ = contract.point_cloud_range
    return (b[:, 0] >= x0) & (b[:, 0] < x1) & (b[:, 1] >= y0) & (b[:, 1] < y1)


class EvalAccumulator:
    """Collects per-frame results for all three tasks and produces the report dict.

    Semantics are accumulated twice: over the contract's classes and over the coarse groups of
    :data:`bev_mtl_ros.data.classes.COARSE_GROUPS` (ignored classes such as ``Ego car`` skipped).
    Raises ValueError (from :func:`coarse_group_lut`) when a contract class has no coarse group.

    :attr:`operating_threshold` is the score threshold of every at-threshold figure: one float
    for every class, or a list of one per detection class (the node's
    ``class_score_thresholds``).
    """

    def __init__(self, contract: ModelContract, ap_mode: str = "area"):
        self.contract = contract
        self.det = DetectionEvaluator(contract.detection_classes, ap_mode=ap_mode)
        self.drivable = DrivableEvaluator()
        self.semantic = SemanticEvaluator(contract.semantic_classes)
        self.semantic_coarse = SemanticEvaluator(COARSE_GROUP_NAMES)
        self._coarse_lut = coarse_group_lut(contract.semantic_classes)
        self.counts = {"frames": 0, "frames_with_drivable_gt": 0, "frames_with_semantic_gt": 0,
                       "gt_boxes_out_of_range": 0, "pred_boxes_out_of_range": 0,
                       "frames_with_clutter": 0, "clutter_false_positives": 0}
        self.operating_threshold: Union[float, List[float]] = NODE_SCORE_THRESHOLD
        self.timings: Dict[str, List[float]] = {}
        self.notes: List[str] = []
        self.drivable_observed = DrivableEvaluator()
        self.observed_cells = {"frames": 0, "drivable": 0, "not_drivable": 0}
        self.at_2m = {"frames": 0, "gt_boxes": 0, "found": 0, "detections": 0,
                      "false_positives": 0, "unlabelled_vehicle": 0}
        self.by_points: Dict[str, Any] = {
            "frames": 0, "frames_with_boxes": 0, "detections": 0, "near_box": 0,
            "verdicts": {v: 0 for v in VERDICTS}, "clutter_by_detection_class": {},
            "clutter_by_point_class": {}}
        self.per_frame: List[Dict[str, Any]] = []
        #: one detection record per lidar frame (``bev_mtl_ros.train.thresholds``): every
        #: in-range detection at any score, so other thresholds can be scored without the network
        self.records: List[Dict[str, Any]] = []
        cls = contract.detection_classes
        self._vehicle_labels = np.array([cls.index(c) for c in VEHICLE_DETECTION_CLASSES
                                         if c in cls], np.int64)

    def add_detections(self, pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels) -> None:
        pb = np.asarray(pred_boxes, np.float64).reshape(-1, 7)
        gb = np.asarray(gt_boxes, np.float64).reshape(-1, 7)
        pk, gk = in_range_mask(pb, self.contract), in_range_mask(gb, self.contract)
        self.counts["gt_boxes_out_of_range"] += int((~gk).sum())
        self.counts["pred_boxes_out_of_range"] += int((~pk).sum())
        self.det.add_frame(pb[pk], np.asarray(pred_scores).reshape(-1)[pk],
                           np.asarray(pred_labels).reshape(-1)[pk],
                           gb[gk], np.asarray(gt_labels).reshape(-1)[gk])
        self.counts["frames"] += 1

    def kept(self, scores, labels) -> np.ndarray:
        """(P,) bool: detections at or above :attr:`operating_threshold` (their class's)."""
        return kept_at(scores, labels, self.operating_threshold)

    def add_clutter(self, pred_boxes, pred_scores, pred_labels, gt_boxes, clutter_boxes) -> None:
        """Count the frame's detections on clutter (hard negatives: trees, poles, signs...).

        At :attr:`operating_threshold`, within :data:`CLUTTER_RADIUS_M`
        (``metrics.clutter_false_positives``). Frames without clutter boxes are not counted.
        """
        cb = np.asarray(clutter_boxes, np.float64).reshape(-1, 7)
        if not len(cb):
            return
        keep = self.kept(pred_scores, pred_labels)
        self.counts["frames_with_clutter"] += 1
        self.counts["clutter_false_positives"] += clutter_false_positives(
            np.asarray(pred_boxes, np.float64).reshape(-1, 7)[keep],
            np.asarray(pred_scores, np.float64).reshape(-1)[keep], gt_boxes, cb, 0.0,
            CLUTTER_RADIUS_M)

    def add_real_detections(self, key: str, pred_boxes, pred_scores, pred_labels,
                            points: np.ndarray, point_classes: Optional[np.ndarray],
                            gt_boxes: Optional[np.ndarray] = None,
                            all_boxes: Optional[np.ndarray] = None,
                            gt_labels: Optional[np.ndarray] = None) -> Dict[str, Any]:
        """Score one lidar frame's detections at :attr:`operating_threshold` without AP.

        Detections with score >= the threshold and centre inside the BEV range are kept. With
        boxes (``gt_boxes`` not None: the frame has a ``label3D`` file):

        * ``detection_at_2m``: a box of ``gt_boxes`` (mapped classes, centre inside the BEV
          range) is *found* when a kept detection's BEV centre lies within
          :data:`MATCH_RADIUS_M` of its centre (any class); a kept detection is *matched* when
          a box of ``all_boxes`` (every ``label3D`` box, default ``gt_boxes``) lies that close,
          an *unlabelled vehicle* when unmatched, of a :data:`VEHICLE_DETECTION_CLASSES` class
          and mostly on vehicle-labelled points, else a *false positive*.

        With point labels (``point_classes`` not None), ``detection_point_labels``: every kept
        detection not matched to a box (all of them on a frame without boxes) gets the verdict
        of :func:`~bev_mtl_ros.train.metrics.detection_point_categories`: ``clutter`` (a
        clutter false positive), ``vehicle`` (an unlabelled vehicle, counted apart),
        ``person_bike``, ``road``, ``mixed`` or ``no_points``.

        Every in-range detection, below the threshold too, is judged the same way and appended
        to :attr:`records` (the frame's detection record, :mod:`bev_mtl_ros.train.thresholds`).

        Args:
            key: frame name (scene/frame) for the per-frame table.
            pred_boxes: (P, 7) [x, y, z, l, w, h, yaw]; pred_scores (P,); pred_labels (P,)
                indices into the contract's detection classes.
            points: (N, 3+) the frame's lidar points, model frame, metres.
            point_classes: (N,) uint8 A2D2 class id of each point's pixel, or None (no label).
            gt_boxes: (G, 7) mapped ground-truth boxes, or None for a frame without
                ``label3D``. all_boxes: (B, 7) every ``label3D`` box of the frame.
            gt_labels: (G,) detection-class indices of ``gt_boxes`` (kept in the record for
                the calibration's per-class box counts).
        Returns:
            the frame's row of the per-frame table (also appended to :attr:`per_frame`).
        """
        pb = np.asarray(pred_boxes, np.float64).reshape(-1, 7)
        ps = np.asarray(pred_scores, np.float64).reshape(-1)
        pl = np.asarray(pred_labels, np.int64).reshape(-1)
        inr = in_range_mask(pb, self.contract)
        pb, ps, pl = pb[inr], ps[inr], pl[inr]
        # every in-range detection is judged (the record), the threshold applied afterwards
        rec: Dict[str, Any] = {"key": key, "scores": ps.tolist(), "labels": pl.tolist(),
                               "verdicts": None, "matched": None, "excused": None,
                               "near_gt": None, "gt_labels": None}
        verdicts: List[str] = []
        dominant = np.zeros(0, np.int16)
        if point_classes is not None:
            verdicts, dominant, _ = detection_point_categories(pb, points, point_classes)
            rec["verdicts"] = list(verdicts)
        matched_all = np.zeros(len(pb), bool)
        if gt_boxes is not None:
            gb = np.asarray(gt_boxes, np.float64).reshape(-1, 7)
            gb = gb[in_range_mask(gb, self.contract)]
            ab = gb if all_boxes is None else np.asarray(all_boxes, np.float64).reshape(-1, 7)
            near = centre_distance_bev(gb, pb) <= MATCH_RADIUS_M                  # (G, P)
            matched_all = (centre_distance_bev(pb, ab) <= MATCH_RADIUS_M).any(axis=1)
            on_vehicle = (np.array([v == "vehicle" for v in verdicts], bool) if verdicts
                          else np.zeros(len(pb), bool))          # no point labels: none
            excused_all = ~matched_all & np.isin(pl, self._vehicle_labels) & on_vehicle
            rec.update({"matched": matched_all.tolist(), "excused": excused_all.tolist(),
                        "near_gt": [np.flatnonzero(r).tolist() for r in near]})
            if gt_labels is not None:
                gl = np.asarray(gt_labels, np.int64).reshape(-1)
                rec["gt_labels"] = gl[in_range_mask(
                    np.asarray(gt_boxes, np.float64).reshape(-1, 7), self.contract)].tolist()
        self.records.append(rec)
        keep = self.kept(ps, pl)
        pb, pl, matched = pb[keep], pl[keep], matched_all[keep]
        verdicts = [v for v, k in zip(verdicts, keep) if k]
        dominant = dominant[keep] if len(dominant) else dominant
        row: Dict[str, Any] = {"key": key, "label3D": gt_boxes is not None, "detections": len(pb)}
        if gt_boxes is not None:
            o = frame_outcome(rec, keep)
            a = self.at_2m
            a["frames"] += 1
            a["detections"] += len(pb)
            for k in ("gt_boxes", "found", "false_positives", "unlabelled_vehicle"):
                a[k] += o[k]
            row.update({"gt_boxes": o["gt_boxes"], "found": o["found"],
                        "false_positives": o["false_positives"],
                        "unlabelled_vehicle_car_truck": o["unlabelled_vehicle"]})
        if point_classes is not None:
            from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES
            b = self.by_points
            b["frames"] += 1
            b["frames_with_boxes"] += int(gt_boxes is not None)
            b["detections"] += len(pb)
            b["near_box"] += int(matched.sum())
            names = self.contract.detection_classes
            unmatched = [verdicts[i] for i in np.flatnonzero(~matched)]
            for i in np.flatnonzero(~matched):
                v = verdicts[i]
                b["verdicts"][v] += 1
                if v == "clutter":
                    dc = b["clutter_by_detection_class"]
                    dc[names[pl[i]]] = dc.get(names[pl[i]], 0) + 1
                    pc = b["clutter_by_point_class"]
                    name = A2D2_SEMANTIC_CLASSES[int(dominant[i])]
                    pc[name] = pc.get(name, 0) + 1
            row.update({"clutter": unmatched.count("clutter"),
                        "unlabelled_vehicle": unmatched.count("vehicle")})
        self.per_frame.append(row)
        return row

    def add_drivable_observed(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame to the observed drivable IoU (``data/drivable.py::observed_...``).

        pred: (H, W) {0, 1} prediction; gt: (H, W) {0, 1, 255} observed ground truth.
        Raises ValueError when their shapes differ.
        """
        if np.asarray(pred).shape != np.asarray(gt).shape:
            raise ValueError(f"drivable prediction {np.shape(pred)} vs label {np.shape(gt)}")
        self.drivable_observed.add(pred, gt)
        self.observed_cells["frames"] += 1
        self.observed_cells["drivable"] += int((np.asarray(gt) == 1).sum())
        self.observed_cells["not_drivable"] += int((np.asarray(gt) == 0).sum())

    def add_drivable(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred is None or gt is None:
            return
        if np.asarray(pred).shape != np.asarray(gt).shape:
            raise ValueError(f"drivable prediction {np.shape(pred)} vs label {np.shape(gt)}")
        self.drivable.add(pred, gt)
        self.counts["frames_with_drivable_gt"] += 1

    def add_semantic(self, pred: Optional[np.ndarray], gt: Optional[np.ndarray]) -> None:
        if pred is None or gt is None:
            return
        if np.asarray(pred).shape != np.asarray(gt).shape:
            import cv2
            pred = cv2.resize(np.asarray(pred, np.uint8), (gt.shape[1], gt.shape[0]),
                              interpolation=cv2.INTER_NEAREST)
        self.semantic.add(pred, gt)
        self.semantic_coarse.add(self._coarse_lut[np.asarray(pred, np.uint8)],
                                 self._coarse_lut[np.asarray(gt, np.uint8)])
        self.counts["frames_with_semantic_gt"] += 1

    def add_timings(self, timings_ms: Optional[Dict[str, float]]) -> None:
        for k, v in (timings_ms or {}).items():
            self.timings.setdefault(k, []).append(float(v))

    def report(self) -> Dict[str, Any]:
        """Return the full report dict: JSON-compatible, NaN is written as null by write_report.

        Keys: ``counts``; ``detection`` (AP per criterion and class, ``map``, ``num_gt``,
        ``at_threshold`` per-class precision/recall, ``clutter_false_positives`` of the
        synthetic clutter sidecar); ``detection_at_2m`` (``recall``, ``found``, ``gt_boxes``,
        ``false_positives``, ``false_positives_per_frame``, ``unlabelled_vehicle``,
        ``unlabelled_vehicle_per_frame``, ``frames``); ``detection_point_labels``
        (``clutter_false_positives``, ``clutter_false_positives_per_frame``,
        ``unlabelled_vehicle``, ``unlabelled_vehicle_per_frame``, ``verdicts``,
        ``clutter_by_detection_class``, ``clutter_by_point_class``, ``near_box``, ``frames``);
        ``drivable`` (``iou`` against the training label, ``iou_observed`` against the observed
        ground truth, ``observed_cells``); ``semantic`` and ``semantic_coarse`` (``miou``,
        ``per_class_iou``, ``pixel_accuracy``); ``per_frame`` (one row per lidar frame);
        ``timings_ms``; ``notes``. Each block has ``available`` (False: no frame could score it).
        """
        det = self.det.compute()
        sem = self.semantic.compute()
        sem["available"] = self.counts["frames_with_semantic_gt"] > 0
        coarse = self.semantic_coarse.compute()
        coarse["available"] = sem["available"]
        rep: Dict[str, Any] = {
            "counts": dict(self.counts),
            "detection": {"ap": det["ap"], "map": det["map"], "num_gt": det["num_gt"],
                          "num_pred": {c: det["curves"]["dist@2m"][c].num_pred
                                       if "dist@2m" in det["curves"] else None
                                       for c in self.contract.detection_classes},
                          "ap_definition": "area under the all-point interpolated PR curve "
                                           "(train/metrics.py); greedy matching by score; NaN = "
                                           "no ground truth, excluded from mAP",
                          "ap_mode": self.det.ap_mode, "available": self.counts["frames"] > 0,
                          "at_threshold": {
                              "score_threshold": self.operating_threshold, "criterion": "dist@2m",
                              "per_class": ({c: operating_point(det["curves"]["dist@2m"][c],
                                                                self._class_threshold(i))
                                             for i, c in
                                             enumerate(self.contract.detection_classes)}
                                            if "dist@2m" in det["curves"] else {})},
                          "clutter_false_positives": {
                              "score_threshold": self.operating_threshold,
                              "radius_m": CLUTTER_RADIUS_M,
                              "count": self.counts["clutter_false_positives"],
                              "frames": self.counts["frames_with_clutter"],
                              "per_frame": (self.counts["clutter_false_positives"]
                                            / self.counts["frames_with_clutter"]
                                            if self.counts["frames_with_clutter"]
                                            else float("nan"))}},
            "drivable": {"iou": self.drivable.iou(),
                         "available": self.counts["frames_with_drivable_gt"] > 0,
                         "definition": "training label (data/drivable.py::drivable_labels: "
                                       "ground points' vote, object-covered cells 0, 3x3 "
                                       "closing of unobserved gaps)",
                         "iou_observed": self.drivable_observed.iou(),
                         "observed_available": self.observed_cells["frames"] > 0,
                         "observed_frames": self.observed_cells["frames"],
                         "observed_cells": {"drivable": self.observed_cells["drivable"],
                                            "not_drivable": self.observed_cells["not_drivable"]},
                         "observed_definition": "data/drivable.py::observed_drivable_labels: "
                                                "cells whose ground points are road surface "
                                                "(1) vs sidewalk/non-drivable street/curbstone/"
                                                "nature (0); other cells ignored, no filling"},
            "detection_at_2m": self._at_2m_report(),
            "detection_point_labels": self._by_points_report(),
            "per_frame": list(self.per_frame),
            "semantic": sem,
            "semantic_coarse": coarse,
            "timings_ms": {k: {"mean": float(np.mean(v)), "p50": float(np.median(v)),
                               "p95": float(np.percentile(v, 95))}
                           for k, v in self.timings.items()},
            "notes": list(self.notes),
        }
        rep["_curves"] = det["curves"]
        return rep

    def _class_threshold(self, k: int) -> float:
        t = self.operating_threshold
        return float(t) if np.ndim(t) == 0 else float(t[k])

    def _at_2m_report(self) -> Dict[str, Any]:
        a = dict(self.at_2m)
        n = a["frames"]
        a.update({"available": n > 0, "score_threshold": self.operating_threshold,
                  "radius_m": MATCH_RADIUS_M,
                  "recall": a["found"] / a["gt_boxes"] if a["gt_boxes"] else float("nan"),
                  "false_positives_per_frame": a["false_positives"] / n if n else float("nan"),
                  "unlabelled_vehicle_per_frame": (a["unlabelled_vehicle"] / n if n
                                                   else float("nan")),
                  "definition": "frames with a label3D file; detections with score >= "
                                "score_threshold; a box (mapped class, centre in the BEV range) "
                                "is found when a detection's BEV centre is within radius_m; a "
                                "detection with no label3D box within radius_m is a false "
                                "positive unless it is a Car/Truck on mostly vehicle-labelled "
                                "lidar points (unlabelled_vehicle)"})
        return a

    def _by_points_report(self) -> Dict[str, Any]:
        b = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.by_points.items()}
        b["verdicts"] = dict(self.by_points["verdicts"])
        n = b["frames"]
        b.update({"available": n > 0, "score_threshold": self.operating_threshold,
                  "clutter_false_positives": b["verdicts"]["clutter"],
                  "clutter_false_positives_per_frame": (b["verdicts"]["clutter"] / n if n
                                                        else float("nan")),
                  "unlabelled_vehicle": b["verdicts"]["vehicle"],
                  "unlabelled_vehicle_per_frame": (b["verdicts"]["vehicle"] / n if n
                                                   else float("nan")),
                  "definition": "frames with lidar and a label image; each detection with score "
                                ">= score_threshold and no label3D box within "
                                f"{MATCH_RADIUS_M:g} m (near_box) is judged by the label classes "
                                "of the lidar points inside its box: more than half clutter "
                                "(nature, buildings, poles, signs, sidebars, kerbs, sidewalk, "
                                "...) = clutter false positive; vehicle = unlabelled vehicle; "
                                "verdicts: the count of every verdict (person_bike, road, mixed "
                                "= no category above half, no_points)"})
        return b


# ------------------------------------------------------------------------------- data-set
# evaluation
def make_pipeline(model_path: str, backend: str = "auto", device: str = "cpu",
                  score_threshold: Optional[float] = None):
    """Return (PerceptionPipeline, backend) for evaluation.

    ``score_threshold`` (default 0.05, low so that the PR curve reaches high recall) overrides the
    post-processing threshold.
    """
    from bev_mtl_ros.runtime.backends import create_backend
    from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
    be = create_backend(model_path, backend=backend, device=device)
    from bev_mtl_ros.runtime.postprocess import PostProcessConfig
    cfg = PostProcessConfig(score_threshold=0.05 if score_threshold is None
                            else float(score_threshold))
    pipe = PerceptionPipeline(be, cfg)
    return pipe, be


def gt_from_frame(frame: Any, contract: ModelContract) -> Tuple[np.ndarray, np.ndarray]:
    """Return the ground-truth boxes (M, 7) and detection labels (M,) of an A2D2Frame.

    Classes the contract does not map are dropped.
    """
    from bev_mtl_ros.train.dataset import map_box_classes
    keep, labels = map_box_classes(list(frame.box_classes), contract)
    return np.asarray(frame.boxes, np.float32).reshape(-1, 7)[keep], labels


def evaluate_dataset(data_dir: str, model_path: str, out_dir: Optional[str] = None,
                     backend: str = "auto",
                     device: str = "cpu", max_frames: Optional[int] = None, num_render: int = 4,
                     score_threshold: Optional[float] = None, camera: str = "front_center",
                     ap_mode: str = "area", progress: bool = True, render_style: str = "full",
                     operating_threshold: Optional[Union[float, Sequence[float]]] = None,
                     camera_input: str = "on", keep_records: bool = False) -> Dict[str, Any]:
    """Run the pipeline over an A2D2-format directory and compute every metric.

    What each frame is scored on depends on its files:

    * lidar + ``label3D``: detection AP and the operating point (``detection``), the
      synthetic generator's clutter sidecar count when present, and ``detection_at_2m``
      (recall at :data:`MATCH_RADIUS_M` and false positives per frame, see
      :meth:`EvalAccumulator.add_real_detections`). A lidar frame *without* ``label3D`` is not
      scored for detection (its detections would all count as false positives).
    * lidar + label image: every point takes the class of its pixel (``row``/``col``,
      ``data/drivable.py::frame_point_classes``): ``detection_point_labels`` (clutter false
      positives and unlabelled vehicles by the points inside each detection), the drivable IoU
      against the training label (``drivable.iou``) and against the observed ground truth
      (``drivable.iou_observed``, ``data/drivable.py::observed_drivable_labels``).
    * camera + label image (camera input on): semantic mIoU (38 classes and 8 coarse groups).

    Args:
        data_dir: A2D2-format directory (flat folder of A2D2-named files or an A2D2 tree).
        model_path: ``.onnx`` or ``.pt`` model.
        out_dir: where the report files and renderings go (None = nothing written).
        operating_threshold: the score threshold of the per-class precision/recall, the clutter
            counts and ``detection_at_2m``: one for every class or one per detection class;
            None = the node's defaults (:func:`node_operating_thresholds`); equal per-class
            values are reported as one.
        camera_input: ``"on"`` runs the network with the camera image (fused), ``"off"`` without
            it (lidar only, camera_valid = 0: no semantics), ``"both"`` does both on every frame;
            the report is then the fused one with the lidar-only report under ``"lidar_only"``.
        render_style: the :func:`render_semantic` style of the semantic frame renderings.
        keep_records: add each run's detection records (``detection_records``: every in-range
            detection above the pipeline's score floor with its verdicts,
            :mod:`bev_mtl_ros.train.thresholds`) to its report.
        backend, device, max_frames, num_render, score_threshold, camera, ap_mode, progress: as
            the CLI options of the same names.
    Returns:
        the report dict (see :meth:`EvalAccumulator.report`; ``camera_input`` says which run it
        is); with ``out_dir`` also writes the report files and ``num_render`` frame renderings
        (evenly spaced; of the first run).
    Raises:
        ValueError for an unknown ``camera_input``; FileNotFoundError when ``data_dir`` holds
        no frame.
    """
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    from bev_mtl_ros.data.drivable import frame_observed_drivable_labels, frame_point_classes
    from bev_mtl_ros.train.dataset import compute_drivable_label, semantic_id_map

    if camera_input not in CAMERA_INPUTS:
        raise ValueError(f"camera_input must be one of {CAMERA_INPUTS}, got {camera_input!r}")
    runs = {"on": ("fused",), "off": ("lidar_only",), "both": ("fused", "lidar_only")}[
        camera_input]
    pipe, be = make_pipeline(model_path, backend, device, score_threshold)
    contract = be.contract
    reader = A2D2Dataset(data_dir, camera=camera, require=())
    n = len(reader) if max_frames is None else min(len(reader), int(max_frames))
    accs = {r: EvalAccumulator(contract, ap_mode) for r in runs}
    for acc in accs.values():
        acc.operating_threshold = _operating_threshold(operating_threshold,
                                                       contract.detection_classes)
    lut = semantic_id_map(contract)
    render_at = (set(np.linspace(0, n - 1, num=min(num_render, n)).round().astype(int).tolist())
                 if n and out_dir else set())
    it = range(n)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="evaluating", unit="frame")
    for i in it:
        frame = reader.load_frame(i)
        key = f"{frame.scene}/{frame.frame}"
        has_lidar = frame.paths.get("lidar") is not None
        has_boxes = frame.paths.get("label3D") is not None
        if not has_lidar and frame.image is None:
            accs[runs[0]].notes.append(f"{key}: neither lidar nor camera image; skipped")
            continue
        pts = frame.points_xyzi
        gtb, gtl = gt_from_frame(frame, contract)
        point_classes = frame_point_classes(frame) if has_lidar else None
        drv_gt = drv_obs = None
        if has_lidar and frame.semantic is not None:
            drv_gt = compute_drivable_label(frame, contract)
            drv_obs = frame_observed_drivable_labels(frame, contract)
        sem_gt = None
        if frame.semantic is not None:
            sem_gt = frame.semantic if lut is None else lut[frame.semantic]
        for run in runs:
            acc = accs[run]
            image = frame.image if run == "fused" else None
            if not has_lidar and image is None:
                continue                               # a camera-only frame, lidar-only run
            res = pipe(pts, image)
            det = res.detections
            if has_lidar:
                if has_boxes:
                    acc.add_detections(det.boxes, det.scores, det.labels, gtb, gtl)
                    acc.add_clutter(det.boxes, det.scores, det.labels, gtb,
                                    frame.clutter_boxes)
                acc.add_real_detections(key, det.boxes, det.scores, det.labels, frame.points,
                                        point_classes, gtb if has_boxes else None,
                                        frame.boxes if has_boxes else None,
                                        gtl if has_boxes else None)
                if drv_gt is not None:
                    acc.add_drivable(res.drivable, drv_gt)
                    acc.add_drivable_observed(res.drivable, drv_obs)
            if image is not None:
                acc.add_semantic(res.semantic, sem_gt)
            acc.add_timings(res.timings_ms)
            if i in render_at and run == runs[0]:
                name = f"{i:04d}_{frame.scene}_{frame.frame}".replace(os.sep, "_")
                if has_lidar:
                    render_frame(os.path.join(out_dir, "frames", name + ".png"),
                                 contract, pts, gtb, det.boxes, det.scores, frame.image,
                                 frame.calibration.cam_matrix,
                                 res.drivable,
                                 title=f"{frame.scene} {frame.frame}: GT green, prediction red")
                if res.semantic is not None and sem_gt is not None:
                    render_semantic(os.path.join(out_dir, "frames", name + "_semantic.png"),
                                    frame.image, res.semantic, sem_gt, style=render_style)
    source = {"data": os.path.abspath(data_dir), "model": os.path.abspath(model_path),
              "backend": be.name, "frames": n, "camera_input": camera_input}
    reps = {}
    for run in runs:
        reps[run] = accs[run].report()
        reps[run]["camera_input"] = run
        reps[run]["source"] = dict(source)
        if keep_records:
            reps[run]["detection_records"] = list(accs[run].records)
    rep = reps[runs[0]]
    if len(runs) > 1:
        rep["lidar_only"] = reps["lidar_only"]
    if out_dir:
        write_report(rep, out_dir)
    return rep


# ------------------------------------------------------------------------------- bag evaluation
def detections_from_msg(msg,
                        contract: ModelContract) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Decode a vision_msgs/Detection3DArray into the contract's detection classes.

    Boxes and the best hypothesis come from :func:`bev_mtl_ros.data.bag_io.detections_to_arrays`;
    class_id may be a detection class name, an A2D2 box class name (mapped through the contract),
    or an integer index. Detections without results or with an unmapped class are dropped.

    Returns:
        (boxes (N, 7) float32 [x, y, z, l, w, h, yaw], scores (N,) float32, labels (N,) int64
        indices into ``contract.detection_classes``, number dropped).
    """
    idx = {n: i for i, n in enumerate(contract.detection_classes)}
    boxes, scores, class_ids = detections_to_arrays(msg)
    labels = []
    for cid in class_ids:
        name = cid if cid in idx else contract.box_class_map.get(cid)
        if name is None and cid.isdigit() and int(cid) < len(contract.detection_classes):
            name = contract.detection_classes[int(cid)]
        labels.append(idx.get(name, -1))
    keep = np.asarray(labels, np.int64) >= 0
    return (boxes[keep], scores[keep], np.asarray(labels, np.int64)[keep],
            int((~keep).sum()))


def _read_topic(path: str, topic: str) -> Dict[int, Any]:
    """Return header stamp (ns) -> message of one topic of a bag (the last message per stamp)."""
    return {stamp_ns(msg): msg for _t, _bt, msg in read_bag_messages(path, topics=[topic])}


def evaluate_bag(bag: str, contract: ModelContract, gt_bag: Optional[str] = None,
                 out_dir: Optional[str] = None,
                 detections_topic: str = DETECTIONS_TOPIC, gt_topic: str = GT_BOXES_TOPIC,
                 semantic_topic: str = SEMANTIC_TOPIC, gt_semantic_topic: str = GT_SEMANTIC_TOPIC,
                 ap_mode: str = "area") -> Dict[str, Any]:
    """Compare recorded node outputs with ground truth (same or second bag).

    Messages are matched by header stamp; returns the report dict, written to ``out_dir`` when
    given.

    Raises:
        ValueError when the ground-truth bag has no message on ``gt_topic``.
    """
    gt_bag = gt_bag or bag
    preds = _read_topic(bag, detections_topic)
    gts = _read_topic(gt_bag, gt_topic)
    if not gts:
        raise ValueError(f"{gt_bag}: no messages on the ground-truth topic {gt_topic}")
    acc = EvalAccumulator(contract, ap_mode)
    missing = frames_dropped = 0
    frame_ids = set()
    for stamp in sorted(gts):
        gb, _gs, gl, gd = detections_from_msg(gts[stamp], contract)
        frames_dropped += gd
        if stamp in preds:
            pb, ps, pl, _ = detections_from_msg(preds[stamp], contract)
            frame_ids.add((gts[stamp].header.frame_id, preds[stamp].header.frame_id))
        else:
            missing += 1
            pb, ps, pl = (np.zeros((0, 7), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.int64))
        acc.add_detections(pb, ps, pl, gb, gl)
    sem_pred = _read_topic(bag, semantic_topic)
    if sem_pred:
        sem_gt = _read_topic(gt_bag, gt_semantic_topic)
        for stamp, m in sem_gt.items():
            if stamp in sem_pred:
                acc.add_semantic(image_to_array(sem_pred[stamp]), image_to_array(m))
    for a, b in frame_ids:
        if a != b:
            acc.notes.append(f"ground truth in frame {a!r} but detections in {b!r}: compared "
                             "without a transform")
    acc.counts["frames_without_output"] = missing
    acc.counts["outputs_without_ground_truth"] = len(set(preds) - set(gts))
    acc.counts["gt_boxes_unmapped_class"] = frames_dropped
    rep = acc.report()
    rep["source"] = {"bag": os.path.abspath(bag), "gt_bag": os.path.abspath(gt_bag),
                     "detections_topic": detections_topic, "gt_topic": gt_topic}
    if missing:
        acc.notes.append(f"{missing} ground-truth frames had no node output with the same stamp "
                         "(counted as no predictions)")
        rep["notes"] = list(acc.notes)
    if out_dir:
        write_report(rep, out_dir)
    return rep


def model_contract(model_path: str) -> ModelContract:
    """Return the contract stored in a model file: ``.onnx`` metadata, else a ``.pt`` checkpoint.

    Raises:
        FileNotFoundError for a missing ``.onnx`` file; ContractError (a ValueError) for an ONNX
        file without a valid contract; CheckpointError for an unreadable checkpoint.
    """
    if str(model_path).endswith(".onnx"):
        from bev_mtl_ros.runtime.export import read_onnx_contract
        return read_onnx_contract(str(model_path))
    from bev_mtl_ros.runtime.checkpoint import load_checkpoint
    return load_checkpoint(str(model_path))[1]


def _contract_for_bag(args) -> ModelContract:
    """Return the contract of ``--model``, else of ``--contract``, else the default one."""
    if args.model:
        return model_contract(args.model)
    if args.contract:
        return ModelContract.load(args.contract)
    return ModelContract()


# ------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros evaluate``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="A2D2-format directory to run the model on")
    src.add_argument("--bag", help="recorded rosbag2 with the node's outputs")
    parser.add_argument("--model",
                        help="model file (.onnx or .pt); required with --data; with --bag only "
                             "its contract (classes, range) is used")
    parser.add_argument("--contract", help="contract YAML/JSON for --bag when no --model is given")
    parser.add_argument("--gt-bag", help="bag with /a2d2/ground_truth/* (default: --bag itself)")
    parser.add_argument("--out", default=None,
                        help="output directory for report.json, summary.txt, plots")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "pytorch"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--render", type=int, default=4,
                        help="frames to render as PNG (default 4)")
    parser.add_argument("--render-style", choices=RENDER_STYLES, default="full",
                        help="semantic renderings: full = image | prediction | label (default); "
                             "prediction = prediction | coarse-group correctness, without the "
                             "dataset's pixels")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="post-processing score threshold for evaluation (default 0.05)")
    parser.add_argument("--ap-mode", choices=("area", "nuscenes"), default="area")
    parser.add_argument("--operating-threshold", type=float, default=None,
                        help="one score threshold for every class for the per-class "
                             "precision/recall, the false-positive and clutter counts (default: "
                             "the node's defaults, score_threshold with class_score_thresholds)")
    parser.add_argument("--detections-topic", default=DETECTIONS_TOPIC)
    parser.add_argument("--gt-topic", default=GT_BOXES_TOPIC)
    parser.add_argument("--camera", default="front_center",
                        help="A2D2 camera whose frames are read (default front_center)")
    parser.add_argument("--camera-input", choices=CAMERA_INPUTS, default="on",
                        help="with --data: run the network with the camera image (on, fused; "
                             "default), without it (off: lidar only, camera_valid = 0, no "
                             "semantics) or both ways on every frame (both: the lidar-only "
                             "report goes under 'lidar_only')")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    """Run the evaluation; prints the summary. Returns 0, or 2 on bad arguments / inputs."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        if args.data:
            if not args.model:
                LOG.error("--data needs --model")
                return 2
            rep = evaluate_dataset(args.data, args.model, args.out, backend=args.backend,
                                   device=args.device,
                                   max_frames=args.max_frames, num_render=args.render,
                                   score_threshold=args.score_threshold, camera=args.camera,
                                   ap_mode=args.ap_mode, progress=not args.no_progress,
                                   render_style=args.render_style,
                                   operating_threshold=args.operating_threshold,
                                   camera_input=args.camera_input)
        else:
            rep = evaluate_bag(args.bag, _contract_for_bag(args), gt_bag=args.gt_bag,
                               out_dir=args.out,
                               detections_topic=args.detections_topic, gt_topic=args.gt_topic,
                               ap_mode=args.ap_mode)
    except (FileNotFoundError, ValueError, KeyError) as e:
        LOG.error("%s", e)
        return 2
    print(summary_text(rep), end="")
    if args.out:
        print(f"report written to {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0
