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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.calibration import CameraCalibration, undistort_image

__all__ = ["RECT_MODELS", "Rectified", "ImageRectifier", "nominal_camera_mismatch"]

#: distortion models the node undistorts (CameraInfo.distortion_model)
RECT_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


@dataclass
class Rectified:
    """Result of :meth:`ImageRectifier.rectify`.

    Attributes:
        image: (H, W, 3) uint8 RGB, undistorted when ``status == "undistorted"``, else the input.
        status: "undistorted" | "rectified" (D zero: used as is) | "no_camera_info" |
            "size_mismatch" (CameraInfo is for another size) | "unknown_model" (distortion model
            not in :data:`RECT_MODELS`).
        camera_matrix: (3, 3) float64 intrinsics of the returned image, or None without CameraInfo.
    """

    image: np.ndarray
    status: str
    camera_matrix: Optional[np.ndarray]


def _key(info: Any) -> Tuple:
    return (
        int(info.width),
        int(info.height),
        str(info.distortion_model),
        tuple(np.asarray(info.d, float)),
        tuple(np.asarray(info.k, float)),
        tuple(np.asarray(info.p, float)),
    )


class ImageRectifier:
    """Keeps the latest CameraInfo and undistorts images with it (maps cached per calibration).

    Args:
        max_cached: calibrations whose maps are kept (a camera switching between a few modes).
    """

    def __init__(self, max_cached: int = 4) -> None:
        self.max_cached = int(max_cached)
        self._state: Tuple[Optional[Any], Optional[Tuple]] = (
            None,
            None,
        )  # (info, key), swapped atomically
        self._cams: Dict[Tuple, CameraCalibration] = {}
        self.rotation_ignored = (
            False  # a non-identity R was seen (stereo rectification: not applied)
        )

    @property
    def info(self) -> Optional[Any]:
        """The latest CameraInfo (or None)."""
        return self._state[0]

    @property
    def key(self) -> Optional[Tuple]:
        """Hashable content of the latest CameraInfo (size, model, D, K, P), or None."""
        return self._state[1]

    def update(self, info: Any) -> None:
        """Store a CameraInfo (called from a subscription callback; thread-safe swap)."""
        self._state = (info, _key(info))

    @staticmethod
    def _matrix(info: Any) -> np.ndarray:
        P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        return P[:, :3].copy() if P[0, 0] > 0 and P[1, 1] > 0 else K

    def camera_matrix(self) -> Optional[np.ndarray]:
        """Return the (3, 3) intrinsics of the images this rectifier returns.

        P's left 3x3 when P is set, else K.
        """
        info = self._state[0]
        return None if info is None else self._matrix(info)

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

    def rectify(self, image: np.ndarray) -> Rectified:
        """Undistort ``image`` with the latest CameraInfo when it has distortion.

        Args:
            image: (H, W, 3) uint8 RGB raw camera image.
        Returns:
            :class:`Rectified` (the input itself unless it was undistorted).
        """
        info, key = self._state
        if info is None:
            return Rectified(image, "no_camera_info", None)
        h, w = image.shape[:2]
        if (int(info.width), int(info.height)) != (w, h):
            return Rectified(image, "size_mismatch", self._matrix(info))
        if not np.any(np.asarray(info.d, dtype=np.float64)):
            return Rectified(image, "rectified", self._matrix(info))
        if info.distortion_model not in RECT_MODELS:
            return Rectified(image, "unknown_model", self._matrix(info))
        cam = self._calibration(info, key)
        return Rectified(undistort_image(image, cam), "undistorted", cam.cam_matrix)


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
