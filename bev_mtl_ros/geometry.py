"""Box and yaw geometry shared by every layer: box corners, yaw <-> quaternion, rotated BEV IoU.

Pure numpy (no torch, no rclpy), so the node, the data tools, training and the tests all use the
one implementation.

Conventions
-----------
* A box is ``[x, y, z, l, w, h, yaw]`` (N, 7), in the frame of its points (x forward, y left, z
  up for the lidar / camera view frames of this package), metres and radians: (x, y, z) is the
  box *centre*, l is the extent along the heading, w across it, h along +z, and yaw is the
  rotation about +z, counter-clockwise from +x. Bird's-eye-view (BEV) functions also accept
  (N, 5) ``[x, y, l, w, yaw]``.
* Corner order (:data:`CORNER_SIGNS`): corners 0-3 are the bottom face counter-clockwise seen
  from above, starting at the local corner (+l/2, +w/2) (front-left), i.e. front-left,
  rear-left, rear-right, front-right; corners 4-7 are the top face, each above the bottom corner
  with index - 4. The BEV corners are the bottom face's (x, y). Other orders (A2D2's file order,
  the renderer's bit order) are index permutations of this one, kept by their users.
* Quaternions are (x, y, z, w), the order of ``geometry_msgs/Quaternion`` and scipy.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = [
    "CORNER_SIGNS", "BOX_EDGES", "box_corners_bev", "box_corners_3d", "normalize_yaw",
    "yaw_to_quaternion", "quaternion_to_yaw", "rotated_bev_iou",
]

#: (8, 3) float64 unit-box corner signs in this module's corner order (see the module docstring):
#: corner k of a box is ``centre + R(yaw) @ (CORNER_SIGNS[k] * [l, w, h] / 2)``.
CORNER_SIGNS = np.array([(1, 1, -1), (-1, 1, -1), (-1, -1, -1), (1, -1, -1),
                         (1, 1, 1), (-1, 1, 1), (-1, -1, 1), (1, -1, 1)], dtype=np.float64)
CORNER_SIGNS.flags.writeable = False

#: (12, 2) int64 corner index pairs of the box edges: bottom face, top face, then the 4 uprights.
BOX_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                      (0, 4), (1, 5), (2, 6), (3, 7)], dtype=np.int64)
BOX_EDGES.flags.writeable = False


def _boxes(boxes: np.ndarray, widths=(7,)) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] not in widths:
        want = " or ".join(f"(N, {w})" for w in widths)
        raise ValueError(f"boxes must be {want} [x, y, z, l, w, h, yaw] / [x, y, l, w, yaw], "
                         f"got shape {b.shape}")
    return b


def _bev5(boxes: np.ndarray) -> np.ndarray:
    """(N, 7) or (N, 5) boxes -> (N, 5) float64 [x, y, l, w, yaw]."""
    b = _boxes(boxes, (5, 7))
    return b[:, [0, 1, 3, 4, 6]] if b.shape[1] == 7 else b


def _rotate_add(lx, ly, yaw, cx, cy):
    """(N, K) local offsets rotated by (N,) yaw and added to the (N,) centre: two (N, K) arrays."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return (c * lx - s * ly) + cx[:, None], (s * lx + c * ly) + cy[:, None]


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """BEV (x, y) corners of rotated boxes, counter-clockwise from the front-left (+l/2, +w/2).

    Args:
        boxes: (N, 7) [x, y, z, l, w, h, yaw] or (N, 5) [x, y, l, w, yaw], any float dtype,
            metres / radians, in the boxes' frame.

    Returns:
        (N, 4, 2) float64 corners in the same frame; equal (bit for bit) to
        ``box_corners_3d(boxes)[:, :4, :2]`` for (N, 7) input.

    Raises:
        ValueError: ``boxes`` is not (N, 7) or (N, 5).
    """
    b = _bev5(boxes)
    lx = CORNER_SIGNS[None, :4, 0] * (0.5 * b[:, 2:3])
    ly = CORNER_SIGNS[None, :4, 1] * (0.5 * b[:, 3:4])
    x, y = _rotate_add(lx, ly, b[:, 4], b[:, 0], b[:, 1])
    return np.stack((x, y), axis=-1)


