"""``bev-mtl-ros synth``: synthetic frames in A2D2's own directory layout and file formats.

Writes (A2D2 README; see ``a2d2-format.md``)::

    <out>/cams_lidars.json            A2D2 calibration, cameras adapted to --width x --height
    <out>/camera_lidar_semantic_bboxes/<YYYYMMDD_hhmmss>/
        camera/cam_front_center/<YYYYMMDDhhmmss>_camera_frontcenter_<9-digit frame>.png  (+ .json)
        lidar/cam_front_center/<...>_lidar_frontcenter_<frame>.npz
        label/cam_front_center/<...>_label_frontcenter_<frame>.png
        label3D/cam_front_center/<...>_label3D_frontcenter_<frame>.json

* camera PNG: 8-bit RGB, stored *distorted* like A2D2: the scene is ray-cast into the
  undistorted image (``CamMatrix``), then distorted with ``CamMatrixOriginal`` + ``Distortion``
  (Telecam model) by ``cv2.remap`` (bilinear), so that a reader's undistortion recovers it.
* camera sidecar JSON: ``{"cam_name", "cam_tstamp" (µs TAI), "lidar_ids"}``.
* label PNG: RGB, the first ``class_list.json`` colour of each merged class
  (:data:`bev_mtl_ros.data.classes.class_id_to_colour`), distorted with nearest neighbour.
* lidar npz (uncompressed, fixed zip timestamps so equal seeds give byte-identical files):
  ``points`` float64 (N,3) view frame; ``reflectance`` int64 0..255; ``timestamp`` int64 µs TAI;
  ``row``, ``col``, ``depth`` (= x), ``distance`` (= ||point||), ``azimuth`` (= atan2(y, x), rad),
  ``lidar_id`` float64 (0..4, the scanner: see ``lidar_ids``) -- all float64 (N,). Only points
  inside the image. The rig is A2D2's: five VLP-16 scanners at the ``lidars`` poses of
  ``cams_lidars.json``, each casting from its own origin about its own (tilted) spin axis
  (:mod:`bev_mtl_ros.data.synth_lidar`).
* clutter sidecar ``label3D/cam_front_center/<label3D stem>_clutter.json``: the static clutter
  ahead (trees, bushes, hedges, poles, signs, signals, fences, guard rails, bollards, bins) as
  boxes in the view frame (:func:`clutter_json`); hard negatives for detection, no label3D box.
* label3D JSON: ``{"box_0": {...}, ...}`` with ``id`` (the road user's id, constant over a
  scene), ``class`` (Car, VanSUV, Truck, Pedestrian, Cyclist), ``center`` [x,y,z] (box centre,
  view frame), ``size`` [length, width, height], ``axis`` [0,0,1] (yaw >= 0) or [0,0,-1] (yaw < 0),
  ``rot_angle`` = |yaw| (so the Rodrigues rotation of (axis, rot_angle) is the yaw), ``3d_points``
  (8 corners in the order of A2D2's tutorial, :data:`bev_mtl_ros.data.a2d2_files.CORNER_SIGNS`:
  bottom-rear-left, bottom-front-left, bottom-front-right, bottom-rear-right, then the same on
  top), ``2d_bbox`` [x_min, y_min, x_max, y_max] (pixels in the undistorted image, clipped to it),
  ``truncation`` (fraction of the unclipped 2D box outside the image), ``occlusion`` (fraction of
  the object's pixels hidden by nearer surfaces), ``alpha`` (observation angle
  yaw - atan2(y, x), wrapped to [-pi, pi)). A road user is listed when at least one of its pixels
  is visible or one lidar point hits it.

Timing: frames at 10 Hz; ``cam_tstamp`` = scene start (UTC) + 37 s (TAI) + f * 100 ms. The lidar
is a snapshot of the scene at the frame time; point timestamps follow a 100 ms revolution
(azimuth 0 at the frame time). The ego vehicle drives straight along +x at a constant speed (or
stands still) -- see :mod:`bev_mtl_ros.data.synth_scene`.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
import time
import warnings
import zipfile
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.calibration import CAMS_LIDARS_PATH, load_calibration
from bev_mtl_ros.data.synth_build import build_scene
from bev_mtl_ros.data.synth_frame import SynthFrame, synthesize_frame
from bev_mtl_ros.data.synth_lidar import RIG_LIDARS, LidarConfig, rig_poses
from bev_mtl_ros.data.synth_scene import CLUTTER_CLASSES, Scene

#: Subset folder written under the output directory.
SUBSET = "camera_lidar_semantic_bboxes"
#: A2D2's ``lidar_ids`` map in the camera sidecar JSON.
LIDAR_IDS = {str(i): n for i, n in enumerate(RIG_LIDARS)}


def scene_names(scene: Scene) -> Tuple[str, str]:
    """(folder name ``YYYYMMDD_hhmmss``, compact ``YYYYMMDDhhmmss`` used in file names)."""
    dt = datetime.fromtimestamp(scene.start_utc, tz=timezone.utc)
    folder = dt.strftime("%Y%m%d_%H%M%S")
    return folder, folder.replace("_", "")


def frame_paths(out_dir: str, scene: Scene, f: int,
                camera: str = "front_center") -> Dict[str, str]:
    """Return the A2D2 paths of frame f.

    Keys: camera, camera_json, lidar, label, label3D, clutter (the clutter sidecar next to the
    label3D file: ``<label3D stem>_clutter.json``).
    """
    folder, compact = scene_names(scene)
    cam_dir, cam_file = f"cam_{camera}", camera.replace("_", "")
    num = f"{scene.first_frame + f:09d}"
    base = os.path.join(out_dir, SUBSET, folder)

    def p(mod: str, ext: str) -> str:
        return os.path.join(base, mod, cam_dir, f"{compact}_{mod}_{cam_file}_{num}.{ext}")

    return {"camera": p("camera", "png"), "camera_json": p("camera", "json"),
            "lidar": p("lidar", "npz"),
            "label": p("label", "png"), "label3D": p("label3D", "json"),
            "clutter": p("label3D", "json")[:-5] + "_clutter.json"}


def save_npz_deterministic(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` (same layout as ``np.savez``) with fixed zip timestamps.

    Equal arrays give byte-identical files.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(v), allow_pickle=False)
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _write_png_rgb(path: str, rgb: np.ndarray) -> None:
    import cv2
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


def write_frame(out_dir: str, scene: Scene, f: int, fr: SynthFrame,
                camera: str = "front_center") -> Dict[str, str]:
    """Write one frame's five files; returns their paths (see :func:`frame_paths`)."""
    paths = frame_paths(out_dir, scene, f, camera)
    for p in paths.values():
        os.makedirs(os.path.dirname(p), exist_ok=True)
    _write_png_rgb(paths["camera"], fr.image_raw)
    with open(paths["camera_json"], "w", encoding="utf-8") as fh:
        json.dump({"cam_name": camera, "cam_tstamp": int(fr.cam_tstamp), "lidar_ids": LIDAR_IDS},
                  fh, indent=4)
    _write_png_rgb(paths["label"], fr.label_raw)
    save_npz_deterministic(paths["lidar"], fr.lidar)
    with open(paths["label3D"], "w", encoding="utf-8") as fh:
        json.dump(fr.label3d, fh, indent=4)
    with open(paths["clutter"], "w", encoding="utf-8") as fh:
        json.dump(clutter_json(fr.clutter_boxes, fr.clutter_classes), fh, indent=1)
    return paths


