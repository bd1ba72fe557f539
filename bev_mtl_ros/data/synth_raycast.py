"""Vectorised numpy ray casting for the synthetic A2D2 generator.

Rays against the ground, boxes and spheres of one frame of a
:class:`~bev_mtl_ros.data.synth_scene.Scene`.

Rays
----
Every ray is written ``r(t) = o + t * (1, p, q)`` in the (un-rotated) camera view frame, so the
ray parameter ``t`` is the depth x. For the camera (undistorted ``CamMatrix``), pixel (row i,
col j) has ``p = -(j - cx) / fx`` and ``q = -(i - cy) / fy`` -- the inverse of A2D2's
projection ``col = cx - fx*y/x``, ``row = cy - fy*z/x``. p depends on the column only and q on the
row only, so the slab tests below are separable (x/y slabs per column, z slab per row). For the
lidar, rays are written the same way in each scanner's own frame (z = its spin axis, which is
tilted on A2D2's rig) and rotated into the view frame by :attr:`RayGrid.rot`: beam b at azimuth
a has ``p = tan(a)``, ``q = tan(elev_b) / cos(a)``.

Primitives: the ground (the solid below one or two planes, a cambered road: :func:`ground_t`),
yaw-rotated boxes (slab test in the box frame, Kay & Kajiya 1986) and spheres (quadratic). Each
primitive is tested only on the rectangle of rays covering its projection: the box corners
(clipped to the near plane by intersecting the box edges with it) give the (p, q) range. Depth
test across primitives.

What a hit looks like (class, colour, reflectance) is :mod:`bev_mtl_ros.data.synth_surface`; the
camera and the lidar rig that cast these rays are :mod:`bev_mtl_ros.data.synth_camera` and
:mod:`bev_mtl_ros.data.synth_lidar`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.synth_scene import GROUND_Z, Scene
from bev_mtl_ros.geometry import CORNER_SIGNS, box_corners_3d

#: Primitive index values in hit buffers.
SKY, GROUND = -1, -2

# 12 edges of a box as pairs of corner indices (corners = all sign combinations, see _corners)
_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                  dtype=np.float64)
_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)
                   if np.sum(_SIGNS[i] != _SIGNS[j]) == 1])
# index of each _SIGNS corner in bev_mtl_ros.geometry.CORNER_SIGNS order
_FROM_GEOMETRY_ORDER = np.array([np.flatnonzero((CORNER_SIGNS == s).all(1))[0] for s in _SIGNS])


@dataclass
class FramePrims:
    """Primitives of one frame in the current camera view frame (scene frame minus ego position).

    Boxes (B): c (B,3), h (B,3) half extents, yaw, cls uint8, mat, col (B,3) float32, aux, obj
    (object index, -1 for scenery). Spheres (S): c, r, cls, mat, col, obj.
    """

    box_c: np.ndarray
    box_h: np.ndarray
    box_yaw: np.ndarray
    box_cls: np.ndarray
    box_mat: np.ndarray
    box_col: np.ndarray
    box_aux: np.ndarray
    box_obj: np.ndarray
    sph_c: np.ndarray
    sph_r: np.ndarray
    sph_cls: np.ndarray
    sph_mat: np.ndarray
    sph_col: np.ndarray
    sph_obj: np.ndarray
    ego: np.ndarray
    road: object
    ground: np.ndarray = field(default_factory=lambda: np.array([[GROUND_Z, 0.0, 0.0]]))

    @property
    def n_boxes(self) -> int:
        return int(self.box_c.shape[0])


def frame_prims(scene: Scene, f: int,
                x_range: Tuple[float, float] = (-40.0, 160.0)) -> Tuple[FramePrims, np.ndarray]:
    """Primitives of frame ``f`` in that frame's camera view frame.

    Returns:
        (FramePrims, object poses (M, 4) [x, y, z, yaw] in the view frame of every road user).
    """
    ego = scene.ego_position(f)
    st = scene.static
    poses = scene.object_poses(f)
    poses_v = poses.copy()
    poses_v[:, :3] -= ego
    bc, bh, by, bcls, bmat, bcol, baux, bobj = ([st.box_c - ego], [st.box_h], [st.box_yaw],
                                                [st.box_cls], [st.box_mat],
                                                [st.box_col], [st.box_aux],
                                                [np.full(len(st.box_yaw), -1, np.int32)])
    for m, o in enumerate(scene.objects):
        x, y, z, yaw = poses_v[m]
        if not (x_range[0] < x < x_range[1]):
            continue
        c, s = np.cos(yaw), np.sin(yaw)
        off = np.array([p.offset for p in o.parts], dtype=np.float64)
        cen = np.stack([x + c * off[:, 0] - s * off[:, 1], y + s * off[:, 0] + c * off[:, 1], z
                        + off[:, 2]], axis=1)
        n = len(o.parts)
        bc.append(cen)
        bh.append(np.array([p.half for p in o.parts], dtype=np.float64))
        by.append(np.full(n, yaw))
        bcls.append(np.array([p.cls for p in o.parts], dtype=np.uint8))
        bmat.append(np.array([p.mat for p in o.parts], dtype=np.int16))
        bcol.append(np.array([p.colour for p in o.parts], dtype=np.float32))
        baux.append(np.zeros(n, np.float32))
        bobj.append(np.full(n, m, np.int32))
    box_c = np.concatenate(bc)
    # cull scenery far behind / ahead (boxes entirely outside the x range)
    box_h = np.concatenate(bh)
    ext = np.abs(box_h[:, :2]).max(axis=1) * 1.5
    keep_b = (box_c[:, 0] + ext > -5.0) & (box_c[:, 0] - ext < x_range[1])
    sph_c = st.sph_c - ego
    keep_s = (sph_c[:, 0] + st.sph_r > -5.0) & (sph_c[:, 0] - st.sph_r < x_range[1])
    fp = FramePrims(box_c=box_c[keep_b], box_h=box_h[keep_b], box_yaw=np.concatenate(by)[keep_b],
                    box_cls=np.concatenate(bcls)[keep_b], box_mat=np.concatenate(bmat)[keep_b],
                    box_col=np.concatenate(bcol)[keep_b], box_aux=np.concatenate(baux)[keep_b],
                    box_obj=np.concatenate(bobj)[keep_b], sph_c=sph_c[keep_s],
                    sph_r=st.sph_r[keep_s],
                    sph_cls=st.sph_cls[keep_s], sph_mat=st.sph_mat[keep_s],
                    sph_col=st.sph_col[keep_s],
                    sph_obj=np.full(int(keep_s.sum()), -1, np.int32), ego=ego, road=scene.road,
                    ground=scene.road.ground_planes())
    return fp, poses_v


def box_corner_points(c: np.ndarray, h: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Return the (B, 8, 3) float64 corners of yaw-rotated boxes, in _SIGNS order.

    Centres c (B, 3), half extents h (B, 3), yaw (B,) radians
    (:func:`bev_mtl_ros.geometry.box_corners_3d`, reordered).
    """
    boxes = np.concatenate((c, 2.0 * h, np.asarray(yaw)[:, None]), axis=1)
    return box_corners_3d(boxes)[:, _FROM_GEOMETRY_ORDER]