def box_corners_3d(boxes: np.ndarray) -> np.ndarray:
    """3D corners of yaw-rotated boxes in :data:`CORNER_SIGNS` order.

    Args:
        boxes: (N, 7) [x, y, z, l, w, h, yaw], any float dtype, metres / radians; z is the box
            centre.

    Returns:
        (N, 8, 3) float64 corners in the boxes' frame: 0-3 the bottom face (z - h/2)
        counter-clockwise from the front-left, 4-7 the top face (z + h/2) above them.

    Raises:
        ValueError: ``boxes`` is not (N, 7).
    """
    b = _boxes(boxes)
    local = CORNER_SIGNS[None] * (0.5 * b[:, None, 3:6])           # (N, 8, 3)
    x, y = _rotate_add(local[..., 0], local[..., 1], b[:, 6], b[:, 0], b[:, 1])
    return np.stack((x, y, local[..., 2] + b[:, 2:3]), axis=-1)


def normalize_yaw(yaw):
    """Wrap angles into [-pi, pi).

    Args:
        yaw: float or array of any shape, radians.

    Returns:
        float64 array of the same shape (0-d for a scalar), radians in [-pi, pi).
    """
    return np.mod(np.asarray(yaw, np.float64) + np.pi, 2 * np.pi) - np.pi


def yaw_to_quaternion(yaw) -> np.ndarray:
    """Return the rotation by ``yaw`` about +z as a unit quaternion (x, y, z, w).

    (x, y, z, w) = (0, 0, sin(yaw/2), cos(yaw/2)).

    Args:
        yaw: float or array of shape S, radians.

    Returns:
        float64 array of shape S + (4,), (x, y, z, w) order (``geometry_msgs/Quaternion``).
    """
    half = 0.5 * np.asarray(yaw, dtype=np.float64)
    z = np.zeros_like(half)
    return np.stack((z, z, np.sin(half), np.cos(half)), axis=-1)


def quaternion_to_yaw(q) -> np.ndarray:
    """Return the yaw about +z of quaternions.

    The z-y-x Euler yaw (exact for pure z rotations): ``atan2(2 (w z + x y), 1 - 2 (y^2 + z^2))``.

    Args:
        q: array-like of shape S + (4,), unit quaternions in (x, y, z, w) order.

    Returns:
        float64 array of shape S (0-d for one quaternion), radians in [-pi, pi].

    Raises:
        ValueError: the last axis does not have length 4.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 0 or q.shape[-1] != 4:
        raise ValueError(f"quaternions must have shape (..., 4) (x, y, z, w), got {q.shape}")
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


# ------------------------------------------------------------------------- rotated BEV IoU
def _pair_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact intersection area of P pairs of rotated rectangles, a/b (P, 5) [x, y, l, w, yaw].

    The intersection of two convex polygons is the convex polygon spanned by the vertices of each
    lying inside the other and the pairwise edge intersections (at most 4 + 4 + 16 candidates);
    its area is the shoelace sum of the valid candidates sorted by angle about their centroid.
    Fully vectorised over pairs (x and y kept in separate arrays).
    """
    P = a.shape[0]
    if P == 0:
        return np.zeros(0)
    ca, cb = box_corners_bev(a), box_corners_bev(b)                 # (P, 4, 2) each
    ax, ay, bx, by = ca[..., 0], ca[..., 1], cb[..., 0], cb[..., 1]
    tol = 1e-9 * (1.0 + max(np.abs(a[:, :4]).max(), np.abs(b[:, :4]).max()))

    def inside(px, py, box):
        dx, dy = px - box[:, 0:1], py - box[:, 1:2]
        c, s = np.cos(box[:, 4:5]), np.sin(box[:, 4:5])
        return ((np.abs(dx * c + dy * s) <= box[:, 2:3] / 2 + tol)
                & (np.abs(dy * c - dx * s) <= box[:, 3:4] / 2 + tol))

    in_a = inside(ax, ay, b)                                        # corners of a inside b (P, 4)
    in_b = inside(bx, by, a)
    # Edges p + t*r of a (rows) against q + u*s of b (columns): (P, 4, 4).
    rx, ry = (np.roll(ax, -1, 1) - ax)[:, :, None], (np.roll(ay, -1, 1) - ay)[:, :, None]
    sx, sy = (np.roll(bx, -1, 1) - bx)[:, None, :], (np.roll(by, -1, 1) - by)[:, None, :]
    qpx = bx[:, None, :] - ax[:, :, None]
    qpy = by[:, None, :] - ay[:, :, None]
    denom = rx * sy - ry * sx
    ok = np.abs(denom) > 1e-12
    safe = np.where(ok, denom, 1.0)
    t = (qpx * sy - qpy * sx) / safe
    u = (qpx * ry - qpy * rx) / safe
    e = 1e-9
    hit = ok & (t >= -e) & (t <= 1 + e) & (u >= -e) & (u <= 1 + e)
    px = np.concatenate((ax, bx, (ax[:, :, None] + t * rx).reshape(P, 16)), 1)   # (P, 24)
    py = np.concatenate((ay, by, (ay[:, :, None] + t * ry).reshape(P, 16)), 1)
    valid = np.concatenate((in_a, in_b, hit.reshape(P, 16)), 1)
    n = valid.sum(1)
    nn = np.maximum(n, 1)
    cx = np.where(valid, px, 0.0).sum(1) / nn
    cy = np.where(valid, py, 0.0).sum(1) / nn
    dx, dy = px - cx[:, None], py - cy[:, None]
    # Pseudo-angle (monotonic in the polar angle, in [-2, 2]); invalid points sort last.
    pa = np.copysign(1.0 - dx / np.maximum(np.abs(dx) + np.abs(dy), 1e-300), dy)
    order = np.argsort(np.where(valid, pa, 10.0), axis=1)
    sx_ = np.take_along_axis(px, order, 1)
    sy_ = np.take_along_axis(py, order, 1)
    sv = np.take_along_axis(valid, order, 1)
    sx_ = np.where(sv, sx_, sx_[:, :1])                             # pad with the first point
    sy_ = np.where(sv, sy_, sy_[:, :1])
    area = 0.5 * np.abs((sx_ * np.roll(sy_, -1, 1) - np.roll(sx_, -1, 1) * sy_).sum(1))
    return np.where(n >= 3, area, 0.0)


