"""Vectorised numpy ray caster for the synthetic A2D2 generator: camera image, semantic label
image and a multi-beam lidar scan of a :class:`~bev_mtl_ros.data.synth_scene.Scene`.

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
yaw-rotated boxes (slab
test in the box frame, Kay & Kajiya 1986) and spheres (quadratic). Each primitive is tested only
on the rectangle of rays covering its projection: the box corners (clipped to the near plane by
intersecting the box edges with it) give the (p, q) range. Depth test across primitives.

Shading: Lambertian with a per-scene sun direction plus ambient, hard shadows (shadow rays
against boxes and tree crowns, :func:`shadow_mask`; none under an overcast sky), per-material
base colours and
procedural textures (asphalt noise hashed on world position, lane markings, window grids on
buildings, facade noise, glass, foliage, fence mesh, signal lamps), distance haze, then the
per-scene camera style (:class:`CameraStyle`: sky, exposure, white balance, gamma, vignetting,
blur, sensor noise). The label image is exactly the semantic class of the surface that each
pixel's ray hits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.synth_scene import (
    CID,
    GROUND_Z,
    MAT_BUILDING,
    MAT_FOLIAGE,
    MAT_GLASS,
    MAT_GRID,
    MAT_SIDEWALK,
    MAT_SIGN,
    MAT_SIGNAL,
    MAT_TYRE,
    Scene,
)
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

#: Median lidar reflectance (0..255) per semantic class id (default 15); each return gets a
#: log-normal spread around it (:attr:`LidarConfig.refl_sigma`). Chosen so that a frame's
#: percentiles are close to a real A2D2 frame's (5/25/50/75/95 = 2/5/13/28/59, a2d2-real-lidar.md):
#: dark asphalt and foliage, brighter paint, retro-reflective signs.
_REFL = np.full(256, 15.0)
for _n, _v in {
    "RD normal street": 6,
    "Solid line": 45,
    "Dashed line": 45,
    "Sidewalk": 11,
    "Curbstone": 16,
    "Nature object": 11,
    "Buildings": 21,
    "Car": 24,
    "Truck": 28,
    "Pedestrian": 10,
    "Bicycle": 15,
    "Poles": 30,
    "Traffic sign": 160,
    "Traffic signal": 24,
    "Sidebars": 60,
    "Grid structure": 18,
    "Traffic guide obj.": 38,
    "Obstacles / trash": 15,
}.items():
    _REFL[CID[_n]] = _v


@dataclass
class FramePrims:
    """Primitives of one frame in the current camera view frame (scene frame minus ego position).
    Boxes (B): c (B,3), h (B,3) half extents, yaw, cls uint8, mat, col (B,3) float32, aux, obj
    (object index, -1 for scenery). Spheres (S): c, r, cls, mat, col, obj."""

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


def _box_corners(c: np.ndarray, h: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(B, 8, 3) float64 corners in _SIGNS order of yaw-rotated boxes: centres c (B, 3), half
    extents h (B, 3), yaw (B,) radians (:func:`bev_mtl_ros.geometry.box_corners_3d`, reordered)."""
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
        """Rows/cols [r0, r1) x [c0, c1) of the rays inside a (p, q) range r = [pmin, pmax, qmin,
        qmax]."""
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
    """Per-ray hit buffers (H, W): t (depth along x, inf = none), prim (box index, n_boxes + sphere
    index, GROUND or SKY), face (box face: axis*2 + (0 for + side, 1 for - side))."""

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
    o = grid.origin
    q_full = np.broadcast_to(grid.q, (H, W))
    t = np.full((H, W), np.inf, dtype=np.float64)
    prim = np.full((H, W), SKY, dtype=np.int32)
    face = np.zeros((H, W), dtype=np.int8)
    # ground: the solid below every plane z = a + bx x + by y of fp.ground (a cambered road)
    if grid.rot is None:
        tg = ground_t(o, 1.0, grid.p[None, :], q_full, fp.ground)
    else:
        tg = ground_t(o, *grid.directions(grid.p[None, :], q_full), fp.ground)
    g = (tg > grid.near) & (tg < far)
    t[g] = tg[g]
    prim[g] = GROUND
    nb = fp.n_boxes
    obj_masks: Dict[int, Tuple[Tuple[int, int, int, int], np.ndarray]] = {}
    # boxes
    if nb:
        ranges = pq_ranges(
            grid.to_grid(_box_corners(fp.box_c, fp.box_h, fp.box_yaw)), np.zeros(3), grid.near
        )
        for i in range(nb):
            win = grid.window(ranges[i])
            if win is None:
                continue
            r0, r1, c0, c1 = win
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
                continue
            ob = int(fp.box_obj[i])
            if coverage is not None and ob >= 0:
                if ob not in obj_masks:
                    obj_masks[ob] = ([], [])  # type: ignore[assignment]
                obj_masks[ob][0].append((r0, c0, hit))  # type: ignore[index]
            sub_t = t[r0:r1, c0:c1]
            upd = hit & (tmin < sub_t)
            if not upd.any():
                continue
            tmin_b = np.broadcast_to(tmin, upd.shape)
            sub_t[upd] = tmin_b[upd]
            prim[r0:r1, c0:c1][upd] = i
            # face: axis of the entering slab, side opposite to the ray direction
            axis = np.where(np.broadcast_to(tnz, upd.shape) >= np.broadcast_to(txy_n, upd.shape),
                            2, np.where(np.broadcast_to(tnx >= tny, upd.shape), 0, 1))
            dsel = np.where(
                axis == 0,
                np.broadcast_to(dx, upd.shape),
                np.where(
                    axis == 1, np.broadcast_to(dy, upd.shape), np.broadcast_to(dz, upd.shape)
                ),
            )
            fc = (axis * 2 + (dsel > 0)).astype(np.int8)
            face[r0:r1, c0:c1][upd] = fc[upd]
    # spheres
    ns = int(fp.sph_r.shape[0])
    if ns:
        cub = _box_corners(fp.sph_c, np.repeat(fp.sph_r[:, None], 3, axis=1), np.zeros(ns))
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
            sub_t = t[r0:r1, c0:c1]
            upd = hit & (ts < sub_t)
            if not upd.any():
                continue
            sub_t[upd] = ts[upd]
            prim[r0:r1, c0:c1][upd] = nb + j
    if coverage is not None:
        for ob, (lst, _) in obj_masks.items():
            r0 = min(x[0] for x in lst)
            c0 = min(x[1] for x in lst)
            r1 = max(x[0] + x[2].shape[0] for x in lst)
            c1 = max(x[1] + x[2].shape[1] for x in lst)
            m = np.zeros((r1 - r0, c1 - c0), dtype=bool)
            for rr, cc, h in lst:
                m[rr - r0:rr - r0 + h.shape[0], cc - c0:cc - c0 + h.shape[1]] |= h
            coverage[ob] = int(m.sum())
    return Hits(t=t, prim=prim, face=face)


