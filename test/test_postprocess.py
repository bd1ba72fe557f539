"""Targets, decoding round trip, circle / rotated-IoU NMS, exact rotated BEV IoU, dense heads."""

import math

import numpy as np
import pytest
import torch

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.geometry import box_corners_bev, normalize_yaw, rotated_bev_iou
from bev_mtl_ros.runtime.postprocess import (
    PostProcessConfig, circle_nms, decode_detections, drivable_mask, rotated_nms,
    semantic_ids)
from bev_mtl_ros.runtime.targets import build_targets, gaussian_radius


def box(x, y, length, w, yaw, z=0.0, h=1.5):
    return [x, y, z, length, w, h, yaw]


# ----------------------------------------------------------------------------- rotated IoU
def test_rotated_iou_unit_squares_45deg_known_value():
    a = np.array([box(0, 0, 1, 1, 0)])
    b = np.array([box(0, 0, 1, 1, math.pi / 4)])
    # Intersection = regular octagon of area 2(sqrt2 - 1); IoU = that / (2 - that) = 1/sqrt2.
    assert rotated_bev_iou(a, b)[0, 0] == pytest.approx(1 / math.sqrt(2), abs=1e-9)


def test_rotated_iou_analytic_cases():
    base = np.array([box(0, 0, 4, 2, 0.3)])
    # Identical -> 1; rotated by pi -> same rectangle -> 1.
    assert rotated_bev_iou(base, base)[0, 0] == pytest.approx(1.0, abs=1e-9)
    flipped = base.copy()
    flipped[0, 6] += math.pi
    assert rotated_bev_iou(base, flipped)[0, 0] == pytest.approx(1.0, abs=1e-9)
    # Axis-aligned shift by half the length: overlap 2x2 = 4, union 12 -> 1/3.
    a = np.array([box(0, 0, 4, 2, 0)])
    b = np.array([box(2, 0, 4, 2, 0)])
    assert rotated_bev_iou(a, b)[0, 0] == pytest.approx(1 / 3, abs=1e-9)
    # Touching along an edge -> 0; far apart -> 0; contained -> area ratio.
    assert rotated_bev_iou(a, np.array([box(4, 0, 4, 2, 0)]))[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert rotated_bev_iou(a, np.array([box(40, 0, 4, 2, 0)]))[0, 0] == 0.0
    assert (rotated_bev_iou(a, np.array([box(0.5, 0, 1, 1, 0.7)]))[0, 0]
            == pytest.approx(1 / 8, abs=1e-9))
    # Cross: 4x2 and the same rotated 90 deg -> overlap 2x2 = 4, union 12.
    c = np.array([box(0, 0, 4, 2, math.pi / 2)])
    assert rotated_bev_iou(a, c)[0, 0] == pytest.approx(1 / 3, abs=1e-9)


def test_rotated_iou_matches_rasterized_area_random():
    rng = np.random.default_rng(3)
    n = 6
    bx = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), np.zeros(n),
                   rng.uniform(0.5, 3, n),
                   rng.uniform(0.5, 2, n), np.ones(n), rng.uniform(-3, 3, n)], 1)
    iou = rotated_bev_iou(bx, bx)
    # Monte-Carlo-free check: fine grid rasterization of the same polygons.
    g = np.linspace(-4, 4, 801)
    X, Y = np.meshgrid(g, g)
    masks = []
    for b in bx:   # test-only loop
        c, s = math.cos(b[6]), math.sin(b[6])
        lx = (X - b[0]) * c + (Y - b[1]) * s
        ly = -(X - b[0]) * s + (Y - b[1]) * c
        masks.append((np.abs(lx) <= b[3] / 2) & (np.abs(ly) <= b[4] / 2))
    for i in range(n):
        for j in range(n):
            inter = np.logical_and(masks[i], masks[j]).sum()
            union = np.logical_or(masks[i], masks[j]).sum()
            assert iou[i, j] == pytest.approx(inter / union, abs=0.02)
    np.testing.assert_allclose(iou, iou.T, atol=1e-9)


def test_corners_ccw_and_shapes():
    c = box_corners_bev(np.array([box(1, 2, 4, 2, math.pi / 2)]))
    np.testing.assert_allclose(c[0], [[0, 4], [0, 0], [2, 0], [2, 4]], atol=1e-12)
    assert rotated_bev_iou(np.zeros((0, 7)), np.zeros((3, 7))).shape == (0, 3)
    with pytest.raises(ValueError):
        rotated_bev_iou(np.zeros((2, 6)), np.zeros((2, 7)))


