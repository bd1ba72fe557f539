"""A2D2 sensor calibration (``cams_lidars.json``): views, transforms, intrinsics, undistortion.

Facts (A2D2 README and tutorial, Geyer et al. 2020, "A2D2: Audi Autonomous Driving Dataset"):

* A *view* is ``{"origin", "x-axis", "y-axis"}`` expressed in the vehicle frame. Its 4x4 transform
  to the vehicle frame: normalise x, make y orthogonal to x and normalise it, z = x cross y,
  rotation columns [x y z], translation = origin (:func:`view_to_transform`).
* The transform from view A to view B is ``inv(T_B) @ T_A`` (:meth:`Calibration.transform`).
* A camera *view* frame has x forward along the optical axis, y left, z up. The ROS optical frame
  (REP 103) has z forward, x right, y down (:data:`OPTICAL_FROM_VIEW`).
* ``CamMatrix`` is the intrinsic matrix of the *undistorted* image, ``CamMatrixOriginal`` and
  ``Distortion`` describe the raw (distorted) PNG. ``Lens`` "Telecam" (front_center): OpenCV's
  radial/tangential model; "Fisheye" (others): OpenCV's fisheye model (4 coefficients).
* Projection of view-frame points with ``CamMatrix``: ``col = cx - fx*y/x``, ``row = cy - fy*z/x``
  (:func:`project_view_points`).

The packaged copy of ``cams_lidars.json`` (``bev_mtl_ros/data/a2d2/``, CC BY-ND 4.0, Audi AG) is
used unless a dataset ships its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

#: Packaged, unmodified copy of A2D2's ``cams_lidars.json``.
CAMS_LIDARS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "a2d2",
                                "cams_lidars.json")

#: A2D2 camera names (keys of ``cameras`` in cams_lidars.json; folders are ``cam_<name>``).
CAMERA_NAMES: Tuple[str, ...] = ("front_center", "front_left", "front_right", "side_left",
                                 "side_right", "rear_center")

#: 3x3 rotation taking camera-view-frame coordinates (x fwd, y left, z up) to optical-frame
#: coordinates (x right, y down, z fwd): ``p_optical = OPTICAL_FROM_VIEW @ p_view``.
OPTICAL_FROM_VIEW = np.array([[0.0, -1.0, 0.0],
                              [0.0, 0.0, -1.0],
                              [1.0, 0.0, 0.0]])
#: Inverse (= transpose) of :data:`OPTICAL_FROM_VIEW`; its columns are the optical axes in the view
#: frame.
VIEW_FROM_OPTICAL = OPTICAL_FROM_VIEW.T.copy()


class CalibrationError(ValueError):
    """A calibration file or entry is malformed; the message names the file and the key."""


def view_to_transform(view: Dict[str, Sequence[float]], where: str = "view") -> np.ndarray:
    """A2D2 view dict -> 4x4 float64 homogeneous transform view -> vehicle frame.

    Gram-Schmidt as in A2D2's tutorial: x normalised; y made orthogonal to x and normalised;
    z = x cross y; R = [x y z] (columns); t = origin.

    Raises:
        CalibrationError naming ``where`` when a key is missing or the axes are degenerate.
    """
    try:
        o = np.asarray(view["origin"], dtype=np.float64).reshape(3)
        x = np.asarray(view["x-axis"], dtype=np.float64).reshape(3)
        y = np.asarray(view["y-axis"], dtype=np.float64).reshape(3)
    except (KeyError, TypeError, ValueError) as e:
        raise CalibrationError(f"{where}: view needs 'origin', 'x-axis', 'y-axis' (3 numbers "
                               f"each): {e!r}") from None
    nx = np.linalg.norm(x)
    if nx < 1e-12:
        raise CalibrationError(f"{where}: zero x-axis")
    x = x / nx
    y = y - np.dot(x, y) * x
    ny = np.linalg.norm(y)
    if ny < 1e-12:
        raise CalibrationError(f"{where}: y-axis parallel to x-axis")
    y = y / ny
    z = np.cross(x, y)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, o
    return T


def transform_to_view(T: np.ndarray) -> Dict[str, list]:
    """Inverse of :func:`view_to_transform`: 4x4 -> ``{"origin", "x-axis", "y-axis"}`` (lists)."""
    T = np.asarray(T, dtype=np.float64)
    return {"origin": T[:3, 3].tolist(), "x-axis": T[:3, 0].tolist(), "y-axis": T[:3, 1].tolist()}


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R^T, -R^T t)."""
    T = np.asarray(T, dtype=np.float64)
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points; returns (N, 3) in the points' dtype."""
    p = np.asarray(points)
    T = np.asarray(T, dtype=np.float64)
    out = p.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    return out.astype(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64, copy=False)


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Convert a 3x3 rotation to a unit quaternion (x, y, z, w), float64.

    The order is ROS ``geometry_msgs/Quaternion``'s.
    """
    from scipy.spatial.transform import Rotation
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()


def project_view_points(points_view: np.ndarray, cam_matrix: np.ndarray,
                        min_depth: float = 1e-3) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project camera-view-frame points into the *undistorted* image (A2D2 convention).

    ``col = cx - fx * y / x``, ``row = cy - fy * z / x`` (verified on real A2D2 lidar row/col).

    Args:
        points_view: (N, 3) x forward, y left, z up, metres, in the camera's view frame.
        cam_matrix: (3, 3) ``CamMatrix`` (undistorted intrinsics), pixels.
        min_depth: points with x <= min_depth are behind the camera.
    Returns:
        (row (N,) float64, col (N,) float64, in_front (N,) bool). Rows/cols of points not in front
        are NaN.
    """
    p = np.asarray(points_view, dtype=np.float64).reshape(-1, 3)
    K = np.asarray(cam_matrix, dtype=np.float64)
    x = p[:, 0]
    ok = x > min_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ok, 1.0 / np.where(ok, x, 1.0), np.nan)
    col = K[0, 2] - K[0, 0] * p[:, 1] * inv
    row = K[1, 2] - K[1, 1] * p[:, 2] * inv
    return row, col, ok