def _fmod(x: np.ndarray, m: float) -> np.ndarray:
    """x mod m for m > 0 (result in [0, m)), faster than np.mod for floats."""
    x = np.asarray(x)
    mm = x.dtype.type(m) if np.issubdtype(x.dtype, np.floating) else m
    return x - np.floor(x * (1 / mm)) * mm


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice cell (integer hash)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint32) * np.uint32(73856093)) \
            ^ (iy.astype(np.uint32) * np.uint32(19349663)) \
            ^ np.uint32((salt * 83492791) & 0xFFFFFFFF)
        h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
        h = h ^ (h >> np.uint32(16))
    return (h & np.uint32(0xFFFF)).astype(np.float32) * np.float32(1.0 / 65536.0)


def _value_noise(x: np.ndarray, y: np.ndarray, scale: float, salt: int = 0) -> np.ndarray:
    """Bilinearly interpolated lattice noise in [0, 1) at world coordinates (x, y) with cells of
    1/scale metres (smooth, unlike the blocky per-cell :func:`_hash01`)."""
    u = np.asarray(x, dtype=np.float32) * np.float32(scale)
    v = np.asarray(y, dtype=np.float32) * np.float32(scale)
    fu, fv = np.floor(u), np.floor(v)
    iu, iv = fu.astype(np.int32), fv.astype(np.int32)
    a, b = u - fu, v - fv
    a = a * a * (3 - 2 * a)
    b = b * b * (3 - 2 * b)
    h00, h10 = _hash01(iu, iv, salt), _hash01(iu + 1, iv, salt)
    h01, h11 = _hash01(iu, iv + 1, salt), _hash01(iu + 1, iv + 1, salt)
    top = h00 + (h10 - h00) * a
    bot = h01 + (h11 - h01) * a
    return top + (bot - top) * b


@dataclass
class Surface:
    """Per-ray surface attributes of the hits: points (N,3) view frame, cls (N,) uint8, normal
    (N,3), base colour (N,3) float32 in [0,1] (or None), reflectance (N,) float (or None),
    obj (N,) int32 object index (-1 scenery/ground/sky)."""

    points: np.ndarray
    cls: np.ndarray
    normal: np.ndarray
    colour: Optional[np.ndarray]
    reflect: Optional[np.ndarray]
    obj: np.ndarray


