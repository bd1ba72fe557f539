"""Readers of single A2D2 files (real or synthetic): label3D boxes, lidar npz, PNGs, sidecars.

Frames and units: lidar points, boxes and ``3d_points`` are in the camera's *view* frame (x
forward, y left, z up), metres. Timestamps are TAI microseconds (UTC = TAI - 37 s).

Box corner order (:func:`box_corners`) is the one of A2D2's official tutorial (``get_points``):
bottom-rear-left, bottom-front-left, bottom-front-right, bottom-rear-right, then the same four on
top; "front" = +length/2 along the box x axis, "left" = +width/2 along its y axis, "bottom" =
-height/2. The synthetic generator writes ``3d_points`` in this order.

Every reader raises :class:`A2D2FormatError` naming the file and the problem. The directory
walker and frame loader that use them are in :mod:`bev_mtl_ros.data.a2d2`.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.calibration import CameraCalibration, undistort_image
from bev_mtl_ros.data.classes import UNKNOWN_ID, UnknownColourError, rgb_label_to_ids
from bev_mtl_ros.geometry import CORNER_SIGNS as GEOMETRY_CORNER_SIGNS
from bev_mtl_ros.geometry import box_corners_3d

#: TAI - UTC in seconds, valid since 2017-01-01 (A2D2 was recorded in 2018/2019).
TAI_MINUS_UTC_S = 37

#: Unit box corner signs in A2D2's tutorial order (brl, bfl, bfr, brr, trl, tfl, tfr, trr):
#: multiply by (length/2, width/2, height/2).
CORNER_SIGNS = np.array([[-1, +1, -1], [+1, +1, -1], [+1, -1, -1], [-1, -1, -1],
                         [-1, +1, +1], [+1, +1, +1], [+1, -1, +1], [-1, -1, +1]], dtype=np.float64)
#: (8,) index of each A2D2 corner in :data:`bev_mtl_ros.geometry.CORNER_SIGNS` order.
_FROM_GEOMETRY_ORDER = np.array([np.flatnonzero((GEOMETRY_CORNER_SIGNS == s).all(1))[0]
                                 for s in CORNER_SIGNS])


class A2D2FormatError(ValueError):
    """A file does not follow the A2D2 format; the message names the file and the problem."""


def tai_us_to_utc_ns(t_us: Any) -> Any:
    """A2D2 TAI microseconds -> UTC nanoseconds (int or int64 array): ``(t - 37e6) * 1000``."""
    if isinstance(t_us, np.ndarray):
        return (t_us.astype(np.int64) - TAI_MINUS_UTC_S * 1_000_000) * 1000
    return (int(t_us) - TAI_MINUS_UTC_S * 1_000_000) * 1000


def file_camera_name(camera: str) -> str:
    """A2D2 camera name as written in file names: ``front_center`` -> ``frontcenter``."""
    return camera.replace("_", "")


# ---------------------------------------------------------------------------------------- boxes
def axis_angle_to_matrix(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotate by ``angle`` radians about unit(``axis``): Rodrigues' formula, 3x3 float64.

    A zero axis gives the identity.
    """
    a = np.asarray(axis, dtype=np.float64).reshape(3)
    n = np.linalg.norm(a)
    if n < 1e-12:
        return np.eye(3)
    k = a / n
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * (K @ K)


