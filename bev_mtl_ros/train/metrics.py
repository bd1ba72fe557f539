"""Evaluation metrics: 3D detection AP in BEV, drivable-area IoU, semantic mIoU.

Detection AP (per class, per matching threshold)
------------------------------------------------
Matching follows nuScenes' detection metric (Caesar et al. 2020, "nuScenes", Sec. 3.1 and the
``nuscenes-devkit`` ``accumulate``): within each class, all predictions of the whole data set are
sorted by descending score (ties keep input order: frame order, then prediction order); each one is
greedily matched to the *unmatched* ground-truth box of the same class in the same frame that is
nearest by BEV centre distance (x, y), if that distance is <= the threshold (0.5, 1, 2, 4 m), else
it is a false positive. For the ``iou`` criterion the match is the unmatched ground-truth box with
the highest rotated BEV IoU, if >= the threshold (0.5).

With TP/FP cumulated in score order, recall = TP / N_gt and precision = TP / (TP + FP).

AP variant implemented (``ap_mode="area"``, the default): the area under the *interpolated*
precision-recall curve with all-point interpolation (PASCAL VOC 2010+ / COCO style without the
101-point sampling): precision is replaced by its running maximum from the right,
p_interp(r) = max_{r' >= r} p(r'), and AP = sum_i (r_i - r_{i-1}) * p_interp(r_i) with r_0 = 0.
No clipping: a perfect detector gives 1.0, no predictions give 0.0.

``ap_mode="nuscenes"`` gives nuScenes' variant for comparison: p_interp linearly interpolated at
101 recall points 0, 0.01, ..., 1 (0 beyond the highest recall reached), then only recall points >
0.1 are kept and precision is clipped: AP = mean(max(p - 0.1, 0)) / (1 - 0.1).

Classes without ground truth in the evaluated data get AP = NaN ("undefined", even if there are
false positives) and are excluded from the mAP; the mAP is the mean over classes with ground truth
(NaN when no class has any).

Segmentation IoU
----------------
Data-set level (not per-frame means): confusion counts are accumulated over all frames,
pixels/cells labelled 255 are ignored. Per class IoU = TP / (TP + FP + FN). Semantic mIoU is the
mean over the classes *present in the ground truth* (at least one labelled pixel); classes never
labelled get NaN and are excluded. Drivable IoU is the IoU of the "drivable" class (label 1) of the
BEV grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

from bev_mtl_ros.geometry import rotated_bev_iou

IGNORE_INDEX = 255
DEFAULT_DISTANCE_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)
DEFAULT_IOU_THRESHOLDS = (0.5,)


# ---------------------------------------------------------------------------- AP
def average_precision(precision: np.ndarray, recall: np.ndarray, mode: str = "area") -> float:
    """AP from a precision-recall curve given in score order (see the module docstring).

    Args:
        precision, recall: (N,) values after each prediction in descending-score order.
        mode: "area" (all-point interpolated area) or "nuscenes" (101-point, clipped at 0.1).
    Returns: AP in [0, 1]; 0.0 for an empty curve.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.size == 0:
        return 0.0
    env = np.maximum.accumulate(precision[::-1])[::-1]
    if mode == "area":
        r = np.concatenate([[0.0], recall])
        return float(np.sum((r[1:] - r[:-1]) * env))
    if mode == "nuscenes":
        grid = np.linspace(0.0, 1.0, 101)
        # linear interpolation of the envelope at the sampled recalls, 0 beyond the last recall
        p = np.interp(grid, recall, env, right=0.0)
        min_recall, min_precision = 0.1, 0.1
        p = p[grid > min_recall + 1e-9]
        p = np.clip(p - min_precision, 0.0, None)
        return float(np.mean(p) / (1.0 - min_precision))
    raise ValueError(f"unknown AP mode {mode!r}; use 'area' or 'nuscenes'")


@dataclass
class _Frame:
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray


@dataclass
class APResult:
    """AP of one class at one threshold, and its precision-recall curve (score order)."""

    ap: float
    num_gt: int
    num_pred: int
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)