def unproject_pixels(row: np.ndarray, col: np.ndarray, depth: np.ndarray,
                     cam_matrix: np.ndarray) -> np.ndarray:
    """Map pixels (row, col) at view-frame depth x to (N, 3) view points.

    Inverse of :func:`project_view_points`.
    """
    K = np.asarray(cam_matrix, dtype=np.float64)
    x = np.asarray(depth, dtype=np.float64)
    y = -(np.asarray(col, dtype=np.float64) - K[0, 2]) * x / K[0, 0]
    z = -(np.asarray(row, dtype=np.float64) - K[1, 2]) * x / K[1, 1]
    return np.stack([x, y, z], axis=-1)


@dataclass
class CameraCalibration:
    """One camera of ``cams_lidars.json``.

    Attributes:
        name: A2D2 camera name, e.g. "front_center".
        view_to_vehicle: (4, 4) float64 transform camera view frame -> vehicle frame.
        cam_matrix: (3, 3) ``CamMatrix``: intrinsics of the undistorted image, pixels.
        cam_matrix_original: (3, 3) ``CamMatrixOriginal``: intrinsics of the raw distorted image.
        distortion: (5,) Telecam (k1, k2, p1, p2, k3) or (4,) Fisheye (k1..k4) coefficients.
        lens: "Telecam" or "Fisheye".
        resolution: (width, height) pixels.
        tstamp_delay: A2D2's ``tstamp_delay`` (µs), informational.
    """

    name: str
    view_to_vehicle: np.ndarray
    cam_matrix: np.ndarray
    cam_matrix_original: np.ndarray
    distortion: np.ndarray
    lens: str
    resolution: Tuple[int, int]
    tstamp_delay: float = 0.0
    _maps: Dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.resolution[0])

    @property
    def height(self) -> int:
        return int(self.resolution[1])

    @property
    def is_fisheye(self) -> bool:
        return self.lens.lower() == "fisheye"

    def scaled(self, resolution: Tuple[int, int]) -> "CameraCalibration":
        """Return this camera at another image resolution (width, height).

        fx, cx scaled by sx = w'/w and fy, cy by sy = h'/h with the pixel-centre convention of
        ``cv2.resize`` (``c' = (c + 0.5) * s - 0.5``), for both matrices. Distortion
        coefficients act on normalised coordinates and are unchanged; extrinsics unchanged.
        """
        w, h = int(resolution[0]), int(resolution[1])
        sx, sy = w / self.width, h / self.height

        def sc(K):
            K = np.array(K, dtype=np.float64)
            K[0, 0] *= sx
            K[1, 1] *= sy
            K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
            K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
            return K

        return CameraCalibration(self.name, self.view_to_vehicle.copy(), sc(self.cam_matrix),
                                 sc(self.cam_matrix_original), self.distortion.copy(), self.lens,
                                 (w, h), self.tstamp_delay)

    # ------------------------------------------------------------------ undistortion
    def undistort_maps(self) -> Tuple[np.ndarray, np.ndarray]:
        """Return (map_x, map_y) float32 (H, W) from undistorted to raw pixels.

        For each undistorted pixel, its position in the raw distorted image
        (``cv2.initUndistortRectifyMap`` / ``cv2.fisheye.initUndistortRectifyMap`` with
        K = CamMatrixOriginal, D = Distortion, new K = CamMatrix). Cached.
        """
        if "undist" not in self._maps:
            import cv2
            size = (self.width, self.height)
            K = np.asarray(self.cam_matrix_original, dtype=np.float64)
            Kn = np.asarray(self.cam_matrix, dtype=np.float64)
            if self.is_fisheye:
                D = np.asarray(self.distortion, dtype=np.float64).reshape(-1)[:4].reshape(4, 1)
                mx, my = (cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), Kn, size,
                                                              cv2.CV_32FC1))
            else:
                D = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
                mx, my = cv2.initUndistortRectifyMap(K, D, None, Kn, size, cv2.CV_32FC1)
            self._maps["undist"] = (mx, my)
        return self._maps["undist"]

    def distort_maps(self) -> Tuple[np.ndarray, np.ndarray]:
        """Return (map_x, map_y) float32 (H, W) from raw distorted to undistorted pixels.

        For each raw distorted pixel, its position in the undistorted image
        (``cv2.undistortPoints`` / ``cv2.fisheye.undistortPoints`` with P = CamMatrix). Used to
        *write* distorted images from undistorted renderings. Cached.
        """
        if "dist" not in self._maps:
            import cv2
            w, h = self.width, self.height
            uu, vv = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
            pts = np.stack([uu.ravel(), vv.ravel()], axis=-1).reshape(-1, 1, 2)
            K = np.asarray(self.cam_matrix_original, dtype=np.float64)
            Kn = np.asarray(self.cam_matrix, dtype=np.float64)
            if self.is_fisheye:
                D = np.asarray(self.distortion, dtype=np.float64).reshape(-1)[:4].reshape(4, 1)
                und = cv2.fisheye.undistortPoints(pts, K, D, R=np.eye(3), P=Kn)
            else:
                D = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
                und = cv2.undistortPoints(pts, K, D, P=Kn)
            und = und.reshape(h, w, 2).astype(np.float32)
            self._maps["dist"] = (np.ascontiguousarray(und[..., 0]),
                                  np.ascontiguousarray(und[..., 1]))
        return self._maps["dist"]