def clutter_json(boxes: np.ndarray, kinds: List[str]) -> Dict[str, Any]:
    """Return the ``_clutter.json`` sidecar of clutter boxes and kinds.

    Layout: ``{"frame": "camera view", "boxes": [{"class": kind, "semantic_class": A2D2 class of
    its pixels, "box": [x, y, z, l, w, h, yaw]}, ...]}`` (metres, radians; box centre; view frame
    of the label3D boxes). Clutter has no label3D box.
    """
    return {"frame": "camera view", "boxes": [
        {"class": k, "semantic_class": CLUTTER_CLASSES[k], "box": [round(float(v), 4) for v in b]}
        for k, b in zip(kinds, np.asarray(boxes).reshape(-1, 7))]}


def write_calibration(out_dir: str, width: int, height: int,
                      source: str = CAMS_LIDARS_PATH) -> str:
    """Copy A2D2's ``cams_lidars.json`` to ``<out>/cams_lidars.json`` for the output size.

    Every camera's ``CamMatrix``, ``CamMatrixOriginal`` and ``Resolution`` are adapted to (width,
    height) (see :meth:`CameraCalibration.scaled`); everything else is kept as in the original.
    """
    with open(source, "r", encoding="utf-8") as fh:
        raw = json.load(fh)
    cal = load_calibration(source).scaled((width, height))
    out = copy.deepcopy(raw)
    for name, c in out["cameras"].items():
        sc = cal.camera(name)
        c["CamMatrix"] = np.asarray(sc.cam_matrix).tolist()
        c["CamMatrixOriginal"] = np.asarray(sc.cam_matrix_original).tolist()
        c["Resolution"] = [int(width), int(height)]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "cams_lidars.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=4)
    return path


