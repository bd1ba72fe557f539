"""BEV drivable-area labels on a hand-built frame.

The frame has known drivable / not-drivable / ignored cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bev_mtl_ros.data.drivable import (DRIVABLE, IGNORE, NOT_DRIVABLE, drivable_labels,
                                       observed_drivable_labels, paint_points)
from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES, ModelContract

ROAD = A2D2_SEMANTIC_CLASSES.index("RD normal street")
ZEBRA = A2D2_SEMANTIC_CLASSES.index("Zebra crossing")
SIDEWALK = A2D2_SEMANTIC_CLASSES.index("Sidewalk")
CAR = A2D2_SEMANTIC_CLASSES.index("Car")
SKY = A2D2_SEMANTIC_CLASSES.index("Sky")

C = ModelContract()
DX = C.pillar_size[0]
X0, Y0 = C.point_cloud_range[0], C.point_cloud_range[1]
GROUND = -1.78

# semantic image: one pixel column per class, so that col selects the class
CLASS_COL = {ROAD: 0, ZEBRA: 1, SIDEWALK: 2, CAR: 3, SKY: 4}
SEM = np.zeros((4, 6), np.uint8)
for k, c in CLASS_COL.items():
    SEM[:, c] = k
SEM[:, 5] = 255  # undistortion border (ignored)


def centre(iy, ix):
    return X0 + (ix + 0.5) * DX, Y0 + (iy + 0.5) * DX


class Builder:
    def __init__(self):
        self.p, self.r, self.c = [], [], []

    def add(self, iy, ix, cls, z=GROUND, n=1, row=1.0, col=None, jitter=0.05):
        x, y = centre(iy, ix)
        for k in range(n):
            self.p.append((x + jitter * (k % 3 - 1), y + jitter * ((k // 3) % 3 - 1), z))
            self.r.append(row)
            # rounds to the class column
            self.c.append(float(CLASS_COL[cls]) + 0.3 if col is None else col)

    def arrays(self):
        return np.array(self.p, np.float32), np.array(self.r), np.array(self.c)


def test_paint_points_rounding_and_outside():
    r = np.array([0.4, 3.4, -0.6, 1.0, np.nan, 1.0])
    c = np.array([0.4, 2.49, 0.0, 5.6, 1.0, 4.0])
    np.testing.assert_array_equal(paint_points(r, c, SEM), [ROAD, SIDEWALK, 255, 255, 255, SKY])


def test_hand_built_cells():
    b = Builder()
    b.add(100, 10, ROAD, n=3)                        # A: road -> 1
    b.add(100, 20, SIDEWALK, n=2)                    # B: sidewalk -> 0
    # D: road under a car body point -> 1 (lowest rule)
    b.add(100, 30, ROAD, n=3)
    b.add(100, 30, CAR, z=GROUND + 1.0, n=4)
    b.add(100, 40, ROAD, n=2)                        # E1: 2 road + 1 sidewalk -> 1
    b.add(100, 40, SIDEWALK, n=1)
    b.add(100, 50, ZEBRA, n=1)                       # E2: 1 zebra + 2 sidewalk -> 0
    b.add(100, 50, SIDEWALK, n=2)
    b.add(100, 60, SKY, n=3)                         # F: only sky points -> ignored
    b.add(100, 70, ROAD, n=2, row=-5.0)              # G: outside the image -> ignored
    b.add(100, 80, ROAD, n=2, col=5.0)               # H: undistortion border (255) -> ignored
    # I: car bumper within the band of the road -> majority car -> 0
    b.add(100, 90, CAR, z=GROUND + 0.2, n=2)
    b.add(100, 90, ROAD, n=1)
    pts, row, col = b.arrays()
    # a point outside the grid range is ignored, not wrapped
    pts = np.vstack([pts, [[-5.0, 0.0, GROUND], [200.0, 0.0, GROUND]]]).astype(np.float32)
    row = np.append(row, [1.0, 1.0])
    col = np.append(col, [0.0, 0.0])
    lab = drivable_labels(pts, row, col, SEM, C, closing_iterations=0)
    gw, gh = C.grid_size
    assert lab.shape == (gh, gw) and lab.dtype == np.uint8
    expect = {10: DRIVABLE, 20: NOT_DRIVABLE, 30: DRIVABLE, 40: DRIVABLE, 50: NOT_DRIVABLE,
              60: IGNORE, 70: IGNORE, 80: IGNORE, 90: NOT_DRIVABLE}
    for ix, v in expect.items():
        assert lab[100, ix] == v, (ix, lab[100, ix])
    labelled = {(iy, ix) for iy, ix in zip(*np.nonzero(lab != IGNORE))}
    assert labelled == {(100, ix) for ix, v in expect.items() if v != IGNORE}
    # a wider band makes the car points ground points too: D becomes not drivable (4 car vs 3 road)
    lab2 = drivable_labels(pts, row, col, SEM, C, ground_band=1.5, closing_iterations=0)
    assert lab2[100, 30] == NOT_DRIVABLE
    # min_points=3: B (2 points) becomes ignored, A (3) stays
    lab3 = drivable_labels(pts, row, col, SEM, C, min_points=3, closing_iterations=0)
    assert lab3[100, 20] == IGNORE and lab3[100, 10] == DRIVABLE


def test_observed_ground_truth_of_a_tiny_cloud():
    """Only road-surface vs ground-level non-drivable points vote; no filling, objects ignored."""
    b = Builder()
    b.add(60, 10, ROAD, n=3)                         # road -> 1
    b.add(60, 11, SIDEWALK, n=2)                     # sidewalk -> 0
    b.add(60, 13, ROAD, n=2)                         # 12 is an unobserved gap -> stays 255
    b.add(60, 20, CAR, n=3)                          # only car points -> 255 (training label: 0)
    b.add(60, 21, ROAD, n=1)                         # 1 road + 2 car bumper points -> 1
    b.add(60, 21, CAR, z=GROUND + 0.2, n=2)          # (the car does not vote; training: 0)
    b.add(60, 22, ZEBRA, n=1)                        # 1 zebra vs 1 sidewalk -> 1 (half is enough)
    b.add(60, 22, SIDEWALK, n=1)
    b.add(60, 23, ZEBRA, n=1)                        # 1 zebra vs 2 sidewalk -> 0
    b.add(60, 23, SIDEWALK, n=2)
    b.add(60, 24, ROAD, n=2)                         # road under a sidewalk-labelled point 1 m up
    b.add(60, 24, SIDEWALK, z=GROUND + 1.0, n=3)     # outside the ground band -> 1
    b.add(60, 25, SKY, n=2)                          # sky -> 255
    pts, row, col = b.arrays()
    obs = observed_drivable_labels(pts, row, col, SEM, C)
    expect = {10: DRIVABLE, 11: NOT_DRIVABLE, 12: IGNORE, 13: DRIVABLE, 20: IGNORE,
              21: DRIVABLE, 22: DRIVABLE, 23: NOT_DRIVABLE, 24: DRIVABLE, 25: IGNORE}
    assert {ix: int(obs[60, ix]) for ix in expect} == expect
    assert int((obs != IGNORE).sum()) == 7           # nothing else in the grid
    train = drivable_labels(pts, row, col, SEM, C, closing_iterations=1)
    assert train[60, 20] == NOT_DRIVABLE and train[60, 21] == NOT_DRIVABLE
    assert train[60, 12] == DRIVABLE                 # the training label fills the gap
    with pytest.raises(ValueError, match="equal length"):
        observed_drivable_labels(pts, row[:-1], col, SEM, C)


def test_closing_fills_only_unobserved_gaps():
    b = Builder()
    for ix in (10, 11, 13, 14):                      # gap at 12 between scan lines
        b.add(50, ix, ROAD, n=2)
    for ix in (30, 32):                              # gap at 31 between sidewalk cells
        b.add(50, ix, SIDEWALK, n=2)
    # 41 is observed as not drivable between road cells
    for ix in (40, 42):
        b.add(50, ix, ROAD, n=2)
    b.add(50, 41, SIDEWALK, n=2)
    pts, row, col = b.arrays()
    off = drivable_labels(pts, row, col, SEM, C, closing_iterations=0)
    on = drivable_labels(pts, row, col, SEM, C, closing_iterations=1)
    assert off[50, 12] == IGNORE and on[50, 12] == DRIVABLE
    assert off[50, 31] == IGNORE and on[50, 31] == NOT_DRIVABLE
    assert on[50, 41] == NOT_DRIVABLE                # observed cells never change
    changed = np.argwhere(on != off)
    assert {tuple(x) for x in changed} == {(50, 12), (50, 31)}


def test_empty_and_length_mismatch():
    lab = drivable_labels(np.zeros((0, 3), np.float32), np.zeros(0), np.zeros(0), SEM, C)
    assert (lab == IGNORE).all()
    with pytest.raises(ValueError, match="equal length"):
        drivable_labels(np.zeros((3, 3), np.float32), np.zeros(2), np.zeros(3), SEM, C)


def test_on_a2d2_format_frame(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_a2d2_reader import write_scene
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    from bev_mtl_ros.data.drivable import frame_drivable_labels
    write_scene(tmp_path, 1)
    f = A2D2Dataset(str(tmp_path)).load_frame(0)
    lab = frame_drivable_labels(f, C)
    # the test scene: road in the lower image except the left quarter (sidewalk)
    assert (lab == DRIVABLE).sum() > 50 and (lab == NOT_DRIVABLE).sum() > 5
    cls = paint_points(f.row, f.col, f.semantic)
    on_road = cls == ROAD
    ix = ((f.points[:, 0] - X0) / DX).astype(int)
    iy = ((f.points[:, 1] - Y0) / DX).astype(int)
    # most road-painted points' cells are drivable
    assert np.mean(lab[iy[on_road], ix[on_road]] == DRIVABLE) > 0.8


def test_on_generated_frame(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_a2d2_reader import generate_small
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    from bev_mtl_ros.data.drivable import frame_drivable_labels
    generate_small(tmp_path, frames=1)
    f = A2D2Dataset(str(tmp_path)).load_frame(0)
    lab = frame_drivable_labels(f, C)
    assert (lab == DRIVABLE).sum() > 100 and (lab == NOT_DRIVABLE).sum() > 10
    # the ego lane just ahead (x 5..15 m, |y| < 1 m) is road: drivable wherever observed and not
    # under a road user (the generator may put a car there: cells within 0.5 m of a box are
    # left out)
    from bev_mtl_ros.train.metrics import bev_distance_to_boxes
    ix0, ix1 = int((5 - X0) / DX), int((15 - X0) / DX)
    iy0, iy1 = int((-1 - Y0) / DX), int((1 - Y0) / DX)
    patch = lab[iy0:iy1, ix0:ix1]
    cx, cy = np.meshgrid(
        X0 + (np.arange(ix0, ix1) + 0.5) * DX, Y0 + (np.arange(iy0, iy1) + 0.5) * DX
    )
    free = (
        (bev_distance_to_boxes(np.stack([cx.ravel(), cy.ravel()], 1), f.boxes) > 0.5)
        .all(1)
        .reshape(patch.shape)
    )
    seen = (patch != IGNORE) & free
    assert seen.sum() > 0.3 * patch.size and (patch[seen] == DRIVABLE).mean() > 0.9
