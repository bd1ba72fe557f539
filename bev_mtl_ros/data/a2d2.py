"""Reader for A2D2 (Audi Autonomous Driving Dataset) directories, real or synthetic.

Layout (A2D2 README; Geyer et al. 2020)::

    <root>/<scene>/camera/cam_<name>/<stamp>_camera_<name>_<frame>.png   (+ .json sidecar)
    <root>/<scene>/lidar/cam_<name>/<stamp>_lidar_<name>_<frame>.npz
    <root>/<scene>/label/cam_<name>/<stamp>_label_<name>_<frame>.png
    <root>/<scene>/label3D/cam_<name>/<stamp>_label3D_<name>_<frame>.json

(``<name>`` is written without the underscore in file names: ``frontcenter``.) Files are linked by
the trailing frame number. ``root`` may be a subset folder holding scenes, a single scene, or the
raw sensor-fusion ``<City>/camera_lidar`` folder (scenes are searched up to 3 levels deep).

Frames and units: lidar points, boxes and ``3d_points`` are in the camera's *view* frame (x
forward, y left, z up), metres. Timestamps are TAI microseconds (UTC = TAI - 37 s). Images are
returned undistorted (``CamMatrix``); lidar ``row``/``col`` refer to the undistorted image.

The readers of single files (label3D, lidar npz, PNGs, sidecars; box corner order) are in
:mod:`bev_mtl_ros.data.a2d2_files`; the public ones are importable from here too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.a2d2_files import (
    CORNER_SIGNS,
    TAI_MINUS_UTC_S,
    A2D2FormatError,
    Label3D,
    LidarScan,
    axis_angle_to_matrix,
    box_corners,
    file_camera_name,
    load_camera_sidecar,
    load_clutter,
    load_label3d,
    load_label_ids,
    load_lidar_npz,
    parse_label3d,
    read_png_rgb,
    tai_us_to_utc_ns,
    yaw_from_matrix,
)
from bev_mtl_ros.data.calibration import (Calibration, CameraCalibration, load_calibration,
                                          undistort_image)

__all__ = [
    "MODALITIES", "FrameRecord", "A2D2Frame", "A2D2Dataset",
    # per-file readers (bev_mtl_ros.data.a2d2_files), re-exported for the readers' callers
    "CORNER_SIGNS", "TAI_MINUS_UTC_S", "A2D2FormatError", "Label3D", "LidarScan",
    "axis_angle_to_matrix", "box_corners", "file_camera_name", "load_camera_sidecar",
    "load_clutter", "load_label3d", "load_label_ids", "load_lidar_npz", "parse_label3d",
    "read_png_rgb", "tai_us_to_utc_ns", "yaw_from_matrix",
]

#: Modalities (sub-folders of a scene) and the file extension of each.
MODALITIES: Tuple[str, ...] = ("camera", "lidar", "label", "label3D")
_EXT = {"camera": ".png", "lidar": ".npz", "label": ".png", "label3D": ".json"}
_FRAME_RE = re.compile(r"_(\d+)\.(png|npz|json)$")
#: A2D2 file name: ``<drive stamp>_<modality>_<camera>_<frame>.<ext>`` (e.g.
#: ``20180810142822_label_frontcenter_000006737.png``); used for flat folders of frames.
_FILE_RE = re.compile(r"^(\d+)_(camera|lidar|label3D|label)_([a-z]+)_(\d+)\.(png|npz|json)$")


# ---------------------------------------------------------------------------------------- dataset
@dataclass
class FrameRecord:
    """Files of one frame; a modality's path is None when its file is absent."""

    scene: str
    frame: str
    paths: Dict[str, Optional[str]]

    @property
    def missing(self) -> Tuple[str, ...]:
        return tuple(m for m in MODALITIES if self.paths.get(m) is None)

    @property
    def key(self) -> str:
        return f"{self.scene}/{self.frame}"


