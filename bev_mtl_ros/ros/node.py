"""``perception_node``: one multi-task network from a lidar cloud and a camera image.

Lidar PointCloud2 + camera Image -> 3D detections, BEV drivable area and image semantics.

Entry point ``bev_mtl_ros.ros.node:main`` (console script ``perception_node``):

    perception_node --ros-args --params-file config/perception.yaml -p model_path:=models/x.onnx

Topics (``~`` = the node's name, ``/perception_node`` by default)
-----------------------------------------------------------------
Subscribed (QoS ``input_qos``, sensor-data = BEST_EFFORT keep-last 5 by default), remappable
names as in Autoware (``-r ~/input/pointcloud:=/my/points``; the launch file remaps them from its
arguments; a non-empty ``cloud_topic`` / ``image_topic`` / ``camera_info_topic`` parameter
overrides the name):
  ``~/input/pointcloud`` (sensor_msgs/PointCloud2; fields x, y, z [+ ``intensity_field``], any
  layout, any frame TF connects to ``target_frame``), ``~/input/image`` (sensor_msgs/Image; any
  colour, mono, Bayer or yuv422 encoding by cv_bridge's names, :mod:`bev_mtl_ros.ros.image_codec`;
  raw or rectified), ``~/input/camera_info`` (sensor_msgs/CameraInfo:
  D != 0 -> the image is undistorted, :mod:`bev_mtl_ros.ros.camera`), ``/tf_static`` + ``/tf``
  (own buffer when ``tf2_ros`` is not importable, :mod:`bev_mtl_ros.ros.tf`).
Published: ``~/detections`` (vision_msgs/Detection3DArray) and ``/diagnostics`` (1 Hz) always; the
markers, drivable-area image and grid, semantic images and stage timings only while subscribed
(lazy); ``~/semantic/label_info`` once at start. Topics, types, QoS and headers:
:mod:`bev_mtl_ros.ros.outputs`.

TF
--
Every cloud is transformed from ``header.frame_id`` into ``target_frame`` (default: the model
contract's ``frame_id``) at the cloud's stamp, waiting at most ``tf_timeout``, vectorised, before
pillarization; the same frame costs nothing. No transform: the frame is skipped, counted in
``bad_input.no_transform``, warned (throttled) and named in /diagnostics (``tf.unconnected``,
while such failures are recent: within ``diagnostics_window_s``). The wait ends early when a newer
frame is waiting in the mailbox, and frames found not connected cost it once per TF tree, not once
per cloud (ros/tf.py). /tf entries that cannot be stored (non-finite, a quaternion that cannot be
normalised) are refused (``bad_input.tf_invalid``), a frame that changes its parent is reported by
name (``bad_input.tf_reparented``, ``tf.reparented``).

Shutdown
--------
SIGINT/SIGTERM only set a flag (rclpy's own handlers are not installed): the spin loop ends, the
inference thread finishes the frame in flight, the output thread publishes the frames handed over
to it (both within 5 s, else what is left is dropped: ``outputs_dropped``; the log says what was
in flight), the node waits at most 1 s for its subscribers to acknowledge what it published, the
node is destroyed, then rclpy is shut down; exit code 0, no publish on an invalid context. The
flag's handlers are installed before the heavy imports (:mod:`bev_mtl_ros.ros.stop_signals`), so
a signal at any moment of start-up also exits 0 without a traceback (during the imports the
model is then not even loaded).

Threads
-------
Subscription callbacks only hand messages to the :class:`~bev_mtl_ros.ros.sync.ApproxTimeSync`.
Synchronised pairs go to a one-slot mailbox read by the inference thread, which runs conversion
and inference (:class:`~bev_mtl_ros.ros.worker.FrameWorker`); when inference is slower than the
input, only the newest pair is kept and every replaced pair is counted in ``skipped_frames``
(exactly: pairs_emitted = processed + skipped + in_slot). The inference thread also polls the
synchronizer for camera timeouts (lidar-only frames). With ``pipeline_outputs`` (default) an
output thread builds and publishes frame k's outputs (detections first, then the lazy outputs,
the timings) while frame k+1 is converted and inferred; a one-slot hand-over between the two
keeps the frames in order (every output of frame k before any of frame k+1) and makes the
inference thread wait rather than drop an inferred frame (``output_stage_waits``). The frame
handed over owns its arrays (the pipeline allocates them per frame). ``pipeline_outputs: false``
publishes in the inference thread, one frame at a time.

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
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from bev_mtl_ros.ros import stop_signals

if __name__ == "__main__":  # python -m bev_mtl_ros.ros.node: before the imports below (1-2 s)
    stop_signals.install()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange,  # noqa: E402
                                ParameterDescriptor)
from rclpy.clock import Clock, ClockType  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from bev_mtl_ros.ros import messages as M  # noqa: E402
from bev_mtl_ros.ros.camera import Rectified  # noqa: E402
from bev_mtl_ros.ros.conversions import ros_header  # noqa: E402
from bev_mtl_ros.ros.diagnostics import (HealthConfig, LatencyWindow,  # noqa: E402
                                         NodeCounters, PipelineHealth, RateMeter)
from bev_mtl_ros.ros.inputs import NodeInputs  # noqa: E402
from bev_mtl_ros.ros.outputs import NodeOutputs  # noqa: E402
from bev_mtl_ros.ros.params import (CONTRACT_PARAM_FIELDS, EXIT_STARTUP_ERROR,  # noqa: E402
                                    NODE_PARAMETERS, PARAMETER_RANGES, StartupError,
                                    check_contract_overrides, check_parameter_choices,
                                    make_postprocess_config, resolve_model_path)
from bev_mtl_ros.ros.sync import ApproxTimeSync, stamp_to_sec  # noqa: E402
from bev_mtl_ros.ros.tf import make_transform_source  # noqa: E402
from bev_mtl_ros.ros.worker import FrameWorker  # noqa: E402
from bev_mtl_ros.runtime.backends import create_backend  # noqa: E402
from bev_mtl_ros.runtime.pipeline import PerceptionPipeline  # noqa: E402

__all__ = ["PerceptionNode", "main"]


@dataclass
class _FrameOutputs:
    """What one frame publishes, handed from the inference thread to the output thread.

    Attributes:
        header: the cloud's header in ``target_frame`` (lidar/BEV outputs).
        image: the camera Image message (image-space outputs take its header) or None.
        camera: the camera image through its CameraInfo (:class:`Rectified`), or None
            (lidar-only).
        result: the pipeline's FrameResult, or None for a cloud without finite points (empty
            detections are published).
        wants: the lazy outputs subscribed when the frame was inferred (NodeOutputs.wants).
        timings: stage milliseconds so far (convert, the pipeline's stages).
        t0: perf_counter seconds at the start of the frame; t_ready: when it was handed over.
        t_arrival: monotonic seconds the cloud arrived (latency).
    """

    header: Header
    image: Any
    camera: Optional[Rectified]
    result: Any
    wants: Dict[str, bool]
    timings: Dict[str, float]
    t0: float
    t_ready: float
    t_arrival: float


def _parameter_descriptor(name: str, default: Any, text: str) -> ParameterDescriptor:
    """Return the descriptor of node parameter ``name``.

    It holds the description, plus the integer or floating point range of
    :data:`~bev_mtl_ros.ros.params.PARAMETER_RANGES` (enforced by rclpy).
    """
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

    The input side (subscriptions, input checks, cloud and image conversion) is
    :class:`~bev_mtl_ros.ros.inputs.NodeInputs` (``self.inputs``), the output side (publishers,
    lazy outputs) :class:`~bev_mtl_ros.ros.outputs.NodeOutputs` (``self.outputs``), the counters
    :class:`~bev_mtl_ros.ros.diagnostics.NodeCounters` (``self.counters``).

    Warnings are throttled with rclpy's ``throttle_duration_sec`` (on the monotonic clock).
    rclpy keeps the throttle state per *call site* (file, function, line of the logging call),
    so every kind of warning has its own ``get_logger().warning(...)`` call: distinct kinds
    never suppress each other, as with the former per-key throttle.

    Raises:
        StartupError from the constructor: bad parameter, model missing/corrupt, contract
        mismatch.
    """

    def __init__(self, node_name: str = "perception_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        #: one clock instance for every throttled warning (rclpy refuses a call site whose
        #: throttle arguments change between calls; a Clock compares by identity)
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._declare_parameters()
        self._load_model()
        self._init_state()
        self.outputs = NodeOutputs(self, self.contract, self._params["publish_semantic_color"],
                                   self._every)
        self._init_inputs()
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.worker = FrameWorker(self._process, self.sync.poll, self.counters,
                                  bool(self.contract.lidar_only_supported), self.context.ok,
                                  self.get_logger(), self._every, self._publish_frame,
                                  pipelined=bool(self._params["pipeline_outputs"]))
        self.worker.start()
        ins = self.inputs
        self.get_logger().info(
            f"model {self.model_path}: backend {self.backend.name} on "
            f"{self.backend.device}; classes {self.class_names}; grid {self.contract.grid_size}; "
            f"image {self.contract.image_size}; cloud '{ins.sub_cloud.topic_name}', "
            f"image '{ins.sub_image.topic_name}', camera info '{ins.sub_info.topic_name}' "
            f"({self._params['input_qos']} QoS); outputs "
            f"{'pipelined' if self._params['pipeline_outputs'] else 'in the inference thread'}")

    # ------------------------------------------------------------------ start-up steps
    def _declare_parameters(self) -> None:
        """Declare the node's parameters.

        :data:`NODE_PARAMETERS` (values in ``self._params``) and the ``contract.<field>``
        parameters (set ones in ``self._contract_overrides``).
        """
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
        """Load the model file, backend, contract check and pipeline.

        Sets ``self.model_path``, ``self.backend``, ``self.contract``, ``self.pipeline``,
        ``self.class_names``.
        """
        p = self._params
        model_path = resolve_model_path(p["model_path"])
        check_parameter_choices(p)
        try:
            self.backend = create_backend(model_path, backend=p["backend"], device=p["device"],
                                          fp16=p["fp16"], trt_cache_dir=p["trt_cache_dir"] or None,
                                          logger=self.get_logger(),
                                          intra_op_threads=p["onnx_intra_op_threads"] or None,
                                          spin_us=p["onnx_spin_us"])
        except Exception as e:  # corrupt file, missing provider, ...
            raise StartupError(f"cannot load model {model_path} with backend '{p['backend']}' on "
                               f"'{p['device']}': {type(e).__name__}: {e}") from e
        self.contract = self.backend.contract
        check_contract_overrides(self._contract_overrides, self.contract, model_path)
        post = make_postprocess_config(p["score_threshold"], p["nms"],
                                       self.contract.detection_classes,
                                       p["class_score_thresholds"])
        try:
            self.pipeline = PerceptionPipeline(self.backend, post)
        except Exception as e:
            raise StartupError(f"cannot build the pipeline: {type(e).__name__}: {e}") from e
        self.model_path = model_path
        self.class_names = list(self.contract.detection_classes)

    def _init_state(self) -> None:
        """Create the synchronizer, counters, rates and health assessment."""
        p = self._params
        try:
            self.sync = ApproxTimeSync(slop=p["sync_slop"], queue_size=p["sync_queue_size"],
                                       camera_timeout=p["camera_timeout"],
                                       allow_lidar_only=bool(self.contract.lidar_only_supported),
                                       diag_window=p["diagnostics_window_s"])
        except ValueError as e:
            raise StartupError(f"parameters sync_slop / sync_queue_size / camera_timeout / "
                               f"diagnostics_window_s: {e}") from e
        self.counters = NodeCounters()
        self._rate_clouds, self._rate_images, self._rate_out = (RateMeter(), RateMeter(),
                                                                RateMeter())
        self._latencies = LatencyWindow(200)
        self._last_resets = 0
        self._last_cloud_mono: Optional[float] = None
        try:
            health_cfg = HealthConfig(window_s=p["diagnostics_window_s"],
                                      overload_fraction=p["overload_warn_fraction"],
                                      input_stale_s=p["input_stale_warn_s"])
            self._health = PipelineHealth(health_cfg, self.counters.snapshot(), time.monotonic())
        except ValueError as e:
            raise StartupError(f"parameters diagnostics_window_s / overload_warn_fraction / "
                               f"input_stale_warn_s: {e}") from e

    def _init_inputs(self) -> None:
        """Target frame, transform source and input subscriptions (``self.inputs``).

        Raises:
            StartupError: negative ``tf_timeout``, unknown ``input_qos``.
        """
        p = self._params
        self.target_frame = (p["target_frame"] or self.contract.frame_id).lstrip("/")
        if not p["tf_timeout"] >= 0.0:
            raise StartupError(f"parameter 'tf_timeout' = {p['tf_timeout']} must be >= 0")
        self.inputs = NodeInputs(self, p, self.contract, self.target_frame, None, self.counters,
                                 self._every)
        try:
            self.inputs.tf = make_transform_source(self, on_invalid=self.inputs.on_tf_invalid,
                                                   on_reparent=self.inputs.on_tf_reparent)
            tf_mode = self.inputs.tf.mode
        except ImportError as e:  # no tf2_ros, no tf2_msgs: only clouds in target_frame
            tf_mode = f"none ({e}): only clouds in '{self.target_frame}' are used"
        self.inputs.subscribe(self, self._on_cloud, self._on_image)
        self.get_logger().info(f"TF: {tf_mode}; target_frame '{self.target_frame}'")

    # ------------------------------------------------------------------ helpers
    def _every(self, period: float) -> Dict[str, Any]:
        """Return logger keyword arguments that throttle a call to one message per ``period`` s.

        Monotonic clock. The throttle state is rclpy's, per call site: use it only in the
        logging call of one kind of warning, with one constant ``period``.
        """
        return {"throttle_duration_sec": period, "throttle_time_source_type": self._steady}

    # ------------------------------------------------------------------ callbacks (light)
    def _on_cloud(self, raw: bytes) -> None:
        self._rate_clouds.tick()
        self._last_cloud_mono = time.monotonic()
        msg = self.inputs.decode(raw, "cloud")
        if msg is None or not self.inputs.accept(msg, "cloud"):
            return
        pairs = self.sync.add_cloud((msg, time.monotonic()), stamp_to_sec(msg.header.stamp))
        self._check_resets()
        self.worker.offer(pairs)

    def _on_image(self, raw: bytes) -> None:
        self._rate_images.tick()
        msg = self.inputs.decode(raw, "image")
        if msg is None or not self.inputs.accept(msg, "image"):
            return
        pairs = self.sync.add_image(msg, stamp_to_sec(msg.header.stamp))
        self._check_resets()
        self.worker.offer(pairs)

    def _check_resets(self) -> None:
        r = self.sync.stats.stamp_jumps
        if r != self._last_resets:
            self.counters.count("bad_input.stamp_backwards", r - self._last_resets)
            self._last_resets = r
            self.get_logger().warning(f"synchronizer: {self.sync.last_jump}", **self._every(1.0))

    def _process(self, pair: Any) -> Optional[_FrameOutputs]:
        """Process one synchronised pair (inference thread).

        Transform and convert the cloud, convert the image, infer and check the pillarization.

        Returns:
            what the frame publishes (:meth:`_publish_frame`, output thread), or None when the
            frame is skipped (counted and warned).
        """
        t0 = time.perf_counter()
        cloud, t_arrival = pair.cloud
        self.counters.count("processed")
        ok, T = self.inputs.cloud_transform(cloud, abort=self.worker.has_pending)
        if not ok:
            return None
        header = ros_header(cloud.header, self.target_frame)  # outputs: the cloud's stamp
        conv = self.inputs.convert_cloud(cloud, T)
        if conv is None:
            return None
        points = conv.points
        n_finite = points.shape[0] - conv.num_nonfinite
        camera = None if pair.image is None else self.inputs.convert_image(pair.image)
        if camera is None:
            if not self.contract.lidar_only_supported:
                self.get_logger().warning("no usable image and the model has no lidar-only "
                                          "path: frame skipped", **self._every(5.0))
                return None
            self.counters.count("lidar_only_frames")
        t_conv = time.perf_counter()
        timings: Dict[str, float] = {"convert": (t_conv - t0) * 1e3}
        if n_finite == 0:
            return _FrameOutputs(header, pair.image, camera, None, {}, timings, t0,
                                 time.perf_counter(), t_arrival)
        wants = self.outputs.wants()
        self.counters.count("outputs_unsubscribed", sum(not w for w in wants.values()))
        result = self._infer(points, camera, wants)
        if result is None:
            return None
        for k, v in result.timings_ms.items():
            timings["pipeline_total" if k == "total" else str(k)] = float(v)
        self._check_pillar_stats(result.pillar_stats, n_finite)
        return _FrameOutputs(header, pair.image, camera, result, wants, timings, t0,
                             time.perf_counter(), t_arrival)

    def _publish_frame(self, f: _FrameOutputs) -> None:
        """Publish one frame's outputs (output thread): detections first, then the lazy ones.

        Adds the timings ``handover`` (ms from the end of inference to the start of publishing:
        waiting for the previous frame's outputs) and ``publish``, then :meth:`_finish`.
        """
        t_pub = time.perf_counter()
        f.timings["handover"] = (t_pub - f.t_ready) * 1e3
        if f.result is None:
            self._publish_empty(f.header)
        else:
            self.outputs.publish_result(f.result, f.header, f.image, f.camera, f.wants)
        f.timings["publish"] = (time.perf_counter() - t_pub) * 1e3
        self._finish(f.t0, f.t_arrival, f.timings)

    # ------------------------------------------------------------------ processing steps
    def _publish_empty(self, header: Header) -> None:
        """Handle a cloud without finite points: count, warn, publish empty detections."""
        self.counters.count("bad_input.empty_cloud")
        self.get_logger().warning("empty cloud (no finite points): publishing empty detections",
                                  **self._every(5.0))
        self.outputs.publish_empty(header)

    def _infer(self, points: np.ndarray, camera: Optional[Rectified],
               wants: Dict[str, bool]) -> Optional[Any]:
        """Run the pipeline on (N, 4) points and the camera image (None = lidar-only).

        The network gets the camera's reduced image (:meth:`Rectified.reduced`), the semantic
        mask comes at the camera's size; it is built only when a semantic output is wanted.
        Returns None after an error (counted, warned).
        """
        try:
            return self.pipeline(points,
                                 None if camera is None else camera.reduced(
                                     self.contract.image_size),
                                 semantic=wants["semantic"] or wants["semantic_color"],
                                 semantic_size=None if camera is None else camera.size)
        except Exception as e:
            self.counters.count("errors.inference")
            self.get_logger().warning(f"inference failed: {type(e).__name__}: {e}",
                                      **self._every(5.0))
            return None

    def _check_pillar_stats(self, stats: Any, n_finite: int) -> None:
        """Count and warn about clouds out of range and pillars dropped.

        A cloud without any point in ``point_cloud_range``, pillars dropped over ``max_pillars``
        (``stats``: the pipeline's pillar statistics).
        """
        if (n_finite
                and stats.points_in == stats.nonfinite_dropped + stats.out_of_range_dropped):
            self.counters.count("bad_input.cloud_out_of_range")
            rng = list(self.contract.point_cloud_range)
            self.get_logger().warning(
                f"none of the {n_finite} finite points lies inside the model's "
                f"point_cloud_range {rng[:3]}..{rng[3:]} m (another frame or unit?)",
                **self._every(10.0))
        dropped = int(stats.pillars_dropped)
        if dropped:
            self.counters.count("pillars_dropped", dropped)
            self.counters.count("frames_with_pillars_dropped")
            self.get_logger().warning(
                f"{dropped} pillars over max_pillars={self.contract.max_pillars} dropped "
                f"({stats.points_in_dropped_pillars} points)", **self._every(5.0))

    def _finish(self, t0: float, t_arrival: float, timings: Dict[str, float]) -> None:
        timings["total"] = (time.perf_counter() - t0) * 1e3
        self.outputs.publish_timings(timings)
        self._latencies.add((time.monotonic() - t_arrival) * 1e3)
        self._rate_out.tick()
        self.counters.count("published")

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        c = self.counters.snapshot()
        p50, p95 = self._latencies.percentiles()
        values: Dict[str, Any] = {
            "backend": self.backend.name, "device": self.backend.device,
            "model": self.model_path,
            "rate_in_clouds_hz": self._rate_clouds.hz(),
            "rate_in_images_hz": self._rate_images.hz(),
            "rate_out_hz": self._rate_out.hz(), "latency_p50_ms": p50, "latency_p95_ms": p95,
        }
        values.update(c)
        for k, v in self.sync.stats.to_dict().items():
            values["sync." + k] = v
        tf = self.inputs.tf
        now = time.monotonic()
        window = self._params["diagnostics_window_s"]
        # problems named while recent (within the window, as the counter-based WARN)
        recent = {kind: self.inputs.recent(kind, window, now) for kind in (
            "no_transform", "tf_invalid", "tf_reparented", "camera_info_invalid")}
        values["tf.target_frame"] = self.target_frame
        values["tf.mode"] = tf.mode if tf is not None else "none"
        values["tf.unconnected"] = recent["no_transform"]
        values["tf.reparented"] = recent["tf_reparented"]
        values["camera_info.refused"] = recent["camera_info_invalid"]
        last = self._last_cloud_mono
        idle = None if last is None else time.monotonic() - last
        diag = self.sync.diagnose()
        if diag:
            self.get_logger().warning(f"synchronizer: {diag}", **self._every(10.0))
        level, msgs = self._health.assess(now, c, idle, diag,
                                          self.inputs.sub_cloud.topic_name, recent)
        status = M.diagnostic_status(f"{self.get_name()}: pipeline", level,
                                     "; ".join(msgs) or "ok", values,
                                     hardware_id=str(self.backend.device))
        self.outputs.publish_diagnostics([status], self.get_clock().now().to_msg())

    # ------------------------------------------------------------------ shutdown
    def stop(self, ack_timeout: float = 1.0) -> None:
        """Stop the worker threads, then let subscribers take what was published.

        Joins the threads (at most 5 s in all; see FrameWorker.stop), then waits at most
        ``ack_timeout`` s in all for the reliable subscribers to acknowledge what the node
        published (a writer destroyed earlier can lose the last frame's large images).
        """
        if not self.worker.stop(timeout=5.0):
            self.get_logger().warning("the worker threads did not end within 5 s: frames left "
                                      "unpublished (outputs_dropped)")
        end = time.monotonic() + ack_timeout
        for pub in self.publishers:
            left = end - time.monotonic()
            if left <= 0.0 or not self.context.ok():
                break
            try:
                pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
            except Exception:  # e.g. the context shut down meanwhile: nothing to wait for
                break


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the node until SIGINT/SIGTERM (or an external rclpy shutdown).

    Shutdown order (no publish on a dead context, no traceback): the signal only sets a flag; the
    spin loop then ends, the inference thread finishes its in-flight frame (a frame still waiting
    in the mailbox is dropped) and the output thread publishes what was handed over to it, the
    node is destroyed, and only then is rclpy shut down. rclpy's own
    signal handlers are not installed (they would invalidate the context while the worker is
    publishing). The handlers are :mod:`~bev_mtl_ros.ros.stop_signals`' (installed by the entry
    points before the heavy imports, else here): a signal during the imports ends the node
    before rclpy starts, one during model loading right after it.

    Returns:
        0 on a clean exit (also after a signal at any moment of start-up), 2 on a start-up error
        (the message is printed to stderr).
    """
    stop_signals.install()
    stop = stop_signals.STOP
    if stop.is_set():  # signalled while importing: do not start at all
        stop_signals.restore()
        return 0
    rclpy.init(args=list(argv) if argv is not None else None,
               signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        try:
            if stop.is_set():
                return 0
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
            n = node.worker.in_flight()
            node.get_logger().info(
                f"signal received: stopping; in flight at the signal: {n['inference']} frame(s) "
                f"in inference and {n['outputs']} in the output stage (finished and published), "
                f"{n['mailbox']} pair(s) in the mailbox (dropped)")
        return 0
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
        stop_signals.restore()


if __name__ == "__main__":
    sys.exit(main())
