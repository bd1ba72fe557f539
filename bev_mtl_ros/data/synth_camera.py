"""Camera of the synthetic A2D2 generator.

Undistorted RGB image and pixel-exact semantic label image of one frame.

Shading: Lambertian with a per-scene sun direction plus ambient, hard shadows (shadow rays
against boxes and tree crowns, :func:`shadow_mask`; none under an overcast sky), the base colours
and textures of :mod:`bev_mtl_ros.data.synth_surface`, distance haze, then the per-scene camera
style (:class:`CameraStyle`, domain randomisation: sky, exposure, white balance, gamma,
vignetting, blur, sensor noise). The label image is exactly the semantic class of the surface
that each pixel's ray hits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.synth_raycast import (
    SKY,
    FramePrims,
    RayGrid,
    box_corner_points,
    cast,
    pq_ranges,
)
from bev_mtl_ros.data.synth_scene import CID, GROUND_Z, MAT_SIDEWALK
from bev_mtl_ros.data.synth_surface import Surface, surface, value_noise


@dataclass
class CameraRender:
    """Undistorted camera rendering (``CamMatrix``).

    image (H,W,3) uint8 RGB, label (H,W) uint8 class ids, depth (H,W) float32 (inf = sky), obj
    (H,W) int32 object index per pixel (-1 none), coverage {object index: pixels it would cover
    without occluders}.
    """

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
    """Return hard shadows: where the ray from a surface point towards the sun is blocked.

    True where it hits a box or a sphere (tree crown).

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
    org = pts + normal * np.float32(0.02)
    _box_shadows(fp, grid, org, valid, s, shadow)
    _sphere_shadows(fp, grid, org, valid, s, shadow)
    return shadow


def _box_shadows(fp: FramePrims, grid: RayGrid, org: np.ndarray, valid: np.ndarray,
                 s: np.ndarray, shadow: np.ndarray) -> None:
    """Set ``shadow`` where the ray from ``org`` towards the sun ``s`` hits a box.

    Every box except flat sidewalks casts; arguments as in :func:`shadow_mask`.
    """
    casters = np.nonzero(fp.box_mat != MAT_SIDEWALK)[0]
    # (C, 8, 3)
    corners = box_corner_points(fp.box_c[casters], fp.box_h[casters], fp.box_yaw[casters])
    drop = (corners[..., 2] - GROUND_Z) / s[2]
    # shadow on the ground
    ground = corners - drop[..., None] * s
    allp = np.concatenate([corners, ground], axis=1)
    lo, hi = allp.min(axis=1), allp.max(axis=1)
    aabb = box_corner_points((lo + hi) / 2, (hi - lo) / 2, np.zeros(casters.size))
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


def _sphere_shadows(fp: FramePrims, grid: RayGrid, org: np.ndarray, valid: np.ndarray,
                    s: np.ndarray, shadow: np.ndarray) -> None:
    """Set ``shadow`` where the ray from ``org`` towards the sun ``s`` meets a sphere.

    A tree crown ahead of the point; arguments as in :func:`shadow_mask`.
    """
    ns = int(fp.sph_r.shape[0])
    if not ns:
        return
    r = fp.sph_r[:, None]
    cub = box_corner_points(fp.sph_c, np.repeat(r, 3, axis=1), np.zeros(ns))
    drop = (cub[..., 2] - GROUND_Z) / s[2]
    allp = np.concatenate([cub, cub - drop[..., None] * s], axis=1)
    lo, hi = allp.min(axis=1), allp.max(axis=1)
    ranges = pq_ranges(
        box_corner_points((lo + hi) / 2, (hi - lo) / 2, np.zeros(ns)), grid.origin, grid.near
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


@dataclass
class CameraStyle:
    """Per-scene camera domain randomisation.

    Tobin et al. 2017, "Domain randomization for transferring deep neural networks from simulation
    to the real world".

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
    """Render the undistorted RGB image and the pixel-exact semantic label image.

    Lambertian shading with hard sun shadows (see :func:`shadow_mask`), then ``style`` (sky, white
    balance, gamma, vignetting, blur, sensor noise; default: a clear sky with ``exposure`` and
    ``noise_sigma``). The label image is not affected by the style.
    """
    style = style or CameraStyle(exposure=exposure, noise_sigma=noise_sigma)
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
    img, lo = _sky(style, P, Q)
    shade = _shading(fp, grid, srf, hit, sun, shadows, style.sky == "overcast")
    c = srf.colour * shade[:, None]
    if style.sky == "low_sun":
        c = c * np.array([1.08, 0.98, 0.85], np.float32)
    haze_col = lo * np.float32(0.95)
    haze = (np.float32(1.0) - np.exp(t[hit] * np.float32(-1.0 / 350.0)))[:, None]
    img[hit] = c * (1 - haze) + haze * haze_col
    image = _apply_style(img.reshape(H, W, 3), style, rng)
    return CameraRender(image=image, label=label.reshape(H, W), depth=hits.t.astype(np.float32),
                        obj=obj.reshape(H, W), coverage=cov)


def _sky(style: CameraStyle, P: np.ndarray, Q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Return the sky of every ray (P, Q flat float32): ((N, 3) float32 RGB, horizon colour (3,)).

    A gradient by elevation, with clouds under a clear or overcast sky.
    """
    overcast = style.sky == "overcast"
    lo, hi = (np.array(c, np.float32) for c in _SKIES.get(style.sky, _SKIES["clear"]))
    elev = np.clip(Q / 0.6, 0.0, 1.0)[:, None]
    img = ((1 - elev) * lo + elev * hi).astype(np.float32)
    if overcast or style.sky == "clear":
        cl = (
            value_noise(P * 6.0 + 3.0, Q * 12.0, 1.0, 9) * 0.6
            + value_noise(P * 20.0, Q * 40.0, 1.0, 10) * 0.4
        )
        amt = np.float32(0.12 if overcast else 0.06)
        img = img * (1 - amt) + amt * cl[:, None] * np.float32(1.1)
    return img, lo


def _shading(fp: FramePrims, grid: RayGrid, srf: Surface, hit: np.ndarray, sun: np.ndarray,
             shadows: bool, overcast: bool) -> np.ndarray:
    """Return the (N,) brightness factor of the hit rays ``hit`` (flat (H*W,) bool).

    Lambertian sun light plus ambient with hard shadows; soft light from above when overcast.
    """
    H, W = grid.shape
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
        return 0.72 + 0.18 * np.clip(srf.normal[:, 2], 0.0, 1.0)
    return 0.45 + 0.6 * lam


def _apply_style(img: np.ndarray, style: CameraStyle, rng: np.random.Generator) -> np.ndarray:
    """Apply ``style`` to a (H, W, 3) float32 linear image; returns (H, W, 3) uint8.

    White balance and exposure, vignetting, gamma, blur, then sensor noise drawn from ``rng``.
    """
    import cv2
    H, W = img.shape[:2]
    img = img * (np.array(style.white_balance, np.float32) * np.float32(style.exposure))
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
    return np.clip(img, 0, 255).astype(np.uint8)