@dataclass
class A2D2Frame:
    """One loaded frame. Missing modalities are None (image, semantic, cam_tstamp) or empty.

    Attributes:
        scene, frame: scene folder name and frame number string.
        camera: A2D2 camera name.
        points: (N, 3) float32 view frame, metres. reflectance (N,) f32 0..255; timestamp (N,)
            int64 µs TAI; lidar_id (N,) uint8; row, col (N,) f32 undistorted pixel coordinates.
        image: (H, W, 3) uint8 undistorted RGB, or None.
        semantic: (H, W) uint8 merged class ids (255 = outside the raw image), or None.
        boxes: (M, 7) float32 [x, y, z, l, w, h, yaw]; box_classes: A2D2 class names (M);
            box_points3d: (M, 8, 3) file ``3d_points`` (NaN where absent).
        cam_tstamp: camera timestamp, µs TAI, or None.
        lidar_ids: {lidar_id: lidar name} from the sidecar.
        calibration: the camera's calibration.
        paths: modality -> file path (None = missing); missing: the missing modalities.
        box_ids: the boxes' A2D2 ``id`` values as strings (the JSON key when absent).
        clutter_boxes: (C, 7) float32 [x, y, z, l, w, h, yaw] view frame of the static clutter
            listed in the synthetic generator's ``<label3D stem>_clutter.json`` sidecar (hard
            negatives: trees, poles, signs, ...); clutter_classes: their kinds (C). Empty when
            the sidecar is absent (real A2D2 has none).
    """

    scene: str
    frame: str
    camera: str
    points: np.ndarray
    reflectance: np.ndarray
    timestamp: np.ndarray
    lidar_id: np.ndarray
    row: np.ndarray
    col: np.ndarray
    image: Optional[np.ndarray]
    semantic: Optional[np.ndarray]
    boxes: np.ndarray
    box_classes: List[str]
    box_points3d: np.ndarray
    cam_tstamp: Optional[int]
    lidar_ids: Dict[int, str]
    calibration: CameraCalibration
    paths: Dict[str, Optional[str]]
    missing: Tuple[str, ...] = ()
    box_ids: List[str] = field(default_factory=list)
    clutter_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    clutter_classes: List[str] = field(default_factory=list)

    @property
    def points_xyzi(self) -> np.ndarray:
        """(N, 4) float32 [x, y, z, reflectance 0..255]: the pillarizer's input."""
        return np.concatenate([self.points, self.reflectance[:, None]], axis=1).astype(np.float32)

    @property
    def stamp_us(self) -> Optional[int]:
        """Frame time, µs TAI: the camera timestamp, else the median lidar point timestamp."""
        if self.cam_tstamp is not None:
            return int(self.cam_tstamp)
        if self.timestamp.size:
            return int(np.median(self.timestamp))
        return None


def _find_scene_dirs(root: str, max_depth: int = 3) -> List[str]:
    """Directories under root (root included) that contain a modality folder."""
    found: List[str] = []

    def is_scene(d: str) -> bool:
        return any(os.path.isdir(os.path.join(d, m)) for m in MODALITIES)

    def walk(d: str, depth: int) -> None:
        if is_scene(d):
            found.append(d)
            return
        if depth >= max_depth:
            return
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.is_dir() and not e.name.startswith("."):
                walk(e.path, depth + 1)

    walk(root, 0)
    return found


