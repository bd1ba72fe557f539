"""Vectorised numpy ray caster for the synthetic A2D2 generator: camera image, semantic label
image and a multi-beam lidar scan of a :class:`~bev_mtl_ros.data.synth_scene.Scene`.

Rays
----
Every ray is written ``r(t) = o + t * (1, p, q)`` in the (un-rotated) camera view frame, so the
ray parameter ``t`` is the depth x. For the camera (undistorted ``CamMatrix``), pixel (row i,
col j) has ``p = -(j - cx) / fx`` and ``q = -(i - cy) / fy`` -- the inverse of A2D2's
projection ``col = cx - fx*y/x``, ``row = cy - fy*z/x``. p depends on the column only and q on the
row only, so the slab tests below are separable (x/y slabs per column, z slab per row). For the
lidar, beam b at azimuth a has ``p = tan(a)``, ``q = tan(elev_b) / cos(a)``.

Primitives: the ground plane z = GROUND_Z (t = (z_g - o_z) / q for q < 0), yaw-rotated boxes (slab
test in the box frame, Kay & Kajiya 1986) and spheres (quadratic). Each primitive is tested only
on the rectangle of rays covering its projection: the box corners (clipped to the near plane by
intersecting the box edges with it) give the (p, q) range. Depth test across primitives.

Shading: Lambertian with a per-scene sun direction plus ambient, hard shadows (shadow rays
against boxes, :func:`shadow_mask`), per-material base colours and
procedural textures (asphalt noise hashed on world position, lane markings, window grids on
buildings, glass, foliage), distance haze, sky gradient and small per-pixel sensor noise. The
label image is exactly the semantic class of the surface that each pixel's ray hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.synth_scene import (CID, GROUND_Z, MAT_BUILDING, MAT_FOLIAGE, MAT_GLASS,
                                          MAT_SIDEWALK, MAT_SIGN, MAT_TYRE, Scene)

#: Primitive index values in hit buffers.
SKY, GROUND = -1, -2

# 12 edges of a box as pairs of corner indices (corners = all sign combinations, see _corners)
_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)
                   if np.sum(_SIGNS[i] != _SIGNS[j]) == 1])

#: Lidar reflectance (0..255) per semantic class id (default 50) and ground kinds.
_REFL = np.full(256, 50.0)
for _n, _v in {"RD normal street": 22, "Solid line": 200, "Dashed line": 200, "Sidewalk": 45, "Curbstone": 70,
               "Nature object": 35, "Buildings": 65, "Car": 95, "Truck": 105, "Pedestrian": 40, "Bicycle": 70,
               "Poles": 120, "Traffic sign": 250}.items():
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

    @property
    def n_boxes(self) -> int:
        return int(self.box_c.shape[0])


def frame_prims(scene: Scene, f: int, x_range: Tuple[float, float] = (-40.0, 160.0)) -> Tuple[FramePrims, np.ndarray]:
    """Primitives of frame ``f`` in that frame's camera view frame.

    Returns:
        (FramePrims, object poses (M, 4) [x, y, z, yaw] in the view frame of every road user).
    """
    ego = scene.ego_position(f)
    st = scene.static
    poses = scene.object_poses(f)
    poses_v = poses.copy()
    poses_v[:, :3] -= ego
    bc, bh, by, bcls, bmat, bcol, baux, bobj = ([st.box_c - ego], [st.box_h], [st.box_yaw], [st.box_cls], [st.box_mat],
                                                [st.box_col], [st.box_aux], [np.full(len(st.box_yaw), -1, np.int32)])
    for m, o in enumerate(scene.objects):
        x, y, z, yaw = poses_v[m]
        if not (x_range[0] < x < x_range[1]):
            continue
        c, s = np.cos(yaw), np.sin(yaw)
        off = np.array([p.offset for p in o.parts], dtype=np.float64)
        cen = np.stack([x + c * off[:, 0] - s * off[:, 1], y + s * off[:, 0] + c * off[:, 1], z + off[:, 2]], axis=1)
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
                    box_obj=np.concatenate(bobj)[keep_b], sph_c=sph_c[keep_s], sph_r=st.sph_r[keep_s],
                    sph_cls=st.sph_cls[keep_s], sph_mat=st.sph_mat[keep_s], sph_col=st.sph_col[keep_s],
                    sph_obj=np.full(int(keep_s.sum()), -1, np.int32), ego=ego, road=scene.road)
    return fp, poses_v


def _box_corners(c: np.ndarray, h: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(B, 8, 3) corners in _SIGNS order of yaw-rotated boxes."""
    loc = _SIGNS[None] * h[:, None, :]
    cs, sn = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = cs * loc[..., 0] - sn * loc[..., 1]
    y = sn * loc[..., 0] + cs * loc[..., 1]
    return np.stack([x, y, loc[..., 2]], axis=-1) + c[:, None, :]


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
        (lidar); row_key: (H,) strictly decreasing per-row key equal to q (camera) or tan(elevation)
        (lidar); col_cos: (W,) cos(azimuth) for the lidar (None for the camera). near: minimum t.
    """

    origin: np.ndarray
    p: np.ndarray
    q: np.ndarray
    row_key: np.ndarray
    col_cos: Optional[np.ndarray]
    near: float

    @property
    def shape(self) -> Tuple[int, int]:
        return int(self.row_key.shape[0]), int(self.p.shape[0])

    def window(self, r: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
        """Rows/cols [r0, r1) x [c0, c1) of the rays inside a (p, q) range r = [pmin, pmax, qmin, qmax]."""
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
    # ground
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(q_full < -1e-9, (GROUND_Z - o[2]) / q_full, np.inf)
    g = (tg > grid.near) & (tg < far)
    t[g] = tg[g]
    prim[g] = GROUND
    nb = fp.n_boxes
    obj_masks: Dict[int, Tuple[Tuple[int, int, int, int], np.ndarray]] = {}
    # boxes
    if nb:
        ranges = pq_ranges(_box_corners(fp.box_c, fp.box_h, fp.box_yaw), o, grid.near)
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
            dx = cs + sn * pw
            dy = -sn + cs * pw
            with np.errstate(divide="ignore", invalid="ignore"):
                ix, iy, iz = 1.0 / dx, 1.0 / dy, 1.0 / qw
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
            axis = np.where(np.broadcast_to(tnz, upd.shape) >= np.broadcast_to(txy_n, upd.shape), 2,
                            np.where(np.broadcast_to(tnx >= tny, upd.shape), 0, 1))
            dsel = np.where(axis == 0, np.broadcast_to(dx, upd.shape),
                            np.where(axis == 1, np.broadcast_to(dy, upd.shape), np.broadcast_to(qw, upd.shape)))
            fc = (axis * 2 + (dsel > 0)).astype(np.int8)
            face[r0:r1, c0:c1][upd] = fc[upd]
    # spheres
    ns = int(fp.sph_r.shape[0])
    if ns:
        cub = _box_corners(fp.sph_c, np.repeat(fp.sph_r[:, None], 3, axis=1), np.zeros(ns))
        ranges = pq_ranges(cub, o, grid.near)
        for j in range(ns):
            win = grid.window(ranges[j])
            if win is None:
                continue
            r0, r1, c0, c1 = win
            pw = grid.p[None, c0:c1]
            qw = grid.q[r0:r1, c0:c1] if grid.q.shape[1] > 1 else grid.q[r0:r1]
            oc = o - fp.sph_c[j]
            a = 1.0 + pw * pw + qw * qw
            b = 2.0 * (oc[0] + oc[1] * pw + oc[2] * qw)
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
        h = (ix.astype(np.uint32) * np.uint32(73856093)) ^ (iy.astype(np.uint32) * np.uint32(19349663)) \
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


def surface(fp: FramePrims, o: np.ndarray, p: np.ndarray, q: np.ndarray, t: np.ndarray, prim: np.ndarray,
            face: np.ndarray, want_colour: bool) -> Surface:
    """Semantic class, normal, base colour and reflectance of ray hits.

    Args: flat (N,) arrays p, q, t, prim, face of the hit rays (SKY entries allowed); o (3,).
    """
    n = t.shape[0]
    dt = np.result_type(p.dtype, q.dtype, t.dtype)
    pts = np.empty((n, 3), dtype=dt)
    tt = np.where(np.isfinite(t), t, dt.type(0))
    pts[:, 0] = o[0] + tt
    pts[:, 1] = o[1] + tt * p
    pts[:, 2] = o[2] + tt * q
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
            base[:] = (0.33, 0.33, 0.34)
            base[kind == 1] = (0.92, 0.92, 0.9)
            base[kind == 2] = (0.6, 0.58, 0.56)
            base[kind == 3] = (0.25, 0.42, 0.15)
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
        r[mat == MAT_GLASS] = 12.0
        r[mat == MAT_TYRE] = 8.0
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
            iz = np.floor(pts[smk, 2] * 4).astype(np.int64) + np.floor(pts[smk, 1] * 4).astype(np.int64) * 131
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


def shadow_mask(fp: FramePrims, grid: RayGrid, pts: np.ndarray, normal: np.ndarray, valid: np.ndarray,
                sun: np.ndarray) -> np.ndarray:
    """Hard shadows: True where the segment from a surface point towards the sun hits a box.

    Args:
        fp: primitives (casters: every box except flat sidewalks; tree crowns are ignored).
        grid: the camera rays (for the screen-space window of each caster's shadow volume).
        pts, normal: (H, W, 3) float32 surface points and normals (view frame). valid: (H, W) bool.
        sun: (3,) unit vector towards the sun, sun[2] > 0.
    Returns:
        (H, W) bool.
    """
    H, W = valid.shape
    shadow = np.zeros((H, W), dtype=bool)
    s = np.asarray(sun, dtype=np.float64)
    if fp.n_boxes == 0 or s[2] <= 0.05:
        return shadow
    casters = np.nonzero(fp.box_mat != MAT_SIDEWALK)[0]
    if casters.size == 0:
        return shadow
    corners = _box_corners(fp.box_c[casters], fp.box_h[casters], fp.box_yaw[casters])    # (C, 8, 3)
    drop = (corners[..., 2] - GROUND_Z) / s[2]
    ground = corners - drop[..., None] * s                                                  # shadow on the ground
    allp = np.concatenate([corners, ground], axis=1)
    lo, hi = allp.min(axis=1), allp.max(axis=1)
    aabb = _box_corners((lo + hi) / 2, (hi - lo) / 2, np.zeros(casters.size))
    ranges = pq_ranges(aabb, grid.origin, grid.near)
    org = pts + normal * np.float32(0.02)
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
        dx, dy, dz = cs * float(s[0]) + sn * float(s[1]), -sn * float(s[0]) + cs * float(s[1]), float(s[2])
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
    return shadow


def render_camera(fp: FramePrims, K: np.ndarray, width: int, height: int, sun: np.ndarray,
                  rng: np.random.Generator, noise_sigma: float = 2.0, exposure: float = 1.0,
                  shadows: bool = True) -> CameraRender:
    """Render the undistorted RGB image and the pixel-exact semantic label image (Lambertian
    shading with hard sun shadows, see :func:`shadow_mask`)."""
    grid = camera_grid(K, width, height)
    cov: Dict[int, int] = {}
    hits = cast(grid, fp, coverage=cov)
    H, W = height, width
    P = np.broadcast_to(grid.p.astype(np.float32)[None, :], (H, W)).reshape(-1)
    Q = np.broadcast_to(grid.q.astype(np.float32), (H, W)).reshape(-1)
    t = hits.t.astype(np.float32).reshape(-1)
    prim = hits.prim.reshape(-1)
    hit = prim != SKY
    srf = surface(fp, grid.origin, P[hit], Q[hit], t[hit], prim[hit], hits.face.reshape(-1)[hit], True)
    label = np.full(H * W, CID["Sky"], dtype=np.uint8)
    label[hit] = srf.cls
    obj = np.full(H * W, -1, dtype=np.int32)
    obj[hit] = srf.obj
    # sky gradient by elevation
    elev = np.clip(Q / 0.6, 0.0, 1.0)[:, None]
    sky = (1 - elev) * np.array([0.82, 0.88, 0.95], np.float32) + elev * np.array([0.35, 0.55, 0.85], np.float32)
    img = sky.astype(np.float32)
    lam = np.clip(srf.normal @ sun.astype(np.float32), 0.0, 1.0)
    if shadows:
        pts = np.zeros((H * W, 3), dtype=np.float32)
        nrm = np.zeros((H * W, 3), dtype=np.float32)
        pts[hit] = srf.points
        nrm[hit] = srf.normal
        lit = lam > 0
        valid = np.zeros(H * W, dtype=bool)
        valid[np.nonzero(hit)[0][lit]] = True
        sh = shadow_mask(fp, grid, pts.reshape(H, W, 3), nrm.reshape(H, W, 3), valid.reshape(H, W), sun)
        lam = np.where(sh.reshape(-1)[hit], np.float32(0.0), lam)
    shade = 0.45 + 0.6 * lam
    c = srf.colour * shade[:, None]
    haze = (np.float32(1.0) - np.exp(t[hit] * np.float32(-1.0 / 350.0)))[:, None]
    img[hit] = c * (1 - haze) + haze * np.array([0.8, 0.85, 0.9], np.float32)
    img = img * np.float32(255.0 * exposure) + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
    image = np.clip(img, 0, 255).astype(np.uint8).reshape(H, W, 3)
    return CameraRender(image=image, label=label.reshape(H, W), depth=hits.t.astype(np.float32),
                        obj=obj.reshape(H, W), coverage=cov)


# ------------------------------------------------------------------------------------- lidar
@dataclass
class LidarConfig:
    """Multi-beam lidar model.

    Attributes:
        offset: (3,) sensor origin in the camera view frame, metres (A2D2's front-center lidar is
            about 0.18 m above the camera).
        n_beams, elev_min_deg, elev_max_deg: beams evenly spaced in elevation.
        az_step_deg: azimuth step; az_max_deg: half-width of the cast azimuth range (the camera's
            view is then kept).
        max_range: metres. range_sigma: Gaussian range noise, metres. dropout: probability a return
            is lost. sweep_us: duration of one 360 deg revolution (µs); a point's time is the frame
            time - azimuth/360 deg * sweep (azimuth 0 = straight ahead at the frame time).
        lidar_id: value written to ``lidar_id`` (3 = front_center in A2D2's sidecar ``lidar_ids``).
    """

    offset: Tuple[float, float, float] = (0.0, 0.0, 0.18)
    n_beams: int = 64
    elev_min_deg: float = -25.0
    elev_max_deg: float = 3.0
    az_step_deg: float = 0.12
    az_max_deg: float = 34.0
    max_range: float = 100.0
    range_sigma: float = 0.02
    dropout: float = 0.03
    sweep_us: int = 100_000
    lidar_id: float = 3.0


@dataclass
class LidarScanSynth:
    """A scan in the A2D2 ``.npz`` layout plus per-point ground truth: ``arrays`` (the npz dict)
    and ``cls`` (N,) uint8 semantic class, ``obj`` (N,) int32 object index (-1 scenery)."""

    arrays: Dict[str, np.ndarray]
    cls: np.ndarray
    obj: np.ndarray


def scan_lidar(fp: FramePrims, K: np.ndarray, width: int, height: int, t_us: int, cfg: LidarConfig,
               rng: np.random.Generator) -> LidarScanSynth:
    """Cast the lidar, add range noise / dropout, keep the points inside the camera image and build
    the A2D2 npz arrays (see ``a2d2-format.md``): points float64 (N,3) view frame; reflectance,
    timestamp int64; row, col (undistorted image, ``col = cx - fx y/x``, ``row = cy - fy z/x``),
    depth (= x), distance (= ||point||), azimuth (= atan2(y, x), radians), lidar_id float64."""
    elev = np.radians(np.linspace(cfg.elev_max_deg, cfg.elev_min_deg, cfg.n_beams))
    n_az = int(round(2 * cfg.az_max_deg / cfg.az_step_deg)) + 1
    az = np.radians(np.linspace(cfg.az_max_deg, -cfg.az_max_deg, n_az))
    p = np.tan(az)
    ca = np.cos(az)
    q = np.tan(elev)[:, None] / ca[None, :]
    o = np.asarray(cfg.offset, dtype=np.float64)
    grid = RayGrid(origin=o, p=p, q=q, row_key=np.tan(elev), col_cos=ca, near=0.3)
    hits = cast(grid, fp, far=cfg.max_range * 1.01)
    P = np.broadcast_to(p[None, :], q.shape)
    AZ = np.broadcast_to(az[None, :], q.shape)
    # column-major order = scan order (one azimuth column after the other)
    tt, pr, fc = hits.t.T.reshape(-1), hits.prim.T.reshape(-1), hits.face.T.reshape(-1)
    Pf, Qf, AZf = P.T.reshape(-1), q.T.reshape(-1), AZ.T.reshape(-1)
    norm = np.sqrt(1 + Pf * Pf + Qf * Qf)
    rng_true = tt * norm
    keep = (pr != SKY) & (rng_true <= cfg.max_range)
    keep &= rng.random(keep.shape[0]) >= cfg.dropout
    srf = surface(fp, o, Pf[keep], Qf[keep], tt[keep], pr[keep], fc[keep], False)
    r_noisy = rng_true[keep] + rng.normal(0.0, cfg.range_sigma, int(keep.sum()))
    unit = np.stack([np.ones_like(Pf[keep]), Pf[keep], Qf[keep]], axis=1) / norm[keep, None]
    pts = o + unit * r_noisy[:, None]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = pts[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        col = cx - fx * pts[:, 1] / x
        row = cy - fy * pts[:, 2] / x
    inview = (x > 0.1) & (col >= 0) & (col <= width - 1) & (row >= 0) & (row <= height - 1)
    pts, col, row = pts[inview], col[inview], row[inview]
    cls, obj = srf.cls[inview], srf.obj[inview]
    refl = srf.reflect[inview] + rng.normal(0.0, 6.0, int(inview.sum()))
    refl = np.clip(np.round(refl), 0, 255).astype(np.int64)
    az_k = AZf[keep][inview]
    ts = (int(t_us) - np.round(az_k / (2 * np.pi) * cfg.sweep_us)).astype(np.int64)
    n = pts.shape[0]
    arrays = {
        "points": pts.astype(np.float64),
        "reflectance": refl,
        "timestamp": ts,
        "row": row.astype(np.float64),
        "col": col.astype(np.float64),
        "depth": pts[:, 0].astype(np.float64),
        "distance": np.linalg.norm(pts, axis=1),
        "azimuth": np.arctan2(pts[:, 1], pts[:, 0]),
        "lidar_id": np.full(n, cfg.lidar_id, dtype=np.float64),
    }
    return LidarScanSynth(arrays=arrays, cls=cls, obj=obj)