def surface(fp: FramePrims, o: np.ndarray, p: np.ndarray, q: np.ndarray, t: np.ndarray,
            prim: np.ndarray,
            face: np.ndarray, want_colour: bool, rot: Optional[np.ndarray] = None) -> Surface:
    """Semantic class, normal, base colour and reflectance of ray hits.

    Args: flat (N,) arrays p, q, t, prim, face of the hit rays (SKY entries allowed); o (3,);
        rot: the grid's rotation (:attr:`RayGrid.rot`), None = identity.
    """
    n = t.shape[0]
    dt = np.result_type(p.dtype, q.dtype, t.dtype)
    pts = np.empty((n, 3), dtype=dt)
    tt = np.where(np.isfinite(t), t, dt.type(0))
    if rot is None:
        pts[:, 0] = o[0] + tt
        pts[:, 1] = o[1] + tt * p
        pts[:, 2] = o[2] + tt * q
    else:
        for k in range(3):
            pts[:, k] = o[k] + tt * (rot[k, 0] + rot[k, 1] * p + rot[k, 2] * q)
    cls = np.full(n, CID["Sky"], dtype=np.uint8)
    normal = np.zeros((n, 3), dtype=np.float32)
    normal[:, 2] = 1.0
    obj = np.full(n, -1, dtype=np.int32)
    colour = np.zeros((n, 3), dtype=np.float32) if want_colour else None
    refl = np.zeros(n, dtype=np.float32)
    road = fp.road
    ego = fp.ego
    # ---- ground
    gm = prim == GROUND
    if gm.any():
        pg = pts[gm]
        gx, gy = pg[:, 0] + dt.type(ego[0]), pg[:, 1] + dt.type(ego[1])
        gcls, kind = road.ground_class(gx, gy)
        cls[gm] = gcls
        refl[gm] = _REFL[gcls]
        if want_colour:
            nz = _value_noise(gx, gy, 6.0) * 0.5 + _value_noise(gx, gy, 0.8, 1) * 0.5
            base = np.empty((gcls.shape[0], 3), dtype=np.float32)
            base[:] = road.asphalt
            base[kind == 1] = (0.92, 0.92, 0.9)
            base[kind == 2] = (0.6, 0.58, 0.56)
            base[kind == 3] = road.grass
            colour[gm] = base * (0.82 + 0.3 * nz[:, None])
    # ---- boxes
    nb = fp.n_boxes
    bm = (prim >= 0) & (prim < nb)
    if bm.any():
        idx = prim[bm]
        fc = face[bm].astype(np.int64)
        axis, neg = fc // 2, (fc % 2) == 1
        cs, sn = np.cos(fp.box_yaw).astype(dt)[idx], np.sin(fp.box_yaw).astype(dt)[idx]
        pb = pts[bm]
        rel = pb - fp.box_c.astype(dt)[idx]
        lx = cs * rel[:, 0] + sn * rel[:, 1]
        ly = -sn * rel[:, 0] + cs * rel[:, 1]
        lz = rel[:, 2]
        sgn = np.where(neg, -1.0, 1.0)
        nl = np.zeros((idx.shape[0], 3), dtype=np.float32)
        nl[np.arange(idx.shape[0]), axis] = sgn
        normal[bm, 0] = cs * nl[:, 0] - sn * nl[:, 1]
        normal[bm, 1] = sn * nl[:, 0] + cs * nl[:, 1]
        normal[bm, 2] = nl[:, 2]
        bcls = fp.box_cls[idx].copy()
        mat = fp.box_mat[idx]
        # sidewalks: kerb faces and a 0.2 m strip along the road side are "Curbstone"
        sw = mat == MAT_SIDEWALK
        if sw.any():
            hy = fp.box_h[idx, 1]
            aux = fp.box_aux[idx]
            near_road = (aux * ly) > (hy - 0.2)
            kerb = sw & ((axis != 2) | near_road)
            bcls[kerb] = CID["Curbstone"]
        cls[bm] = bcls
        obj[bm] = fp.box_obj[idx]
        r = _REFL[bcls].astype(np.float32)
        r[mat == MAT_GLASS] = 3.0
        r[mat == MAT_TYRE] = 2.5
        refl[bm] = r
        if want_colour:
            col = fp.box_col[idx].copy()
            wz = lz + fp.box_h[idx, 2]          # height above the box bottom
            # windows on building facades
            bl = (mat == MAT_BUILDING)
            if bl.any():
                u = _fmod(np.where(axis == 0, ly, lx), 3.2)
                v = _fmod(wz, 3.0)
                win = bl & (axis != 2) & (u > 0.9) & (u < 2.3) & (v > 1.0) & (v < 2.3) & (wz > 1.0)
                col[win] = (0.22, 0.27, 0.33)
                roof = bl & (axis == 2)
                col[roof] = col[roof] * 0.55
            sk = sw & (bcls == CID["Curbstone"])
            col[sk] = (0.72, 0.72, 0.7)
            tile = sw & ~sk & ((_fmod(lx, 0.5) < 0.03) | (_fmod(ly, 0.5) < 0.03))
            col[tile] = col[tile] * 0.8
            gl = mat == MAT_GLASS
            top = gl & (axis == 2)
            col[top] = (0.3, 0.3, 0.32)
            sign = (mat == MAT_SIGN) & (np.abs(ly) < 0.22) & (np.abs(lz) < 0.22)
            col[sign] = (0.95, 0.95, 0.95)
            fol = mat == MAT_FOLIAGE
            col[fol] = col[fol] * 0.9
            mesh = (mat == MAT_GRID) & (_fmod(lx + ly, 0.15) > 0.025) & (_fmod(wz, 0.15) > 0.025)
            col[mesh] = col[mesh] * 0.45 + 0.25
            lamp = (mat == MAT_SIGNAL) & (np.abs(np.where(axis == 0, ly, lx)) < 0.07) \
                & (_fmod(wz, 0.3) > 0.08) & (_fmod(wz, 0.3) < 0.22)
            col[lamp] = (0.9, 0.25, 0.1)
            fac = bl & (axis != 2)
            if fac.any():
                col[fac] = (
                    col[fac]
                    * (
                        0.85
                        + 0.3
                        * _value_noise(
                            np.where(axis == 0, ly, lx)[fac] + idx[fac] * 13.0, wz[fac], 1.5, 5
                        )
                    )[:, None]
                )
            ix = np.floor(pb[:, 0] * 3 + ego[0] * 3).astype(np.int32)
            iz = np.floor(pb[:, 2] * 3).astype(np.int32)
            col *= (0.9 + 0.15 * _hash01(ix + idx * 7, iz, 2))[:, None]
            colour[bm] = col
    # ---- spheres
    smk = prim >= nb
    if smk.any():
        j = prim[smk] - nb
        d = pts[smk] - fp.sph_c[j]
        nrm = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        normal[smk] = nrm
        cls[smk] = fp.sph_cls[j]
        refl[smk] = _REFL[fp.sph_cls[j]]
        obj[smk] = fp.sph_obj[j]
        if want_colour:
            ix = np.floor((pts[smk, 0] + ego[0]) * 4).astype(np.int64)
            iz = (np.floor(pts[smk, 2] * 4).astype(np.int64)
                  + np.floor(pts[smk, 1] * 4).astype(np.int64) * 131)
            colour[smk] = fp.sph_col[j] * (0.7 + 0.6 * _hash01(ix, iz, 3))[:, None]
    return Surface(points=pts, cls=cls, normal=normal, colour=colour, reflect=refl, obj=obj)