class A2D2Dataset:
    """Frames of one camera in an A2D2(-format) directory.

    Args:
        root: dataset directory (subset root, a single scene, ``<City>/camera_lidar``, or a flat
            folder of A2D2-named files such as ``<drive>_camera_frontcenter_<frame>.png``).
        camera: A2D2 camera name ("front_center", "side_left", ...; "cam_" prefix allowed).
        calibration: a :class:`Calibration`, or a path to ``cams_lidars.json``; default: the first
            ``cams_lidars.json`` found in ``root`` or up to 2 parent folders, else the packaged
            copy.
        require: modalities a frame must have to be listed (default: ("lidar",)). Frames lacking
            other modalities are listed and reported by :meth:`scan_report`.

    Attributes:
        frames: list of :class:`FrameRecord`, sorted by scene then frame number.
        skipped: frames not listed because a required modality was missing.
    Raises:
        FileNotFoundError when root does not exist or holds no scene for this camera.
    """

    def __init__(self, root: str, camera: str = "front_center", calibration: Any = None,
                 require: Sequence[str] = ("lidar",)):
        self.root = os.path.abspath(root)
        self.camera = camera[4:] if camera.startswith("cam_") else camera
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"A2D2 root {root!r} is not a directory")
        if isinstance(calibration, Calibration):
            self.calibration = calibration
        else:
            self.calibration = load_calibration(calibration or self._find_calibration())
        self.cam = self.calibration.camera(self.camera)
        self.require = tuple(require)
        self.frames: List[FrameRecord] = []
        self.skipped: List[FrameRecord] = []
        self.scenes: List[str] = []
        self._scan()
        if not self.frames and not self.skipped:
            raise FileNotFoundError(f"{root}: no A2D2 frames for camera {self.camera!r} "
                                    "(expected "
                                    f"<scene>/{{camera,lidar,label,label3D}}/cam_{self.camera}/)")

    def _find_calibration(self) -> Optional[str]:
        d = self.root
        for _ in range(3):
            p = os.path.join(d, "cams_lidars.json")
            if os.path.isfile(p):
                return p
            d = os.path.dirname(d)
        return None

    def _add_scene(self, scene: str, by_frame: Dict[str, Dict[str, Optional[str]]]) -> None:
        self.scenes.append(scene)
        for fr in sorted(by_frame, key=int):
            paths = {m: by_frame[fr].get(m) for m in MODALITIES}
            rec = FrameRecord(scene, fr, paths)
            if any(paths[m] is None for m in self.require):
                self.skipped.append(rec)
            else:
                self.frames.append(rec)

    def _scan_flat(self) -> None:
        """List frames stored side by side in ``root`` with A2D2 file names.

        As A2D2's own sample downloads and ``test/data/real_a2d2`` hold them; the scene is the
        drive stamp.
        """
        by_scene: Dict[str, Dict[str, Dict[str, Optional[str]]]] = {}
        for name in sorted(os.listdir(self.root)):
            mt = _FILE_RE.match(name)
            if (not mt or mt.group(3) != file_camera_name(self.camera)
                    or not name.endswith(_EXT[mt.group(2)])):
                continue
            scene, modality, frame = mt.group(1), mt.group(2), mt.group(4)
            by_scene.setdefault(scene, {}).setdefault(frame, {})[modality] = \
                os.path.join(self.root, name)
        for scene in sorted(by_scene):
            self._add_scene(scene, by_scene[scene])

    def _scan(self) -> None:
        folder = f"cam_{self.camera}"
        if not _find_scene_dirs(self.root):
            self._scan_flat()
            return
        for sdir in _find_scene_dirs(self.root):
            scene = (os.path.relpath(sdir, self.root) if sdir != self.root
                     else os.path.basename(sdir))
            by_frame: Dict[str, Dict[str, Optional[str]]] = {}
            for m in MODALITIES:
                d = os.path.join(sdir, m, folder)
                if not os.path.isdir(d):
                    continue
                for name in os.listdir(d):
                    if not name.endswith(_EXT[m]):
                        continue
                    mt = _FRAME_RE.search(name)
                    if not mt:
                        continue
                    by_frame.setdefault(mt.group(1), {})[m] = os.path.join(d, name)
            if not by_frame:
                continue
            self._add_scene(scene, by_frame)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> A2D2Frame:
        return self.load_frame(i)

    def __iter__(self) -> Iterator[A2D2Frame]:
        for i in range(len(self.frames)):
            yield self.load_frame(i)

    def scan_report(self) -> Dict[str, Any]:
        """Report what was found.

        Returns ``{"frames": n listed, "skipped": n without a required modality, "scenes": [...],
        "missing": {modality: count over listed+skipped frames}, "missing_frames": {modality:
        [scene/frame, ...]}, "summary": one line of text}``.
        """
        allrec = self.frames + self.skipped
        missing = {m: [r.key for r in allrec if r.paths.get(m) is None] for m in MODALITIES}
        counts = {m: len(v) for m, v in missing.items()}
        parts = ", ".join(f"{m} missing in {c}" for m, c in counts.items() if c)
        summary = (f"{self.root} [cam_{self.camera}]: {len(self.frames)} frames in "
                   f"{len(self.scenes)} scene(s)"
                   + (f", {len(self.skipped)} skipped (no "
                      f"{'/'.join(self.require)})" if self.skipped else "")
                   + (f"; {parts}" if parts else "; all modalities present"))
        return {"frames": len(self.frames), "skipped": len(self.skipped),
                "scenes": list(self.scenes),
                "missing": counts, "missing_frames": missing, "summary": summary}

    def load_frame(self, i: int, load_image: bool = True, load_label: bool = True,
                   undistort: bool = True) -> A2D2Frame:
        """Load frame ``i`` (index into :attr:`frames`).

        Images and labels are undistorted (A2D2 PNGs are stored distorted); ``undistort=False``
        returns them raw (then lidar row/col and ``CamMatrix`` do not apply to them).

        Raises:
            A2D2FormatError naming the file and the problem (truncated npz, PNG of the wrong size,
            JSON missing a key, unknown label colour).
        """
        import cv2
        rec = self.frames[i]
        p = rec.paths
        cam = self.cam
        if p.get("lidar"):
            scan = load_lidar_npz(p["lidar"])
        else:
            e = np.zeros(0, dtype=np.float32)
            scan = LidarScan(np.zeros((0, 3), np.float32), e, np.zeros(0, np.int64),
                             np.zeros(0, np.uint8), e, e)
        image = None
        if load_image and p.get("camera"):
            image = read_png_rgb(p["camera"], (cam.width, cam.height))
            if undistort:
                image = undistort_image(image, cam, cv2.INTER_LINEAR)
        cam_tstamp, lidar_ids = None, {}
        side = os.path.splitext(p["camera"])[0] + ".json" if p.get("camera") else None
        if side and os.path.isfile(side):
            sc = load_camera_sidecar(side)
            cam_tstamp, lidar_ids = sc["cam_tstamp"], sc["lidar_ids"]
        semantic = None
        if load_label and p.get("label"):
            semantic = load_label_ids(p["label"], cam, undistort=undistort)
        if p.get("label3D"):
            lab = load_label3d(p["label3D"])
        else:
            lab = Label3D(np.zeros((0, 7), np.float32), [], [], np.zeros((0, 8, 3)),
                          np.zeros((0, 3, 3)))
        clutter_boxes, clutter_classes = np.zeros((0, 7), np.float32), []
        if p.get("label3D"):
            cpath = os.path.splitext(p["label3D"])[0] + "_clutter.json"
            if os.path.isfile(cpath):
                clutter_boxes, clutter_classes = load_clutter(cpath)
        return A2D2Frame(scene=rec.scene, frame=rec.frame, camera=self.camera, points=scan.points,
                         reflectance=scan.reflectance, timestamp=scan.timestamp,
                         lidar_id=scan.lidar_id,
                         row=scan.row, col=scan.col, image=image, semantic=semantic,
                         boxes=lab.boxes,
                         box_classes=lab.classes, box_points3d=lab.points3d, cam_tstamp=cam_tstamp,
                         lidar_ids=lidar_ids, calibration=cam, paths=dict(p), missing=rec.missing,
                         box_ids=[str(b) for b in lab.ids], clutter_boxes=clutter_boxes,
                         clutter_classes=clutter_classes)
