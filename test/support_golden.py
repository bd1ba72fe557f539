"""Test support: compare replay outputs with golden (or reference) outputs within tolerances.

Used by test_replay_regression.py. The golden files themselves are written and read by
:mod:`bev_mtl_ros.ros.recording` (``write_golden`` / ``load_golden``), which also holds the
default tolerances (``GOLDEN_TOLERANCES``, documented in test/golden/README.md).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.geometry import normalize_yaw
from bev_mtl_ros.ros.recording import GOLDEN_TOLERANCES, SEMANTIC_GOLDEN_STRIDE, FrameOutput


def _compare_boxes(s: int, a: FrameOutput, g: FrameOutput, tol: Dict[str, float],
                   floor: float) -> Tuple[List[str], int]:
    """Pair one frame's boxes greedily (by class, nearest centre, golden boxes by score).

    Returns:
        (problems, number of unpaired boxes forgiven because their score is within
        ``near_threshold_score`` of ``floor``, the lowest score seen).
    """
    problems: List[str] = []
    near = floor + tol["near_threshold_score"]
    used = np.zeros(len(a.scores), bool)
    forgiven = 0
    for j in np.argsort(-g.scores):
        cand = [i for i in range(len(a.scores)) if not used[i] and a.labels[i] == g.labels[j]]
        if not cand:
            if g.scores[j] > near:
                problems.append(f"{s}: golden {g.labels[j]} box {g.boxes[j][:3].round(2)} "
                                f"(score {g.scores[j]:.3f}) not detected")
            else:
                forgiven += 1
            continue
        d = [float(np.linalg.norm(a.boxes[i][:3] - g.boxes[j][:3])) for i in cand]
        i = cand[int(np.argmin(d))]
        if min(d) > tol["center_m"]:
            if g.scores[j] > near:
                problems.append(f"{s}: {g.labels[j]} centre off by {min(d):.3f} m (> "
                                f"{tol['center_m']})")
            else:
                forgiven += 1
            continue
        used[i] = True
        ds = float(np.abs(a.boxes[i][3:6] - g.boxes[j][3:6]).max())
        dyaw = abs(float(normalize_yaw(float(a.boxes[i][6] - g.boxes[j][6]))))
        dsc = abs(float(a.scores[i] - g.scores[j]))
        if ds > tol["size_m"]:
            problems.append(f"{s}: {g.labels[j]} size off by {ds:.3f} m")
        if dyaw > tol["yaw_rad"]:
            problems.append(f"{s}: {g.labels[j]} yaw off by {dyaw:.3f} rad")
        if dsc > tol["score"]:
            problems.append(f"{s}: {g.labels[j]} score off by {dsc:.3f}")
    for i in np.nonzero(~used)[0]:
        if a.scores[i] > near:
            problems.append(f"{s}: extra {a.labels[i]} box {a.boxes[i][:3].round(2)} (score "
                            f"{a.scores[i]:.3f})")
        else:
            forgiven += 1
    return problems, forgiven


def _compare_masks(s: int, a: FrameOutput, g: FrameOutput, tol: Dict[str, float]) -> List[str]:
    """Agreement of one frame's drivable and semantic masks (semantic subsampled like golden)."""
    problems: List[str] = []
    if a.drivable is not None and g.drivable is not None:
        if a.drivable.shape != g.drivable.shape:
            problems.append(f"{s}: drivable shape {a.drivable.shape} != golden "
                            f"{g.drivable.shape}")
        else:
            agree = float((a.drivable == g.drivable).mean())
            if agree < tol["drivable_agreement"]:
                problems.append(f"{s}: drivable agreement {agree:.4f} < "
                                f"{tol['drivable_agreement']}")
    if a.semantic is not None and g.semantic is not None:
        sa = a.semantic
        if sa.shape != g.semantic.shape:
            sa = sa[::SEMANTIC_GOLDEN_STRIDE, ::SEMANTIC_GOLDEN_STRIDE]
        if sa.shape != g.semantic.shape:
            problems.append(f"{s}: semantic shape {sa.shape} != golden {g.semantic.shape}")
        else:
            agree = float((sa == g.semantic).mean())
            if agree < tol["semantic_agreement"]:
                problems.append(f"{s}: semantic agreement {agree:.4f} < "
                                f"{tol['semantic_agreement']}")
    return problems


def compare_outputs(actual: Sequence[FrameOutput], golden: Sequence[FrameOutput],
                    tol: Optional[Dict[str, float]] = None) -> List[str]:
    """Return the differences between replay and golden outputs beyond the tolerances.

    An empty list means they match. Per frame (matched by stamp): boxes are paired greedily by
    class and nearest centre; a pair must agree within ``center_m``, ``size_m``, ``yaw_rad``
    (wrapped to [-pi, pi)) and ``score``; an unpaired box is accepted only if its score is within
    ``near_threshold_score`` of the lowest score seen (it sits at the score threshold, where tiny
    numeric differences flip it), and at most max(2, ``near_threshold_fraction`` x boxes) such
    boxes per frame. Masks: fraction of equal cells >= ``drivable_agreement`` /
    ``semantic_agreement``. ``tol`` overrides entries of ``GOLDEN_TOLERANCES``.
    """
    tol = dict(GOLDEN_TOLERANCES, **(tol or {}))
    problems: List[str] = []
    a_by = {f.stamp_ns: f for f in actual}
    g_by = {f.stamp_ns: f for f in golden}
    if set(a_by) != set(g_by):
        problems.append(f"frame stamps differ: missing {sorted(set(g_by) - set(a_by))[:5]}, "
                        f"extra {sorted(set(a_by) - set(g_by))[:5]}")
    all_scores = np.concatenate([f.scores for f in list(actual) + list(golden)]
                                + [np.zeros(0, np.float32)])
    floor = float(all_scores.min()) if all_scores.size else 0.0
    for s in sorted(set(a_by) & set(g_by)):
        a, g = a_by[s], g_by[s]
        box_problems, forgiven = _compare_boxes(s, a, g, tol, floor)
        problems += box_problems
        allowed = max(2, int(tol["near_threshold_fraction"] * max(len(a.scores), len(g.scores))))
        if forgiven > allowed:
            problems.append(f"{s}: {forgiven} unpaired boxes near the score threshold (> "
                            f"{allowed} allowed): centre {tol['center_m']} m not met")
        problems += _compare_masks(s, a, g, tol)
    return problems
