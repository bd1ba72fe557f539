"""One synthetic frame of a scene: camera, label image, lidar scan, label3D boxes, clutter.

The frame of a :class:`~bev_mtl_ros.data.synth_scene.Scene`: the camera image and label image
(:mod:`~bev_mtl_ros.data.synth_camera`), the lidar scan (:mod:`~bev_mtl_ros.data.synth_lidar`), the
label3D boxes of the road users that are seen, and the clutter ahead. :mod:`bev_mtl_ros.data.synth`
writes it in A2D2's formats (the fields of the label3D boxes are described there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.a2d2_files import TAI_MINUS_UTC_S, box_corners
from bev_mtl_ros.data.calibration import CAMS_LIDARS_PATH, CameraCalibration, load_calibration
from bev_mtl_ros.data.synth_camera import CameraStyle, render_camera
from bev_mtl_ros.data.synth_lidar import LidarConfig, LidarPose, rig_poses, scan_lidar
from bev_mtl_ros.data.synth_raycast import box_corner_points, frame_prims, pq_ranges
from bev_mtl_ros.data.synth_scene import FRAME_DT, Scene


def frame_time_us(scene: Scene, f: int) -> int:
    """Camera timestamp of frame f, µs TAI."""
    return (scene.start_utc + TAI_MINUS_UTC_S) * 1_000_000 + int(round(f * FRAME_DT * 1_000_000))


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


@dataclass
class SynthFrame:
    """One generated frame (everything :func:`generate` writes, plus ground truth).

    Attributes:
        image: (H,W,3) uint8 undistorted RGB; label: (H,W) uint8 class ids (undistorted).
        image_raw, label_raw: distorted RGB images as written (label in A2D2 colours).
        lidar: npz arrays; point_cls (N,) uint8 surface class; point_obj (N,) int32 object index.
        boxes: (M,7) float64 [x,y,z,l,w,h,yaw] view frame of ALL road users; classes, ids (M);
        visible_px (M,), coverage_px (M,), num_points (M,) int; label3d: dict written to JSON
        (listed road users only); cam_tstamp: µs TAI.
        clutter_boxes: (C,7) float64 view frame of the static clutter ahead (hard negatives, no
        label3D box); clutter_classes: C kinds (keys of ``CLUTTER_CLASSES``).
    """

    image: np.ndarray
    label: np.ndarray
    image_raw: np.ndarray
    label_raw: np.ndarray
    lidar: Dict[str, np.ndarray]
    point_cls: np.ndarray
    point_obj: np.ndarray
    boxes: np.ndarray
    classes: List[str]
    ids: List[int]
    visible_px: np.ndarray
    coverage_px: np.ndarray
    num_points: np.ndarray
    label3d: Dict[str, Any]
    cam_tstamp: int
    clutter_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    clutter_classes: List[str] = field(default_factory=list)


def synthesize_frame(
    scene: Scene,
    f: int,
    cam: CameraCalibration,
    lidar: Optional[LidarConfig] = None,
    rig: Optional[Tuple[LidarPose, ...]] = None,
) -> SynthFrame:
    """Render frame ``f`` of ``scene`` for camera ``cam`` (already scaled to the output size).

    ``rig``: the scanners' poses in the camera view frame (default: :func:`rig_poses` of the
    packaged ``cams_lidars.json`` for ``lidar.lidars``). Deterministic: per-frame noise comes
    from ``default_rng([seed, scene index, frame, 1])``, the camera style from
    ``default_rng([seed, scene index, 11])``.
    """
    import cv2
    from bev_mtl_ros.data.classes import class_id_to_colour
    lidar = lidar or LidarConfig()
    if rig is None:
        rig = rig_poses(load_calibration(CAMS_LIDARS_PATH), "front_center", lidar.lidars)
    style = CameraStyle.sample(
        np.random.default_rng([int(scene.seed), int(scene.index), 11]), scene.sky, scene.exposure
    )
    W, H = cam.width, cam.height
    K = np.asarray(cam.cam_matrix, dtype=np.float64)
    rng = np.random.default_rng([int(scene.seed), int(scene.index), int(f), 1])
    fp, poses = frame_prims(scene, f)
    t_us = frame_time_us(scene, f)
    cr = render_camera(fp, K, W, H, scene.sun, rng, style=style)
    sc = scan_lidar(fp, K, W, H, t_us, lidar, rng, rig)
    clutter_boxes, clutter_classes = scene.clutter_in_view(f, float(np.arctan2(K[0, 2], K[0, 0])))
    M = len(scene.objects)
    boxes = np.zeros((M, 7))
    if M:
        boxes[:, :3] = poses[:, :3]
        boxes[:, 3:6] = np.array([o.size for o in scene.objects])
        boxes[:, 6] = poses[:, 3]
    visible = np.bincount(cr.obj[cr.obj >= 0].ravel(), minlength=M)[:M] if M else np.zeros(0, int)
    cover = np.array([cr.coverage.get(m, 0) for m in range(M)], dtype=np.int64)
    npts = np.bincount(sc.obj[sc.obj >= 0], minlength=M)[:M] if M else np.zeros(0, int)
    label3d = _label3d(scene, boxes, visible, cover, npts, K, W, H) if M else {}
    # distort like the real PNGs (image bilinear, label nearest neighbour)
    mx, my = cam.distort_maps()
    image_raw = cv2.remap(cr.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    label_ids_raw = cv2.remap(cr.label, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    label_raw = np.asarray(class_id_to_colour)[label_ids_raw]
    return SynthFrame(image=cr.image, label=cr.label, image_raw=image_raw, label_raw=label_raw,
                      lidar=sc.arrays,
                      point_cls=sc.cls, point_obj=sc.obj, boxes=boxes,
                      classes=[o.cls for o in scene.objects],
                      ids=[o.oid for o in scene.objects], visible_px=visible, coverage_px=cover,
                      num_points=npts,
                      label3d=label3d, cam_tstamp=t_us, clutter_boxes=clutter_boxes,
                      clutter_classes=clutter_classes)


def _label3d(scene: Scene, boxes: np.ndarray, visible: np.ndarray, cover: np.ndarray,
             npts: np.ndarray, K: np.ndarray, W: int, H: int) -> Dict[str, Any]:
    """Return the label3D dict ``{"box_k": {...}}`` of the road users that are seen.

    Seen: with a visible pixel or a lidar point. boxes (M, 7) view frame; visible, cover, npts (M,)
    pixels seen, pixels covered without occluders, lidar points; K, W, H the undistorted camera.
    """
    label3d: Dict[str, Any] = {}
    corners = box_corners(boxes)                       # A2D2 tutorial order
    rng_pq = pq_ranges(box_corner_points(boxes[:, :3], boxes[:, 3:6] / 2, boxes[:, 6]),
                       np.zeros(3), 0.05)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    k = 0
    for m, o in enumerate(scene.objects):
        if visible[m] == 0 and npts[m] == 0:
            continue
        pm, pM, qm, qM = rng_pq[m]
        u0, u1 = cx - fx * pM, cx - fx * pm
        v0, v1 = cy - fy * qM, cy - fy * qm
        cu0, cu1 = min(max(u0, 0.0), W - 1.0), min(max(u1, 0.0), W - 1.0)
        cv0, cv1 = min(max(v0, 0.0), H - 1.0), min(max(v1, 0.0), H - 1.0)
        area = max(u1 - u0, 1e-6) * max(v1 - v0, 1e-6)
        trunc = float(np.clip(1.0 - (cu1 - cu0) * (cv1 - cv0) / area, 0.0, 1.0))
        occl = float(np.clip(1.0 - visible[m] / cover[m], 0.0, 1.0)) if cover[m] > 0 else 1.0
        yaw = float(boxes[m, 6])
        label3d[f"box_{k}"] = {
            "id": int(o.oid),
            "class": o.cls,
            "center": [float(v) for v in boxes[m, :3]],
            "size": [float(v) for v in boxes[m, 3:6]],
            "axis": [0.0, 0.0, 1.0] if yaw >= 0 else [0.0, 0.0, -1.0],
            "rot_angle": abs(yaw),
            "3d_points": corners[m].tolist(),
            "2d_bbox": [float(cu0), float(cv0), float(cu1), float(cv1)],
            "truncation": round(trunc, 4),
            "occlusion": round(occl, 4),
            "alpha": _wrap(yaw - float(np.arctan2(boxes[m, 1], boxes[m, 0]))),
        }
        k += 1
    return label3d
