"""``perception_node``: lidar PointCloud2 + camera Image -> 3D detections, BEV drivable area and
image semantics from one multi-task network.

Entry point ``bev_mtl_ros.ros.node:main`` (console script ``perception_node``):

    perception_node --ros-args --params-file config/perception.yaml -p model_path:=models/x.onnx

Topics (``~`` = the node's name, ``/perception_node`` by default)
-----------------------------------------------------------------
Subscribed (QoS ``input_qos``, sensor-data = BEST_EFFORT keep-last 5 by default), remappable
names as in Autoware (``-r ~/input/pointcloud:=/my/points``; the launch file remaps them from its
arguments; a non-empty ``cloud_topic`` / ``image_topic`` / ``camera_info_topic`` parameter
overrides the name):
  ``~/input/pointcloud`` (sensor_msgs/PointCloud2; fields x, y, z [+ ``intensity_field``], any
  layout, any frame TF connects to ``target_frame``), ``~/input/image`` (sensor_msgs/Image; rgb8,
  bgr8, rgba8, bgra8 or mono8; raw or rectified), ``~/input/camera_info`` (sensor_msgs/CameraInfo:
  D != 0 -> the image is undistorted, :mod:`bev_mtl_ros.ros.camera`), ``/tf_static`` + ``/tf``
  (own buffer when ``tf2_ros`` is not importable, :mod:`bev_mtl_ros.ros.tf`).
Published (RELIABLE keep-last 5 unless noted):
  ``~/detections`` (vision_msgs/Detection3DArray, class_id = detection class name; empty array for
  frames without objects) and ``/diagnostics`` (1 Hz) always; *lazy* (built and published only
  while subscribed, skipped ones counted in ``outputs_unsubscribed``): ``~/markers`` (MarkerArray:
  DELETEALL, box wireframes, labels), ``~/drivable_area`` (mono8 0/255, row = iy, col = ix),
  ``~/drivable_area/grid`` (nav_msgs/OccupancyGrid, 0 drivable / 100 not) - all with
  ``target_frame`` and the **input cloud's stamp**; ``~/semantic`` (mono8 class ids),
  ``~/semantic/color`` (rgb8 overlay, if ``publish_semantic_color``) - with the **camera image's
  header**; ``~/debug/processing_time_ms`` (std_msgs/Float64MultiArray: per-stage ms, the stage
  names are the comma-separated ``layout.dim[0].label``, e.g. "convert,<pipeline stages...>,
  publish,total"). ``~/semantic/label_info`` (vision_msgs/LabelInfo, TRANSIENT_LOCAL, once at
  start).

TF
--
Every cloud is transformed from ``header.frame_id`` into ``target_frame`` (default: the model
contract's ``frame_id``) at the cloud's stamp, waiting at most ``tf_timeout``, vectorised, before
pillarization; the same frame costs nothing. No transform: the frame is skipped, counted in
``bad_input.no_transform``, warned (throttled) and named in /diagnostics (``tf.unconnected``).

Shutdown
--------
SIGINT/SIGTERM only set a flag (rclpy's own handlers are not installed): the spin loop ends, the
worker finishes the frame in flight, the node is destroyed, then rclpy is shut down; exit code 0,
no publish on an invalid context.

Threads
-------
Subscription callbacks only hand messages to the :class:`~bev_mtl_ros.ros.sync.ApproxTimeSync`.
Synchronised pairs go to a one-slot mailbox read by a worker thread that runs conversion,
inference and publishing; when inference is slower than the input, only the newest pair is kept
and every replaced pair is counted in ``skipped_frames`` (exactly: pairs_emitted = processed +
skipped + in_slot). The worker also polls the synchronizer for camera timeouts (lidar-only frames).

Time
----
All outputs carry input message stamps; the node clock (sim time with ``use_sim_time``) stamps only
``/diagnostics`` and LabelInfo; timeouts, rates, latencies and warning throttling use the
monotonic clock, so a paused or looping bag cannot stall the node. Stamps jumping back by more
than 1 s re-base the synchronizer (a bag loop, or one message stamped ahead; see ros/sync.py).

Bad input never crashes the node: every case is counted (``bad_input.*`` in diagnostics) and
warned (throttled): empty cloud (empty detections are published), NaN/Inf points (dropped by the
pillarization), clouds without x/y/z or with unknown field types or inconsistent sizes (frame
skipped, nothing published), clouds without a transform to ``target_frame`` (skipped), images
with unsupported encoding or a wrong step (frame processed lidar-only), a CameraInfo that does not
fit the image (image used as it is), images of another size than the model's (resized by the
pipeline; counted as the informational ``images_resized``, the usual case for full-resolution
cameras), missing intensity field (zeros), stamps going backwards, the camera stopping
(lidar-only after ``camera_timeout``), clouds over ``max_cloud_points`` / images over
``max_image_pixels`` (refused in the subscription callback before conversion), an empty
``frame_id`` (a cloud without one is skipped: it cannot be transformed), no finite point inside
the model's ``point_cloud_range`` (e.g. every point at 1e9 m), duplicate field names, data in a
0-point cloud and a wrong ``is_bigendian`` flag (the last three: cloud skipped as malformed).
``/diagnostics`` (ros/diagnostics.py) is WARN while a cause is active: a bad input, dropped
pillars or a zero stamp within the last ``diagnostics_window_s``, more than
``overload_warn_fraction`` of the frames of that window skipped (overload), no cloud for
``input_stale_warn_s``, the synchronizer's diagnosis; ERROR after an inference error.
A missing or corrupt model file, or a ``contract.*`` parameter that disagrees with the model file,
stops the node at start-up with a message and exit code 2.

Parameters (names, defaults, ranges) and the start-up checks are in
:mod:`bev_mtl_ros.ros.params`, which imports without rclpy.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Deque, Dict, Optional, Sequence, Tuple

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data, qos_profile_system_default)
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float64MultiArray, Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from bev_mtl_ros.ros import messages as M
from bev_mtl_ros.ros.camera import ImageRectifier, nominal_camera_mismatch
from bev_mtl_ros.ros.conversions import (ConversionError, InputTooLarge, check_cloud_size,
                                         check_image_size, cloud_to_xyzi, decode_serialized,
                                         image_to_rgb, ros_header)
from bev_mtl_ros.ros.diagnostics import HealthConfig, PipelineHealth
from bev_mtl_ros.ros.params import (CONTRACT_PARAM_FIELDS, EXIT_STARTUP_ERROR, INPUT_NAMES,
                                    NODE_PARAMETERS, PARAMETER_RANGES, StartupError,
                                    check_contract_overrides, check_parameter_choices,
                                    make_postprocess_config, resolve_model_path)
from bev_mtl_ros.ros.sync import ApproxTimeSync, stamp_to_sec
from bev_mtl_ros.ros.tf import TransformError, make_transform_source, transform_points

__all__ = ["PerceptionNode", "main"]


class _Rate:
    """Events per second over a sliding window of monotonic times."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._t: Deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, t: Optional[float] = None) -> None:
        with self._lock:
            self._t.append(time.monotonic() if t is None else t)

    def hz(self) -> float:
        """(events - 1) / (last - first) over the events of the last ``window`` seconds; 0 if
        < 2."""
        now = time.monotonic()
        with self._lock:
            while self._t and now - self._t[0] > self.window:
                self._t.popleft()
            if len(self._t) < 2:
                return 0.0
            return (len(self._t) - 1) / max(self._t[-1] - self._t[0], 1e-6)