# ----------------------------------------------------------------------------- NMS
def test_rotated_nms_hand_cases():
    boxes = np.array([
        box(0, 0, 4, 2, 0),            # 0: score 0.9
        box(0.2, 0, 4, 2, 0),          # 1: IoU 0.905 with 0 -> suppressed
        box(4, 0, 4, 2, 0),            # 2: touching 0 -> kept
        box(0, 0, 4, 2, 0),            # 3: identical to 0, other class -> kept (class-aware)
        box(0, 0, 1, 1, 0),            # 4: IoU 1/8 with 0 -> kept at 0.2
    ])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([0, 0, 0, 1, 0])
    keep = rotated_nms(boxes, scores, 0.2, labels=labels)
    assert keep.tolist() == [0, 2, 3, 4]
    assert rotated_nms(boxes, scores, 0.1, labels=labels).tolist() == [0, 2, 3]
    # Class-agnostic: the identical box 3 goes too.
    assert rotated_nms(boxes, scores, 0.2).tolist() == [0, 2, 4]
    # Order by score, not by input position.
    keep = rotated_nms(boxes[[1, 0]], np.array([0.8, 0.9]), 0.2)
    assert keep.tolist() == [1]
    # Two unit squares at 45 deg (IoU 0.707) suppress at 0.5 but not at... any threshold >= 0.71.
    sq = np.array([box(0, 0, 1, 1, 0), box(0, 0, 1, 1, math.pi / 4)])
    assert rotated_nms(sq, np.array([0.5, 0.6]), 0.5).tolist() == [1]
    assert rotated_nms(sq, np.array([0.5, 0.6]), 0.75).tolist() == [1, 0]
    assert rotated_nms(np.zeros((0, 7)), np.zeros(0), 0.2).shape == (0,)