@dataclass
class Calibration:
    """Parsed ``cams_lidars.json``.

    Attributes:
        cameras: name -> :class:`CameraCalibration`.
        lidar_views: lidar name -> (4, 4) view -> vehicle transform.
        vehicle_view: (4, 4) vehicle view (identity in A2D2).
        ego_dimensions: A2D2's ``ego-dimensions`` dict (x/y/z ranges, metres), or {}.
        path: file it came from.
    """

    cameras: Dict[str, CameraCalibration]
    lidar_views: Dict[str, np.ndarray]
    vehicle_view: np.ndarray = field(default_factory=lambda: np.eye(4))
    ego_dimensions: Dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def camera(self, name: str) -> CameraCalibration:
        """Return the named camera, "front_center" or "cam_front_center".

        Raises KeyError listing the known names.
        """
        key = name[4:] if name.startswith("cam_") else name
        if key not in self.cameras:
            raise KeyError(f"{self.path}: no camera {name!r}; known: {sorted(self.cameras)}")
        return self.cameras[key]

    def view(self, name: str) -> np.ndarray:
        """Return the 4x4 view -> vehicle transform of a view name.

        The name is "vehicle", a camera ("front_center", "cam_front_center") or a lidar
        ("lidar_front_center" or a lidar name not shadowed by a camera).
        """
        if name == "vehicle":
            return self.vehicle_view
        if name.startswith("lidar_") and name[6:] in self.lidar_views:
            return self.lidar_views[name[6:]]
        key = name[4:] if name.startswith("cam_") else name
        if key in self.cameras:
            return self.cameras[key].view_to_vehicle
        if key in self.lidar_views:
            return self.lidar_views[key]
        raise KeyError(f"{self.path}: no view {name!r}; cameras {sorted(self.cameras)}, lidars "
                       f"{sorted(self.lidar_views)}")

    def transform(self, src: str, dst: str) -> np.ndarray:
        """4x4 transform taking points in view ``src`` to view ``dst``: ``inv(T_dst) @ T_src``."""
        return invert_transform(self.view(dst)) @ self.view(src)

    def scaled(self, resolution: Tuple[int, int]) -> "Calibration":
        """Copy with every camera adapted to ``resolution`` (width, height).

        See :meth:`CameraCalibration.scaled`.
        """
        return dataclasses.replace(self, cameras={k: c.scaled(resolution)
                                                  for k, c in self.cameras.items()},
                                   lidar_views={k: v.copy() for k, v in self.lidar_views.items()})

    def to_json_dict(self) -> Dict[str, Any]:
        """Return a ``cams_lidars.json``-format dict (orthonormalised views; no ``view_`` keys).

        Lets a generator write the calibration it used next to its data.
        """
        cams = {}
        for k, c in self.cameras.items():
            cams[k] = {"tstamp_delay": c.tstamp_delay,
                       "view": transform_to_view(c.view_to_vehicle),
                       "CamMatrix": np.asarray(c.cam_matrix).tolist(),
                       "CamMatrixOriginal": np.asarray(c.cam_matrix_original).tolist(),
                       "Distortion": [np.asarray(c.distortion).reshape(-1).tolist()],
                       "Lens": c.lens, "Resolution": [int(c.resolution[0]), int(c.resolution[1])]}
        lidars = {k: {"view": transform_to_view(v)} for k, v in self.lidar_views.items()}
        veh = {"view": transform_to_view(self.vehicle_view)}
        if self.ego_dimensions:
            veh["ego-dimensions"] = self.ego_dimensions
        return {"vehicle": veh, "lidars": lidars, "cameras": cams}


