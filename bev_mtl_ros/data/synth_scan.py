"""Synthetic sensor inputs without a scene model.

Lidar-like scans with box obstacles, gradient camera images, and a small rosbag2 of them in the
converter's layout.

For the benchmark (exact point counts at any size), the GPU check, the soak test, the demo's
``--synthetic`` mode and the replay tests. The A2D2-format scene generator with labels is
:mod:`bev_mtl_ros.data.synth`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Tuple

import numpy as np


def synthetic_scan(n_points: int, fov: str = "front", seed: int = 0, return_boxes: bool = False):
    """Return a lidar-like scan with exactly ``n_points`` points.

    Points: (N, 4) float32 [x, y, z, intensity 0..255] in the A2D2 camera view frame (x forward,
    y left, z up; ground at z = -1.78 m).

    64 beams from -25 deg to +3 deg elevation; azimuths over +-30 deg (``fov="front"``, the
    front-center camera's frustum) or 360 deg (``"360"``). Rays hit the ground, one of 40 random
    box obstacles (cars/pedestrians-sized) or a wall at 60-90 m.

    With ``return_boxes`` returns (points, boxes (40, 7) float32 [x, y, z_centre, l, w, h, yaw=0],
    class names ("Car"/"Pedestrian")).
    """
    rng = np.random.default_rng(seed)
    beams = 64
    n_az = int(math.ceil(n_points / beams))
    half = math.radians(30.0) if fov == "front" else math.pi
    az = np.linspace(-half, half, n_az, endpoint=fov != "360")
    el = np.radians(np.linspace(-25.0, 3.0, beams))
    A, E = np.meshgrid(az, el, indexing="ij")
    A, E = A.ravel()[:n_points], E.ravel()[:n_points]
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], 1)
    h = 1.78
    r = np.where(d[:, 2] < -1e-3, h / np.maximum(-d[:, 2], 1e-3), np.inf)
    r = np.minimum(r, rng.uniform(60, 90, size=len(r)))
    # obstacles: axis-aligned boxes (slab test), centres ahead/around
    n_obj = 40
    cx = rng.uniform(5, 70, n_obj) * (np.sign(rng.uniform(-1, 1, n_obj)) if fov == "360" else 1)
    cy = rng.uniform(-30, 30, n_obj)
    size = np.where(rng.uniform(size=(n_obj, 1)) < 0.7, [[4.5, 1.9, 1.6]], [[0.6, 0.6, 1.8]])
    lo = np.stack([cx - size[:, 0] / 2, cy - size[:, 1] / 2, -h + 0 * cx], 1)
    hi = np.stack([cx + size[:, 0] / 2, cy + size[:, 1] / 2, -h + size[:, 2]], 1)
    inv = 1.0 / np.where(np.abs(d) < 1e-9, 1e-9, d)
    for k in range(n_obj):
        t1 = lo[k] * inv
        t2 = hi[k] * inv
        tmin = np.minimum(t1, t2).max(1)
        tmax = np.maximum(t1, t2).min(1)
        hit = (tmax >= np.maximum(tmin, 0)) & (tmin < r) & (tmin > 0)
        r = np.where(hit, tmin, r)
    r = r + rng.normal(0, 0.02, size=len(r))
    xyz = d * r[:, None]
    inten = rng.uniform(0, 255, size=len(r))
    pts = np.concatenate([xyz, inten[:, None]], 1).astype(np.float32)
    if not return_boxes:
        return pts
    boxes = np.stack([cx, cy, -h
                      + size[:, 2] / 2, size[:, 0], size[:, 1], size[:, 2], np.zeros(n_obj)], 1)
    names = ["Car" if s_[0] > 1.0 else "Pedestrian" for s_ in size]
    return pts, boxes.astype(np.float32), names


def synthetic_image(size_wh: Tuple[int, int], seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB test image (smooth gradients + noise)."""
    w, h = size_wh
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)],
                   2)
    img = img + rng.integers(0, 20, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic_bag(out: Path, frames: int = 6, points: int = 20_000,
                       image_wh: Tuple[int, int] = (960, 604),
                       period_ns: int = 100_000_000, seed: int = 0, storage: str = "mcap",
                       start_ns: int = 1_600_000_000_000_000_000) -> Path:
    """Write a small bag of synthetic scans in the converter's layout.

    Same topics, types, frame ids, QoS and stamps as ``bev-mtl-ros a2d2-to-bag``: for tests and
    for trying the demo without the sample recording. Clouds from :func:`synthetic_scan` (front
    60 deg, ``points`` points, box obstacles), an rgb8 gradient image of ``image_wh`` with the
    A2D2 front-center intrinsics scaled to that size, ground-truth boxes of the obstacles, an
    empty semantic label. Returns ``out`` (a bag directory).
    """
    import dataclasses

    from rosbags.rosbag2 import StoragePlugin, Writer

    from bev_mtl_ros.data import bag_io as bio
    from bev_mtl_ros.data import to_bag as tb
    from bev_mtl_ros.data.calibration import load_calibration

    ts = bio.make_typestore()
    cam = load_calibration().camera("front_center")
    sx, sy = image_wh[0] / cam.width, image_wh[1] / cam.height
    K = np.array(cam.cam_matrix, np.float64)
    K[0] *= sx
    K[1] *= sy
    cam = dataclasses.replace(cam, cam_matrix=K, resolution=(int(image_wh[0]), int(image_wh[1])))
    tn, fid = tb.topic_names("front_center"), tb.frame_ids("front_center")
    w = Writer(Path(out), version=tb.BAG_VERSION,
               storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    w.open()
    conns = {k: w.add_connection(tn[k], tb.MSGTYPES[k], typestore=ts,
                                 offered_qos_profiles=[bio.offered_qos("transient_local", 1)
                                                       if k == "tf_static" else bio.offered_qos()])
             for k in tn}
    for k in range(frames):
        stamp = start_ns + k * period_ns
        pts, boxes, names = synthetic_scan(points, "front", seed=seed + k, return_boxes=True)
        arr = np.zeros(len(pts), dtype=tb.CLOUD_DTYPE)
        arr["x"], arr["y"], arr["z"], arr["intensity"] = pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3]
        img = synthetic_image(image_wh, seed=seed + k)
        msgs = []
        if k == 0:
            msgs.append(("tf_static", tb.make_tf_static(ts, cam, stamp, "front_center")))
        msgs += [("points", bio.make_pointcloud2(ts, arr, stamp, fid["view"])),
                 ("image", bio.make_image(ts, img, stamp, fid["optical"], "rgb8")),
                 ("camera_info", tb.make_camera_info(ts, cam, stamp, fid["optical"], image_wh)),
                 ("boxes", bio.make_detections(ts, boxes, names,
                                               [str(i) for i in range(len(boxes))], stamp,
                                               fid["view"])),
                 ("semantic", bio.make_image(ts, np.zeros(img.shape[:2], np.uint8), stamp,
                                             fid["optical"], "mono8"))]
        for key, msg in msgs:
            w.write(conns[key], stamp, ts.serialize_cdr(msg, tb.MSGTYPES[key]))
    w.close()
    return Path(out)