def pq_ranges(corners: np.ndarray, origin: np.ndarray, near: float) -> np.ndarray:
    """(p, q) ranges of boxes seen from ``origin`` after clipping them to the plane x = near.

    Args:
        corners: (B, 8, 3) box corners (view frame), in _SIGNS order.
        origin: (3,) ray origin. near: clip plane distance (x, relative to origin).
    Returns:
        (B, 4) [p_min, p_max, q_min, q_max]; rows of boxes entirely behind the plane are NaN.
    """
    rel = corners - origin
    x = rel[..., 0]
    front = x >= near
    a, b = rel[:, _EDGES[:, 0]], rel[:, _EDGES[:, 1]]          # (B, 12, 3)
    xa, xb = a[..., 0], b[..., 0]
    cross = (xa >= near) != (xb >= near)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(cross, (near - xa) / (xb - xa), 0.0)
    pts_e = a + s[..., None] * (b - a)
    pts = np.concatenate([rel, pts_e], axis=1)                 # (B, 20, 3)
    valid = np.concatenate([front, cross], axis=1)
    xs = np.maximum(pts[..., 0], near)
    p = pts[..., 1] / xs
    q = pts[..., 2] / xs
    out = np.stack([np.where(valid, p, np.inf).min(1), np.where(valid, p, -np.inf).max(1),
                    np.where(valid, q, np.inf).min(1), np.where(valid, q, -np.inf).max(1)], axis=1)
    out[~valid.any(axis=1)] = np.nan
    return out