# ------------------------------------------------------------------------------------ camera
@dataclass
class CameraRender:
    """Undistorted camera rendering (``CamMatrix``): image (H,W,3) uint8 RGB, label (H,W) uint8
    class ids, depth (H,W) float32 (inf = sky), obj (H,W) int32 object index per pixel (-1 none),
    coverage {object index: pixels it would cover without occluders}."""

    image: np.ndarray
    label: np.ndarray
    depth: np.ndarray
    obj: np.ndarray
    coverage: Dict[int, int]


def camera_grid(K: np.ndarray, width: int, height: int) -> RayGrid:
    """Rays through the pixel centres (integer row/col) of the undistorted image with ``K``."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    p = -(np.arange(width, dtype=np.float64) - cx) / fx
    q = -(np.arange(height, dtype=np.float64) - cy) / fy
    return RayGrid(origin=np.zeros(3), p=p, q=q[:, None], row_key=q, col_cos=None, near=0.05)


def shadow_mask(fp: FramePrims, grid: RayGrid, pts: np.ndarray, normal: np.ndarray,
                valid: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Hard shadows: True where the ray from a surface point towards the sun hits a box or a
    sphere (tree crown).

    Args:
        fp: primitives (casters: every box except flat sidewalks, and every sphere).
        grid: the camera rays (for the screen-space window of each caster's shadow volume).
        pts, normal: (H, W, 3) float32 surface points and normals (view frame). valid: (H, W) bool.
        sun: (3,) unit vector towards the sun, sun[2] > 0.
    Returns:
        (H, W) bool.
    """
    H, W = valid.shape
    shadow = np.zeros((H, W), dtype=bool)
    s = np.asarray(sun, dtype=np.float64)
    if s[2] <= 0.05:
        return shadow
    casters = np.nonzero(fp.box_mat != MAT_SIDEWALK)[0]
    org = pts + normal * np.float32(0.02)
    # (C, 8, 3)
    corners = _box_corners(fp.box_c[casters], fp.box_h[casters], fp.box_yaw[casters])
    drop = (corners[..., 2] - GROUND_Z) / s[2]
    # shadow on the ground
    ground = corners - drop[..., None] * s
    allp = np.concatenate([corners, ground], axis=1)
    lo, hi = allp.min(axis=1), allp.max(axis=1)
    aabb = _box_corners((lo + hi) / 2, (hi - lo) / 2, np.zeros(casters.size))
    ranges = pq_ranges(aabb, grid.origin, grid.near)
    for k, i in enumerate(casters):
        win = grid.window(ranges[k])
        if win is None:
            continue
        r0, r1, c0, c1 = win
        v = valid[r0:r1, c0:c1]
        if not v.any():
            continue
        o = org[r0:r1, c0:c1]
        # python floats keep the per-pixel arithmetic in float32
        cs, sn = float(np.cos(fp.box_yaw[i])), float(np.sin(fp.box_yaw[i]))
        bx, by, bz = (float(v_) for v_ in fp.box_c[i])
        rx, ry, rz = o[..., 0] - bx, o[..., 1] - by, o[..., 2] - bz
        ox, oy = cs * rx + sn * ry, -sn * rx + cs * ry
        dx, dy, dz = (cs * float(s[0]) + sn * float(s[1]), -sn * float(s[0]) + cs * float(s[1]),
                      float(s[2]))
        hx, hy, hz = (float(v_) for v_ in fp.box_h[i])
        tmin = np.zeros(v.shape, dtype=np.float32)
        tmax = np.full(v.shape, np.inf, dtype=np.float32)
        for oo, d, h in ((ox, dx, hx), (oy, dy, hy), (rz, dz, hz)):
            if abs(d) < 1e-9:
                tmax = np.where(np.abs(oo) <= h, tmax, np.float32(-1.0))
                continue
            inv = 1.0 / d
            a, b = (-h - oo) * inv, (h - oo) * inv
            tmin = np.maximum(tmin, np.minimum(a, b))
            tmax = np.minimum(tmax, np.maximum(a, b))
        shadow[r0:r1, c0:c1] |= v & (tmax > tmin) & (tmax > 0)
    # tree crowns (spheres): the ray towards the sun meets the sphere ahead of the point
    ns = int(fp.sph_r.shape[0])
    if ns:
        r = fp.sph_r[:, None]
        cub = _box_corners(fp.sph_c, np.repeat(r, 3, axis=1), np.zeros(ns))
        drop = (cub[..., 2] - GROUND_Z) / s[2]
        allp = np.concatenate([cub, cub - drop[..., None] * s], axis=1)
        lo, hi = allp.min(axis=1), allp.max(axis=1)
        ranges = pq_ranges(
            _box_corners((lo + hi) / 2, (hi - lo) / 2, np.zeros(ns)), grid.origin, grid.near
        )
        sf = s.astype(np.float32)
        for j in range(ns):
            win = grid.window(ranges[j])
            if win is None:
                continue
            r0, r1, c0, c1 = win
            v = valid[r0:r1, c0:c1]
            if not v.any():
                continue
            oc = org[r0:r1, c0:c1] - fp.sph_c[j].astype(np.float32)
            b = oc @ sf
            c = np.einsum("...k,...k->...", oc, oc) - np.float32(fp.sph_r[j] ** 2)
            shadow[r0:r1, c0:c1] |= v & (b * b - c > 0) & ((b < 0) | (c < 0))
    return shadow