def operating_point(result: APResult, score_threshold: float) -> Dict[str, float]:
    """Return precision and recall of one class at a score threshold.

    Only detections with score >= ``score_threshold`` are kept (the node publishes exactly
    those): the point of the class's PR curve at that score.

    Args:
        result: an :class:`APResult` (curve in descending score order).
        score_threshold: detection score threshold in [0, 1].
    Returns:
        {"precision", "recall", "kept"}: precision of the kept detections (NaN when none is kept),
        recall over all ground truth (NaN for a class without ground truth), and how many
        detections were kept.
    """
    kept = int(np.count_nonzero(result.scores >= score_threshold))
    if kept == 0:
        return {"precision": float("nan"), "recall": 0.0 if result.num_gt else float("nan"),
                "kept": 0}
    return {"precision": float(result.precision[kept - 1]),
            "recall": float(result.recall[kept - 1]) if result.num_gt else float("nan"),
            "kept": kept}


class DetectionEvaluator:
    """Accumulates frames and computes per-class AP / mAP (see the module docstring).

    Args:
        class_names: detection class names; labels index into them.
        distance_thresholds: BEV centre-distance thresholds in metres.
        iou_thresholds: rotated BEV IoU thresholds.
        ap_mode: "area" or "nuscenes" (see :func:`average_precision`).
    """

    def __init__(self, class_names: Sequence[str],
                 distance_thresholds: Sequence[float] = DEFAULT_DISTANCE_THRESHOLDS,
                 iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS, ap_mode: str = "area"):
        self.class_names = tuple(class_names)
        self.distance_thresholds = tuple(float(t) for t in distance_thresholds)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.ap_mode = ap_mode
        self.frames: List[_Frame] = []

    def add_frame(self, pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels) -> None:
        """Add one frame.

        Boxes (N, 7) [x, y, z, l, w, h, yaw], scores (N,), labels (N,) int class indices; ground
        truth (M, 7), (M,). Raises ValueError on inconsistent lengths or labels.
        """
        pb = np.asarray(pred_boxes, np.float64).reshape(-1, 7)
        ps = np.asarray(pred_scores, np.float64).reshape(-1)
        pl = np.asarray(pred_labels, np.int64).reshape(-1)
        gb = np.asarray(gt_boxes, np.float64).reshape(-1, 7)
        gl = np.asarray(gt_labels, np.int64).reshape(-1)
        if not (len(pb) == len(ps) == len(pl)):
            raise ValueError(f"prediction arrays differ in length: boxes {len(pb)}, scores "
                             f"{len(ps)}, labels {len(pl)}")
        if len(gb) != len(gl):
            raise ValueError(f"ground-truth arrays differ in length: boxes {len(gb)}, labels "
                             f"{len(gl)}")
        k = len(self.class_names)
        for name, lab in (("prediction", pl), ("ground-truth", gl)):
            if lab.size and (lab.min() < 0 or lab.max() >= k):
                raise ValueError(f"{name} label outside 0..{k - 1}: {lab.min()}..{lab.max()}")
        self.frames.append(_Frame(pb, ps, pl, gb, gl))

    def _match_class(self, cls: int, criterion: str, thr: float) -> APResult:
        scores, frame_of, box_of = [], [], []
        num_gt = 0
        for fi, f in enumerate(self.frames):
            sel = np.nonzero(f.pred_labels == cls)[0]
            scores.append(f.pred_scores[sel])
            frame_of.append(np.full(len(sel), fi))
            box_of.append(sel)
            num_gt += int((f.gt_labels == cls).sum())
        scores_a = np.concatenate(scores) if scores else np.zeros(0)
        frame_a = np.concatenate(frame_of) if frame_of else np.zeros(0, np.int64)
        box_a = np.concatenate(box_of) if box_of else np.zeros(0, np.int64)
        order = np.argsort(-scores_a, kind="stable")
        # per-frame similarity of this class's predictions vs gt
        gt_idx = {fi: np.nonzero(f.gt_labels == cls)[0] for fi, f in enumerate(self.frames)}
        sims: Dict[int, np.ndarray] = {}
        for fi, f in enumerate(self.frames):
            g = f.gt_boxes[gt_idx[fi]]
            if criterion == "distance":
                sims[fi] = np.hypot(f.pred_boxes[:, None, 0] - g[None, :, 0],
                                    f.pred_boxes[:, None, 1] - g[None, :, 1])
            else:
                sel = f.pred_labels == cls
                s = np.zeros((len(f.pred_boxes), len(g)))
                if sel.any() and len(g):
                    s[sel] = rotated_bev_iou(f.pred_boxes[sel], g)
                sims[fi] = s
        taken = {fi: np.zeros(len(gt_idx[fi]), bool) for fi in gt_idx}
        tp = np.zeros(len(order))
        for rank, o in enumerate(order):
            fi, bi = int(frame_a[o]), int(box_a[o])
            row = sims[fi][bi] if len(taken[fi]) else np.zeros(0)
            if row.size == 0:
                continue
            if criterion == "distance":
                cand = np.where(taken[fi], np.inf, row)
                j = int(np.argmin(cand))
                ok = cand[j] <= thr
            else:
                cand = np.where(taken[fi], -np.inf, row)
                j = int(np.argmax(cand))
                ok = cand[j] >= thr
            if ok:
                taken[fi][j] = True
                tp[rank] = 1.0
        ctp = np.cumsum(tp)
        cfp = np.cumsum(1.0 - tp)
        precision = ctp / np.maximum(ctp + cfp, 1e-12)
        recall = ctp / num_gt if num_gt else np.zeros_like(ctp)
        ap = average_precision(precision, recall, self.ap_mode) if num_gt else float("nan")
        return APResult(ap, num_gt, len(order), precision, recall, scores_a[order])

    def compute(self) -> Dict[str, object]:
        """Compute AP per class and criterion, and mAP.

        Returns {"ap": {criterion_key: {class: AP}}, "map": {criterion_key: mAP},
        "num_gt": {class: n}, "curves": {criterion_key: {class: APResult}}} where criterion_key is
        "dist@0.5m" ... "dist@4m" and "iou@0.5". NaN AP = class without ground truth.
        """
        result: Dict[str, object] = {"ap": {}, "map": {}, "curves": {}, "num_gt": {}}
        crits = [("distance", t, f"dist@{t:g}m") for t in self.distance_thresholds]
        crits += [("iou", t, f"iou@{t:g}") for t in self.iou_thresholds]
        for crit, thr, key in crits:
            aps, curves = {}, {}
            for ci, name in enumerate(self.class_names):
                r = self._match_class(ci, crit, thr)
                aps[name] = r.ap
                curves[name] = r
                result["num_gt"][name] = r.num_gt
            result["ap"][key] = aps
            result["curves"][key] = curves
            result["map"][key] = nan_mean(aps.values())
        return result