def test_circle_nms_hand_cases_chain():
    centres = np.array([[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [0.0, 5.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # 1 is within 2 m of 0 -> removed; 2 is 3 m from 0 and only near the *removed* 1 -> kept
    # (greedy NMS, not cluster removal).
    assert circle_nms(centres, scores, 2.0).tolist() == [0, 2, 3]
    assert circle_nms(centres, scores, 1.0).tolist() == [0, 1, 2, 3]
    # distance == radius suppresses
    assert circle_nms(centres, scores, 3.0).tolist() == [0, 3]
    assert circle_nms(centres, scores, 2.0, labels=np.array([0, 1, 0, 0])).tolist() == [0, 1, 2, 3]
    # Per-box radius: the kept box's radius counts.
    assert circle_nms(centres, scores, np.array([1.0, 5.0, 5.0, 5.0])).tolist() == [0, 1, 3]
    assert circle_nms(np.zeros((0, 2)), np.zeros(0), 1.0).shape == (0,)
    # Identical centres, tie in score: lower index wins.
    assert circle_nms(np.zeros((3, 2)), np.array([0.5, 0.5, 0.5]), 0.1).tolist() == [0]


# ----------------------------------------------------------------------------- targets
def test_gaussian_radius_reference_value():
    # CenterNet/CenterPoint form; for a 10x10 box, overlap 0.7 (by hand):
    # r1 = (20 + sqrt(400 - 4*30/1.7)) / 2 = 19.075, r2 = (40 + sqrt(1600 - 16*30)) / 2 = 36.733,
    # r3 = (-28 + sqrt(784 + 4*2.8*30)) / 2 = (-28 + sqrt(1120)) / 2 = 2.7332 -> min = r3.
    r = float(gaussian_radius(10.0, 10.0, 0.7))
    assert r == pytest.approx((-28 + math.sqrt(1120)) / 2, abs=1e-9)
    np.testing.assert_allclose(gaussian_radius(np.array([10.0, 20.0]), np.array([10.0, 4.0]),
                                               0.7)[0], r)


def test_build_targets_shapes_and_peaks():
    c = ModelContract()
    Wb, Hb = c.bev_size
    boxes = np.array([box(10.3, 1.1, 4.5, 1.9, 0.4), box(30.0, -5.0, 0.8, 0.8, -2.0),
                      box(-5.0, 0.0, 4, 2, 0),              # behind the range -> skipped
                      box(20.0, 0.0, 4, 2, np.nan)])         # non-finite -> skipped
    labels = np.array([0, 2, 0, 1])
    t = build_targets(boxes, labels, c, max_objs=8)
    assert t["heatmap"].shape == (4, Hb, Wb) and t["heatmap"].dtype == np.float32
    assert t["num_objs"] == 2 and t["num_skipped"] == 2
    assert t["mask"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    # Box 0: u = 10.3 / 0.64 = 16.09 -> ix 16; v = (1.1 + 40.96) / 0.64 = 65.72 -> iy 65.
    assert t["indices"][0] == 65 * Wb + 16
    np.testing.assert_allclose(t["offset"][0], [10.3 / 0.64 - 16, 42.06 / 0.64 - 65], atol=1e-5)
    assert t["heatmap"][0, 65, 16] == 1.0 and t["heatmap"][0].sum() > 1.0
    assert t["heatmap"][2].reshape(-1)[t["indices"][1]] == 1.0
    np.testing.assert_allclose(t["size"][0], np.log([4.5, 1.9, 1.5]), atol=1e-6)
    np.testing.assert_allclose(t["rot"][1], [math.sin(-2.0), math.cos(-2.0)], atol=1e-6)
    assert t["heatmap"][1].max() == 0 and t["heatmap"][3].max() == 0
    empty = build_targets(np.zeros((0, 7)), np.zeros(0), c)
    assert empty["num_objs"] == 0 and empty["heatmap"].max() == 0


def _fake_outputs(t, c):
    """Write targets into network-shaped output maps at the peak cells."""
    K = len(c.detection_classes)
    Wb, Hb = c.bev_size
    out = {"heatmap": t["heatmap"][None].copy(),
           "offset": np.zeros((1, 2, Hb, Wb), np.float32),
           "z": np.zeros((1, 1, Hb, Wb), np.float32),
           "size": np.zeros((1, 3, Hb, Wb), np.float32),
           "rot": np.zeros((1, 2, Hb, Wb), np.float32)}
    n = t["num_objs"]
    iy, ix = np.divmod(t["indices"][:n], Wb)
    for name in ("offset", "z", "size", "rot"):
        out[name][0][:, iy, ix] = t[name][:n].T
    assert out["heatmap"].shape == (1, K, Hb, Wb)
    return out


@pytest.mark.parametrize("as_torch", [False, True])
def test_decode_round_trip(as_torch):
    c = ModelContract()
    rng = np.random.default_rng(7)
    n = 12
    # Well separated centres on a 6 m lattice inside the range.
    cells = rng.choice(13 * 13, n, replace=False)
    x = 3.0 + (cells % 13) * 6.0 + rng.uniform(-1, 1, n)
    y = -36.0 + (cells // 13) * 6.0 + rng.uniform(-1, 1, n)
    boxes = np.stack([x, y, rng.uniform(-2, 1, n), rng.uniform(0.5, 6, n),
                      rng.uniform(0.5, 2.5, n),
                      rng.uniform(1, 3, n),
                      rng.uniform(-math.pi, math.pi, n)], 1).astype(np.float32)
    labels = rng.integers(0, 4, n)
    out = _fake_outputs(build_targets(boxes, labels, c), c)
    if as_torch:
        out = {k: torch.from_numpy(v) for k, v in out.items()}
    det = decode_detections(out, c, PostProcessConfig(nms="none", score_threshold=0.5))
    assert len(det) == n
    assert det.boxes.dtype == np.float32 and det.labels.dtype == np.int64
    d = np.hypot(det.boxes[:, None, 0] - boxes[None, :, 0],
                 det.boxes[:, None, 1] - boxes[None, :, 1])
    match = d.argmin(1)
    assert sorted(match.tolist()) == list(range(n))
    half_cell = 0.5 * c.pillar_size[0] * c.bev_stride
    assert d[np.arange(n), match].max() < half_cell
    assert d[np.arange(n), match].max() < 1e-4           # exact inverse up to float32
    gt = boxes[match]
    np.testing.assert_allclose(det.boxes[:, 2:6], gt[:, 2:6], atol=1e-4)
    dyaw = normalize_yaw(det.boxes[:, 6] - gt[:, 6])
    assert np.abs(dyaw).max() < 0.01
    assert np.all((det.boxes[:, 6] >= -math.pi) & (det.boxes[:, 6] < math.pi))
    assert np.array_equal(det.labels, labels[match])
    np.testing.assert_allclose(det.scores, 1.0)


def test_decode_thresholds_topk_and_nms():
    c = ModelContract()
    K = len(c.detection_classes)
    Wb, Hb = c.bev_size
    heat = np.zeros((1, K, Hb, Wb), np.float32)
    heat[0, 0, 10, 10] = 0.9      # Car
    heat[0, 0, 10, 12] = 0.8      # Car 2 cells = 1.28 m away -> circle NMS (2 m) removes it
    heat[0, 2, 10, 12] = 0.4      # Pedestrian, same cell, other class -> survives NMS
    heat[0, 1, 50, 50] = 0.35     # Truck below its own threshold 0.5
    heat[0, 0, 11, 10] = 0.85     # not a peak (neighbour 0.9) -> never decoded
    out = {"heatmap": heat, "offset": np.full((1, 2, Hb, Wb), 0.5, np.float32),
           "z": np.zeros((1, 1, Hb, Wb), np.float32), "size": np.zeros((1, 3, Hb, Wb), np.float32),
           "rot": np.stack([np.zeros((Hb, Wb)), np.ones((Hb, Wb))])[None].astype(np.float32)}
    cfg = PostProcessConfig(score_threshold={"Truck": 0.5, "Pedestrian": 0.3, "Car": 0.3})
    det = decode_detections(out, c, cfg)
    np.testing.assert_allclose(det.scores, [0.9, 0.4])
    assert det.labels.tolist() == [0, 2]
    np.testing.assert_allclose(det.boxes[0, :2], [10.5 * 0.64, -40.96 + 10.5 * 0.64], atol=1e-5)
    np.testing.assert_allclose(det.boxes[0, 3:6], 1.0)
    det = decode_detections(out, c, PostProcessConfig(nms="none", score_threshold=0.3))
    np.testing.assert_allclose(det.scores, [0.9, 0.8, 0.4, 0.35])
    det = decode_detections(out, c, PostProcessConfig(nms="none", score_threshold=0.3, top_k=2))
    assert len(det) == 2
    det = decode_detections(out, c, PostProcessConfig(nms="rotated_iou", score_threshold=0.3,
                                                      max_detections=2))
    np.testing.assert_allclose(det.scores, [0.9, 0.8])   # 1 m boxes 1.28 m apart do not overlap
    empty = decode_detections({**out, "heatmap": np.zeros_like(heat)}, c)
    assert len(empty) == 0 and empty.boxes.shape == (0, 7)
    with pytest.raises(ValueError, match="unknown classes"):
        decode_detections(out, c, PostProcessConfig(score_threshold={"Bus": 0.2}))
    with pytest.raises(KeyError):
        decode_detections({"heatmap": heat}, c)
    with pytest.raises(ValueError):
        PostProcessConfig(nms="soft")
    with pytest.raises(ValueError):
        PostProcessConfig(iou_threshold=0.9)


def test_yaw_wrap():
    y = normalize_yaw(np.array([math.pi, -math.pi, 3 * math.pi / 2, 0.1]))
    np.testing.assert_allclose(y, [-math.pi, -math.pi, -math.pi / 2, 0.1])


# ----------------------------------------------------------------------------- dense heads
def test_drivable_mask_and_semantic_ids():
    p = np.array([[[[0.2, 0.5], [0.7, 0.49]]]], np.float32)
    m = drivable_mask(p)
    assert m.dtype == np.uint8 and m.tolist() == [[0, 1], [1, 0]]
    assert drivable_mask(torch.from_numpy(p[0, 0]), threshold=0.6).tolist() == [[0, 0], [1, 0]]
    logits = np.zeros((1, 3, 2, 4), np.float32)
    logits[0, 2, 0, :2] = 1.0
    logits[0, 1, 1, :] = 2.0
    ids = semantic_ids(logits)
    assert ids.dtype == np.uint8 and ids.tolist() == [[2, 2, 0, 0], [1, 1, 1, 1]]
    big = semantic_ids(torch.from_numpy(logits), out_size=(8, 4))
    assert big.shape == (4, 8)
    assert big[:2, :4].tolist() == [[2, 2, 2, 2]] * 2 and np.all(big[2:] == 1)
    rnd = np.random.default_rng(0).normal(size=(1, 38, 17, 23)).astype(np.float32)
    assert np.array_equal(semantic_ids(rnd), np.argmax(rnd[0], 0).astype(np.uint8))
    with pytest.raises(ValueError):
        semantic_ids(np.zeros((2, 3, 2, 2)))


def test_build_targets_truncation_and_invalid_labels():
    c = ModelContract()
    boxes = np.array([box(5.0 + 3 * i, 0.0, 4, 2, 0.0) for i in range(5)])
    labels = np.array([0, 7, 1, -1, 3])            # 7 and -1 are not detection classes
    t = build_targets(boxes, labels, c, max_objs=2)
    assert (t["num_objs"], t["num_skipped"], t["num_truncated"]) == (2, 2, 1)
    assert t["labels"].tolist() == [0, 1] and t["mask"].tolist() == [1, 1]
    # Only kept objects are drawn on the heat map.
    assert t["heatmap"][3].max() == 0 and t["heatmap"][0].max() == 1 and t["heatmap"][1].max() == 1
    with pytest.raises(ValueError, match="labels"):
        build_targets(boxes, labels[:3], c)