@dataclass
class CameraStyle:
    """Per-scene camera domain randomisation (Tobin et al. 2017, "Domain randomization for
    transferring deep neural networks from simulation to the real world").

    Attributes:
        sky: "clear" (blue gradient, hard sun shadows), "overcast" (grey clouds, soft light, no
            shadows) or "low_sun" (warm horizon, long shadows).
        exposure: brightness gain. white_balance: (3,) RGB gains. gamma: tone curve exponent.
        vignette: relative darkening at the image corners (0..1). blur_px: Gaussian blur sigma
            at 1920 px width (scaled with the image width). noise_sigma: sensor noise
            (0..255 units).
    """

    sky: str = "clear"
    exposure: float = 1.0
    white_balance: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0
    vignette: float = 0.0
    blur_px: float = 0.0
    noise_sigma: float = 2.0

    @staticmethod
    def sample(
        rng: np.random.Generator, sky: str = "clear", exposure: float = 1.0
    ) -> "CameraStyle":
        """Random style for a scene (``rng`` draws 8 numbers)."""
        wb = rng.uniform(0.93, 1.07, 3)
        return CameraStyle(
            sky=sky,
            exposure=float(exposure),
            white_balance=tuple(float(v) for v in wb / wb.mean()),
            gamma=float(rng.uniform(0.85, 1.15)),
            vignette=float(rng.uniform(0.05, 0.45)),
            blur_px=float(rng.uniform(0.0, 2.5)),
            noise_sigma=float(rng.uniform(1.0, 5.0)),
        )


