"""Surface attributes of ray hits for the synthetic A2D2 generator.

Semantic class, normal, base colour (procedural textures) and lidar reflectance of whatever a ray
of :mod:`bev_mtl_ros.data.synth_raycast` hits.

Textures: asphalt noise hashed on world position, lane markings, window grids on buildings,
facade noise, kerbs and paving tiles, glass, foliage, fence mesh, signal lamps. The semantic class
of a hit is exactly the class of the primitive (kerb faces and a 0.2 m strip of sidewalks along
the road are "Curbstone").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from bev_mtl_ros.data.synth_raycast import GROUND, FramePrims
from bev_mtl_ros.data.synth_scene import (
    CID,
    MAT_BUILDING,
    MAT_FOLIAGE,
    MAT_GLASS,
    MAT_GRID,
    MAT_SIDEWALK,
    MAT_SIGN,
    MAT_SIGNAL,
    MAT_TYRE,
)

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


def _fmod(x: np.ndarray, m: float) -> np.ndarray:
    """Return x mod m for m > 0 (result in [0, m)), faster than np.mod for floats."""
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


def value_noise(x: np.ndarray, y: np.ndarray, scale: float, salt: int = 0) -> np.ndarray:
    """Return bilinearly interpolated lattice noise in [0, 1) at world coordinates (x, y).

    Cells of 1/scale metres (smooth, unlike the blocky per-cell :func:`_hash01`).
    """
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
    """Per-ray surface attributes of the hits.

    points (N,3) view frame, cls (N,) uint8, normal (N,3), base colour (N,3) float32 in [0,1] (or
    None), reflectance (N,) float (or None), obj (N,) int32 object index (-1 scenery/ground/sky).
    """

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
    normal = np.zeros((n, 3), dtype=np.float32)
    normal[:, 2] = 1.0
    srf = Surface(points=pts, cls=np.full(n, CID["Sky"], dtype=np.uint8), normal=normal,
                  colour=np.zeros((n, 3), dtype=np.float32) if want_colour else None,
                  reflect=np.zeros(n, dtype=np.float32), obj=np.full(n, -1, dtype=np.int32))
    gm = prim == GROUND
    if gm.any():
        _ground_surface(fp, srf, gm, dt)
    nb = fp.n_boxes
    bm = (prim >= 0) & (prim < nb)
    if bm.any():
        _box_surface(fp, srf, bm, prim[bm], face[bm], dt)
    smk = prim >= nb
    if smk.any():
        _sphere_surface(fp, srf, smk, prim[smk] - nb)
    return srf


def _ground_surface(fp: FramePrims, srf: Surface, gm: np.ndarray, dt: np.dtype) -> None:
    """Fill ``srf`` where ``gm`` (ground hits).

    Road markings, sidewalk and grass classes from :meth:`Road.ground_class`, asphalt/grass colour
    with value noise.
    """
    road = fp.road
    ego = fp.ego
    pg = srf.points[gm]
    gx, gy = pg[:, 0] + dt.type(ego[0]), pg[:, 1] + dt.type(ego[1])
    gcls, kind = road.ground_class(gx, gy)
    srf.cls[gm] = gcls
    srf.reflect[gm] = _REFL[gcls]
    if srf.colour is not None:
        nz = value_noise(gx, gy, 6.0) * 0.5 + value_noise(gx, gy, 0.8, 1) * 0.5
        base = np.empty((gcls.shape[0], 3), dtype=np.float32)
        base[:] = road.asphalt
        base[kind == 1] = (0.92, 0.92, 0.9)
        base[kind == 2] = (0.6, 0.58, 0.56)
        base[kind == 3] = road.grass
        srf.colour[gm] = base * (0.82 + 0.3 * nz[:, None])


def _box_surface(fp: FramePrims, srf: Surface, bm: np.ndarray, idx: np.ndarray,
                 face: np.ndarray, dt: np.dtype) -> None:
    """Fill ``srf`` where ``bm`` (box hits; ``idx`` the box of each, ``face`` its hit face).

    Normal of the face, class (kerbs of sidewalks = Curbstone), object, reflectance, colour.
    """
    pts = srf.points
    fc = face.astype(np.int64)
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
    srf.normal[bm, 0] = cs * nl[:, 0] - sn * nl[:, 1]
    srf.normal[bm, 1] = sn * nl[:, 0] + cs * nl[:, 1]
    srf.normal[bm, 2] = nl[:, 2]
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
    srf.cls[bm] = bcls
    srf.obj[bm] = fp.box_obj[idx]
    r = _REFL[bcls].astype(np.float32)
    r[mat == MAT_GLASS] = 3.0
    r[mat == MAT_TYRE] = 2.5
    srf.reflect[bm] = r
    if srf.colour is not None:
        srf.colour[bm] = _box_colour(fp, idx, axis, bcls, mat, pb, lx, ly, lz)


def _box_colour(fp: FramePrims, idx: np.ndarray, axis: np.ndarray, bcls: np.ndarray,
                mat: np.ndarray, pb: np.ndarray, lx: np.ndarray, ly: np.ndarray,
                lz: np.ndarray) -> np.ndarray:
    """Return the (N, 3) float32 textured colour of box hits.

    Boxes ``idx``, hit face ``axis``, classes ``bcls``, materials ``mat``, points ``pb`` (view
    frame) and (lx, ly, lz) in the box frame.
    """
    ego = fp.ego
    sw = mat == MAT_SIDEWALK
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
                * value_noise(
                    np.where(axis == 0, ly, lx)[fac] + idx[fac] * 13.0, wz[fac], 1.5, 5
                )
            )[:, None]
        )
    ix = np.floor(pb[:, 0] * 3 + ego[0] * 3).astype(np.int32)
    iz = np.floor(pb[:, 2] * 3).astype(np.int32)
    col *= (0.9 + 0.15 * _hash01(ix + idx * 7, iz, 2))[:, None]
    return col


def _sphere_surface(fp: FramePrims, srf: Surface, smk: np.ndarray, j: np.ndarray) -> None:
    """Fill ``srf`` where ``smk`` (sphere hits; ``j`` the sphere of each)."""
    pts = srf.points
    ego = fp.ego
    d = pts[smk] - fp.sph_c[j]
    nrm = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    srf.normal[smk] = nrm
    srf.cls[smk] = fp.sph_cls[j]
    srf.reflect[smk] = _REFL[fp.sph_cls[j]]
    srf.obj[smk] = fp.sph_obj[j]
    if srf.colour is not None:
        ix = np.floor((pts[smk, 0] + ego[0]) * 4).astype(np.int64)
        iz = (np.floor(pts[smk, 2] * 4).astype(np.int64)
              + np.floor(pts[smk, 1] * 4).astype(np.int64) * 131)
        srf.colour[smk] = fp.sph_col[j] * (0.7 + 0.6 * _hash01(ix, iz, 3))[:, None]
