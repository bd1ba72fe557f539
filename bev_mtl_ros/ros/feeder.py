"""rclpy client that feeds ``perception_node`` over DDS and records when its outputs arrive.

The node runs as a separate process. This is the transport half of ``bev-mtl-ros bench``
(end-to-end rows) and ``bev-mtl-ros soak``. Starting and stopping the node process, pacing and
statistics stay with those commands; this module is the only place outside the node where they
touch rclpy.

Usage::

    feeder = NodeFeeder(env, domain_id, "bench_e2e", camera_info=True, timings=True)
    try:
        feeder.set_frame(points, image)           # messages for the next publishes
        if not feeder.wait_for_node(180.0, alive=lambda: proc.poll() is None): ...
        t_pub = feeder.publish_frame(stamp_ns)    # image (+ camera info), then the cloud
        feeder.spin_until(lambda: stamp_ns in feeder.detections, 10.0)
    finally:
        feeder.close()

Topics: the inputs are published on :data:`~bev_mtl_ros.ros.replay.LIDAR_TOPIC`,
:data:`~bev_mtl_ros.ros.replay.IMAGE_TOPIC` and
:data:`~bev_mtl_ros.ros.replay.CAMERA_INFO_TOPIC`; the outputs are read from
``/<NODE_NAME>/...`` (:data:`~bev_mtl_ros.ros.replay.NODE_NAME`), so the node must be started with
that name and those input topics. QoS: RELIABLE, keep-last 5, volatile for every input and output
topic; ``/diagnostics`` is subscribed with keep-last 10 (rclpy's default profile).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["NodeFeeder", "RMW_ENV_KEYS", "OPTIONAL_OUTPUTS"]

#: environment variables copied into this process before rclpy starts, so that its DDS
#: participant matches the node's (domain, discovery range, Fast DDS profile, RMW)
RMW_ENV_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")

#: the node's optional (lazy) outputs, subscribed with ``all_outputs=True`` so it builds them
OPTIONAL_OUTPUTS = ("markers", "drivable_area", "drivable_area/grid", "semantic",
                    "semantic/color")


def _stamp_ns(header: Any) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class NodeFeeder:
    """One rclpy node in its own context that feeds frames to the perception node.

    It publishes cloud + image (+ camera info) frames to the perception node and records the
    receive time of its outputs.

    Args:
        env: environment of the node process (``ros_environment(domain_id)``); the keys in
            ``env_keys`` found there are copied into ``os.environ`` before rclpy starts.
        domain_id: ROS domain of the node process.
        name: name of this client node.
        camera_info: also publish a ``CameraInfo`` with every frame (pinhole, focal length
            1687.3 px at 1920 px width, principal point at the image centre).
        raw_camera: with ``camera_info``, play a raw camera instead: the image is distorted
            with A2D2's front-center lens (its calibration scaled to the image size) and the
            CameraInfo carries that lens (K, D, plumb_bob; P the undistorted camera), so the node
            undistorts every image as it does A2D2's ``image_raw``.
        timings: subscribe ``~/debug/processing_time_ms``; each message is appended to
            :attr:`timings` as {stage label: ms}.
        semantic: record ``~/semantic`` receive times in :attr:`semantic`.
        all_outputs: subscribe every optional output (:data:`OPTIONAL_OUTPUTS`), so the node
            builds and publishes them all; the receive time of each is recorded in
            :attr:`outputs` (the message itself is discarded).
        on_diagnostics: called with each ``/diagnostics`` ``DiagnosticArray`` (while spinning).
        clock: time source of the recorded times, s (``time.monotonic`` by default; the
            benchmark uses ``time.perf_counter``).
        env_keys: which variables of ``env`` to copy (default :data:`RMW_ENV_KEYS`).

    Attributes:
        detections: stamp (ns) -> receive time (``clock``, s) of the first ``~/detections``
            carrying that stamp.
        semantic: the same for ``~/semantic`` (only with ``semantic=True``).
        timings: the node's per-frame stage timings in arrival order (only with
            ``timings=True``).
        timing_times: receive time (``clock``, s) of each :attr:`timings` entry (the message
            has no header, so it carries no stamp).
        outputs: optional output (an :data:`OPTIONAL_OUTPUTS` suffix, except ``semantic`` when
            ``semantic=True``) -> {stamp (ns) -> receive time (s) of the first message carrying
            that stamp} (only with ``all_outputs=True``). A MarkerArray's stamp is that of its
            first marker (the node's DELETEALL marker, stamped with the frame's header); an
            empty MarkerArray is not recorded.

    Raises:
        ImportError: rclpy or a message package is missing.
    """

    def __init__(self, env: Mapping[str, str], domain_id: int, name: str, *,
                 camera_info: bool = False, raw_camera: bool = False, timings: bool = False,
                 semantic: bool = False,
                 all_outputs: bool = False,
                 on_diagnostics: Optional[Callable[[Any], None]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 env_keys: Sequence[str] = RMW_ENV_KEYS) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from vision_msgs.msg import Detection3DArray

        from bev_mtl_ros.ros.replay import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, LIDAR_TOPIC,
                                            NODE_NAME)

        for k in env_keys:
            if k in env:
                os.environ[k] = env[k]
        self.clock = clock
        self.detections: Dict[int, float] = {}
        self.semantic: Dict[int, float] = {}
        self.timings: List[Dict[str, float]] = []
        self.timing_times: List[float] = []
        self.outputs: Dict[str, Dict[int, float]] = {}
        self._ctx = rclpy.Context()
        rclpy.init(args=[], context=self._ctx, domain_id=domain_id)  # not sys.argv
        self._node = rclpy.create_node(name, context=self._ctx)
        self._ex = SingleThreadedExecutor(context=self._ctx)
        self._ex.add_node(self._node)
        self._det_topic = f"/{NODE_NAME}/detections"
        self._cloud = self._image = self._info = None
        self.raw_camera = bool(raw_camera)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        node = self._node
        self._pub_c = node.create_publisher(PointCloud2, LIDAR_TOPIC, qos)
        self._pub_i = node.create_publisher(Image, IMAGE_TOPIC, qos)
        self._pub_k = (node.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, qos)
                       if camera_info else None)
        node.create_subscription(
            Detection3DArray, self._det_topic,
            lambda m: self.detections.setdefault(_stamp_ns(m.header), self.clock()), qos)
        if timings:
            from std_msgs.msg import Float64MultiArray

            def on_timing(msg: Any) -> None:
                self.timing_times.append(self.clock())
                self.timings.append(dict(zip(msg.layout.dim[0].label.split(","), msg.data)))
            node.create_subscription(Float64MultiArray, f"/{NODE_NAME}/debug/processing_time_ms",
                                     on_timing, qos)
        if semantic:
            node.create_subscription(
                Image, f"/{NODE_NAME}/semantic",
                lambda m: self.semantic.setdefault(_stamp_ns(m.header), self.clock()), qos)
        if all_outputs:
            from nav_msgs.msg import OccupancyGrid
            from visualization_msgs.msg import MarkerArray
            types = {"markers": MarkerArray, "drivable_area/grid": OccupancyGrid}
            for suffix in OPTIONAL_OUTPUTS:
                if semantic and suffix == "semantic":
                    continue
                rec = self.outputs.setdefault(suffix, {})
                if suffix == "markers":
                    def on_output(m: Any, rec: Dict[int, float] = rec) -> None:
                        if len(m.markers):
                            rec.setdefault(_stamp_ns(m.markers[0].header), self.clock())
                else:
                    def on_output(m: Any, rec: Dict[int, float] = rec) -> None:
                        rec.setdefault(_stamp_ns(m.header), self.clock())
                node.create_subscription(types.get(suffix, Image), f"/{NODE_NAME}/{suffix}",
                                         on_output, qos)
        if on_diagnostics is not None:
            from diagnostic_msgs.msg import DiagnosticArray
            node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)

    # ------------------------------------------------------------------ inputs
    def set_frame(self, points: np.ndarray, image: np.ndarray,
                  cloud_frame: str = "cam_front_center",
                  image_frame: str = "cam_front_center_optical") -> None:
        """Build the messages the next :meth:`publish_frame` calls send.

        Args:
            points: (N, 4) float32 x, y, z, intensity (m, m, m, -) in ``cloud_frame``.
            image: (H, W, 3) uint8 RGB, published as ``rgb8`` in ``image_frame``.
        """
        from bev_mtl_ros.ros.conversions import cloud_to_msg, image_to_msg

        self._cloud = cloud_to_msg({"x": points[:, 0], "y": points[:, 1], "z": points[:, 2],
                                    "intensity": points[:, 3]})
        self._cloud.header.frame_id = cloud_frame
        cam = None
        if self._pub_k is not None and self.raw_camera:
            from bev_mtl_ros.data.calibration import distort_image, load_calibration
            cam = load_calibration().cameras["front_center"].scaled(image.shape[1::-1])
            image = distort_image(image, cam)
        self._image = image_to_msg(image, "rgb8")
        self._image.header.frame_id = image_frame
        if self._pub_k is not None and self._info is None:
            from sensor_msgs.msg import CameraInfo
            h, w = image.shape[:2]
            info = CameraInfo(width=w, height=h)
            info.header.frame_id = image_frame
            if cam is None:
                f = 1687.3 * w / 1920.0
                info.k = [f, 0.0, w / 2.0, 0.0, f, h / 2.0, 0.0, 0.0, 1.0]
            else:
                from bev_mtl_ros.data.calibration import camera_info_matrices
                m = camera_info_matrices(cam, raw=True)
                info.distortion_model = m["distortion_model"]
                info.d, info.k, info.r, info.p = ([float(v) for v in m[f]] for f in "dkrp")
            self._info = info

    def publish_frame(self, stamp_ns: int, serialized: bool = False) -> float:
        """Publish one frame: camera info (when enabled), the image, then the cloud.

        Every message is stamped ``stamp_ns`` (ns).

        Args:
            serialized: serialize image and cloud to CDR before publishing, outside the returned
                time (as a driver has its message ready; rclpy's Python-to-CDR conversion is then
                not counted as the node's cost).
        Returns:
            ``clock()`` just before the cloud was published, s.
        Raises:
            RuntimeError: :meth:`set_frame` was not called.
        """
        if self._cloud is None:
            raise RuntimeError("NodeFeeder.publish_frame before set_frame")
        from builtin_interfaces.msg import Time
        st = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        self._cloud.header.stamp = st
        self._image.header.stamp = st
        cloud: Any = self._cloud
        image: Any = self._image
        if serialized:
            from rclpy.serialization import serialize_message
            cloud = serialize_message(cloud)
            image = serialize_message(image)
        if self._info is not None:
            self._info.header.stamp = st
            self._pub_k.publish(self._info)
        self._pub_i.publish(image)
        t = self.clock()
        self._pub_c.publish(cloud)
        return t

    # ------------------------------------------------------------------ waiting / spinning
    def wait_for_node(self, timeout_s: float, alive: Callable[[], bool] = lambda: True,
                      image: bool = True, step_s: float = 0.1) -> bool:
        """Spin until the node subscribes the input topics and publishes ``~/detections``.

        The input topics are the cloud and, with ``image``, the image.

        Args:
            timeout_s: longest wait, s.
            alive: polled between spins; the wait ends (False) when it returns False (e.g. the
                node process exited).
            step_s: spin period, s.
        Returns:
            True when matched, False when ``alive()`` turned False or ``timeout_s`` passed.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (self._pub_c.get_subscription_count() >= 1
                    and (not image or self._pub_i.get_subscription_count() >= 1)
                    and self._node.count_publishers(self._det_topic) >= 1):
                return True
            if not alive():
                return False
            self._ex.spin_once(timeout_sec=step_s)
        return False

    def spin_until(self, done: Callable[[], bool], timeout_s: float,
                   step_s: float = 0.01) -> bool:
        """Process incoming messages until ``done()`` is true or ``timeout_s`` (s) passed.

        Each spin waits at most ``step_s`` (s) and never past the deadline. Returns ``done()``.
        """
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._ex.spin_once(timeout_sec=max(0.0, min(step_s, left)))
        return done()

    def spin_for(self, seconds: float, step_s: float = 0.05) -> None:
        """Process incoming messages for ``seconds`` (s)."""
        self.spin_until(lambda: False, seconds, step_s)

    def close(self) -> None:
        """Stop the executor, destroy the node and shut its context down (idempotent)."""
        if self._node is None:
            return
        self._ex.shutdown()
        self._node.destroy_node()
        self._ctx.try_shutdown()
        self._node = None

    def __enter__(self) -> "NodeFeeder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