@dataclass
class RayGrid:
    """A (H, W) grid of rays ``o + t (1, p, q)``.

    Attributes:
        origin: (3,) float64. p: (W,) per column, strictly decreasing. q: (H, 1) (camera) or (H, W)
        (lidar); row_key: (H,) strictly decreasing per-row key equal to q (camera) or
        tan(elevation) (lidar); col_cos: (W,) cos(azimuth) for the lidar (None for the camera).
        near: minimum t. rot: (3,3) rotation taking grid-frame directions to the view frame (None =
        identity): a ray's view-frame direction is ``rot @ (1, p, q)`` (tilted lidar scanners).
    """

    origin: np.ndarray
    p: np.ndarray
    q: np.ndarray
    row_key: np.ndarray
    col_cos: Optional[np.ndarray]
    near: float
    rot: Optional[np.ndarray] = None

    def directions(
        self, p: np.ndarray, q: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """View-frame direction components (dx, dy, dz) of rays (p, q) (broadcast arrays)."""
        if self.rot is None:
            return np.ones_like(p * q), p + 0 * q, q + 0 * p
        R = self.rot
        return (R[0, 0] + R[0, 1] * p + R[0, 2] * q, R[1, 0] + R[1, 1] * p + R[1, 2] * q,
                R[2, 0] + R[2, 1] * p + R[2, 2] * q)

    def to_grid(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) view-frame points -> grid frame relative to the origin."""
        rel = pts - self.origin
        return rel if self.rot is None else rel @ self.rot

    @property
    def shape(self) -> Tuple[int, int]:
        return int(self.row_key.shape[0]), int(self.p.shape[0])

    def window(self, r: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
        """Return the rows/cols [r0, r1) x [c0, c1) of the rays inside a (p, q) range.

        r = [pmin, pmax, qmin, qmax]; None when no ray is inside.
        """
        if np.isnan(r).any():
            return None
        pm, pM, qm, qM = r
        neg_p = -self.p
        c0 = int(np.searchsorted(neg_p, -pM - 1e-9, "left"))
        c1 = int(np.searchsorted(neg_p, -pm + 1e-9, "right"))
        if c1 <= c0:
            return None
        if self.col_cos is not None:
            cmin = float(self.col_cos[c0:c1].min())
            qm, qM = min(qm, qm * cmin), max(qM, qM * cmin)
        neg_k = -self.row_key
        r0 = int(np.searchsorted(neg_k, -qM - 1e-9, "left"))
        r1 = int(np.searchsorted(neg_k, -qm + 1e-9, "right"))
        if r1 <= r0:
            return None
        return r0, r1, c0, c1


@dataclass
class Hits:
    """Per-ray hit buffers (H, W).

    t (depth along x, inf = none), prim (box index, n_boxes + sphere index, GROUND or SKY), face
    (box face: axis*2 + (0 for + side, 1 for - side)).
    """

    t: np.ndarray
    prim: np.ndarray
    face: np.ndarray


def ground_t(o: np.ndarray, dx, dy, dz, planes: np.ndarray) -> np.ndarray:
    """Ray parameter t of the first hit of rays ``o + t (dx, dy, dz)`` with the ground.

    The ground is the solid below all planes ``z = a + bx x + by y`` (rows [a, bx, by] of
    ``planes``, view frame): one plane = a flat or cross-sloped road, two = a cambered road whose
    crown is their intersection. The origin must lie above every plane. A ray enters the solid
    at the largest of its per-plane parameters and only when it descends relative to every plane.

    Args: o (3,); dx, dy, dz broadcastable arrays; planes (K, 3) float64.
    Returns: t (broadcast shape), inf where the ground is not hit.
    """
    t = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for a, bx, by in np.asarray(planes, dtype=np.float64):
            den = dz - bx * dx - by * dy
            tk = np.where(den < -1e-9, (a + bx * o[0] + by * o[1] - o[2]) / den, np.inf)
            t = tk if t is None else np.maximum(t, tk)
    return t


def cast(grid: RayGrid, fp: FramePrims, far: float = 1000.0,
         coverage: Optional[Dict[int, int]] = None) -> Hits:
    """Intersect every ray of ``grid`` with the ground, boxes and spheres of ``fp`` (nearest hit).

    Args:
        grid: the rays. fp: the frame's primitives. far: maximum depth.
        coverage: if a dict is given, it receives object index -> number of rays hitting the
            object when ignoring all other primitives (for occlusion).
    Returns:
        :class:`Hits`.
    """
    H, W = grid.shape
    hits = Hits(t=np.full((H, W), np.inf, dtype=np.float64),
                prim=np.full((H, W), SKY, dtype=np.int32),
                face=np.zeros((H, W), dtype=np.int8))
    _cast_ground(grid, fp, far, hits)
    # per object: the hit masks of its boxes, each on its window (r0, c0, mask)
    masks: Dict[int, List[Tuple[int, int, np.ndarray]]] = {}
    if fp.n_boxes:
        ranges = pq_ranges(
            grid.to_grid(box_corner_points(fp.box_c, fp.box_h, fp.box_yaw)), np.zeros(3),
            grid.near
        )
        for i in range(fp.n_boxes):
            win = grid.window(ranges[i])
            if win is None:
                continue
            hit = _cast_box(grid, fp, i, win, far, hits)
            ob = int(fp.box_obj[i])
            if hit is not None and coverage is not None and ob >= 0:
                masks.setdefault(ob, []).append((win[0], win[2], hit))
    _cast_spheres(grid, fp, far, hits)
    if coverage is not None:
        for ob, lst in masks.items():
            coverage[ob] = _union_count(lst)
    return hits


def _cast_ground(grid: RayGrid, fp: FramePrims, far: float, hits: Hits) -> None:
    """Write the ground hits of every ray into ``hits`` (which must still be empty)."""
    H, W = grid.shape
    o = grid.origin
    q_full = np.broadcast_to(grid.q, (H, W))
    # ground: the solid below every plane z = a + bx x + by y of fp.ground (a cambered road)
    if grid.rot is None:
        tg = ground_t(o, 1.0, grid.p[None, :], q_full, fp.ground)
    else:
        tg = ground_t(o, *grid.directions(grid.p[None, :], q_full), fp.ground)
    g = (tg > grid.near) & (tg < far)
    hits.t[g] = tg[g]
    hits.prim[g] = GROUND


def _cast_box(grid: RayGrid, fp: FramePrims, i: int, win: Tuple[int, int, int, int],
              far: float, hits: Hits) -> Optional[np.ndarray]:
    """Slab-test box ``i`` on the rays of window ``win`` = (r0, r1, c0, c1).

    Nearer hits update ``hits`` (t, prim = i, face). Returns the box's (rows, cols) bool hit mask
    on the window, ignoring other primitives, or None when no ray hits it.
    """
    r0, r1, c0, c1 = win
    o = grid.origin
    pw = grid.p[None, c0:c1]
    qw = grid.q[r0:r1, c0:c1] if grid.q.shape[1] > 1 else grid.q[r0:r1]
    cs, sn = np.cos(fp.box_yaw[i]), np.sin(fp.box_yaw[i])
    rel = o - fp.box_c[i]
    ox = cs * rel[0] + sn * rel[1]
    oy = -sn * rel[0] + cs * rel[1]
    oz = rel[2]
    hx, hy, hz = fp.box_h[i]
    if grid.rot is None:
        dx = cs + sn * pw
        dy = -sn + cs * pw
        dz = qw
    else:
        vx, vy, dz = grid.directions(pw, qw)
        dx = cs * vx + sn * vy
        dy = -sn * vx + cs * vy
    with np.errstate(divide="ignore", invalid="ignore"):
        ix, iy, iz = 1.0 / dx, 1.0 / dy, 1.0 / dz
        ax, bx = (-hx - ox) * ix, (hx - ox) * ix
        ay, by_ = (-hy - oy) * iy, (hy - oy) * iy
        az, bz = (-hz - oz) * iz, (hz - oz) * iz
    tnx, txx = np.minimum(ax, bx), np.maximum(ax, bx)
    tny, txy = np.minimum(ay, by_), np.maximum(ay, by_)
    tnz, txz = np.minimum(az, bz), np.maximum(az, bz)
    txy_n = np.maximum(tnx, tny)
    tmin = np.maximum(txy_n, tnz)
    tmax = np.minimum(np.minimum(txx, txy), txz)
    hit = (tmax >= tmin) & (tmin > grid.near) & (tmin < far)
    if not hit.any():
        return None
    sub_t = hits.t[r0:r1, c0:c1]
    upd = hit & (tmin < sub_t)
    if not upd.any():
        return hit
    tmin_b = np.broadcast_to(tmin, upd.shape)
    sub_t[upd] = tmin_b[upd]
    hits.prim[r0:r1, c0:c1][upd] = i
    # face: axis of the entering slab, side opposite to the ray direction
    axis = np.where(np.broadcast_to(tnz, upd.shape) >= np.broadcast_to(txy_n, upd.shape),
                    2, np.where(np.broadcast_to(tnx >= tny, upd.shape), 0, 1))
    dsel = np.where(
        axis == 0,
        np.broadcast_to(dx, upd.shape),
        np.where(axis == 1, np.broadcast_to(dy, upd.shape), np.broadcast_to(dz, upd.shape)),
    )
    fc = (axis * 2 + (dsel > 0)).astype(np.int8)
    hits.face[r0:r1, c0:c1][upd] = fc[upd]
    return hit


def _cast_spheres(grid: RayGrid, fp: FramePrims, far: float, hits: Hits) -> None:
    """Intersect the rays with every sphere of ``fp``.

    Nearer hits update ``hits`` (prim = n_boxes + sphere index).
    """
    ns = int(fp.sph_r.shape[0])
    if not ns:
        return
    o = grid.origin
    nb = fp.n_boxes
    cub = box_corner_points(fp.sph_c, np.repeat(fp.sph_r[:, None], 3, axis=1), np.zeros(ns))
    ranges = pq_ranges(grid.to_grid(cub), np.zeros(3), grid.near)
    for j in range(ns):
        win = grid.window(ranges[j])
        if win is None:
            continue
        r0, r1, c0, c1 = win
        pw = grid.p[None, c0:c1]
        qw = grid.q[r0:r1, c0:c1] if grid.q.shape[1] > 1 else grid.q[r0:r1]
        oc = o - fp.sph_c[j]
        og = oc if grid.rot is None else oc @ grid.rot
        a = 1.0 + pw * pw + qw * qw
        b = 2.0 * (og[0] + og[1] * pw + og[2] * qw)
        c = float(oc @ oc) - fp.sph_r[j] ** 2
        disc = b * b - 4 * a * c
        ok = disc >= 0
        ts = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        hit = ok & (ts > grid.near) & (ts < far)
        sub_t = hits.t[r0:r1, c0:c1]
        upd = hit & (ts < sub_t)
        if not upd.any():
            continue
        sub_t[upd] = ts[upd]
        hits.prim[r0:r1, c0:c1][upd] = nb + j


def _union_count(lst: List[Tuple[int, int, np.ndarray]]) -> int:
    """Count the rays in the union of window masks ``(r0, c0, mask)``."""
    r0 = min(x[0] for x in lst)
    c0 = min(x[1] for x in lst)
    r1 = max(x[0] + x[2].shape[0] for x in lst)
    c1 = max(x[1] + x[2].shape[1] for x in lst)
    m = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for rr, cc, h in lst:
        m[rr - r0:rr - r0 + h.shape[0], cc - c0:cc - c0 + h.shape[1]] |= h
    return int(m.sum())