def _wanted(publisher: Any) -> bool:
    """Lazy outputs: True when ``publisher`` exists and has at least one subscriber."""
    return publisher is not None and publisher.get_subscription_count() > 0


def _qos_from_name(name: str, depth: int) -> QoSProfile:
    """Input QoS from parameter ``input_qos`` (sensor_data | best_effort | reliable |
    system_default) and history ``depth``. Raises StartupError for another name."""
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


def _parameter_descriptor(name: str, default: Any, text: str) -> ParameterDescriptor:
    """Descriptor of node parameter ``name``: its description, plus the integer or floating
    point range of :data:`~bev_mtl_ros.ros.params.PARAMETER_RANGES` (enforced by rclpy)."""
    desc = ParameterDescriptor(description=text)
    if name in PARAMETER_RANGES:
        lo, hi = PARAMETER_RANGES[name]
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        desc.description += f" [{lo} .. {hi}]"
    return desc


class PerceptionNode(Node):
    """The perception node (see the module docstring for topics, TF, threads and time).

    Warnings are throttled with rclpy's ``throttle_duration_sec`` (on the monotonic clock).
    rclpy keeps the throttle state per *call site* (file, function, line of the logging call),
    so every kind of warning has its own ``get_logger().warning(...)`` call: distinct kinds
    never suppress each other, as with the former per-key throttle.

    Raises:
        StartupError from the constructor: bad parameter, model missing/corrupt, contract
        mismatch, inference runtime unavailable.
    """

    def __init__(self, node_name: str = "perception_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        #: one clock instance for every throttled warning (rclpy refuses a call site whose
        #: throttle arguments change between calls; a Clock compares by identity)
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._declare_parameters()
        self._load_model()
        self._init_state()
        self._create_publishers()
        self._create_subscriptions()
        self._init_tf()
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._worker_loop, name="perception_worker",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.model_path}: backend {self.backend.name} on "
            f"{self.backend.device}; classes {self.class_names}; grid {self.contract.grid_size}; "
            f"image {self.contract.image_size}; cloud '{self.sub_cloud.topic_name}', "
            f"image '{self.sub_image.topic_name}', camera info '{self.sub_info.topic_name}' "
            f"({self._params['input_qos']} QoS)")

    # ------------------------------------------------------------------ start-up steps
    def _declare_parameters(self) -> None:
        """Declare :data:`NODE_PARAMETERS` (values in ``self._params``) and the
        ``contract.<field>`` parameters (set ones in ``self._contract_overrides``)."""
        p: Dict[str, Any] = {}
        for name, (default, text) in NODE_PARAMETERS.items():
            desc = _parameter_descriptor(name, default, text)
            try:
                p[name] = self.declare_parameter(name, default, desc).value
            except Exception as e:  # e.g. an int given for a double parameter
                raise StartupError(f"parameter '{name}': {type(e).__name__}: {e} (expected a "
                                   f"{type(default).__name__} like {default!r})") from e
        self._params = p
        self._contract_overrides: Dict[str, Any] = {}
        for name in CONTRACT_PARAM_FIELDS:
            desc = ParameterDescriptor(
                dynamic_typing=True,
                description=f"if set, must equal the model file's contract '{name}' "
                            "(checked at start-up)")
            v = self.declare_parameter("contract." + name, None, desc).value
            if v is not None and (isinstance(v, (list, tuple)) or hasattr(v, "tolist")):
                v = list(v)
            self._contract_overrides[name] = v

    def _load_model(self) -> None:
        """Model file, backend, contract check and pipeline (``self.model_path``,
        ``self.backend``, ``self.contract``, ``self.pipeline``, ``self.class_names``)."""
        p = self._params
        model_path = resolve_model_path(p["model_path"])
        check_parameter_choices(p)
        try:
            from bev_mtl_ros.runtime.backends import create_backend
            from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
        except ImportError as e:
            raise StartupError(f"inference runtime unavailable: {e}") from e
        try:
            self.backend = create_backend(model_path, backend=p["backend"], device=p["device"],
                                          fp16=p["fp16"], trt_cache_dir=p["trt_cache_dir"] or None,
                                          logger=self.get_logger())
        except Exception as e:  # corrupt file, missing provider, ...
            raise StartupError(f"cannot load model {model_path} with backend '{p['backend']}' on "
                               f"'{p['device']}': {type(e).__name__}: {e}") from e
        self.contract = self.backend.contract
        check_contract_overrides(self._contract_overrides, self.contract, model_path)
        try:
            self.pipeline = PerceptionPipeline(
                self.backend, make_postprocess_config(p["score_threshold"], p["nms"]))
        except Exception as e:
            raise StartupError(f"cannot build the pipeline: {type(e).__name__}: {e}") from e
        self.model_path = model_path
        self.class_names = list(self.contract.detection_classes)

    def _init_state(self) -> None:
        """Synchronizer, worker mailbox, counters, rates and health assessment."""
        p = self._params
        try:
            self.sync = ApproxTimeSync(slop=p["sync_slop"], queue_size=p["sync_queue_size"],
                                       camera_timeout=p["camera_timeout"],
                                       allow_lidar_only=bool(self.contract.lidar_only_supported),
                                       diag_window=p["diagnostics_window_s"])
        except ValueError as e:
            raise StartupError(f"parameters sync_slop / sync_queue_size / camera_timeout / "
                               f"diagnostics_window_s: {e}") from e
        self._cond = threading.Condition()
        self._slot: Optional[Any] = None
        self._stop = False
        self.counters: Dict[str, int] = {
            "pairs_in": 0, "processed": 0, "published": 0, "skipped_frames": 0,
            "lidar_only_frames": 0, "pillars_dropped": 0, "frames_with_pillars_dropped": 0,
            "nonfinite_points": 0, "bad_input.empty_cloud": 0, "bad_input.nonfinite_cloud": 0,
            "bad_input.cloud_malformed": 0, "bad_input.image_malformed": 0, "images_resized": 0,
            "bad_input.missing_intensity": 0, "bad_input.stamp_backwards": 0,
            "bad_input.no_transform": 0, "bad_input.cloud_too_large": 0,
            "bad_input.image_too_large": 0, "bad_input.empty_frame_id": 0,
            "bad_input.cloud_out_of_range": 0, "frames_transformed": 0,
            "outputs_unsubscribed": 0, "images_undistorted": 0, "images_without_camera_info": 0,
            "bad_input.camera_info_mismatch": 0, "camera_unlike_nominal": 0,
            "errors.inference": 0,
        }
        self._counter_lock = threading.Lock()
        self._rate_clouds, self._rate_images, self._rate_out = _Rate(), _Rate(), _Rate()
        self._latencies: Deque[float] = deque(maxlen=200)
        self._last_resets = 0
        self._last_cloud_mono: Optional[float] = None
        try:
            health_cfg = HealthConfig(window_s=p["diagnostics_window_s"],
                                      overload_fraction=p["overload_warn_fraction"],
                                      input_stale_s=p["input_stale_warn_s"])
            self._health = PipelineHealth(health_cfg, self.counters, time.monotonic())
        except ValueError as e:
            raise StartupError(f"parameters diagnostics_window_s / overload_warn_fraction / "
                               f"input_stale_warn_s: {e}") from e

    def _create_publishers(self) -> None:
        """Output publishers (RELIABLE keep-last 5; LabelInfo TRANSIENT_LOCAL, published once
        here) and ``self._optional``, the lazy outputs by name."""
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_det = self.create_publisher(Detection3DArray, "~/detections", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos)
        self.pub_drivable = self.create_publisher(Image, "~/drivable_area", out_qos)
        self.pub_grid = self.create_publisher(OccupancyGrid, "~/drivable_area/grid", out_qos)
        self.pub_sem = self.create_publisher(Image, "~/semantic", out_qos)
        self.pub_sem_color = (self.create_publisher(Image, "~/semantic/color", out_qos)
                              if self._params["publish_semantic_color"] else None)
        self.pub_label_info = self.create_publisher(LabelInfo, "~/semantic/label_info", latched)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_timing = self.create_publisher(Float64MultiArray, "~/debug/processing_time_ms",
                                                out_qos)
        #: optional outputs (lazy: built only with subscribers); detections, diagnostics always
        self._optional = {"markers": self.pub_markers, "drivable": self.pub_drivable,
                          "grid": self.pub_grid, "semantic": self.pub_sem,
                          "semantic_color": self.pub_sem_color, "timing": self.pub_timing}
        h = Header()
        h.stamp = self.get_clock().now().to_msg()
        self.pub_label_info.publish(M.label_info_msg(self.contract.semantic_classes, h, 0.0))

    def _create_subscriptions(self) -> None:
        """Input subscriptions (QoS ``input_qos``): raw (CDR bytes) cloud and image, decoded
        zero-copy by :func:`decode_serialized`; CameraInfo into ``self.rectifier``."""
        p = self._params
        in_qos = _qos_from_name(p["input_qos"], max(1, int(p["input_queue_depth"])))
        self.sub_cloud = self.create_subscription(
            PointCloud2, p["cloud_topic"] or INPUT_NAMES["cloud"], self._on_cloud, in_qos,
            raw=True)
        self.sub_image = self.create_subscription(
            Image, p["image_topic"] or INPUT_NAMES["image"], self._on_image, in_qos,
            raw=True)
        self.rectifier = ImageRectifier()
        self._nominal_checked: Optional[Any] = None
        self.sub_info = self.create_subscription(
            CameraInfo, p["camera_info_topic"] or INPUT_NAMES["camera_info"],
            self.rectifier.update, in_qos)

    def _init_tf(self) -> None:
        """``self.target_frame`` and the transform source ``self.tf`` (None without TF)."""
        p = self._params
        self.target_frame = (p["target_frame"] or self.contract.frame_id).lstrip("/")
        if not p["tf_timeout"] >= 0.0:
            raise StartupError(f"parameter 'tf_timeout' = {p['tf_timeout']} must be >= 0")
        self._tf_unconnected = ""   # last failed look-up, for /diagnostics
        try:
            self.tf = make_transform_source(self)
            tf_mode = self.tf.mode
        except ImportError as e:  # no tf2_ros, no tf2_msgs: only clouds in target_frame
            self.tf = None
            tf_mode = f"none ({e}): only clouds in '{self.target_frame}' are used"
        self.get_logger().info(f"TF: {tf_mode}; target_frame '{self.target_frame}'")

    # ------------------------------------------------------------------ helpers
    def _count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def _every(self, period: float) -> Dict[str, Any]:
        """Keyword arguments that throttle a logger call to one message per ``period`` seconds
        (monotonic clock). The throttle state is rclpy's, per call site: use it only in the
        logging call of one kind of warning, with one constant ``period``."""
        return {"throttle_duration_sec": period, "throttle_time_source_type": self._steady}

    # ------------------------------------------------------------------ callbacks (light)
    def _on_cloud(self, raw: bytes) -> None:
        self._rate_clouds.tick()
        self._last_cloud_mono = time.monotonic()
        msg = self._decode(raw, "cloud")
        if msg is None or not self._input_ok(msg, "cloud"):
            return
        pairs = self.sync.add_cloud((msg, time.monotonic()), stamp_to_sec(msg.header.stamp))
        self._check_resets()
        self._offer(pairs)

    def _on_image(self, raw: bytes) -> None:
        self._rate_images.tick()
        msg = self._decode(raw, "image")
        if msg is None or not self._input_ok(msg, "image"):
            return
        pairs = self.sync.add_image(msg, stamp_to_sec(msg.header.stamp))
        self._check_resets()
        self._offer(pairs)

    def _decode(self, raw: bytes, kind: str) -> Optional[Any]:
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
            self._count(f"bad_input.{kind}_malformed")
            if cloud:
                self.get_logger().warning(
                    f"cloud on '{self.sub_cloud.topic_name}' skipped: {e}", **self._every(5.0))
            else:
                self.get_logger().warning(
                    f"image on '{self.sub_image.topic_name}' skipped: {e}", **self._every(5.0))
            return None

    def _input_ok(self, msg: Any, kind: str) -> bool:
        """Size limit (refused before conversion) and header checks of one input message."""
        log = self.get_logger()
        try:
            if kind == "cloud":
                check_cloud_size(msg, self._params["max_cloud_points"])
            else:
                check_image_size(msg, self._params["max_image_pixels"])
        except InputTooLarge as e:
            self._count(f"bad_input.{kind}_too_large")
            if kind == "cloud":
                log.warning(f"cloud refused: {e}", **self._every(5.0))
            else:
                log.warning(f"image refused: {e}; its cloud runs lidar-only", **self._every(5.0))
            return False
        if not msg.header.frame_id:
            self._count("bad_input.empty_frame_id")
            if kind == "cloud":
                log.warning("cloud with an empty header.frame_id skipped: it cannot be "
                            f"transformed into '{self.target_frame}'", **self._every(30.0))
                return False
            log.warning("image with an empty header.frame_id (used: the camera model comes "
                        "from camera_info)", **self._every(30.0))
        return True

    def _check_resets(self) -> None:
        r = self.sync.stats.stamp_jumps
        if r != self._last_resets:
            self._count("bad_input.stamp_backwards", r - self._last_resets)
            self._last_resets = r
            self.get_logger().warning(f"synchronizer: {self.sync.last_jump}", **self._every(1.0))

    def _offer(self, pairs: Sequence[Any]) -> None:
        if not pairs:
            return
        with self._cond:
            for pair in pairs:
                self.counters["pairs_in"] += 1
                if pair.image is None and not self.contract.lidar_only_supported:
                    continue  # dropped by the synchronizer's policy (counted in sync stats)
                if self._slot is not None:
                    self.counters["skipped_frames"] += 1
                self._slot = pair
            self._cond.notify()

    # ------------------------------------------------------------------ worker
    def _worker_loop(self) -> None:
        while True:
            with self._cond:
                if self._slot is None and not self._stop:
                    self._cond.wait(timeout=0.02)
                if self._stop:
                    return
                pair, self._slot = self._slot, None
            if pair is None:
                late = self.sync.poll()
                if late:
                    self._offer(late)
                continue
            try:
                self._process(pair)
            except Exception as e:  # never let the worker die
                if self._stop or not self.context.ok():  # shutting down: drop it quietly
                    return
                self._count("errors.inference")
                self.get_logger().warning(
                    f"frame failed: {type(e).__name__}: {e}\n{traceback.format_exc()}",
                    **self._every(5.0))

    def _process(self, pair: Any) -> None:
        """One synchronised pair: transform and convert the cloud, convert the image, infer,
        check the pillarization and publish (or skip the frame, counted and warned)."""
        t0 = time.perf_counter()
        cloud, t_arrival = pair.cloud
        self._count("processed")
        ok, T = self._cloud_transform(cloud)
        if not ok:
            return
        header = ros_header(cloud.header, self.target_frame)  # outputs: the cloud's stamp
        conv = self._convert_cloud(cloud, T)
        if conv is None:
            return
        points = conv.points
        n_finite = points.shape[0] - conv.num_nonfinite
        rgb = None if pair.image is None else self._convert_image(pair.image)
        if rgb is None:
            if not self.contract.lidar_only_supported:
                self.get_logger().warning("no usable image and the model has no lidar-only "
                                          "path: frame skipped", **self._every(5.0))
                return
            self._count("lidar_only_frames")
        t_conv = time.perf_counter()
        timings: Dict[str, float] = {"convert": (t_conv - t0) * 1e3}
        if n_finite == 0:
            self._publish_empty(header)
            self._finish(t0, t_arrival, timings)
            return
        wants = {name: _wanted(pub) for name, pub in self._optional.items()}
        self._count("outputs_unsubscribed", sum(not w for w in wants.values()))
        result = self._infer(points, rgb, wants)
        if result is None:
            return
        t_inf = time.perf_counter()
        for k, v in result.timings_ms.items():
            timings["pipeline_total" if k == "total" else str(k)] = float(v)
        self._check_pillar_stats(result.pillar_stats, n_finite)
        self._publish_outputs(result, header, pair.image, rgb, wants)
        timings["publish"] = (time.perf_counter() - t_inf) * 1e3
        self._finish(t0, t_arrival, timings)

    # ------------------------------------------------------------------ processing steps
    def _cloud_transform(self, cloud: Any) -> Tuple[bool, Any]:
        """(ok, transform or None for identity) from the cloud's frame into target_frame at the
        cloud's stamp; on failure counts ``bad_input.no_transform``, names the frames for
        /diagnostics and warns (throttled)."""
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
            T = self.tf.lookup(self.target_frame, source, stamp_ns, self._params["tf_timeout"])
        except TransformError as e:
            self._count("bad_input.no_transform")
            self._tf_unconnected = f"'{source}' -> '{self.target_frame}': {e}"
            self.get_logger().warning(f"cloud skipped: no transform {self._tf_unconnected}",
                                      **self._every(5.0))
            return False, None
        return True, (None if T.is_identity() else T)

    def _convert_cloud(self, cloud: Any, T: Any) -> Optional[Any]:
        """PointCloud2 -> (N, 4) x, y, z [m], intensity in ``target_frame`` (``T``: transform
        from the cloud's frame, None = identity), as :func:`cloud_to_xyzi`'s result; None for a
        malformed cloud (counted, warned). Counts and warns about missing intensity,
        intensity in the wrong range and NaN/Inf points."""
        p = self._params
        try:
            conv = cloud_to_xyzi(cloud, intensity_field=p["intensity_field"],
                                 intensity_scale=p["intensity_scale"])
        except ConversionError as e:
            self._count("bad_input.cloud_malformed")
            self.get_logger().warning(f"cloud on '{self.sub_cloud.topic_name}' skipped: {e}",
                                      **self._every(5.0))
            return None
        points = conv.points
        if T is not None:
            transform_points(points, T)
            self._count("frames_transformed")
        self._check_intensity(conv, cloud)
        if conv.num_nonfinite:
            self._count("bad_input.nonfinite_cloud")
            self._count("nonfinite_points", conv.num_nonfinite)
            self.get_logger().warning(f"{conv.num_nonfinite} of {points.shape[0]} points have "
                                      "NaN/Inf values (dropped)", **self._every(5.0))
        return conv

    def _check_intensity(self, conv: Any, cloud: Any) -> None:
        """Count and warn (throttled) about a cloud without the intensity field and about
        intensities that look normalised (0..1) where the model expects raw values."""
        p = self._params
        points = conv.points
        if points.shape[0] and not conv.has_intensity and p["intensity_field"]:
            self._count("bad_input.missing_intensity")
            names = [f.name for f in cloud.fields]
            self.get_logger().warning(
                f"cloud has no field '{p['intensity_field']}' (fields: {names}): intensity set "
                "to 0, detections will degrade; set parameter intensity_field",
                **self._every(30.0))
        if conv.has_intensity and points.shape[0] >= 100 and self.contract.intensity_scale < 0.1:
            top = float(np.nanmax(points[:, 3])) if np.isfinite(points[:, 3]).any() else 0.0
            if 0.0 < top <= 1.0:
                self.get_logger().warning(
                    f"intensity after intensity_scale={p['intensity_scale']} is within "
                    f"0..{top:.2f} but the model expects raw values up to "
                    f"{1.0 / self.contract.intensity_scale:.0f}: set intensity_scale (e.g. 255.0)",
                    **self._every(60.0))

    def _convert_image(self, image: Any) -> Optional[np.ndarray]:
        """sensor_msgs/Image -> (H, W, 3) uint8 RGB, undistorted through the CameraInfo; None
        when unusable (counted, warned: the frame runs lidar-only). Counts a size different
        from the model's (``images_resized``: the pipeline resizes)."""
        try:
            rgb = image_to_rgb(image)
        except ConversionError as e:
            self._count("bad_input.image_malformed")
            self.get_logger().warning(f"image on '{self.sub_image.topic_name}' unusable ({e}); "
                                      "frame runs lidar-only", **self._every(5.0))
            return None
        rgb = self._rectify(rgb)
        if tuple(rgb.shape[1::-1]) != tuple(self.contract.image_size):
            self._count("images_resized")
            self.get_logger().warning(
                f"image {rgb.shape[1]}x{rgb.shape[0]} differs from the model's "
                f"{self.contract.image_size[0]}x{self.contract.image_size[1]}: resized",
                **self._every(60.0))
        return rgb

    def _rectify(self, rgb: np.ndarray) -> np.ndarray:
        """The image through the camera's CameraInfo: undistorted when it has distortion (maps
        cached per calibration), as it is when rectified; counts and warns about the rest and
        (once per calibration) about a camera unlike the model's nominal one."""
        r = self.rectifier.rectify(rgb)
        name = self.sub_info.topic_name
        if r.status == "undistorted":
            self._count("images_undistorted")
        elif r.status == "no_camera_info":
            self._count("images_without_camera_info")
            self.get_logger().warning(f"no CameraInfo on '{name}' yet: images are used as they "
                                      "are (assumed rectified, the model's camera)",
                                      **self._every(60.0))
        elif r.status in ("size_mismatch", "unknown_model"):
            self._count("bad_input.camera_info_mismatch")
            info = self.rectifier.info
            self.get_logger().warning(
                f"CameraInfo on '{name}' ({info.width}x{info.height}, distortion model "
                f"'{info.distortion_model}') does not fit image {rgb.shape[1]}x{rgb.shape[0]} "
                f"({r.status}): image used without undistortion", **self._every(10.0))
        key = self.rectifier.key
        if r.camera_matrix is not None and key != self._nominal_checked:
            self._nominal_checked = key
            text = nominal_camera_mismatch(r.camera_matrix, rgb.shape[1::-1],
                                           self.contract.nominal_camera)
            if text:
                self._count("camera_unlike_nominal")
                self.get_logger().warning(text)
            if self.rectifier.rotation_ignored:
                self.get_logger().warning(
                    f"CameraInfo on '{name}' has a rectification rotation R != I (stereo): "
                    "not applied, only the distortion is removed")
        return r.image

    def _publish_empty(self, header: Header) -> None:
        """A cloud without finite points: counted, warned, empty detections (and markers)."""
        self._count("bad_input.empty_cloud")
        self.get_logger().warning("empty cloud (no finite points): publishing empty detections",
                                  **self._every(5.0))
        empty = np.zeros((0, 7), np.float32)
        self.pub_det.publish(M.detections_to_msg(empty, np.zeros(0, np.float32),
                                                 np.zeros(0, np.int64), self.class_names,
                                                 header))
        if _wanted(self.pub_markers):
            self.pub_markers.publish(M.detections_to_markers(
                empty, np.zeros(0), np.zeros(0, np.int64), self.class_names, header))

    def _infer(self, points: np.ndarray, rgb: Optional[np.ndarray],
               wants: Dict[str, bool]) -> Optional[Any]:
        """The pipeline on (N, 4) points and the RGB image (None = lidar-only); the semantic
        head only when a semantic output is wanted. None after an error (counted, warned)."""
        try:
            return self.pipeline(points, rgb,
                                 semantic=wants["semantic"] or wants["semantic_color"])
        except Exception as e:
            self._count("errors.inference")
            self.get_logger().warning(f"inference failed: {type(e).__name__}: {e}",
                                      **self._every(5.0))
            return None

    def _check_pillar_stats(self, stats: Any, n_finite: int) -> None:
        """Count and warn about a cloud without any point in ``point_cloud_range`` and about
        pillars dropped over ``max_pillars`` (``stats``: the pipeline's pillar statistics)."""
        if (n_finite
                and stats.points_in == stats.nonfinite_dropped + stats.out_of_range_dropped):
            self._count("bad_input.cloud_out_of_range")
            rng = list(self.contract.point_cloud_range)
            self.get_logger().warning(
                f"none of the {n_finite} finite points lies inside the model's "
                f"point_cloud_range {rng[:3]}..{rng[3:]} m (another frame or unit?)",
                **self._every(10.0))
        dropped = int(stats.pillars_dropped)
        if dropped:
            self._count("pillars_dropped", dropped)
            self._count("frames_with_pillars_dropped")
            self.get_logger().warning(
                f"{dropped} pillars over max_pillars={self.contract.max_pillars} dropped "
                f"({stats.points_in_dropped_pillars} points)", **self._every(5.0))

    def _publish_outputs(self, result: Any, header: Header, image: Any,
                         rgb: Optional[np.ndarray], wants: Dict[str, bool]) -> None:
        """Detections always, the lazy outputs in ``wants``: the cloud's ``header`` for lidar/BEV
        outputs, the camera ``image`` message's header for image-space outputs."""
        det = result.detections
        self.pub_det.publish(M.detections_to_msg(det.boxes, det.scores, det.labels,
                                                 self.class_names, header))
        if wants["markers"]:
            self.pub_markers.publish(M.detections_to_markers(det.boxes, det.scores, det.labels,
                                                             self.class_names, header))
        if result.drivable is not None:
            if wants["drivable"]:
                self.pub_drivable.publish(M.drivable_to_image(result.drivable, header))
            if wants["grid"]:
                try:
                    self.pub_grid.publish(M.drivable_to_occupancy_grid(
                        result.drivable, self.contract.point_cloud_range,
                        self.contract.pillar_size, header))
                except ValueError as e:
                    self.get_logger().warning(str(e), **self._every(60.0))
        sem = result.semantic
        if sem is not None and rgb is not None and image is not None:
            img_header = ros_header(image.header)
            if wants["semantic"]:
                self.pub_sem.publish(M.semantic_to_image(sem, img_header))
            if wants["semantic_color"] and sem.shape[:2] == rgb.shape[:2]:
                self.pub_sem_color.publish(M.semantic_overlay(rgb, sem, img_header))

    def _finish(self, t0: float, t_arrival: float, timings: Dict[str, float]) -> None:
        timings["total"] = (time.perf_counter() - t0) * 1e3
        if _wanted(self.pub_timing):
            self.pub_timing.publish(M.timings_msg(timings))
        self._latencies.append((time.monotonic() - t_arrival) * 1e3)
        self._rate_out.tick()
        self._count("published")

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        with self._counter_lock:
            c = dict(self.counters)
        lat = np.array(self._latencies, dtype=np.float64)
        p50, p95 = ((float(np.percentile(lat, 50)), float(np.percentile(lat, 95)))
                    if lat.size else (0.0, 0.0))
        s = self.sync.stats
        values: Dict[str, Any] = {
            "backend": self.backend.name, "device": self.backend.device,
            "model": self.model_path,
            "rate_in_clouds_hz": self._rate_clouds.hz(),
            "rate_in_images_hz": self._rate_images.hz(),
            "rate_out_hz": self._rate_out.hz(), "latency_p50_ms": p50, "latency_p95_ms": p95,
        }
        values.update(c)
        for k, v in s.to_dict().items():
            values["sync." + k] = v
        values["tf.target_frame"] = self.target_frame
        values["tf.mode"] = self.tf.mode if self.tf is not None else "none"
        values["tf.unconnected"] = self._tf_unconnected  # the last failed look-up ("" = none)
        last = self._last_cloud_mono
        idle = None if last is None else time.monotonic() - last
        diag = self.sync.diagnose()
        if diag:
            self.get_logger().warning(f"synchronizer: {diag}", **self._every(10.0))
        level, msgs = self._health.assess(time.monotonic(), c, idle, diag,
                                          self.sub_cloud.topic_name,
                                          {"no_transform": self._tf_unconnected})
        status = M.diagnostic_status(f"{self.get_name()}: pipeline", level,
                                     "; ".join(msgs) or "ok", values,
                                     hardware_id=str(self.backend.device))
        self.pub_diag.publish(M.diagnostic_array([status], self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> None:
        """Stop the worker thread (joins it)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the node until SIGINT/SIGTERM (or an external rclpy shutdown).

    Shutdown order (no publish on a dead context, no traceback): the signal only sets a flag; the
    spin loop then ends, the worker finishes its in-flight frame (a frame still waiting in the
    mailbox is dropped), the node is destroyed, and only then is rclpy shut down. rclpy's own
    signal handlers are not installed (they would invalidate the context while the worker is
    publishing). A signal during start-up (model loading) ends the node right after it.

    Returns:
        0 on a clean exit, 2 on a start-up error (the message is printed to stderr).
    """
    import signal

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=list(argv) if argv is not None else None,
               signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        try:
            node = PerceptionNode()
        except StartupError as e:
            print(f"[perception_node] error: {e}", file=sys.stderr, flush=True)
            return EXIT_STARTUP_ERROR
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            pass
        if stop.is_set():
            node.get_logger().info("signal received: finishing the frame in flight and stopping")
        return 0
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
