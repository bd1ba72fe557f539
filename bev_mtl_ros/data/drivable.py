"""BEV drivable-area labels from A2D2 lidar points painted with the camera's semantic labels.

A2D2 has no map or BEV road labels, so the drivable-area target of the BEV head is derived per
frame from what it does have: lidar points (view frame) with their pixel position in the
undistorted image (``row``/``col`` of the ``.npz``) and the semantic label image.

Algorithm (all vectorised, ``np.bincount`` / ``np.minimum.at``):

1. **Paint** every point with the class id at ``(round(row), round(col))`` of the undistorted
   semantic image; points outside the image, with non-finite row/col, or on pixels of the
   *ignored* classes below (or 255) are dropped.
2. **Grid**: the contract's BEV grid (``point_cloud_range``, ``pillar_size``): cell (iy, ix),
   flat index ``iy * grid_w + ix``; points outside the range are dropped.
3. **Ground points** (per-cell lowest-point rule): a point is a ground point when its z is within
   ``ground_band`` (default 0.3 m) of the lowest painted point of its cell. This keeps the road
   surface under overhanging objects and drops car bodies, poles and walls above it, without
   assuming a flat road.
4. **Vote**: a cell with at least ``min_points`` ground points is **1 (drivable)** when at least
   ``drivable_fraction`` (default 0.5) of them lie on road-surface classes, else **0 (not
   drivable)**. Cells without painted ground points are **255 (ignored)**.
5. **Closing** (optional, ``closing_iterations`` >= 1, default 1): far from the car the lidar scan
   lines are further apart than a cell, leaving unobserved stripes. A binary closing (3x3, that
   many iterations) of the drivable mask and of the not-drivable mask fills *unobserved* cells
   covered by exactly one of the two closings; observed cells never change.

Road-surface (drivable) classes = ``contract.DRIVABLE_SEMANTIC_CLASSES``: RD normal street,
Drivable cobblestone, Slow drive area, Parking area, RD restricted area, Zebra crossing, Painted
driv. instr., Solid line, Dashed line. Every other class (Sidewalk, Non-drivable street, Curbstone,
Nature object, vehicles, ...) is not drivable. Ignored classes (points dropped, they say nothing
about the ground): Sky, Blurred area, Rain dirt, Ego car.

Note: a cell whose only visible surface is an object (e.g. the roof of a car that hides the road)
is labelled 0: the labels describe the currently free drivable area seen by the sensors.

**Evaluation ground truth** (:func:`observed_drivable_labels`, scored by ``bev-mtl-ros evaluate``
as ``drivable.iou_observed``): steps 1-3, then only ground points of road-surface classes
(drivable) and of ground-level non-drivable classes (Sidewalk, Non-drivable street, Curbstone,
Nature object) vote; cells with neither are ignored and nothing is filled, so it scores only what
the labelled lidar saw of the ground.

Every point's class (:func:`frame_point_classes`) is the label pixel at its ``row``/``col``; on the
real A2D2 frames of ``test/data/real_a2d2`` these equal the projection of the (camera view frame)
points with the undistorted ``CamMatrix`` to 0.000 px, so they index the *undistorted* label.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from bev_mtl_ros.data.classes import (DRIVABLE_CLASS_IDS, GROUND_NOT_DRIVABLE_CLASS_IDS,
                                      UNKNOWN_ID)
from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES, ModelContract

#: Classes whose points are dropped before the vote (they carry no ground information).
IGNORED_CLASSES: Tuple[str, ...] = ("Sky", "Blurred area", "Rain dirt", "Ego car")
IGNORED_CLASS_IDS: Tuple[int, ...] = tuple(A2D2_SEMANTIC_CLASSES.index(n) for n in IGNORED_CLASSES)

#: Label values of the drivable grid.
NOT_DRIVABLE, DRIVABLE, IGNORE = 0, 1, 255


def _class_lut(ids) -> np.ndarray:
    """(256,) bool look-up table, True at the uint8 class ids ``ids``."""
    lut = np.zeros(256, dtype=bool)
    lut[list(ids)] = True
    return lut


#: per class id: drivable road surface; ground-level and not drivable; not voting at all (sky,
#: blur, ego car, unknown, ids outside the merged classes)
_DRIVABLE_LUT = _class_lut(DRIVABLE_CLASS_IDS)
_GROUND_NOT_DRIVABLE_LUT = _class_lut(GROUND_NOT_DRIVABLE_CLASS_IDS)
_IGNORE_LUT = _class_lut(IGNORED_CLASS_IDS + (UNKNOWN_ID,)
                         + tuple(range(len(A2D2_SEMANTIC_CLASSES), 256)))


def paint_points(row: np.ndarray, col: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """Class id of the semantic pixel under each point.

    Args:
        row, col: (N,) float pixel coordinates in the *undistorted* image (A2D2 ``row``/``col``).
        semantic: (H, W) uint8 class ids of the undistorted label image.
    Returns:
        (N,) uint8 class ids; 255 for points outside the image or with non-finite row/col.
    """
    h, w = semantic.shape[:2]
    r = np.asarray(row, dtype=np.float64)
    c = np.asarray(col, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(c)
    ri = np.zeros(r.shape, dtype=np.int64)
    ci = np.zeros(c.shape, dtype=np.int64)
    ri[ok] = np.rint(r[ok]).astype(np.int64)
    ci[ok] = np.rint(c[ok]).astype(np.int64)
    ok &= (ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)
    out = np.full(r.shape, UNKNOWN_ID, dtype=np.uint8)
    out[ok] = semantic[ri[ok], ci[ok]]
    return out


def _ground_points(points: np.ndarray, row: np.ndarray, col: np.ndarray, semantic: np.ndarray,
                   contract: ModelContract,
                   ground_band: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint, grid and mark the ground points of one frame (steps 1-3 of the module docstring).

    Returns:
        (cell (K,) int64 flat BEV cell index, cls (K,) uint8 class id, ground (K,) bool) of the
        K painted points inside the BEV range whose class is not ignored.
    Raises:
        ValueError when the array lengths disagree.
    """
    pts = np.asarray(points)
    n = pts.shape[0]
    if len(row) != n or len(col) != n:
        raise ValueError(f"points ({n}), row ({len(row)}) and col ({len(col)}) must have equal "
                         "length")
    gw, gh = contract.grid_size
    x0, y0, _, x1, y1, _ = contract.point_cloud_range
    dx, dy = contract.pillar_size
    empty = (np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, bool))
    if n == 0:
        return empty
    cls = paint_points(row, col, semantic)
    x = pts[:, 0].astype(np.float64)
    y = pts[:, 1].astype(np.float64)
    z = pts[:, 2].astype(np.float64)
    keep = ~_IGNORE_LUT[cls] & np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    keep &= (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    ix = np.floor((x[keep] - x0) / dx).astype(np.int64)
    iy = np.floor((y[keep] - y0) / dy).astype(np.int64)
    # guard float rounding at the upper edge
    ok = (ix >= 0) & (ix < gw) & (iy >= 0) & (iy < gh)
    cell = (iy * gw + ix)[ok]
    if cell.size == 0:
        return empty
    zk = z[keep][ok]
    zmin = np.full(gh * gw, np.inf)
    np.minimum.at(zmin, cell, zk)
    return cell, cls[keep][ok], zk <= zmin[cell] + ground_band


def drivable_labels(points: np.ndarray, row: np.ndarray, col: np.ndarray, semantic: np.ndarray,
                    contract: Optional[ModelContract] = None, ground_band: float = 0.3,
                    min_points: int = 1,
                    drivable_fraction: float = 0.5, closing_iterations: int = 1) -> np.ndarray:
    """BEV drivable-area label grid of one frame (see the module docstring for the algorithm).

    Args:
        points: (N, 3+) float x, y, z in the model lidar frame (A2D2 camera view frame), metres.
        row, col: (N,) pixel positions of the points in the undistorted image.
        semantic: (H, W) uint8 merged class ids of the undistorted label image.
        contract: grid definition (default ``ModelContract()``).
        ground_band: metres above the lowest painted point of a cell that still count as ground.
        min_points: ground points a cell needs to be labelled (else 255).
        drivable_fraction: share of road-surface ground points needed for 1.
        closing_iterations: 3x3 binary-closing iterations filling unobserved gaps (0 = off).
    Returns:
        (grid_h, grid_w) uint8: 1 drivable, 0 not drivable, 255 ignored (unobserved).
    Raises:
        ValueError when the array lengths disagree.
    """
    contract = contract or ModelContract()
    gw, gh = contract.grid_size
    labels = np.full(gh * gw, IGNORE, dtype=np.uint8)
    cell, ck, ground = _ground_points(points, row, col, semantic, contract, ground_band)
    if cell.size == 0:
        return labels.reshape(gh, gw)
    total = np.bincount(cell[ground], minlength=gh * gw)
    drv = np.bincount(cell[ground], weights=_DRIVABLE_LUT[ck[ground]].astype(np.float64),
                      minlength=gh * gw)
    observed = total >= max(1, int(min_points))
    is_drv = observed & (drv >= drivable_fraction * total)
    labels[observed] = NOT_DRIVABLE
    labels[is_drv] = DRIVABLE
    labels = labels.reshape(gh, gw)

    if closing_iterations and closing_iterations > 0:
        from scipy.ndimage import binary_closing
        st = np.ones((3, 3), dtype=bool)
        fill_d = binary_closing(labels == DRIVABLE, structure=st,
                                iterations=int(closing_iterations))
        fill_n = binary_closing(labels == NOT_DRIVABLE, structure=st,
                                iterations=int(closing_iterations))
        gap = labels == IGNORE
        labels[gap & fill_d & ~fill_n] = DRIVABLE
        labels[gap & fill_n & ~fill_d] = NOT_DRIVABLE
    return labels


def observed_drivable_labels(points: np.ndarray, row: np.ndarray, col: np.ndarray,
                             semantic: np.ndarray, contract: Optional[ModelContract] = None,
                             ground_band: float = 0.3,
                             drivable_fraction: float = 0.5) -> np.ndarray:
    """BEV drivable-area ground truth for evaluation: observed ground only, no gap filling.

    Steps 1-3 of the module docstring (paint, grid, per-cell ground band), then each cell votes
    with its ground points of two kinds only: *drivable* (road-surface classes,
    :data:`~bev_mtl_ros.data.classes.DRIVABLE_CLASS_IDS`, the training label's notion) and
    *ground-level not drivable*
    (:data:`~bev_mtl_ros.data.classes.GROUND_NOT_DRIVABLE_CLASSES`: Sidewalk, Non-drivable
    street, Curbstone, Nature object). A cell is **1** when at least ``drivable_fraction`` of
    those points are drivable, **0** otherwise, and **255 (ignored)** when it has none: cells
    with no labelled point, or whose lowest points are objects (vehicles, people, walls, poles,
    Speed bumper) that say nothing certain about the ground. Unlike :func:`drivable_labels` (the
    training label) nothing is filled by closing, and object-covered cells are not 0.

    Args:
        points, row, col, semantic, contract, ground_band, drivable_fraction: as
            :func:`drivable_labels`.
    Returns:
        (grid_h, grid_w) uint8: 1 drivable, 0 not drivable, 255 ignored.
    Raises:
        ValueError when the array lengths disagree.
    """
    contract = contract or ModelContract()
    gw, gh = contract.grid_size
    labels = np.full(gh * gw, IGNORE, dtype=np.uint8)
    cell, ck, ground = _ground_points(points, row, col, semantic, contract, ground_band)
    drv_pt = ground & _DRIVABLE_LUT[ck]
    counted = drv_pt | (ground & _GROUND_NOT_DRIVABLE_LUT[ck])
    total = np.bincount(cell[counted], minlength=gh * gw)
    drv = np.bincount(cell[drv_pt], minlength=gh * gw)
    observed = total > 0
    labels[observed] = NOT_DRIVABLE
    labels[observed & (drv >= drivable_fraction * total)] = DRIVABLE
    return labels.reshape(gh, gw)


def frame_row_col(frame) -> Tuple[np.ndarray, np.ndarray]:
    """Return the undistorted pixel (row, col) of every lidar point of an A2D2Frame.

    The ``.npz``'s ``row``/``col`` (A2D2: the point's pixel in the undistorted image, equal to
    :func:`~bev_mtl_ros.data.calibration.project_view_points` with ``CamMatrix`` on the real
    frames); points whose row/col are missing (NaN) are projected with the camera's
    ``CamMatrix``.

    Returns:
        (row (N,), col (N,)) float pixel coordinates (NaN for points behind the camera).
    """
    row, col = frame.row, frame.col
    bad = ~(np.isfinite(row) & np.isfinite(col))
    if bad.any():
        from bev_mtl_ros.data.calibration import project_view_points
        r, c, _ = project_view_points(frame.points[bad], frame.calibration.cam_matrix)
        row = row.astype(np.float64).copy()
        col = col.astype(np.float64).copy()
        row[bad], col[bad] = r, c
    return row, col


def frame_point_classes(frame) -> Optional[np.ndarray]:
    """Semantic class of every lidar point of an A2D2Frame: its pixel in the label image.

    Returns:
        (N,) uint8 A2D2 merged class ids (255 = outside the label or unlabelled), or None when
        the frame has no label image.
    """
    if frame.semantic is None:
        return None
    row, col = frame_row_col(frame)
    return paint_points(row, col, frame.semantic)


def frame_observed_drivable_labels(frame, contract: Optional[ModelContract] = None,
                                   **kw) -> Optional[np.ndarray]:
    """Compute :func:`observed_drivable_labels` of an A2D2Frame (None without a label image)."""
    if frame.semantic is None:
        return None
    row, col = frame_row_col(frame)
    return observed_drivable_labels(frame.points, row, col, frame.semantic, contract, **kw)


def frame_drivable_labels(frame, contract: Optional[ModelContract] = None,
                          **kw) -> Optional[np.ndarray]:
    """Compute :func:`drivable_labels` of an :class:`~bev_mtl_ros.data.a2d2.A2D2Frame`.

    Needs the frame's undistorted ``semantic``; returns None when the frame has no label image.
    Points whose ``row``/``col`` are missing (NaN) are projected with the camera's
    ``CamMatrix`` (:func:`frame_row_col`).
    """
    if frame.semantic is None:
        return None
    row, col = frame_row_col(frame)
    return drivable_labels(frame.points, row, col, frame.semantic, contract, **kw)