def _circles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) bool: circumscribed circles of a[i] and b[j] intersect (necessary for IoU > 0)."""
    ra = 0.5 * np.hypot(a[:, 2], a[:, 3])
    rb = 0.5 * np.hypot(b[:, 2], b[:, 3])
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    return dist <= ra[:, None] + rb[None, :]


def _iou_pairs(a: np.ndarray, b: np.ndarray, ii: np.ndarray, jj: np.ndarray,
               chunk: int = 65536) -> np.ndarray:
    """Return the IoU of the pairs (a[ii[k]], b[jj[k]]), (P,) float64 in [0, 1].

    Chunked to bound memory.
    """
    if ii.shape[0] == 0:
        return np.zeros(0)
    inter = np.concatenate([_pair_intersection(a[ii[k:k + chunk]], b[jj[k:k + chunk]])
                            for k in range(0, ii.shape[0], chunk)])
    union = np.abs(a[ii, 2] * a[ii, 3]) + np.abs(b[jj, 2] * b[jj, 3]) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.clip(iou, 0.0, 1.0)


def rotated_bev_iou(boxes_a: np.ndarray, boxes_b: np.ndarray,
                    candidates: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact bird's-eye-view IoU of rotated rectangles (convex polygon intersection, vectorised).

    Args:
        boxes_a: (N, 7) [x, y, z, l, w, h, yaw] or (N, 5) [x, y, l, w, yaw], any float dtype,
            metres / radians.
        boxes_b: (M, 7) or (M, 5), same convention and frame.
        candidates: optional (N, M) bool; the IoU is computed only where it is True and left 0
            elsewhere (NMS uses it to skip pairs that cannot suppress each other).

    Returns:
        (N, M) float64 IoU in [0, 1]; 0 where the union is empty (degenerate boxes). Pairs whose
        circumscribed circles do not overlap are 0 without computing the polygon.

    Raises:
        ValueError: a box array is not (K, 7) or (K, 5), or ``candidates`` is not (N, M).
    """
    a, b = _bev5(boxes_a), _bev5(boxes_b)
    N, M = a.shape[0], b.shape[0]
    iou = np.zeros((N, M), np.float64)
    if candidates is not None and np.shape(candidates) != (N, M):
        raise ValueError(f"candidates must be ({N}, {M}) bool, got {np.shape(candidates)}")
    if N == 0 or M == 0:
        return iou
    cand = _circles_overlap(a, b)
    if candidates is not None:
        cand &= np.asarray(candidates, dtype=bool)
    ii, jj = np.nonzero(cand)
    iou[ii, jj] = _iou_pairs(a, b, ii, jj)
    return iou