def nan_mean(values) -> float:
    """Mean over the finite values; NaN when there are none."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    return float(np.mean(v)) if v else float("nan")


# ---------------------------------------------------------------------------- segmentation
class ConfusionMatrix:
    """Accumulated (num_classes x num_classes) confusion counts.

    Rows = ground truth, cols = prediction.

    ``add(pred, gt)``: integer arrays of equal shape; gt == ignore_index is skipped; ground-truth
    ids >= num_classes raise ValueError; predicted ids >= num_classes count as wrong (never as a
    class).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction ({pred.size} values) and label ({gt.size}) differ in "
                             "size")
        keep = gt != self.ignore_index
        pred, gt = pred[keep], gt[keep]
        if gt.size and (gt.min() < 0 or gt.max() >= self.num_classes):
            raise ValueError(f"label id outside 0..{self.num_classes - 1} (and not "
                             f"{self.ignore_index})")
        pred = np.where((pred >= 0) & (pred < self.num_classes), pred, self.num_classes)
        k1 = self.num_classes + 1
        self.matrix += (np.bincount(gt * k1 + pred,
                                    minlength=self.num_classes * k1).reshape(self.num_classes, k1))

    def iou(self) -> np.ndarray:
        """Return (num_classes,) IoU = TP / (TP + FP + FN).

        NaN for classes absent from the ground truth.
        """
        m = self.matrix
        tp = np.diag(m[:, : self.num_classes]).astype(np.float64)
        gt_count = m.sum(axis=1).astype(np.float64)
        pred_count = m[:, : self.num_classes].sum(axis=0).astype(np.float64)
        union = gt_count + pred_count - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = tp / union
        iou[gt_count == 0] = np.nan
        return iou

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return (float(np.trace(self.matrix[:, : self.num_classes]) / total) if total
                else float("nan"))


def binary_iou(pred: np.ndarray, gt: np.ndarray, ignore_index: int = IGNORE_INDEX) -> float:
    """Return the IoU of the positive class for one mask pair.

    Cells labelled ``ignore_index`` are ignored; NaN when both prediction and label are empty on
    the valid cells.
    """
    cm = ConfusionMatrix(2, ignore_index)
    cm.add((np.asarray(pred) > 0).astype(np.int64), gt)
    m = cm.matrix
    tp, fp, fn = m[1, 1], m[0, 1], m[1, 0]
    return float(tp / (tp + fp + fn)) if (tp + fp + fn) else float("nan")


