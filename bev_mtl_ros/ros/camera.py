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
from typing import Any, Callable, Deque, Dict, Optional, Tuple

import cv2
import numpy as np

from bev_mtl_ros.data.calibration import CameraCalibration, undistort_image
from bev_mtl_ros.runtime.pipeline import halve_towards

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


class Rectified:
    """Result of :meth:`ImageRectifier.rectify`: the image through its CameraInfo.

    Undistorted at the resolution each consumer asks for: :attr:`image` is the whole camera
    image (undistorted at full resolution on first use, then kept); :meth:`reduced` the image for
    the network, undistorted from an area-halved raw image when the network's input is at most
    half the camera's size. OpenCV's remap costs about the pixel count it writes: A2D2's
    1920x1208 front camera to the 512x320 network input took 19.1 ms on one core with the
    full-resolution undistortion against 6.7 ms halved first, and the two network inputs differ
    by 0.58 grey levels on average on the real A2D2 frames. :meth:`for_display` is the reduced
    image scaled back to the camera's size, for the colour overlay. An image that needs no
    undistortion is returned as it came by all three.

    Attributes:
        status: "undistorted" | "rectified" (D zero: used as is) | "no_camera_info" |
            "size_mismatch" (CameraInfo is for another size) | "unknown_model" (distortion model
            not in :data:`RECT_MODELS`) | "camera_info_invalid" (the paired CameraInfo was
            refused on arrival, :func:`camera_info_problem`: used as is).
        camera_matrix: (3, 3) float64 intrinsics of :attr:`image`, or None without a usable
            CameraInfo.
        info: the CameraInfo paired with the image (None without one).
        key: its hashable content (:attr:`ImageRectifier.key`), None without one.
        problem: why that CameraInfo was refused ("" unless ``camera_info_invalid``).
        size: (width, height) of :attr:`image`, pixels.
    """

    def __init__(self, raw: np.ndarray, status: str, camera_matrix: Optional[np.ndarray],
                 info: Any = None, key: Optional[Tuple] = None, problem: str = "",
                 calibration_at: Optional[Callable[[Tuple[int, int]], CameraCalibration]] = None):
        """Wrap ``raw`` (H, W, 3) uint8 RGB.

        ``calibration_at(size)`` gives the camera's calibration at a resolution (width, height)
        when the image is to be undistorted (status "undistorted").
        """
        self.status = status
        self.camera_matrix = camera_matrix
        self.info = info
        self.key = key
        self.problem = problem
        self.size = (int(raw.shape[1]), int(raw.shape[0]))
        self._raw = raw
        self._calibration_at = calibration_at if status == "undistorted" else None
        self._image: Optional[np.ndarray] = None if self._calibration_at else raw
        self._reduced: Dict[Tuple[int, int], np.ndarray] = {}

    @property
    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, undistorted when ``status == "undistorted"``, else the input."""
        if self._image is None:
            self._image = undistort_image(self._raw, self._calibration_at(self.size))
        return self._image

    def reduced(self, size_wh: Tuple[int, int]) -> np.ndarray:
        """Return the image for a network input of ``size_wh`` (width, height), to resize to it.

        Undistorted, it is the raw image halved with INTER_AREA while it stays at least twice
        ``size_wh`` on both axes, then undistorted at that resolution (the calibration scaled to
        it, :meth:`CameraCalibration.scaled`), kept for the next call; :attr:`image` when that
        is already computed or no halving applies. Not undistorted: the input.
        """
        wi, hi = int(size_wh[0]), int(size_wh[1])
        if self._image is not None:
            return self._image
        if (wi, hi) not in self._reduced:
            raw = halve_towards(self._raw, (wi, hi))
            if raw is self._raw:
                return self.image
            self._reduced[(wi, hi)] = undistort_image(raw, self._calibration_at(raw.shape[1::-1]))
        return self._reduced[(wi, hi)]

    def for_display(self, size_wh: Tuple[int, int]) -> np.ndarray:
        """Return the camera image at full size for a display, without a full-size undistortion.

        :attr:`image` when it exists or needs no undistortion; else :meth:`reduced` for
        ``size_wh`` (the network input it was made for: kept, no new undistortion) scaled back
        to :attr:`size` (bilinear). The colour overlay uses it: its class colours come at the
        network's resolution anyway, and a full-size undistortion would cost more than the rest
        of the overlay (19 ms on one core at 1920x1208).
        """
        if self._image is not None:
            return self._image
        small = self.reduced(size_wh)
        if small.shape[1::-1] == self.size:
            return small
        return cv2.resize(small, self.size, interpolation=cv2.INTER_LINEAR)


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
        self._scaled: Dict[Tuple, CameraCalibration] = {}  # (key, (w, h)) -> reduced resolution
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
            :class:`Rectified` (its image the input itself unless it is undistorted; the
            undistortion runs when its image is asked for, at the resolution asked for).
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
        return Rectified(image, "undistorted", cam.cam_matrix, info, key,
                         calibration_at=lambda size: self._calibration_at(key, cam, size))

    def _calibration_at(self, key: Tuple, cam: CameraCalibration,
                        size: Tuple[int, int]) -> CameraCalibration:
        """Return ``cam`` at resolution ``size`` (its maps cached with it, per calibration)."""
        if tuple(size) == (cam.width, cam.height):
            return cam
        with self._lock:
            scaled = self._scaled.get((key, tuple(size)))
            if scaled is None:
                if len(self._scaled) >= 2 * self.max_cached:
                    self._scaled.pop(next(iter(self._scaled)))
                scaled = self._scaled[(key, tuple(size))] = cam.scaled(size)
        return scaled


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
