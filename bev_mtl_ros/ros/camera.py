"""The camera through its ``sensor_msgs/CameraInfo``.

Undistort ``image_raw``, use ``image_rect`` as it is, and compare the camera with the one the
model was trained for.

CameraInfo conventions (REP 104 / ``image_pipeline``): ``K`` (3x3, row-major 9) and ``D`` describe
the raw image; ``P`` (3x4) the rectified one (its left 3x3 is the new camera matrix); ``R`` the
rectification rotation (identity for a monocular camera). ``D`` all zero (or empty) means the
image needs no undistortion. Distortion models: ``plumb_bob`` / ``rational_polynomial``
(OpenCV's radial-tangential model, 4..14 coefficients) and ``equidistant`` (OpenCV's fisheye model,
4 coefficients).

The maps come from :meth:`bev_mtl_ros.data.calibration.CameraCalibration.undistort_maps` (one
implementation of undistortion for the converter and the node: K = CamMatrixOriginal,
D = Distortion, new K = CamMatrix), cached per calibration, so each CameraInfo content costs one
``initUndistortRectifyMap`` and each image one ``cv2.remap``. No rclpy import: works on any
object with CameraInfo's fields.

Validation on arrival (:func:`camera_info_problem`, once per CameraInfo, not per image): D, K, R
and P finite; K non-singular with positive focal lengths (K = 0 is an uncalibrated camera); P's
left 3x3 likewise when P is set; a D of a count OpenCV's model accepts (plumb_bob /
rational_polynomial: 4, 5, 8, 12 or 14 coefficients; equidistant: 4), or empty. A refused
CameraInfo is kept as a *refusal*: images paired with it are used as they are (status
``camera_info_invalid``), never undistorted with an impossible calibration (OpenCV raises on a
wrong count; NaN in D or K = 0 gives an all-black image).

Pairing with the image (:meth:`ImageRectifier.rectify`): the CameraInfo whose stamp is nearest
to the image's, when it lies within ``slop``; else the latest one (e.g. a CameraInfo published
with a zero or a constant stamp).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.calibration import CameraCalibration, undistort_image

__all__ = ["RECT_MODELS", "D_COUNTS", "Rectified", "ImageRectifier", "camera_info_problem",
           "nominal_camera_mismatch"]

#: distortion models the node undistorts (CameraInfo.distortion_model)
RECT_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")

#: coefficient counts of D that OpenCV accepts per model (``cv2.initUndistortRectifyMap``: k1 k2
#: p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [tx ty]]]]; ``cv2.fisheye``: k1 k2 k3 k4); an empty D is
#: always allowed (no distortion)
D_COUNTS = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (4, 5, 8, 12, 14),
            "equidistant": (4,)}


def _camera_matrix_problem(name: str, M: np.ndarray) -> Optional[str]:
    """Return why a (3, 3) camera matrix is unusable (None when it is a pinhole matrix)."""
    if not (M[0, 0] > 0 and M[1, 1] > 0):
        return (f"{name} has focal lengths fx {M[0, 0]:g}, fy {M[1, 1]:g} (must be > 0; "
                f"{name} = 0 means an uncalibrated camera)")
    if not np.allclose(M[2], (0.0, 0.0, 1.0)) or abs(np.linalg.det(M)) < 1e-12:
        return f"{name} is not a camera matrix (singular or last row {M[2].tolist()} != [0, 0, 1])"
    return None


def camera_info_problem(info: Any) -> Optional[str]:
    """Return why a CameraInfo cannot be used to undistort images, or None when it can.

    Checks (REP 104 field layout; OpenCV's accepted coefficient counts :data:`D_COUNTS`):
    D, K, R and P finite and of their sizes (D any, K 9, R 9, P 12); K a pinhole matrix
    (fx, fy > 0, last row [0, 0, 1], non-singular); P's left 3x3 likewise when P is set
    (P[0] != 0 or P[5] != 0); D's count allowed for the distortion model (only checked for
    :data:`RECT_MODELS`; other models are reported per image as ``unknown_model``).

    Args:
        info: sensor_msgs/CameraInfo or any object with ``distortion_model``, ``d``, ``k``,
            ``r``, ``p``.
    Returns:
        One line naming the first problem (with the offending values), or None.
    """
    try:
        d = np.asarray(info.d, dtype=np.float64).reshape(-1)
        k = np.asarray(info.k, dtype=np.float64).reshape(-1)
        r = np.asarray(info.r, dtype=np.float64).reshape(-1)
        p = np.asarray(info.p, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        return f"fields are not numeric arrays ({e})"
    if (k.size, r.size, p.size) != (9, 9, 12):
        return f"K, R, P have {k.size}, {r.size}, {p.size} values (need 9, 9, 12)"
    for name, v in (("D", d), ("K", k), ("R", r), ("P", p)):
        if not np.isfinite(v).all():
            return f"{name} has non-finite values {v.tolist()}"
    text = _camera_matrix_problem("K", k.reshape(3, 3))
    if text:
        return text
    if p[0] != 0.0 or p[5] != 0.0:
        text = _camera_matrix_problem("P", p.reshape(3, 4)[:, :3])
        if text:
            return text
    model = str(info.distortion_model)
    if d.size and model in D_COUNTS and d.size not in D_COUNTS[model]:
        return (f"distortion model '{model}' takes {' / '.join(map(str, D_COUNTS[model]))} "
                f"coefficients, D has {d.size}: {d.tolist()}")
    return None


@dataclass
class Rectified:
    """Result of :meth:`ImageRectifier.rectify`.

    Attributes:
        image: (H, W, 3) uint8 RGB, undistorted when ``status == "undistorted"``, else the input.
        status: "undistorted" | "rectified" (D zero: used as is) | "no_camera_info" |
            "size_mismatch" (CameraInfo is for another size) | "unknown_model" (distortion model
            not in :data:`RECT_MODELS`) | "camera_info_invalid" (the paired CameraInfo was
            refused on arrival, :func:`camera_info_problem`: used as is).
        camera_matrix: (3, 3) float64 intrinsics of the returned image, or None without a usable
            CameraInfo.
        info: the CameraInfo paired with the image (None without one).
        key: its hashable content (:attr:`ImageRectifier.key`), None without one.
        problem: why that CameraInfo was refused ("" unless ``camera_info_invalid``).
    """

    image: np.ndarray
    status: str
    camera_matrix: Optional[np.ndarray]
    info: Any = None
    key: Optional[Tuple] = None
    problem: str = ""


@dataclass(frozen=True)
class _Stored:
    """One received CameraInfo: stamp (s), message, content key, refusal reason ("" = valid)."""

    stamp: float
    info: Any
    key: Tuple
    problem: str


def _key(info: Any) -> Tuple:
    return (
        int(info.width),
        int(info.height),
        str(info.distortion_model),
        tuple(np.asarray(info.d, float).reshape(-1)),
        tuple(np.asarray(info.k, float).reshape(-1)),
        tuple(np.asarray(info.p, float).reshape(-1)),
    )


class ImageRectifier:
    """Keeps the recent CameraInfos and undistorts images with the one paired to each image.

    Thread-safe: :meth:`update` runs in a subscription callback, :meth:`rectify` in the worker.
    Undistortion maps are cached per calibration content.

    Args:
        max_cached: calibrations whose maps are kept (a camera switching between a few modes).
        slop: s; an image is paired with the CameraInfo of the nearest stamp when that one is at
            most ``slop`` away (the synchronizer's ``sync_slop``), else with the latest.
        history: CameraInfos kept for the pairing by stamp (at 30 Hz, 32 cover about 1 s).
    """

    def __init__(self, max_cached: int = 4, slop: float = 0.05, history: int = 32) -> None:
        self.max_cached = int(max_cached)
        self.slop = float(slop)
        self._lock = threading.Lock()
        self._history: Deque[_Stored] = deque(maxlen=max(1, int(history)))
        self._cams: Dict[Tuple, CameraCalibration] = {}
        self.rotation_ignored = (
            False  # a non-identity R was seen (stereo rectification: not applied)
        )

    @property
    def info(self) -> Optional[Any]:
        """The latest CameraInfo (accepted or refused), or None."""
        with self._lock:
            return self._history[-1].info if self._history else None

    @property
    def key(self) -> Optional[Tuple]:
        """Hashable content of the latest CameraInfo (size, model, D, K, P), or None."""
        with self._lock:
            return self._history[-1].key if self._history else None

    def update(self, info: Any, stamp_s: float = 0.0) -> Optional[str]:
        """Validate and store a CameraInfo (called from a subscription callback).

        Validated here, once per message (:func:`camera_info_problem`); a refused one is stored
        too, so images paired with it are used as they are rather than with an older
        calibration.

        Args:
            info: sensor_msgs/CameraInfo (or an object with its fields).
            stamp_s: its ``header.stamp`` in seconds (0 = unstamped: paired as the latest).
        Returns:
            None when accepted, else the reason it was refused (one line).
        """
        problem = camera_info_problem(info)
        try:
            key = _key(info)
        except (TypeError, ValueError):
            key = ("unreadable", id(info))
        with self._lock:
            self._history.append(_Stored(float(stamp_s), info, key, problem or ""))
        return problem

    def _pick(self, stamp_s: Optional[float]) -> Optional[_Stored]:
        """Return the CameraInfo for an image stamped ``stamp_s`` (nearest in slop, or latest)."""
        with self._lock:
            if not self._history:
                return None
            latest = self._history[-1]
            if stamp_s is None or stamp_s == latest.stamp:
                return latest
            near = min(self._history, key=lambda e: abs(e.stamp - stamp_s))
        return near if abs(near.stamp - stamp_s) <= self.slop else latest

    @staticmethod
    def _matrix(info: Any) -> np.ndarray:
        P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        return P[:, :3].copy() if P[0, 0] > 0 and P[1, 1] > 0 else K

    def camera_matrix(self) -> Optional[np.ndarray]:
        """Return the (3, 3) intrinsics of the images this rectifier returns.

        P's left 3x3 when P is set, else K, of the latest valid CameraInfo (None without one).
        """
        with self._lock:
            valid = [e for e in self._history if not e.problem]
        return self._matrix(valid[-1].info) if valid else None

    def _calibration(self, info: Any, key: Tuple) -> CameraCalibration:
        cam = self._cams.get(key)
        if cam is None:
            R = np.asarray(info.r, dtype=np.float64).reshape(3, 3)
            if np.any(R) and not np.allclose(R, np.eye(3), atol=1e-9):
                self.rotation_ignored = True
            cam = CameraCalibration(
                name="camera_info",
                view_to_vehicle=np.eye(4),
                cam_matrix=self._matrix(info),
                cam_matrix_original=np.asarray(info.k, dtype=np.float64).reshape(3, 3),
                distortion=np.asarray(info.d, dtype=np.float64).reshape(-1),
                lens="Fisheye" if info.distortion_model == "equidistant" else "Telecam",
                resolution=(int(info.width), int(info.height)),
            )
            if len(self._cams) >= self.max_cached:
                self._cams.pop(next(iter(self._cams)))
            self._cams[key] = cam
        return cam

    def rectify(self, image: np.ndarray, stamp_s: Optional[float] = None) -> Rectified:
        """Undistort ``image`` with its CameraInfo when that one has distortion.

        Args:
            image: (H, W, 3) uint8 RGB raw camera image.
            stamp_s: the image's stamp, s; None = use the latest CameraInfo.
        Returns:
            :class:`Rectified` (the input itself unless it was undistorted).
        """
        e = self._pick(stamp_s)
        if e is None:
            return Rectified(image, "no_camera_info", None)
        info, key = e.info, e.key
        if e.problem:
            return Rectified(image, "camera_info_invalid", None, info, key, e.problem)
        h, w = image.shape[:2]
        if (int(info.width), int(info.height)) != (w, h):
            return Rectified(image, "size_mismatch", self._matrix(info), info, key)
        if not np.any(np.asarray(info.d, dtype=np.float64)):
            return Rectified(image, "rectified", self._matrix(info), info, key)
        if info.distortion_model not in RECT_MODELS:
            return Rectified(image, "unknown_model", self._matrix(info), info, key)
        cam = self._calibration(info, key)
        return Rectified(undistort_image(image, cam), "undistorted", cam.cam_matrix, info, key)


def nominal_camera_mismatch(
    camera_matrix: np.ndarray,
    size_wh: Tuple[int, int],
    nominal: Tuple[float, ...],
    focal_tol: float = 0.05,
    aspect_tol: float = 0.02,
) -> Optional[str]:
    """Compare a (rectified) camera with the model's nominal camera (contract ``nominal_camera``).

    Images are resized to the network's input, so what must match is the field of view: the focal
    lengths scaled to the nominal width (fx * W_nom / w, fy * W_nom / w) within ``focal_tol``
    (relative) and the aspect ratio w / h within ``aspect_tol``.

    Returns:
        None when they match, else a message naming both cameras' values.
    """
    fx_n, fy_n, _, _, w_n, h_n = (float(v) for v in nominal)
    w, h = int(size_wh[0]), int(size_wh[1])
    s = w_n / w
    fx, fy = float(camera_matrix[0, 0]) * s, float(camera_matrix[1, 1]) * s
    bad = (
        abs(fx / fx_n - 1.0) > focal_tol
        or abs(fy / fy_n - 1.0) > focal_tol
        or abs((w / h) / (w_n / h_n) - 1.0) > aspect_tol
    )
    if not bad:
        return None
    return (
        f"camera differs from the model's nominal camera: this one fx {camera_matrix[0, 0]:.1f}, "
        f"fy {camera_matrix[1, 1]:.1f} px at {w}x{h} (= fx {fx:.1f}, fy {fy:.1f} at width "
        f"{w_n:.0f}); the model was trained for fx {fx_n:.1f}, fy {fy_n:.1f} px at "
        f"{w_n:.0f}x{h_n:.0f}: objects appear at other "
        "sizes and positions, camera-based outputs degrade"
    )