def _matrix(d: Dict[str, Any], key: str, shape: Tuple[int, ...], where: str) -> np.ndarray:
    if key not in d:
        raise CalibrationError(f"{where}: missing key {key!r}")
    try:
        return np.asarray(d[key], dtype=np.float64).reshape(shape)
    except (TypeError, ValueError) as e:
        raise CalibrationError(f"{where}: {key!r} is not a {shape} matrix: {e}") from None


def parse_calibration(cfg: Dict[str, Any], path: str = "<dict>") -> Calibration:
    """Parse a ``cams_lidars.json`` dict. Raises CalibrationError naming ``path`` and the key."""
    if not isinstance(cfg, dict) or "cameras" not in cfg:
        raise CalibrationError(f"{path}: missing top-level key 'cameras'")
    cams: Dict[str, CameraCalibration] = {}
    for name, c in cfg["cameras"].items():
        where = f"{path}: cameras.{name}"
        if "view" not in c:
            raise CalibrationError(f"{where}: missing key 'view'")
        lens = str(c.get("Lens", "Telecam"))
        dist = _matrix(c, "Distortion", (-1,), where)
        if lens.lower() == "fisheye" and dist.size < 4:
            raise CalibrationError(f"{where}: Fisheye needs 4 distortion coefficients, got "
                                   f"{dist.size}")
        res = c.get("Resolution")
        if res is None or len(res) != 2:
            raise CalibrationError(f"{where}: missing or bad 'Resolution' (expected [cols, rows])")
        cams[name] = CameraCalibration(
            name=name, view_to_vehicle=view_to_transform(c["view"], where + ".view"),
            cam_matrix=_matrix(c, "CamMatrix", (3, 3), where),
            cam_matrix_original=_matrix(c, "CamMatrixOriginal", (3, 3), where),
            distortion=dist, lens=lens, resolution=(int(res[0]), int(res[1])),
            tstamp_delay=float(c.get("tstamp_delay", 0.0)))
    lidars = {}
    for name, l in cfg.get("lidars", {}).items():
        if "view" not in l:
            raise CalibrationError(f"{path}: lidars.{name}: missing key 'view'")
        lidars[name] = view_to_transform(l["view"], f"{path}: lidars.{name}.view")
    veh = cfg.get("vehicle", {})
    vview = view_to_transform(veh["view"], f"{path}: vehicle.view") if "view" in veh else np.eye(4)
    return Calibration(cams, lidars, vview, dict(veh.get("ego-dimensions", {})), path)


