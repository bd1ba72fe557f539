"""CenterPoint training targets for one frame: class heat maps and regression targets at peaks.

CenterPoint (Yin, Zhou, Kraehenbuehl, "Center-based 3D Object Detection and Tracking", CVPR 2021)
represents each box by a Gaussian peak at its BEV centre in a K-channel heat map, plus regression
maps read at the peak: sub-cell offset, height of the centre, log size and (sin, cos) of yaw.
The Gaussian radius follows CornerNet (Law & Deng, "CornerNet: Detecting Objects as Paired
Keypoints", ECCV 2018) in the form used by CenterNet/CenterPoint (``gaussian_radius`` below).

Cell conventions (exact inverse of :func:`bev_mtl_ros.runtime.postprocess.decode_detections`):
output cell size ``(cx, cy) = (dx * bev_stride, dy * bev_stride)`` metres; a box centre (x, y)
has continuous output coordinates ``u = (x - x_min) / cx``, ``v = (y - y_min) / cy``; its peak cell
is ``(iy, ix) = (floor(v), floor(u))``, flat index ``iy * Wb + ix``, and the offset target is
``(u - ix, v - iy)`` in [0, 1). Decoding: ``x = x_min + (ix + off_x) * cx``.
"""

from __future__ import annotations

from typing import Dict, Union

import numpy as np

from ..model.contract import ModelContract

__all__ = ["gaussian_radius", "build_targets", "bev_cell_size", "draw_gaussians"]


def bev_cell_size(contract: ModelContract):
    """(cx, cy): size of one detection-output cell in metres (pillar size * bev_stride)."""
    return (float(contract.pillar_size[0]) * contract.bev_stride,
            float(contract.pillar_size[1]) * contract.bev_stride)


def gaussian_radius(height: np.ndarray, width: np.ndarray, min_overlap: float = 0.1) -> np.ndarray:
    """Return CornerNet's Gaussian radius (Law & Deng 2018, Sec. 3.2).

    As implemented by CenterNet and CenterPoint: the smallest radius r such that a box whose
    corners are moved by r still has IoU >= ``min_overlap`` with the original, over three cases
    (both corners inside, both outside, one of each). Kept in the field's form
    (``(b + sqrt(b^2 - 4ac)) / 2``) so radii match CenterPoint's.

    Args:
        height, width: box extent in output cells (any broadcastable float arrays).
        min_overlap: IoU bound in (0, 1).

    Returns:
        float64 array of radii in cells (not rounded, not clipped).
    """
    h = np.asarray(height, np.float64)
    w = np.asarray(width, np.float64)
    o = float(min_overlap)
    b1 = h + w
    c1 = w * h * (1 - o) / (1 + o)
    r1 = (b1 + np.sqrt(np.maximum(b1 ** 2 - 4 * c1, 0))) / 2
    b2 = 2 * (h + w)
    c2 = (1 - o) * w * h
    r2 = (b2 + np.sqrt(np.maximum(b2 ** 2 - 16 * c2, 0))) / 2
    a3 = 4 * o
    b3 = -2 * o * (h + w)
    c3 = (o - 1) * w * h
    r3 = (b3 + np.sqrt(np.maximum(b3 ** 2 - 4 * a3 * c3, 0))) / 2
    return np.minimum(np.minimum(r1, r2), r3)


