"""Pillarization: known pillar assignment, decorations, drop counters, keep rules, collate."""

import numpy as np
import pytest
import torch

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.runtime.pillarize import PillarizeError, collate_pillars, pillarize


def small_contract(**kw):
    # 8 x 4 grid of 1 m pillars: x 0..8, y -2..2, z -2..2.
    base = dict(point_cloud_range=(0.0, -2.0, -2.0, 8.0, 2.0, 2.0), pillar_size=(1.0, 1.0),
                max_pillars=100, max_points_per_pillar=3, bev_stride=1, intensity_scale=0.5)
    base.update(kw)
    return ModelContract(**base)   # not validated: tiny grid on purpose


def test_assignment_and_decorations():
    c = small_contract()
    pts = np.array([
        [0.5, -1.5, 0.0, 10.0],    # cell (iy=0, ix=0)
        [0.7, -1.1, 1.0, 20.0],    # same cell
        [7.9, 1.9, -1.0, 4.0],     # cell (3, 7)
        [3.2, 0.4, 0.5, 2.0],      # cell (2, 3)
    ], dtype=np.float32)
    b = pillarize(pts, c)
    assert b.pillars.shape == (3, 3, 9) and b.pillars.dtype == torch.float32
    assert b.num_points.dtype == torch.int32
    # Pillars in ascending flat index: 0, 2*8+3=19, 3*8+7=31.
    assert b.coords.tolist() == [[0, 0], [2, 3], [3, 7]]
    assert b.num_points.tolist() == [2, 1, 1]
    p0 = b.pillars[0].numpy()
    mean = np.array([0.6, -1.3, 0.5])
    np.testing.assert_allclose(p0[0], [0.5, -1.5, 0.0, 5.0, -0.1, -0.2, -0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(p0[1, :4], [0.7, -1.1, 1.0, 10.0], atol=1e-6)
    np.testing.assert_allclose(p0[1, 4:7], np.array([0.7, -1.1, 1.0]) - mean, atol=1e-6)
    np.testing.assert_allclose(p0[1, 7:9], [0.2, 0.4], atol=1e-6)     # centre (0.5, -1.5)
    assert np.all(p0[2] == 0)                                          # zero padding
    p2 = b.pillars[2].numpy()
    np.testing.assert_allclose(p2[0], [7.9, 1.9, -1.0, 2.0, 0, 0, 0, 0.4, 0.4], atol=1e-5)
    # canvas_index is the inverse of coords; empty cells hold P.
    gw, gh = c.grid_size
    ci = b.canvas_index
    assert ci.shape == (gw * gh,) and ci.dtype == torch.int64
    flat = b.coords[:, 0] * gw + b.coords[:, 1]
    assert torch.equal(ci[flat], torch.arange(3))
    assert int((ci == 3).sum()) == gw * gh - 3
    assert b.stats.points_kept == 4 and b.stats.nonfinite_dropped == 0


def test_dropped_counts_nonfinite_and_range():
    c = small_contract()
    pts = np.array([
        [1.5, 0.5, 0.0, 1.0],
        [np.nan, 0.5, 0.0, 1.0],
        [1.5, np.inf, 0.0, 1.0],
        [1.5, 0.5, 0.0, -np.inf],      # non-finite intensity
        [8.0, 0.5, 0.0, 1.0],          # x == x_max: out
        [-0.01, 0.5, 0.0, 1.0],
        [1.5, 0.5, 2.0, 1.0],          # z == z_max: out
        [1.5, -2.0, -2.0, 1.0],        # lower bounds inclusive: in, cell (0, 1)
    ], dtype=np.float32)
    b = pillarize(pts, c)
    s = b.stats
    assert (s.points_in, s.nonfinite_dropped, s.out_of_range_dropped) == (8, 3, 3)
    assert s.points_kept == 2 and b.num_pillars == 2
    assert b.coords.tolist() == [[0, 1], [2, 1]]


def test_max_points_first_in_input_order():
    c = small_contract()
    pts = np.array([[0.5, 0.5, 0.1 * k, k] for k in range(5)], dtype=np.float32)
    b = pillarize(pts, c)
    assert b.num_points.tolist() == [3]
    np.testing.assert_allclose(b.pillars[0, :, 2].numpy(), [0.0, 0.1, 0.2], atol=1e-6)
    # Mean over the kept points only (z mean 0.1).
    np.testing.assert_allclose(b.pillars[0, :, 6].numpy(), [-0.1, 0.0, 0.1], atol=1e-6)
    assert b.stats.points_over_max_dropped == 2 and b.stats.points_kept == 3


def test_over_max_pillars_keeps_most_populated_ties_lower_index():
    c = small_contract(max_pillars=2, max_points_per_pillar=10)

    def cell(ix, iy):
        return [ix + 0.5, -2.0 + iy + 0.5, 0.0, 0.0]

    pts = ([cell(5, 3)] * 3 + [cell(1, 0)] * 2 + [cell(6, 0)] * 2 + [cell(0, 0)] * 1)
    b = pillarize(np.array(pts, np.float32), c)
    # Populations: flat 29 -> 3, flat 1 -> 2, flat 6 -> 2 (tie, higher index loses), flat 0 -> 1.
    assert b.coords.tolist() == [[0, 1], [3, 5]]
    assert b.num_points.tolist() == [2, 3]
    s = b.stats
    assert (s.pillars_occupied, s.pillars_dropped, s.points_in_dropped_pillars) == (4, 2, 3)
    assert s.points_kept == 5


def test_deterministic_and_torch_input_matches_numpy():
    c = ModelContract()
    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.uniform([0, -41, -3, 0], [82, 41, 3, 255], (5000, 4)),
                          rng.uniform([10, -1, -1, 0], [11, 0, 0, 255],
                                      (500, 4))]).astype(np.float32)
    a = pillarize(pts, c)
    b = pillarize(torch.from_numpy(pts.copy()), c)
    d = pillarize(pts.astype(np.float64), c)
    for other in (b, d):
        assert torch.equal(a.pillars, other.pillars)
        assert torch.equal(a.canvas_index, other.canvas_index)
        assert torch.equal(a.num_points, other.num_points)
        assert a.stats == other.stats
    assert int(a.num_points.sum()) == a.stats.points_kept
    assert a.pillars.shape[1:] == (c.max_points_per_pillar, c.num_decorated_features)