_SKIES = {
    "clear": ((0.82, 0.88, 0.95), (0.35, 0.55, 0.85)),
    "overcast": ((0.8, 0.81, 0.83), (0.62, 0.64, 0.68)),
    "low_sun": ((0.98, 0.84, 0.64), (0.42, 0.56, 0.82)),
}


def render_camera(fp: FramePrims, K: np.ndarray, width: int, height: int, sun: np.ndarray,
                  rng: np.random.Generator, noise_sigma: float = 2.0, exposure: float = 1.0,
                  shadows: bool = True, style: Optional[CameraStyle] = None) -> CameraRender:
    """Render the undistorted RGB image and the pixel-exact semantic label image (Lambertian
    shading with hard sun shadows, see :func:`shadow_mask`), then apply ``style`` (sky, white
    balance, gamma, vignetting, blur, sensor noise; default: a clear sky with ``exposure`` and
    ``noise_sigma``). The label image is not affected by the style."""
    import cv2
    style = style or CameraStyle(exposure=exposure, noise_sigma=noise_sigma)
    overcast = style.sky == "overcast"
    grid = camera_grid(K, width, height)
    cov: Dict[int, int] = {}
    hits = cast(grid, fp, coverage=cov)
    H, W = height, width
    P = np.broadcast_to(grid.p.astype(np.float32)[None, :], (H, W)).reshape(-1)
    Q = np.broadcast_to(grid.q.astype(np.float32), (H, W)).reshape(-1)
    t = hits.t.astype(np.float32).reshape(-1)
    prim = hits.prim.reshape(-1)
    hit = prim != SKY
    srf = surface(fp, grid.origin, P[hit], Q[hit], t[hit], prim[hit], hits.face.reshape(-1)[hit],
                  True)
    label = np.full(H * W, CID["Sky"], dtype=np.uint8)
    label[hit] = srf.cls
    obj = np.full(H * W, -1, dtype=np.int32)
    obj[hit] = srf.obj
    # sky gradient by elevation (+ clouds when overcast)
    lo, hi = (np.array(c, np.float32) for c in _SKIES.get(style.sky, _SKIES["clear"]))
    elev = np.clip(Q / 0.6, 0.0, 1.0)[:, None]
    img = ((1 - elev) * lo + elev * hi).astype(np.float32)
    if overcast or style.sky == "clear":
        cl = (
            _value_noise(P * 6.0 + 3.0, Q * 12.0, 1.0, 9) * 0.6
            + _value_noise(P * 20.0, Q * 40.0, 1.0, 10) * 0.4
        )
        amt = np.float32(0.12 if overcast else 0.06)
        img = img * (1 - amt) + amt * cl[:, None] * np.float32(1.1)
    lam = np.clip(srf.normal @ sun.astype(np.float32), 0.0, 1.0)
    if shadows and not overcast:
        pts = np.zeros((H * W, 3), dtype=np.float32)
        nrm = np.zeros((H * W, 3), dtype=np.float32)
        pts[hit] = srf.points
        nrm[hit] = srf.normal
        lit = lam > 0
        valid = np.zeros(H * W, dtype=bool)
        valid[np.nonzero(hit)[0][lit]] = True
        sh = shadow_mask(fp, grid, pts.reshape(H, W, 3), nrm.reshape(H, W, 3), valid.reshape(H, W),
                         sun)
        lam = np.where(sh.reshape(-1)[hit], np.float32(0.0), lam)
    if overcast:
        shade = 0.72 + 0.18 * np.clip(srf.normal[:, 2], 0.0, 1.0)
    else:
        shade = 0.45 + 0.6 * lam
    c = srf.colour * shade[:, None]
    if style.sky == "low_sun":
        c = c * np.array([1.08, 0.98, 0.85], np.float32)
    haze_col = lo * np.float32(0.95)
    haze = (np.float32(1.0) - np.exp(t[hit] * np.float32(-1.0 / 350.0)))[:, None]
    img[hit] = c * (1 - haze) + haze * haze_col
    img = img.reshape(H, W, 3) * (
        np.array(style.white_balance, np.float32) * np.float32(style.exposure)
    )
    if style.vignette > 0:
        yy = (np.arange(H, dtype=np.float32) - H / 2) / (H / 2)
        xx = (np.arange(W, dtype=np.float32) - W / 2) / (W / 2)
        r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) * np.float32(0.5)
        img *= (np.float32(1.0) - np.float32(style.vignette) * r2)[..., None]
    img = np.power(np.clip(img, 0.0, 1.0), np.float32(style.gamma))
    sigma = style.blur_px * W / 1920.0
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img * np.float32(255.0) + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(
        style.noise_sigma
    )
    image = np.clip(img, 0, 255).astype(np.uint8)
    return CameraRender(image=image, label=label.reshape(H, W), depth=hits.t.astype(np.float32),
                        obj=obj.reshape(H, W), coverage=cov)


