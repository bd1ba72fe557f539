"""Lidar rig of the synthetic A2D2 generator: A2D2's five VLP-16 scanners.

Each casts from its own origin about its own (tilted) spin axis, with range noise, dropout and
reflectance spread; the scan is written in A2D2's ``.npz`` layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from bev_mtl_ros.data.synth_raycast import SKY, FramePrims, RayGrid, cast
from bev_mtl_ros.data.synth_surface import surface

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
    """The lidar rig model: A2D2's five Velodyne VLP-16.

    Geyer et al. 2020, "A2D2: Audi Autonomous Driving Dataset"; VLP-16 data sheet: 16 beams at
    -15..+15 deg, 2 deg apart, 0.2 deg azimuth step at 10 Hz, ~100 m range, +-3 cm accuracy.

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
    """One scanner of the rig in the camera view frame.

    ``origin`` (3,) metres, ``rot`` (3,3) scanner frame (z = spin axis, x = the camera's forward
    direction projected on the scan plane) -> view frame; ``lidar_id`` (its index in
    :attr:`LidarConfig.lidars`), ``name``.
    """

    name: str
    lidar_id: int
    origin: np.ndarray
    rot: np.ndarray


def rig_poses(calibration, camera: str = "front_center",
              lidars: Tuple[str, ...] = RIG_LIDARS) -> Tuple[LidarPose, ...]:
    """Return the poses of the rig's scanners in ``camera``'s view frame.

    From a parsed ``cams_lidars.json`` (:class:`bev_mtl_ros.data.calibration.Calibration`): a lidar
    view's z axis is its spin axis (A2D2 views: x, y given, z = x cross y).

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
    """A scan in the A2D2 ``.npz`` layout plus per-point ground truth.

    ``arrays`` (the npz dict) and ``cls`` (N,) uint8 semantic class, ``obj`` (N,) int32 object
    index (-1 scenery).
    """

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
    """Scan the frame with every scanner of ``rig`` into A2D2's npz arrays.

    Adds range noise / dropout, keeps the points inside the camera image and builds the A2D2 npz
    arrays (see ``a2d2-format.md``), scanners in ``lidar_id`` order: points float64 (N,3) view
    frame; reflectance int64 0..255 (class base value x log-normal spread); timestamp int64 µs;
    row, col (undistorted image, ``col = cx - fx y/x``, ``row = cy - fy z/x``), depth (= x),
    distance (= ||point||), azimuth (= atan2(y, x), radians), lidar_id float64.
    """
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