def test_empty_and_all_invalid_input():
    c = small_contract()
    for pts in (np.zeros((0, 4), np.float32), np.full((3, 4), np.nan, np.float32)):
        b = pillarize(pts, c)
        assert b.pillars.shape == (0, 3, 9)
        assert torch.all(b.canvas_index == 0)
        assert b.stats.points_kept == 0


def test_read_only_input_and_extra_columns():
    c = small_contract()
    pts = np.array([[0.5, 0.5, 0.0, 4.0, 99.0]], np.float32)
    pts.flags.writeable = False
    b = pillarize(pts, c)
    assert b.pillars[0, 0, 3].item() == pytest.approx(2.0)


def test_bad_input_raises():
    c = small_contract()
    with pytest.raises(PillarizeError, match="channels"):
        pillarize(np.zeros((5, 3), np.float32), c)
    with pytest.raises(PillarizeError, match="shape"):
        pillarize(np.zeros((5,), np.float32), c)
    with pytest.raises(PillarizeError):
        pillarize([[0, 0, 0, 0]], c)


def test_collate_offsets_canvas_index():
    c = small_contract()
    a = pillarize(np.array([[0.5, -1.5, 0, 0], [3.5, 0.5, 0, 0]], np.float32), c)
    b = pillarize(np.array([[7.5, 1.5, 0, 0]], np.float32), c)
    e = pillarize(np.zeros((0, 4), np.float32), c)
    pillars, num_points, canvas = collate_pillars([a, e, b])
    assert pillars.shape == (3, 3, 9) and num_points.tolist() == [1, 1, 1]
    assert canvas.shape == (3, 32)
    assert sorted(canvas[0][canvas[0] < 3].tolist()) == [0, 1]
    assert torch.all(canvas[1] == 3)
    assert canvas[2][canvas[2] < 3].tolist() == [2]
    assert int((canvas == 3).sum()) == 3 * 32 - 3
    # Each batch row addresses its own frame's pillar by flat cell.
    assert torch.equal(pillars[canvas[2, 31]], b.pillars[0])
    with pytest.raises(ValueError):
        collate_pillars([])


def test_matches_naive_reference_on_random_cloud():
    """Independent per-point reference (test-only Python loops) for a dense random cloud.

    Both limits are active.
    """
    c = small_contract(max_pillars=20, max_points_per_pillar=4)
    rng = np.random.default_rng(5)
    pts = rng.uniform([-1, -3, -3, 0], [9, 3, 3, 255], (400, 4)).astype(np.float32)
    b = pillarize(pts, c)
    cells = {}
    for k, p in enumerate(pts):
        if -2 <= p[1] < 2 and 0 <= p[0] < 8 and -2 <= p[2] < 2:
            f = int(np.floor(p[1] + 2)) * 8 + int(np.floor(p[0]))
            cells.setdefault(f, []).append(k)
    ranked = sorted(cells, key=lambda f: (-len(cells[f]), f))[:20]
    kept = sorted(ranked)
    assert (b.coords[:, 0] * 8 + b.coords[:, 1]).tolist() == kept
    for i, f in enumerate(kept):
        rows = pts[cells[f][:4]].astype(np.float64)
        mean = rows[:, :3].mean(0)
        centre = np.array([f % 8 + 0.5, f // 8 - 2 + 0.5])
        exp = (np.concatenate([rows[:, :3], rows[:, 3:4] * 0.5, rows[:, :3] - mean,
                               rows[:, :2] - centre], 1))
        n = len(rows)
        assert b.num_points[i] == n
        np.testing.assert_allclose(b.pillars[i, :n].numpy(), exp, atol=1e-5)
        assert torch.all(b.pillars[i, n:] == 0)
    s = b.stats
    assert s.pillars_occupied == len(cells) and s.pillars_dropped == len(cells) - 20
    assert s.points_in_dropped_pillars == sum(len(cells[f]) for f in cells if f not in kept)
    assert s.points_over_max_dropped == sum(max(0, len(cells[f]) - 4) for f in kept)