# ------------------------------------------------------------------------------------- lidar
#: A2D2's lidar names by ``lidar_id`` (the camera sidecar's ``lidar_ids``).
RIG_LIDARS: Tuple[str, ...] = (
    "front_left",
    "rear_right",
    "front_right",
    "front_center",
    "rear_left",
)


@dataclass
class LidarConfig:
    """The lidar rig model: A2D2's five Velodyne VLP-16 (Geyer et al. 2020, "A2D2: Audi Autonomous
    Driving Dataset"; VLP-16 data sheet: 16 beams at -15..+15 deg, 2 deg apart, 0.2 deg azimuth
    step at 10 Hz, ~100 m range, +-3 cm accuracy).

    Attributes:
        n_beams, elev_min_deg, elev_max_deg: beams evenly spaced in elevation (scanner frame).
        az_step_deg: azimuth step; az_max_deg: half-width of the cast azimuth range around the
            camera's forward direction (points outside the camera image are dropped anyway).
        max_range: metres. range_sigma: Gaussian range noise, metres. dropout: probability a return
            is lost at short range; weak returns are lost more often: the loss probability grows
            with (range / max_range)^2 / reflectivity (see :func:`scan_lidar`).
        sweep_us: duration of one 360 deg revolution (µs); a point's time is the frame time -
            azimuth/360 deg * sweep (azimuth 0 = the camera's forward direction).
        lidars: names (``lidars`` of cams_lidars.json) by ``lidar_id`` (index).
        refl_sigma: sigma of the log-normal reflectance spread per point.
    """

    n_beams: int = 16
    elev_min_deg: float = -15.0
    elev_max_deg: float = 15.0
    az_step_deg: float = 0.2
    az_max_deg: float = 80.0
    max_range: float = 100.0
    range_sigma: float = 0.03
    dropout: float = 0.1
    sweep_us: int = 100_000
    lidars: Tuple[str, ...] = RIG_LIDARS
    refl_sigma: float = 0.75


@dataclass
class LidarPose:
    """One scanner of the rig in the camera view frame: ``origin`` (3,) metres, ``rot`` (3,3)
    scanner frame (z = spin axis, x = the camera's forward direction projected on the scan plane)
    -> view frame; ``lidar_id`` (its index in :attr:`LidarConfig.lidars`), ``name``."""

    name: str
    lidar_id: int
    origin: np.ndarray
    rot: np.ndarray