class DrivableEvaluator:
    """Data-set level IoU of the drivable class on the BEV grid (label 1; 255 ignored)."""

    def __init__(self):
        self.cm = ConfusionMatrix(2)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: (H, W) {0, 1} (anything > 0 is drivable); gt: (H, W) {0, 1, 255}."""
        self.cm.add((np.asarray(pred) > 0).astype(np.int64), gt)

    def iou(self) -> float:
        m = self.cm.matrix
        tp, fp, fn = m[1, 1], m[0, 1], m[1, 0]
        return float(tp / (tp + fp + fn)) if (tp + fp + fn) else float("nan")


class SemanticEvaluator:
    """Data-set level semantic IoU per class and mIoU.

    The mIoU is over the classes present in the ground truth.
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = tuple(class_names)
        self.cm = ConfusionMatrix(len(self.class_names))

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred, gt: (H, W) integer class ids of the same shape; gt 255 = ignore."""
        self.cm.add(pred, gt)

    def compute(self) -> Dict[str, object]:
        iou = self.cm.iou()
        per_class = {n: float(v) for n, v in zip(self.class_names, iou) if not math.isnan(v)}
        return {"miou": nan_mean(per_class.values()), "per_class_iou": per_class,
                "pixel_accuracy": self.cm.pixel_accuracy(), "classes_present": len(per_class)}


def bev_distance_to_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Bird's-eye-view distance from points to yaw-rotated box footprints (0 inside a footprint).

    Args:
        points: (N, 2+) [x, y, ...] metres; boxes: (M, 7) [x, y, z, l, w, h, yaw] (same frame).
    Returns:
        (N, M) float64 Euclidean distance in the x-y plane from each point to each rectangle.
    """
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, :2]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    dx = p[:, None, 0] - b[None, :, 0]
    dy = p[:, None, 1] - b[None, :, 1]
    c, s = np.cos(b[:, 6])[None], np.sin(b[:, 6])[None]
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    ex = np.maximum(np.abs(lx) - b[None, :, 3] / 2, 0.0)
    ey = np.maximum(np.abs(ly) - b[None, :, 4] / 2, 0.0)
    return np.hypot(ex, ey)