def yaw_from_matrix(R: np.ndarray) -> float:
    """Return the yaw about +z of a rotation matrix, ``atan2(R[1,0], R[0,0])``.

    Exact for pure z rotations.
    """
    return float(np.arctan2(R[1, 0], R[0, 0]))


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """Return the corners of yaw-only boxes in A2D2's ``3d_points`` order.

    The order is described in the module docstring: :func:`bev_mtl_ros.geometry.box_corners_3d`
    permuted by :data:`_FROM_GEOMETRY_ORDER`.

    Args:
        boxes: (N, 7) [x, y, z, length, width, height, yaw], view frame, metres/radians;
            z is the box centre (any shape that reshapes to (N, 7)).
    Returns:
        (N, 8, 3) float64 corners.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    return box_corners_3d(b)[:, _FROM_GEOMETRY_ORDER]


@dataclass
class Label3D:
    """Parsed ``label3D`` JSON.

    Attributes:
        boxes: (N, 7) float32 [x, y, z, l, w, h, yaw], view frame.
        classes: A2D2 box class names (N).
        ids: A2D2 box ids / keys (N).
        points3d: (N, 8, 3) float64 file ``3d_points`` (NaN where absent).
        rotations: (N, 3, 3) float64 full rotation from (axis, rot_angle).
        extra: per-box dict of the other fields (2d_bbox, truncation, occlusion, alpha, ...).
    """

    boxes: np.ndarray
    classes: List[str]
    ids: List[Any]
    points3d: np.ndarray
    rotations: np.ndarray
    extra: List[Dict[str, Any]] = field(default_factory=list)


def parse_label3d(data: Any, path: str = "<label3D>", tilt_tol_rad: float = 0.02) -> Label3D:
    """Parse a ``label3D`` dict ``{"box_0": {...}, ...}``.

    yaw = yaw of the Rodrigues rotation of (``axis``, ``rot_angle``); with axis [0, 0, -1] this is
    -rot_angle. A box whose rotation is tilted by more than ``tilt_tol_rad`` from a pure yaw
    rotation triggers a warning (its yaw is still extracted).

    Raises:
        A2D2FormatError naming ``path``, the box and the missing/bad key.
    """
    if not isinstance(data, dict):
        raise A2D2FormatError(f"{path}: label3D must be a JSON object of boxes, got "
                              f"{type(data).__name__}")
    n = len(data)
    boxes = np.zeros((n, 7), dtype=np.float32)
    pts = np.full((n, 8, 3), np.nan)
    rots = np.zeros((n, 3, 3))
    classes, ids, extra = [], [], []
    for i, (key, b) in enumerate(data.items()):
        if not isinstance(b, dict):
            raise A2D2FormatError(f"{path}: {key} is not an object")
        for k in ("class", "center", "size", "axis", "rot_angle"):
            if k not in b:
                raise A2D2FormatError(f"{path}: {key} is missing key {k!r}")
        try:
            center = np.asarray(b["center"], dtype=np.float64).reshape(3)
            size = np.asarray(b["size"], dtype=np.float64).reshape(3)
            axis = np.asarray(b["axis"], dtype=np.float64).reshape(3)
            angle = float(b["rot_angle"])
        except (TypeError, ValueError) as e:
            raise A2D2FormatError(f"{path}: {key} has a malformed center/size/axis/rot_angle: "
                                  f"{e}") from None
        R = axis_angle_to_matrix(axis, angle)
        tilt = float(np.arccos(np.clip(R[2, 2], -1.0, 1.0)))
        if tilt > tilt_tol_rad:
            warnings.warn(f"{path}: {key} rotation is tilted {np.degrees(tilt):.1f} deg from "
                          "vertical; using its yaw only", stacklevel=2)
        boxes[i, :3] = center
        boxes[i, 3:6] = size
        boxes[i, 6] = yaw_from_matrix(R)
        rots[i] = R
        if "3d_points" in b:
            try:
                pts[i] = np.asarray(b["3d_points"], dtype=np.float64).reshape(8, 3)
            except (TypeError, ValueError):
                raise A2D2FormatError(f"{path}: {key} '3d_points' is not 8x3") from None
        classes.append(str(b["class"]))
        ids.append(b.get("id", key))
        extra.append({k: v for k, v in b.items()
                      if k not in ("class", "center", "size", "axis", "rot_angle",
                                   "3d_points", "id")})
    return Label3D(boxes, classes, ids, pts, rots, extra)


def load_label3d(path: str) -> Label3D:
    """Read and parse a ``label3D`` JSON file. Raises A2D2FormatError naming the file."""
    return parse_label3d(_read_json(path), path)


# ---------------------------------------------------------------------------------------- files
def _read_json(path: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise A2D2FormatError(f"{path}: not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise A2D2FormatError(f"{path}: not UTF-8 text: {e}") from None


@dataclass
class LidarScan:
    """Points of one lidar ``.npz`` (merged lidars, only points projecting into the camera).

    Attributes:
        points: (N, 3) float32 x, y, z, camera view frame, metres.
        reflectance: (N,) float32, 0..255.
        timestamp: (N,) int64 µs TAI.
        lidar_id: (N,) uint8 0..4 (see the camera sidecar's ``lidar_ids``).
        row, col: (N,) float32 pixel position in the undistorted image (NaN if absent).
        dropped_invalid: points removed because ``pcloud_attr.valid`` was false (raw subset).
    """

    points: np.ndarray
    reflectance: np.ndarray
    timestamp: np.ndarray
    lidar_id: np.ndarray
    row: np.ndarray
    col: np.ndarray
    dropped_invalid: int = 0


def load_lidar_npz(path: str) -> LidarScan:
    """Read an A2D2 lidar ``.npz``.

    Labelled subsets hold ``points``, ``reflectance``, ``timestamp``, ``row``, ``col``,
    ``lidar_id``, ...; the raw sensor-fusion subset holds ``pcloud_points`` and
    ``pcloud_attr.<name>`` (points with ``pcloud_attr.valid == False`` are dropped).

    Non-finite coordinates are kept (the pillarizer counts and drops them).

    Raises:
        A2D2FormatError naming the file: not a zip/npz, truncated, missing ``points``, or arrays of
        inconsistent length.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if "points" in keys:
                pre = ""
                pkey = "points"
            elif "pcloud_points" in keys:
                pre = "pcloud_attr."
                pkey = "pcloud_points"
            else:
                raise A2D2FormatError(f"{path}: no 'points' or 'pcloud_points' array (keys: "
                                      f"{sorted(keys)})")
            pts = np.asarray(z[pkey])
            if pts.ndim != 2 or pts.shape[1] != 3:
                raise A2D2FormatError(f"{path}: {pkey!r} must be (N, 3), got {pts.shape}")
            n = pts.shape[0]

            def get(name: str, default: float, dtype) -> np.ndarray:
                k = pre + name
                if k not in keys:
                    return np.full(n, default, dtype=dtype)
                a = np.asarray(z[k]).reshape(-1)
                if a.shape[0] != n:
                    raise A2D2FormatError(f"{path}: {k!r} has {a.shape[0]} values for {n} points")
                return a

            refl = get("reflectance", 0, np.float32).astype(np.float32)
            ts = get("timestamp", 0, np.int64).astype(np.int64)
            lid = get("lidar_id", 0, np.uint8)
            row = get("row", np.nan, np.float32).astype(np.float32)
            col = get("col", np.nan, np.float32).astype(np.float32)
            valid = get("valid", 1, bool).astype(bool) if pre else np.ones(n, dtype=bool)
    except A2D2FormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise A2D2FormatError(f"{path}: unreadable or truncated npz: {e}") from None
    lid_f = np.asarray(lid, dtype=np.float64)
    lid_u8 = (np.where(np.isfinite(lid_f), lid_f, 255)
              .astype(np.int64).clip(0, 255).astype(np.uint8))
    dropped = int(n - valid.sum())
    if dropped:
        pts, refl, ts, lid_u8, row, col = (a[valid] for a in (pts, refl, ts, lid_u8, row, col))
    return LidarScan(np.ascontiguousarray(pts, dtype=np.float32), refl, ts, lid_u8, row, col,
                     dropped)


def read_png_rgb(path: str, expected_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Read an 8-bit PNG as (H, W, 3) uint8 RGB; ``expected_size`` = (width, height).

    Raises A2D2FormatError naming the file when unreadable or of the wrong size/channels.
    """
    import cv2
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise A2D2FormatError(f"{path}: not a readable image (truncated or not PNG)")
    if img.dtype != np.uint8:
        raise A2D2FormatError(f"{path}: expected 8-bit image, got {img.dtype}")
    if img.ndim == 2 or img.shape[2] not in (3, 4):
        raise A2D2FormatError(f"{path}: expected an RGB image, got shape {img.shape}")
    img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if expected_size is not None and (img.shape[1], img.shape[0]) != tuple(expected_size):
        raise A2D2FormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, calibration "
                              f"expects {expected_size[0]}x{expected_size[1]}")
    return img


def load_camera_sidecar(path: str) -> Dict[str, Any]:
    """Read a camera ``.json`` sidecar.

    Returns a dict with ``cam_tstamp`` (int µs TAI) and ``lidar_ids`` ({int: name}, may be empty).
    Raises A2D2FormatError naming the file when ``cam_tstamp`` is missing or not an integer.
    """
    d = _read_json(path)
    if not isinstance(d, dict) or "cam_tstamp" not in d:
        raise A2D2FormatError(f"{path}: missing key 'cam_tstamp'")
    try:
        t = int(d["cam_tstamp"])
    except (TypeError, ValueError):
        raise A2D2FormatError(f"{path}: 'cam_tstamp' is not an integer: "
                              f"{d['cam_tstamp']!r}") from None
    lids = {}
    for k, v in (d.get("lidar_ids") or {}).items():
        try:
            lids[int(k)] = str(v)
        except (TypeError, ValueError):
            raise A2D2FormatError(f"{path}: bad lidar_ids key {k!r}") from None
    out = dict(d)
    out["cam_tstamp"] = t
    out["lidar_ids"] = lids
    return out


def load_label_ids(path: str, cam: CameraCalibration, undistort: bool = True) -> np.ndarray:
    """Read a label PNG as (H, W) uint8 merged class ids, undistorted.

    Undistorted with nearest-neighbour interpolation (pixels mapping outside the raw image = 255,
    ignored). Raises A2D2FormatError naming the file for unreadable/wrong-size images or unknown
    colours.
    """
    rgb = read_png_rgb(path, (cam.width, cam.height))
    try:
        ids = rgb_label_to_ids(rgb, path=path)
    except UnknownColourError as e:
        raise A2D2FormatError(str(e)) from None
    if undistort:
        import cv2
        ids = undistort_image(ids, cam, cv2.INTER_NEAREST, border_value=UNKNOWN_ID)
    return ids


def load_clutter(path: str) -> Tuple[np.ndarray, List[str]]:
    """Read a ``_clutter.json`` sidecar written by ``bev-mtl-ros synth``.

    Its layout: ``{"frame": "camera view", "boxes": [{"class", "semantic_class", "box":
    [x,y,z,l,w,h,yaw]}]}``.

    Returns:
        ((C, 7) float32 boxes in the camera view frame, metres/radians; C class names).
    Raises:
        A2D2FormatError naming the file when it is not such a JSON object or a box is malformed.
    """
    d = _read_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("boxes"), list):
        raise A2D2FormatError(f"{path}: clutter sidecar must be an object with a 'boxes' list")
    boxes = np.zeros((len(d["boxes"]), 7), dtype=np.float32)
    names: List[str] = []
    for i, b in enumerate(d["boxes"]):
        try:
            boxes[i] = np.asarray(b["box"], dtype=np.float32).reshape(7)
            names.append(str(b["class"]))
        except (KeyError, TypeError, ValueError) as e:
            raise A2D2FormatError(
                f"{path}: clutter box {i}: need 'class' and a 7-value 'box' ({e})"
            ) from None
    if not np.isfinite(boxes).all():
        raise A2D2FormatError(f"{path}: clutter boxes must be finite")
    return boxes, names