def load_calibration(path: Optional[str] = None) -> Calibration:
    """Read ``cams_lidars.json`` (default: the packaged copy).

    Raises CalibrationError / OSError naming the file.
    """
    path = path or CAMS_LIDARS_PATH
    try:
        with open(path, "r", encoding="utf-8") as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise CalibrationError(f"{path}: not valid JSON: {e}") from None
    return parse_calibration(cfg, path)


def undistort_image(img: np.ndarray, cam: CameraCalibration, interpolation: Optional[int] = None,
                    border_value: int = 0) -> np.ndarray:
    """Undistort a raw A2D2 image (any channel count / dtype OpenCV remaps).

    Equivalent to ``cv2.undistort(img, CamMatrixOriginal, Distortion, newCameraMatrix=CamMatrix)``
    (Telecam) or ``cv2.fisheye.undistortImage(img, CamMatrixOriginal, Distortion, Knew=CamMatrix)``
    (Fisheye) as in A2D2's tutorial, done with cached ``initUndistortRectifyMap`` maps + ``remap``
    so that the interpolation can be chosen.

    Args:
        img: (H, W[, C]) image at ``cam.resolution``.
        cam: the camera's calibration.
        interpolation: ``cv2.INTER_LINEAR`` (default) for photos, ``cv2.INTER_NEAREST`` for label
            images (class colours/ids must not be blended).
        border_value: value of pixels that map outside the raw image (0; use 255 = "ignore" for
            class-id images).
    Returns:
        Undistorted image, same shape and dtype.
    Raises:
        ValueError when the image size differs from the calibration's resolution.
    """
    import cv2
    if interpolation is None:
        interpolation = cv2.INTER_LINEAR
    h, w = img.shape[:2]
    if (w, h) != (cam.width, cam.height):
        raise ValueError(f"image is {w}x{h} but camera {cam.name} is calibrated for "
                         f"{cam.width}x{cam.height}")
    mx, my = cam.undistort_maps()
    return cv2.remap(img, mx, my, interpolation, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(border_value,) * 4)


def distort_image(img: np.ndarray, cam: CameraCalibration,
                  interpolation: Optional[int] = None) -> np.ndarray:
    """Distort an undistorted image (``CamMatrix``) into the raw image A2D2 stores.

    Inverse of :func:`undistort_image`: the raw distorted image (``CamMatrixOriginal`` +
    ``Distortion``), by inverse mapping. Use ``cv2.INTER_NEAREST`` for label images. Raises
    ValueError on a size mismatch.
    """
    import cv2
    if interpolation is None:
        interpolation = cv2.INTER_LINEAR
    h, w = img.shape[:2]
    if (w, h) != (cam.width, cam.height):
        raise ValueError(f"image is {w}x{h} but camera {cam.name} is calibrated for "
                         f"{cam.width}x{cam.height}")
    mx, my = cam.distort_maps()
    return cv2.remap(img, mx, my, interpolation, borderMode=cv2.BORDER_REPLICATE)


def camera_info_matrices(cam: CameraCalibration, raw: bool = False) -> Dict[str, Any]:
    """Return ROS ``sensor_msgs/CameraInfo`` fields for the undistorted (default) or raw image.

    Undistorted: K = CamMatrix (row-major 9), P = [CamMatrix | 0] (12), R = identity, D = 5
    zeros, distortion_model "plumb_bob", width/height. ``raw``: K = CamMatrixOriginal, D =
    Distortion (plumb_bob, 5 coefficients; ``equidistant``, 4, for a fisheye camera), P and R
    as above (REP 104: undistorting with K, D into P gives the undistorted image).
    """
    K = np.asarray(cam.cam_matrix, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    out = {"k": K.reshape(9).copy(), "p": P.reshape(12), "r": np.eye(3).reshape(9),
           "d": np.zeros(5),
           "distortion_model": "plumb_bob", "width": cam.width, "height": cam.height}
    if raw:
        d = np.asarray(cam.distortion, np.float64).reshape(-1)
        out.update(k=np.asarray(cam.cam_matrix_original, np.float64).reshape(9).copy(),
                   d=d[:4] if cam.is_fisheye else d,
                   distortion_model="equidistant" if cam.is_fisheye else "plumb_bob")
    return out