def clutter_false_positives(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    gt_boxes: np.ndarray,
    clutter_boxes: np.ndarray,
    score_threshold: float,
    radius: float,
) -> int:
    """Count detections on clutter (hard negatives such as poles, trees, bushes).

    A prediction counts when its score is >= ``score_threshold``, its BEV centre lies within
    ``radius`` m of a clutter box's footprint (distance 0 inside it) and not within ``radius`` m of
    any ground-truth box's footprint (so a detection of a real road user standing next to a tree
    is not counted). Distances: :func:`bev_distance_to_boxes`.

    Args:
        pred_boxes: (P, 7) [x, y, z, l, w, h, yaw]; pred_scores: (P,); gt_boxes: (G, 7);
            clutter_boxes: (C, 7) -- all in one frame (the camera view frame for A2D2), metres.
        score_threshold: e.g. the node's detection threshold. radius: metres, >= 0.
    Returns:
        int count (0 when there are no predictions or no clutter).
    Raises:
        ValueError for a negative radius or mismatching numbers of boxes and scores.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    pb = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 7)
    ps = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    if pb.shape[0] != ps.shape[0]:
        raise ValueError(f"{pb.shape[0]} predicted boxes but {ps.shape[0]} scores")
    cb = np.asarray(clutter_boxes, dtype=np.float64).reshape(-1, 7)
    pb = pb[ps >= score_threshold]
    if pb.shape[0] == 0 or cb.shape[0] == 0:
        return 0
    near_clutter = (bev_distance_to_boxes(pb, cb) <= radius).any(axis=1)
    gb = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 7)
    near_gt = (
        (bev_distance_to_boxes(pb, gb) <= radius).any(axis=1)
        if gb.shape[0]
        else np.zeros(len(pb), bool)
    )
    return int(np.sum(near_clutter & ~near_gt))


# ---------------------------------------------------------------------------- real-frame checks
def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which points lie inside which yaw-rotated 3D boxes.

    Args:
        points: (N, 3+) [x, y, z, ...] metres; boxes: (M, 7) [x, y, z, l, w, h, yaw] with z the
            box centre, yaw about +z (same frame as the points: the camera view frame for A2D2).
        margin: metres added on every side of each box (>= 0).
    Returns:
        (N, M) bool: point n inside box m (faces included).
    Raises:
        ValueError for a negative margin or points that are not (N, 3+).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f"points must be (N, 3+), got shape {p.shape}")
    p = p[:, :3]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    dx = p[:, None, 0] - b[None, :, 0]
    dy = p[:, None, 1] - b[None, :, 1]
    c, s = np.cos(b[:, 6])[None], np.sin(b[:, 6])[None]
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    lz = p[:, None, 2] - b[None, :, 2]
    return ((np.abs(lx) <= b[None, :, 3] / 2 + margin) & (np.abs(ly) <= b[None, :, 4] / 2 + margin)
            & (np.abs(lz) <= b[None, :, 5] / 2 + margin))


#: Detection verdicts of :func:`detection_point_categories` besides the point categories of
#: ``data/classes.py`` (``clutter``, ``vehicle``, ``person_bike``, ``road``).
MIXED, NO_POINTS = "mixed", "no_points"


def detection_point_categories(pred_boxes: np.ndarray, points: np.ndarray,
                               point_classes: np.ndarray, min_share: float = 0.5,
                               margin: float = 0.0) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """Judge detections by the semantic labels of the lidar points inside their boxes.

    Each lidar point carries the class of its pixel in the frame's label image
    (``data/drivable.py::frame_point_classes``) and through
    :func:`bev_mtl_ros.data.classes.point_category_lut` a category: ``clutter``, ``vehicle``,
    ``person_bike``, ``road``, or none (sky, ego car, blurred, rain dirt, animals, unlabelled:
    they do not vote). A detection is of the category that holds more than ``min_share`` of the
    voting points inside its box (:func:`points_in_boxes`), :data:`MIXED` when none does, and
    :data:`NO_POINTS` when no voting point lies inside.

    Args:
        pred_boxes: (P, 7) [x, y, z, l, w, h, yaw]; points: (N, 3+) same frame, metres.
        point_classes: (N,) uint8 A2D2 merged class ids (255 = unlabelled).
        min_share: share of the voting points a category needs (strictly more), in [0, 1).
        margin: metres added around each box (:func:`points_in_boxes`).
    Returns:
        (verdicts: P category names, dominant (P,) int16 the most frequent voting A2D2 class id
        inside each box (-1 without points), voters (P,) int64 voting points per box).
    Raises:
        ValueError when ``points`` and ``point_classes`` differ in length.
    """
    from bev_mtl_ros.data.classes import POINT_CATEGORY_NAMES, point_category_lut
    pb = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 7)
    cls = np.asarray(point_classes).reshape(-1).astype(np.int64)
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) != len(cls):
        raise ValueError(f"{len(pts)} points but {len(cls)} point classes")
    cat = point_category_lut()[cls].astype(np.int64)
    vote = cat != 255
    k = len(POINT_CATEGORY_NAMES)
    if len(pb) == 0:
        return [], np.zeros(0, np.int16), np.zeros(0, np.int64)
    inside = points_in_boxes(pts[vote], pb, margin).astype(np.float64)    # (V, P)
    onehot = np.zeros((256, int(vote.sum())))
    onehot[cls[vote], np.arange(onehot.shape[1])] = 1.0
    per_cls = (onehot @ inside).T.round().astype(np.int64)                  # (P, 256)
    lut = point_category_lut()
    per_cat = np.stack([per_cls[:, lut == g].sum(1) for g in range(k)], axis=1)  # (P, k)
    voters = per_cat.sum(1)
    dominant = np.where(voters > 0, per_cls.argmax(1), -1).astype(np.int16)
    best = per_cat.argmax(1)
    share = per_cat[np.arange(len(pb)), best] / np.maximum(voters, 1)
    verdicts = [NO_POINTS if v == 0 else (POINT_CATEGORY_NAMES[b] if s > min_share else MIXED)
                for v, b, s in zip(voters, best, share)]
    return verdicts, dominant, voters.astype(np.int64)


def centre_distance_bev(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Return the (A, B) float64 BEV distance (x, y) between box centres, metres."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 7)
    return np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