def _generate_scene(out_dir: str, seed: int, s: int, frames: int, cal_path: str, camera: str,
                    lidar: Optional[LidarConfig], return_ground_truth: bool,
                    bar: Any = None) -> Dict[str, Any]:
    """Build and write scene ``s``.

    Returns its name, per-frame point/box counts and ground truth.
    """
    cal = load_calibration(cal_path)
    cam = cal.camera(camera)
    rig = rig_poses(cal, camera, (lidar or LidarConfig()).lidars)
    hfov = float(np.arctan2(cam.cam_matrix[0, 2], cam.cam_matrix[0, 0]))
    scene = build_scene(seed, s, frames, hfov=hfov)
    name = scene_names(scene)[0]
    res: Dict[str, Any] = {"name": name, "points": [], "boxes": [], "per_class": {}, "gt": []}
    for f in range(frames):
        fr = synthesize_frame(scene, f, cam, lidar, rig)
        paths = write_frame(out_dir, scene, f, fr, camera)
        res["points"].append(int(fr.lidar["points"].shape[0]))
        res["boxes"].append(len(fr.label3d))
        for b in fr.label3d.values():
            res["per_class"][b["class"]] = res["per_class"].get(b["class"], 0) + 1
        if return_ground_truth:
            listed = np.zeros(len(fr.ids), dtype=bool)
            listed[[b["id"] for b in fr.label3d.values()]] = True
            res["gt"].append({"scene": name, "frame": f, "paths": paths, "boxes": fr.boxes,
                              "classes": fr.classes,
                              "ids": fr.ids, "visible_px": fr.visible_px,
                              "num_points": fr.num_points, "in_label3d": listed})
        if bar is not None:
            bar.update(1)
    return res


def generate(out_dir: str, scenes: int = 1, frames: int = 10, seed: int = 0, width: int = 1920,
             height: int = 1208,
             camera: str = "front_center", lidar: Optional[LidarConfig] = None,
             progress: bool = False,
             return_ground_truth: bool = False, workers: int = 1) -> Dict[str, Any]:
    """Generate ``scenes`` x ``frames`` synthetic A2D2-format frames under ``out_dir``.

    Args:
        out_dir: output directory (created). scenes, frames: counts (>= 1). seed: >= 0.
        width, height: image size (pixels); intrinsics are scaled from A2D2's 1920x1208.
        camera: only "front_center" (the others are fisheye side/rear cameras).
        lidar: :class:`LidarConfig` (default: A2D2's rig of five VLP-16, ~8k points in view).
        progress: show a tqdm progress bar.
        return_ground_truth: add ``"ground_truth"``: per frame ``{"scene", "frame", "paths",
            "boxes" (M,7) float64 view frame of all road users (listed in label3D or not),
            "classes", "ids", "visible_px", "num_points", "in_label3d" (M,) bool}``.
        workers: processes generating scenes in parallel (output identical for any value).
    Returns:
        Summary dict: out_dir, subset_dir, scenes (folder names), frames (total), resolution,
        seed, seconds, frames_per_s, points_mean, label3d_boxes_mean, boxes_per_class (listed
        boxes over all frames), calibration (path), other_scenes (scene folders already in the
        subset folder from other runs; a warning is issued when there are any).
    Raises:
        ValueError for bad counts/sizes/camera.
    """
    camera = _check_arguments(scenes, frames, seed, width, height, camera, workers)
    cal_path = write_calibration(out_dir, width, height)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=scenes * frames, unit="frame", desc="synth")
    t0 = time.perf_counter()
    results = _run_scenes(out_dir, scenes, frames, seed, cal_path, camera, lidar,
                          return_ground_truth, workers, bar)
    if bar is not None:
        bar.close()
    dt = time.perf_counter() - t0
    total = scenes * frames
    per_class: Dict[str, int] = {}
    for r in results:
        for k, v in r["per_class"].items():
            per_class[k] = per_class.get(k, 0) + v
    summary: Dict[str, Any] = {
        "out_dir": out_dir, "subset_dir": os.path.join(out_dir, SUBSET),
        "scenes": [r["name"] for r in results],
        "frames": total, "resolution": [width, height], "seed": seed, "seconds": dt,
        "frames_per_s": total / dt if dt > 0 else 0.0,
        "points_mean": float(np.mean([p for r in results for p in r["points"]])),
        "label3d_boxes_mean": float(np.mean([b for r in results for b in r["boxes"]])),
        "boxes_per_class": dict(sorted(per_class.items())), "calibration": cal_path,
    }
    if return_ground_truth:
        summary["ground_truth"] = [g for r in results for g in r["gt"]]
    subset = os.path.join(out_dir, SUBSET)
    others = (sorted(set(os.listdir(subset)) - set(summary["scenes"])) if os.path.isdir(subset)
              else [])
    if others:
        warnings.warn(f"{subset} also holds {len(others)} scene folder(s) from other runs (e.g. "
                      f"{others[0]}); readers will list them too", stacklevel=2)
    summary["other_scenes"] = others
    return summary


