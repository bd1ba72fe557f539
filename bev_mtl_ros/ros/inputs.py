"""The perception node's input side: subscriptions, input checks, and model inputs of one frame.

* :func:`qos_from_name` - the subscriptions' QoS from parameter ``input_qos``.
* :class:`NodeInputs` - subscribes to ``~/input/pointcloud`` and ``~/input/image`` as raw CDR
  bytes (decoded zero-copy by :func:`~bev_mtl_ros.ros.conversions.decode_serialized`) and to
  ``~/input/camera_info``; refuses over-size messages and empty frame ids in the subscription
  callback (:meth:`NodeInputs.decode`, :meth:`NodeInputs.accept`); turns a synchronised pair into
  the network's inputs in the worker thread: the cloud transformed into ``target_frame``
  (:meth:`NodeInputs.cloud_transform`, :meth:`NodeInputs.convert_cloud`: (N, 4) float32 x, y, z
  [m], intensity) and the image as (H, W, 3) uint8 RGB undistorted through the CameraInfo
  (:meth:`NodeInputs.convert_image`).

CameraInfo is validated once, when it arrives (:meth:`NodeInputs.on_camera_info`,
:func:`~bev_mtl_ros.ros.camera.camera_info_problem`): a bad one (a coefficient count its
distortion model does not have, NaN/Inf, a singular K such as K = 0) is refused, counted in
``bad_input.camera_info_invalid`` and warned about (throttled); images paired with it are used as
they are. Not lidar-only: an image that is not undistorted still carries the scene (a mildly
distorted or already rectified image costs the camera outputs little), while lidar-only would
lose the semantic outputs and the camera's share of the detections. Each image is paired with the
CameraInfo of the nearest stamp within ``sync_slop`` (else the latest).

TF problems reported by the transform source (a /tf entry refused, a frame re-parented) are
counted in ``bad_input.tf_invalid`` / ``bad_input.tf_reparented`` and warned about; they and the
last failed look-up are named in /diagnostics while they are recent (:meth:`NodeInputs.recent`).

Every bad input is counted (``bad_input.<kind>`` of :class:`~bev_mtl_ros.ros.diagnostics.
NodeCounters`) and warned about with rclpy's ``throttle_duration_sec``; each kind of warning has
its own logging call, because rclpy keeps the throttle state per call site.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data, qos_profile_system_default)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from bev_mtl_ros.ros.camera import ImageRectifier, Rectified, nominal_camera_mismatch
from bev_mtl_ros.ros.conversions import (CloudArrays, ConversionError, InputTooLarge,
                                         check_cloud_size, check_image_size, cloud_to_xyzi,
                                         decode_serialized, image_to_rgb)
from bev_mtl_ros.ros.diagnostics import NodeCounters
from bev_mtl_ros.ros.params import INPUT_NAMES, StartupError
from bev_mtl_ros.ros.tf import TransformError, transform_points

__all__ = ["qos_from_name", "NodeInputs"]


def qos_from_name(name: str, depth: int) -> QoSProfile:
    """Return the input QoS named by parameter ``input_qos``.

    Args:
        name: sensor_data | best_effort (both BEST_EFFORT keep-last, volatile) | reliable |
            system_default.
        depth: history depth of the keep-last profiles.
    Raises:
        StartupError: another name.
    """
    name = name.strip().lower()
    if name in ("sensor_data", "best_effort"):
        q = QoSProfile(depth=depth)
        q.reliability = qos_profile_sensor_data.reliability
        q.history = HistoryPolicy.KEEP_LAST
        q.durability = DurabilityPolicy.VOLATILE
        return q
    if name == "reliable":
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
    if name == "system_default":
        return qos_profile_system_default
    raise StartupError(f"parameter 'input_qos' = '{name}' is not one of sensor_data, "
                       "best_effort, reliable, system_default")


class NodeInputs:
    """Input subscriptions and input conversion of the perception node (see module docstring).

    Args:
        node: the rclpy node (logger; owner of the subscriptions created by :meth:`subscribe`).
        params: the node's parameter values (``intensity_field``, ``intensity_scale``,
            ``max_cloud_points``, ``max_image_pixels``, ``tf_timeout``, topics, QoS).
        contract: the model contract (``intensity_scale``, ``image_size``, ``nominal_camera``).
        target_frame: frame of the network's input, without a leading "/".
        tf: transform source (:func:`~bev_mtl_ros.ros.tf.make_transform_source`) or None.
        counters: the node's counters.
        every: ``period -> logger keyword arguments`` that throttle one kind of warning.
    """

    def __init__(self, node: Node, params: Mapping[str, Any], contract: Any, target_frame: str,
                 tf: Any, counters: NodeCounters,
                 every: Callable[[float], Dict[str, Any]]) -> None:
        self._log = node.get_logger()
        self._params = params
        self.contract = contract
        self.target_frame = target_frame
        self.tf = tf
        self._counters = counters
        self._every = every
        self.rectifier = ImageRectifier(slop=float(params["sync_slop"]))
        self._nominal_checked: Optional[Any] = None
        #: kind -> (one line, monotonic time) of the latest problem of that kind, for
        #: /diagnostics: "no_transform" (a failed look-up), "tf_invalid", "tf_reparented",
        #: "camera_info_invalid"
        self._problems: Dict[str, Tuple[str, float]] = {}

    def recent(self, kind: str, window_s: float, now: Optional[float] = None) -> str:
        """Return the latest problem of ``kind`` if it happened within ``window_s`` s, else "".

        Kinds: ``no_transform`` (the frames of the last failed look-up), ``tf_invalid``,
        ``tf_reparented``, ``camera_info_invalid``. Monotonic clock; so /diagnostics stops naming
        a problem once it has stopped (as the counter-based WARN clears).
        """
        text, t = self._problems.get(kind, ("", float("-inf")))
        now = time.monotonic() if now is None else now
        return text if now - t <= window_s else ""

    def _note(self, kind: str, text: str) -> None:
        self._problems[kind] = (text, time.monotonic())

    def subscribe(self, node: Node, on_cloud: Callable[[bytes], None],
                  on_image: Callable[[bytes], None]) -> None:
        """Create the subscriptions (QoS ``input_qos``, depth ``input_queue_depth``).

        Cloud and image arrive as raw CDR bytes (``on_cloud`` / ``on_image``); CameraInfo goes
        to :meth:`on_camera_info`. Sets ``sub_cloud``, ``sub_image``, ``sub_info``.
        Raises:
            StartupError: unknown ``input_qos``.
        """
        p = self._params
        in_qos = qos_from_name(p["input_qos"], max(1, int(p["input_queue_depth"])))
        self.sub_cloud = node.create_subscription(
            PointCloud2, p["cloud_topic"] or INPUT_NAMES["cloud"], on_cloud, in_qos, raw=True)
        self.sub_image = node.create_subscription(
            Image, p["image_topic"] or INPUT_NAMES["image"], on_image, in_qos, raw=True)
        self.sub_info = node.create_subscription(
            CameraInfo, p["camera_info_topic"] or INPUT_NAMES["camera_info"],
            self.on_camera_info, in_qos)

    # ------------------------------------------------------------------ subscription callbacks
    def on_camera_info(self, info: Any) -> bool:
        """Validate and store one CameraInfo (its subscription callback); return if accepted.

        A refused one (:func:`~bev_mtl_ros.ros.camera.camera_info_problem`) is counted in
        ``bad_input.camera_info_invalid`` and warned about (throttled, naming the problem);
        images paired with it are used as they are.
        """
        stamp = info.header.stamp
        problem = self.rectifier.update(info, float(stamp.sec) + float(stamp.nanosec) * 1e-9)
        if problem is None:
            return True
        self._counters.count("bad_input.camera_info_invalid")
        self._note("camera_info_invalid", problem)
        self._log.warning(f"CameraInfo on '{self.sub_info.topic_name}' refused: {problem}; "
                          "images paired with it are used as they are (not undistorted)",
                          **self._every(10.0))
        return False

    def on_tf_invalid(self, text: str) -> None:
        """Count (``bad_input.tf_invalid``) and warn about a /tf entry the buffer refused."""
        self._counters.count("bad_input.tf_invalid")
        self._note("tf_invalid", text)
        self._log.warning(text, **self._every(10.0))

    def on_tf_reparent(self, text: str) -> None:
        """Count (``bad_input.tf_reparented``) and warn about a frame that changed its parent."""
        self._counters.count("bad_input.tf_reparented")
        self._note("tf_reparented", text)
        self._log.warning(f"TF: {text}", **self._every(10.0))

    def decode(self, raw: bytes, kind: str) -> Optional[Any]:
        """CDR bytes of a raw subscription -> message object (:func:`decode_serialized`).

        ``kind`` is ``"cloud"`` (sensor_msgs/PointCloud2) or ``"image"`` (sensor_msgs/Image).
        Undecodable bytes are counted in ``bad_input.<kind>_malformed``, warned about
        (throttled per kind, naming the topic) and give None.
        """
        cloud = kind == "cloud"
        try:
            return decode_serialized(
                raw, "sensor_msgs/msg/PointCloud2" if cloud else "sensor_msgs/msg/Image")
        except ConversionError as e:
            self._counters.count(f"bad_input.{kind}_malformed")
            if cloud:
                self._log.warning(
                    f"cloud on '{self.sub_cloud.topic_name}' skipped: {e}", **self._every(5.0))
            else:
                self._log.warning(
                    f"image on '{self.sub_image.topic_name}' skipped: {e}", **self._every(5.0))
            return None

    def accept(self, msg: Any, kind: str) -> bool:
        """Return whether one decoded input message passes the size limit and header checks.

        Over-size messages (``max_cloud_points`` / ``max_image_pixels``) are refused before
        conversion; a cloud with an empty ``frame_id`` is refused (it cannot be transformed), an
        image with one is only counted and warned about.
        """
        try:
            if kind == "cloud":
                check_cloud_size(msg, self._params["max_cloud_points"])
            else:
                check_image_size(msg, self._params["max_image_pixels"])
        except InputTooLarge as e:
            self._counters.count(f"bad_input.{kind}_too_large")
            if kind == "cloud":
                self._log.warning(f"cloud refused: {e}", **self._every(5.0))
            else:
                self._log.warning(f"image refused: {e}; its cloud runs lidar-only",
                                  **self._every(5.0))
            return False
        if not msg.header.frame_id:
            self._counters.count("bad_input.empty_frame_id")
            if kind == "cloud":
                self._log.warning("cloud with an empty header.frame_id skipped: it cannot be "
                                  f"transformed into '{self.target_frame}'", **self._every(30.0))
                return False
            self._log.warning("image with an empty header.frame_id (used: the camera model comes "
                              "from camera_info)", **self._every(30.0))
        return True

    # ------------------------------------------------------------------ the cloud (worker)
    def cloud_transform(self, cloud: Any,
                        abort: Optional[Callable[[], bool]] = None) -> Tuple[bool, Any]:
        """Return (ok, transform or None for identity) from the cloud's frame into target_frame.

        The look-up is at the cloud's stamp, waiting at most ``tf_timeout``, less when
        ``abort()`` turns True (a newer frame waits) or when the frames were already found not
        connected in the same TF tree (:meth:`~bev_mtl_ros.ros.tf.TransformBuffer.wait_lookup`).
        On failure counts ``bad_input.no_transform``, records the frames for /diagnostics
        (:meth:`recent` ``("no_transform", ...)``) and warns (throttled).
        """
        source = cloud.header.frame_id.lstrip("/")
        if source == self.target_frame:
            return True, None
        try:
            if not source:
                raise TransformError("the cloud has an empty header.frame_id")
            if self.tf is None:
                raise TransformError("no TF available (neither tf2_ros nor tf2_msgs "
                                     "importable)")
            stamp = cloud.header.stamp
            stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
            T = self.tf.lookup(self.target_frame, source, stamp_ns, self._params["tf_timeout"],
                               abort)
        except TransformError as e:
            self._counters.count("bad_input.no_transform")
            text = f"'{source}' -> '{self.target_frame}': {e}"
            self._note("no_transform", text)
            self._log.warning(f"cloud skipped: no transform {text}", **self._every(5.0))
            return False, None
        return True, (None if T.is_identity() else T)

    def convert_cloud(self, cloud: Any, T: Any) -> Optional[CloudArrays]:
        """PointCloud2 -> (N, 4) float32 x, y, z [m], intensity in ``target_frame``.

        Args:
            cloud: the PointCloud2 message.
            T: transform from the cloud's frame (:meth:`cloud_transform`), None = identity.
        Returns:
            :func:`cloud_to_xyzi`'s result (points transformed in place); None for a malformed
            cloud (counted, warned). Counts and warns about missing intensity, intensity in the
            wrong range and NaN/Inf points.
        """
        p = self._params
        try:
            conv = cloud_to_xyzi(cloud, intensity_field=p["intensity_field"],
                                 intensity_scale=p["intensity_scale"])
        except ConversionError as e:
            self._counters.count("bad_input.cloud_malformed")
            self._log.warning(f"cloud on '{self.sub_cloud.topic_name}' skipped: {e}",
                              **self._every(5.0))
            return None
        points = conv.points
        if T is not None:
            transform_points(points, T)
            self._counters.count("frames_transformed")
        self._check_intensity(conv, cloud)
        if conv.num_nonfinite:
            self._counters.count("bad_input.nonfinite_cloud")
            self._counters.count("nonfinite_points", conv.num_nonfinite)
            self._log.warning(f"{conv.num_nonfinite} of {points.shape[0]} points have "
                              "NaN/Inf values (dropped)", **self._every(5.0))
        return conv

    def _check_intensity(self, conv: CloudArrays, cloud: Any) -> None:
        """Count and warn (throttled) about a missing or normalised intensity.

        A cloud without the intensity field, or intensities that look normalised (0..1) where
        the model expects raw values.
        """
        p = self._params
        points = conv.points
        if points.shape[0] and not conv.has_intensity and p["intensity_field"]:
            self._counters.count("bad_input.missing_intensity")
            names = [f.name for f in cloud.fields]
            self._log.warning(
                f"cloud has no field '{p['intensity_field']}' (fields: {names}): intensity set "
                "to 0, detections will degrade; set parameter intensity_field",
                **self._every(30.0))
        if conv.has_intensity and points.shape[0] >= 100 and self.contract.intensity_scale < 0.1:
            top = float(np.nanmax(points[:, 3])) if np.isfinite(points[:, 3]).any() else 0.0
            if 0.0 < top <= 1.0:
                self._log.warning(
                    f"intensity after intensity_scale={p['intensity_scale']} is within "
                    f"0..{top:.2f} but the model expects raw values up to "
                    f"{1.0 / self.contract.intensity_scale:.0f}: set intensity_scale (e.g. 255.0)",
                    **self._every(60.0))

    # ------------------------------------------------------------------ the image (worker)
    def convert_image(self, image: Any) -> Optional[Rectified]:
        """sensor_msgs/Image -> the RGB image through the CameraInfo (:class:`Rectified`).

        Its reduced image for the network (``reduced(contract.image_size)``) is made here; no
        output needs a full-resolution undistortion (the overlay is drawn on ``for_display``).
        Returns None when the image is unusable (counted, warned: the frame runs lidar-only).
        Counts a size different from the model's (``images_resized``: the pipeline resizes).
        """
        try:
            rgb = image_to_rgb(image)
        except ConversionError as e:
            self._counters.count("bad_input.image_malformed")
            self._log.warning(f"image on '{self.sub_image.topic_name}' unusable ({e}); "
                              "frame runs lidar-only", **self._every(5.0))
            return None
        stamp = image.header.stamp
        r = self._rectify(rgb, float(stamp.sec) + float(stamp.nanosec) * 1e-9)
        if r.size != tuple(self.contract.image_size):
            self._counters.count("images_resized")
            self._log.warning(
                f"image {r.size[0]}x{r.size[1]} differs from the model's "
                f"{self.contract.image_size[0]}x{self.contract.image_size[1]}: resized",
                **self._every(60.0))
        return r

    def _rectify(self, rgb: np.ndarray, stamp_s: float) -> Rectified:
        """Return the image through its CameraInfo (undistorted when that has distortion).

        The CameraInfo is the one of the nearest stamp within ``sync_slop`` of ``stamp_s`` (s),
        else the latest. Maps are cached per calibration; a rectified image is used as it is.
        Counts and warns about the rest and (once per calibration) about a camera unlike the
        model's nominal one. An OpenCV error in the undistortion (not expected after the
        validation on arrival) is counted as ``bad_input.camera_info_invalid``, warned about,
        and the image is used as it is.
        """
        name = self.sub_info.topic_name
        try:
            r = self.rectifier.rectify(rgb, stamp_s)
            r.reduced(self.contract.image_size)  # the undistortion runs here (kept by r)
        except cv2.error as e:
            self._counters.count("bad_input.camera_info_invalid")
            self._note("camera_info_invalid", f"undistortion failed: {e}")
            self._log.warning(f"undistortion with the CameraInfo on '{name}' failed ({e}): "
                              "image used as it is", **self._every(10.0))
            return Rectified(rgb, "camera_info_invalid", None, problem=f"undistortion failed: {e}")
        if r.status == "undistorted":
            self._counters.count("images_undistorted")
        elif r.status == "no_camera_info":
            self._counters.count("images_without_camera_info")
            self._log.warning(f"no CameraInfo on '{name}' yet: images are used as they "
                              "are (assumed rectified, the model's camera)", **self._every(60.0))
        elif r.status == "camera_info_invalid":
            self._counters.count("images_camera_info_refused")  # refusal warned on arrival
        elif r.status in ("size_mismatch", "unknown_model"):
            self._counters.count("bad_input.camera_info_mismatch")
            info = r.info
            self._log.warning(
                f"CameraInfo on '{name}' ({info.width}x{info.height}, distortion model "
                f"'{info.distortion_model}') does not fit image {rgb.shape[1]}x{rgb.shape[0]} "
                f"({r.status}): image used without undistortion", **self._every(10.0))
        key = r.key
        if r.camera_matrix is not None and key != self._nominal_checked:
            self._nominal_checked = key
            text = nominal_camera_mismatch(r.camera_matrix, rgb.shape[1::-1],
                                           self.contract.nominal_camera)
            if text:
                self._counters.count("camera_unlike_nominal")
                self._log.warning(text)
            if self.rectifier.rotation_ignored:
                self._log.warning(
                    f"CameraInfo on '{name}' has a rectification rotation R != I (stereo): "
                    "not applied, only the distortion is removed")
        return r