def build_targets(boxes: np.ndarray, labels: np.ndarray, contract: ModelContract,
                  min_radius: int = 2, gaussian_overlap: float = 0.1,
                  max_objs: int = 256) -> Dict[str, Union[np.ndarray, int]]:
    """Heat map and regression targets of one frame (CenterPoint, Yin et al. 2021).

    Args:
        boxes: (N, 7) float [x, y, z, length, width, height, yaw], model lidar frame, metres/rad.
        labels: (N,) int, index into ``contract.detection_classes``.
        contract: the model contract (range, pillar size, bev_stride, classes).
        min_radius: smallest Gaussian radius in output cells.
        gaussian_overlap: CornerNet IoU bound for the radius.
        max_objs: padding length of the per-object arrays; boxes beyond it are dropped (counted).

    Boxes are skipped (counted in ``num_skipped``) when the centre lies outside the BEV x/y range,
    the label is outside [0, K), any value is non-finite, or length/width/height <= 0.

    Returns:
        dict of numpy arrays (Hb, Wb = contract.bev_size[::-1], K = len(detection_classes)):
          heatmap (K, Hb, Wb) float32 in [0, 1], 1 at each object's peak cell;
          indices (max_objs,) int64 flat output-cell index ``iy * Wb + ix`` (0 where unused);
          mask (max_objs,) float32 1/0 (valid slot);
          offset (max_objs, 2) float32 (u - ix, v - iy) in [0, 1), output cells;
          z (max_objs, 1) float32 box-centre z, metres;
          size (max_objs, 3) float32 log(length, width, height), metres;
          rot (max_objs, 2) float32 (sin yaw, cos yaw);
          labels (max_objs,) int64 class index (0 where unused);
          num_objs, num_skipped, num_truncated: ints.

    Raises:
        ValueError: boxes not (N, 7) or labels not (N,).
    """
    boxes = (np.asarray(boxes, dtype=np.float64).reshape(-1, 7) if np.size(boxes)
             else np.zeros((0, 7)))
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape[0] != boxes.shape[0]:
        raise ValueError(f"build_targets: {boxes.shape[0]} boxes but {labels.shape[0]} labels")
    K = len(contract.detection_classes)
    Wb, Hb = contract.bev_size
    x0, y0 = float(contract.point_cloud_range[0]), float(contract.point_cloud_range[1])
    cx, cy = bev_cell_size(contract)

    out = _empty_targets(K, Hb, Wb, max_objs)
    u = (boxes[:, 0] - x0) / cx
    v = (boxes[:, 1] - y0) / cy
    ok = (np.isfinite(boxes).all(axis=1) & (labels >= 0) & (labels < K)
          & (boxes[:, 3] > 0) & (boxes[:, 4] > 0) & (boxes[:, 5] > 0)
          & (u >= 0) & (u < Wb) & (v >= 0) & (v < Hb))
    n_skipped = int((~ok).sum())
    sel = np.nonzero(ok)[0]
    n_trunc = max(0, sel.shape[0] - max_objs)
    sel = sel[:max_objs]
    n = sel.shape[0]
    out.update(num_objs=n, num_skipped=n_skipped, num_truncated=n_trunc)
    if n == 0:
        return out
    b, lab, u, v = boxes[sel], labels[sel], u[sel], v[sel]
    ix = np.minimum(np.floor(u).astype(np.int64), Wb - 1)
    iy = np.minimum(np.floor(v).astype(np.int64), Hb - 1)
    out["indices"][:n] = iy * Wb + ix
    out["mask"][:n] = 1.0
    out["offset"][:n] = np.stack((u - ix, v - iy), 1)
    out["z"][:n, 0] = b[:, 2]
    out["size"][:n] = np.log(b[:, 3:6])
    out["rot"][:n] = np.stack((np.sin(b[:, 6]), np.cos(b[:, 6])), 1)
    out["labels"][:n] = lab
    radius = gaussian_radius(b[:, 3] / cx, b[:, 4] / cy, gaussian_overlap)
    radius = np.maximum(int(min_radius), radius.astype(np.int64))             # (n,)
    draw_gaussians(out["heatmap"], lab, iy, ix, radius)
    return out


def _empty_targets(K: int, Hb: int, Wb: int, max_objs: int) -> Dict[str, np.ndarray]:
    """Return zeroed target arrays (see :func:`build_targets` for shapes and dtypes)."""
    return dict(
        heatmap=np.zeros((K, Hb, Wb), np.float32),
        indices=np.zeros((max_objs,), np.int64),
        mask=np.zeros((max_objs,), np.float32),
        offset=np.zeros((max_objs, 2), np.float32),
        z=np.zeros((max_objs, 1), np.float32),
        size=np.zeros((max_objs, 3), np.float32),
        rot=np.zeros((max_objs, 2), np.float32),
        labels=np.zeros((max_objs,), np.int64),
    )


def draw_gaussians(heat: np.ndarray, lab: np.ndarray, iy: np.ndarray, ix: np.ndarray,
                   radius: np.ndarray) -> None:
    """Draw one Gaussian peak per object into ``heat`` (K, Hb, Wb) float32, in place.

    Object i: class ``lab[i]``, peak cell (``iy[i]``, ``ix[i]``), integer radius ``radius[i]``
    cells, sigma = diameter / 6 (CenterNet's draw_umich_gaussian). All objects are drawn at once
    on (2R+1)^2 patches with R the largest radius, clipped to the map; overlaps combine by maximum.
    """
    _, Hb, Wb = heat.shape
    R = int(radius.max())
    d = np.arange(-R, R + 1)
    dyy, dxx = np.meshgrid(d, d, indexing="ij")                               # (S, S)
    sigma = (2 * radius + 1) / 6.0
    g = np.exp(-(dxx[None] ** 2 + dyy[None] ** 2) / (2 * sigma[:, None, None] ** 2))
    g[g < np.finfo(np.float32).eps * g.max()] = 0
    px = ix[:, None, None] + dxx[None]
    py = iy[:, None, None] + dyy[None]
    inside = ((np.abs(dxx)[None] <= radius[:, None, None])
              & (np.abs(dyy)[None] <= radius[:, None, None])
              & (px >= 0) & (px < Wb) & (py >= 0) & (py < Hb))
    k, _, _ = np.nonzero(inside)
    np.maximum.at(heat, (lab[k], py[inside], px[inside]), g[inside].astype(np.float32))