def rig_poses(calibration, camera: str = "front_center",
              lidars: Tuple[str, ...] = RIG_LIDARS) -> Tuple[LidarPose, ...]:
    """Poses of the rig's scanners in ``camera``'s view frame from a parsed ``cams_lidars.json``
    (:class:`bev_mtl_ros.data.calibration.Calibration`): a lidar view's z axis is its spin axis
    (A2D2 views: x, y given, z = x cross y).

    Raises:
        KeyError when a lidar is not in the calibration.
    """
    out = []
    for k, name in enumerate(lidars):
        T = calibration.transform("lidar_" + name, camera)
        z = T[:3, 2] / np.linalg.norm(T[:3, 2])
        fwd = np.array([1.0, 0.0, 0.0])
        x = fwd - z * (fwd @ z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        out.append(LidarPose(name=name, lidar_id=k, origin=T[:3, 3].copy(),
                             rot=np.stack([x, y, z], axis=1)))
    return tuple(out)


@dataclass
class LidarScanSynth:
    """A scan in the A2D2 ``.npz`` layout plus per-point ground truth: ``arrays`` (the npz dict)
    and ``cls`` (N,) uint8 semantic class, ``obj`` (N,) int32 object index (-1 scenery)."""

    arrays: Dict[str, np.ndarray]
    cls: np.ndarray
    obj: np.ndarray


def _scan_one(fp: FramePrims, pose: LidarPose, cfg: LidarConfig, rng: np.random.Generator):
    """Cast one scanner; returns (points (N,3) view frame, cls, obj, reflectance f32, azimuth)."""
    elev = np.radians(np.linspace(cfg.elev_max_deg, cfg.elev_min_deg, cfg.n_beams))
    n_az = int(round(2 * cfg.az_max_deg / cfg.az_step_deg)) + 1
    az = np.radians(np.linspace(cfg.az_max_deg, -cfg.az_max_deg, n_az))
    p = np.tan(az)
    ca = np.cos(az)
    q = np.tan(elev)[:, None] / ca[None, :]
    o = np.asarray(pose.origin, dtype=np.float64)
    grid = RayGrid(origin=o, p=p, q=q, row_key=np.tan(elev), col_cos=ca, near=0.3, rot=pose.rot)
    hits = cast(grid, fp, far=cfg.max_range * 1.01)
    P = np.broadcast_to(p[None, :], q.shape)
    AZ = np.broadcast_to(az[None, :], q.shape)
    # column-major order = scan order (one azimuth column after the other)
    tt, pr, fc = hits.t.T.reshape(-1), hits.prim.T.reshape(-1), hits.face.T.reshape(-1)
    Pf, Qf, AZf = P.T.reshape(-1), q.T.reshape(-1), AZ.T.reshape(-1)
    norm = np.sqrt(1 + Pf * Pf + Qf * Qf)
    rng_true = tt * norm
    keep = (pr != SKY) & (rng_true <= cfg.max_range)
    idx = np.nonzero(keep)[0]
    srf = surface(fp, o, Pf[idx], Qf[idx], tt[idx], pr[idx], fc[idx], False, rot=pose.rot)
    refl = srf.reflect * np.exp(rng.normal(0.0, cfg.refl_sigma, idx.size)).astype(np.float32)
    # dropout: a base rate plus weak returns (far, dark) lost more often
    r = rng_true[idx]
    p_loss = cfg.dropout + 6.0 * (r / cfg.max_range) ** 2 / np.maximum(refl, 1.0)
    ok = rng.random(idx.size) >= p_loss
    idx, r, refl = idx[ok], r[ok], refl[ok]
    r_noisy = r + rng.normal(0.0, cfg.range_sigma, idx.size)
    d = np.stack([np.ones(idx.size), Pf[idx], Qf[idx]], axis=1) / norm[idx, None]
    pts = o + (d @ pose.rot.T) * r_noisy[:, None]
    return pts, srf.cls[ok], srf.obj[ok], refl, AZf[idx]


def scan_lidar(fp: FramePrims, K: np.ndarray, width: int, height: int, t_us: int, cfg: LidarConfig,
               rng: np.random.Generator, rig: Tuple[LidarPose, ...]) -> LidarScanSynth:
    """Scan the frame with every scanner of ``rig``, add range noise / dropout, keep the points
    inside the camera image and build the A2D2 npz arrays (see ``a2d2-format.md``), scanners in
    ``lidar_id`` order: points float64 (N,3) view frame; reflectance int64 0..255 (class base value
    x log-normal spread); timestamp int64 µs; row, col (undistorted image, ``col = cx - fx y/x``,
    ``row = cy - fy z/x``), depth (= x), distance (= ||point||), azimuth (= atan2(y, x), radians),
    lidar_id float64."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    parts = []
    for pose in rig:
        pts, cls, obj, refl, az = _scan_one(fp, pose, cfg, rng)
        x = pts[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            col = cx - fx * pts[:, 1] / x
            row = cy - fy * pts[:, 2] / x
        iv = (x > 0.1) & (col >= 0) & (col <= width - 1) & (row >= 0) & (row <= height - 1)
        ts = (int(t_us) - np.round(az[iv] / (2 * np.pi) * cfg.sweep_us)).astype(np.int64)
        parts.append((pts[iv], cls[iv], obj[iv], refl[iv], ts, row[iv], col[iv],
                      np.full(int(iv.sum()), float(pose.lidar_id))))
    pts, cls, obj, refl, ts, row, col, lid = (
        np.concatenate([pp[k] for pp in parts]) for k in range(8)
    )
    arrays = {
        "points": pts.astype(np.float64),
        "reflectance": np.clip(np.round(refl), 0, 255).astype(np.int64),
        "timestamp": ts,
        "row": row.astype(np.float64),
        "col": col.astype(np.float64),
        "depth": pts[:, 0].astype(np.float64),
        "distance": np.linalg.norm(pts, axis=1),
        "azimuth": np.arctan2(pts[:, 1], pts[:, 0]),
        "lidar_id": lid.astype(np.float64),
    }
    return LidarScanSynth(arrays=arrays, cls=cls, obj=obj)