def _check_arguments(scenes: int, frames: int, seed: int, width: int, height: int, camera: str,
                     workers: int) -> str:
    """Validate :func:`generate`'s arguments; returns the camera name ("front_center").

    Raises:
        ValueError for bad counts/sizes/camera.
    """
    if camera not in ("front_center", "cam_front_center"):
        raise ValueError(f"camera {camera!r}: the synthetic generator supports only "
                         "'front_center'")
    if scenes < 1 or frames < 1:
        raise ValueError(f"scenes and frames must be >= 1, got {scenes}, {frames}")
    if width < 32 or height < 32:
        raise ValueError(f"image size {width}x{height} too small (>= 32x32)")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return "front_center"


def _run_scenes(out_dir: str, scenes: int, frames: int, seed: int, cal_path: str, camera: str,
                lidar: Optional[LidarConfig], return_ground_truth: bool, workers: int,
                bar: Any) -> List[Dict[str, Any]]:
    """Generate every scene, in ``workers`` processes when > 1.

    Returns the results in scene order (see :func:`_generate_scene`).
    """
    results: List[Dict[str, Any]] = []
    if workers == 1 or scenes == 1:
        for s in range(scenes):
            results.append(_generate_scene(out_dir, seed, s, frames, cal_path, camera, lidar,
                                           return_ground_truth, bar))
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(_generate_scene, out_dir, seed, s, frames, cal_path, camera, lidar,
                              return_ground_truth)
                    for s in range(scenes)]
            for fu in futs:
                results.append(fu.result())
                if bar is not None:
                    bar.update(frames)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros synth``."""
    parser.add_argument("--out", required=True,
                        help="output directory (A2D2 layout is created inside)")
    parser.add_argument("--scenes", type=int, default=1, help="number of scenes (default 1)")
    parser.add_argument("--frames", type=int, default=10,
                        help="frames per scene at 10 Hz (default 10)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (default 0); same seed = same files")
    parser.add_argument("--width", type=int, default=1920,
                        help="image width in pixels (default 1920)")
    parser.add_argument("--height", type=int, default=1208,
                        help="image height in pixels (default 1208)")
    parser.add_argument("--camera", default="front_center", help="camera (only front_center)")
    parser.add_argument(
        "--az-step", type=float, default=None, help="lidar azimuth step in degrees (default 0.2)"
    )
    parser.add_argument("--workers", type=int, default=1,
                        help="scenes generated in parallel processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run the generator; prints a summary. Returns 0, or 2 on bad arguments."""
    lidar = LidarConfig() if args.az_step is None else LidarConfig(az_step_deg=float(args.az_step))
    try:
        s = generate(args.out, scenes=args.scenes, frames=args.frames, seed=args.seed,
                     width=args.width,
                     height=args.height, camera=args.camera, lidar=lidar,
                     progress=not args.no_progress, workers=args.workers)
    except ValueError as e:
        print(f"bev-mtl-ros synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {s['frames']} frames in {len(s['scenes'])} scene(s) to {s['subset_dir']} "
          f"({s['resolution'][0]}x{s['resolution'][1]}, {s['frames_per_s']:.2f} frames/s)")
    print(f"lidar points/frame: {s['points_mean']:.0f}; label3D boxes/frame: "
          f"{s['label3d_boxes_mean']:.1f}; boxes per class: {s['boxes_per_class']}")
    print(f"calibration: {s['calibration']}")
    return 0
