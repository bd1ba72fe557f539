"""The perception node's output side: its publishers and what it publishes for one frame.

Topics (``~`` = the node's name; message layouts in :mod:`bev_mtl_ros.ros.messages`):

* always: ``~/detections`` (vision_msgs/Detection3DArray; empty for frames without objects) and
  ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, the node's 1 Hz timer);
* lazy - built and published only while at least one subscription matches (:meth:`wants`; the
  node counts the skipped ones in ``outputs_unsubscribed``): ``~/markers`` (MarkerArray),
  ``~/drivable_area`` (mono8 0/255), ``~/drivable_area/grid`` (nav_msgs/OccupancyGrid),
  ``~/semantic`` (mono8 class ids), ``~/semantic/color`` (rgb8 overlay; the publisher exists only
  with ``publish_semantic_color``), ``~/debug/processing_time_ms`` (std_msgs/Float64MultiArray);
* once at start: ``~/semantic/label_info`` (vision_msgs/LabelInfo, TRANSIENT_LOCAL).

QoS: RELIABLE keep-last 5 (LabelInfo: depth 1, TRANSIENT_LOCAL; /diagnostics: depth 10).
Lidar/BEV outputs carry the frame's header (``target_frame``, the input cloud's stamp);
image-space outputs the camera image's header.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from bev_mtl_ros.ros import messages as M
from bev_mtl_ros.ros.camera import Rectified
from bev_mtl_ros.ros.conversions import ros_header

__all__ = ["NodeOutputs"]


def _has_subscribers(publisher: Any) -> bool:
    """Return True when ``publisher`` exists and has at least one subscriber (lazy outputs)."""
    return publisher is not None and publisher.get_subscription_count() > 0


class NodeOutputs:
    """Publishers of the perception node and the publishing of one frame's results.

    Args:
        node: the rclpy node that owns the publishers.
        contract: the model contract (``detection_classes``, ``semantic_classes``,
            ``point_cloud_range``, ``pillar_size``).
        publish_semantic_color: create ``~/semantic/color``.
        every: ``period -> logger keyword arguments`` that throttle a warning (the node's
            ``_every``).
    """

    def __init__(self, node: Node, contract: Any, publish_semantic_color: bool,
                 every: Callable[[float], Dict[str, Any]]) -> None:
        self._log = node.get_logger()
        self._every = every
        self.contract = contract
        self.class_names = list(contract.detection_classes)
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_det = node.create_publisher(Detection3DArray, "~/detections", out_qos)
        self.pub_markers = node.create_publisher(MarkerArray, "~/markers", out_qos)
        self.pub_drivable = node.create_publisher(Image, "~/drivable_area", out_qos)
        self.pub_grid = node.create_publisher(OccupancyGrid, "~/drivable_area/grid", out_qos)
        self.pub_sem = node.create_publisher(Image, "~/semantic", out_qos)
        self.pub_sem_color = (node.create_publisher(Image, "~/semantic/color", out_qos)
                              if publish_semantic_color else None)
        self.pub_label_info = node.create_publisher(LabelInfo, "~/semantic/label_info", latched)
        self.pub_diag = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_timing = node.create_publisher(Float64MultiArray, "~/debug/processing_time_ms",
                                                out_qos)
        #: optional outputs (lazy: built only with subscribers); detections, diagnostics always
        self._optional = {"markers": self.pub_markers, "drivable": self.pub_drivable,
                          "grid": self.pub_grid, "semantic": self.pub_sem,
                          "semantic_color": self.pub_sem_color, "timing": self.pub_timing}
        h = Header()
        h.stamp = node.get_clock().now().to_msg()
        self.pub_label_info.publish(M.label_info_msg(contract.semantic_classes, h, 0.0))

    def wants(self) -> Dict[str, bool]:
        """Return which lazy outputs have a subscriber now.

        Returns:
            {name: bool} for markers, drivable, grid, semantic, semantic_color and timing.
        """
        return {name: _has_subscribers(pub) for name, pub in self._optional.items()}

    def publish_empty(self, header: Header) -> None:
        """Publish empty detections (and empty markers when wanted) with ``header``."""
        empty = np.zeros((0, 7), np.float32)
        self.pub_det.publish(M.detections_to_msg(empty, np.zeros(0, np.float32),
                                                 np.zeros(0, np.int64), self.class_names,
                                                 header))
        if _has_subscribers(self.pub_markers):
            self.pub_markers.publish(M.detections_to_markers(
                empty, np.zeros(0), np.zeros(0, np.int64), self.class_names, header))

    def publish_result(self, result: Any, header: Header, image: Any,
                       camera: Optional[Rectified], wants: Mapping[str, bool]) -> None:
        """Publish one frame's results: detections always, the lazy outputs in ``wants``.

        Args:
            result: the pipeline's ``FrameResult`` (``detections``, ``drivable`` (H, W) bool or
                None, ``semantic`` (H, W) class ids or None).
            header: the cloud's header in ``target_frame`` (lidar/BEV outputs).
            image: the camera Image message (its header stamps image-space outputs) or None.
            camera: the camera image through its CameraInfo, or None (lidar-only); the overlay
                is drawn on its :meth:`~bev_mtl_ros.ros.camera.Rectified.for_display` image.
            wants: :meth:`wants` of this frame.
        """
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
                    self._log.warning(str(e), **self._every(60.0))
        sem = result.semantic
        if sem is not None and camera is not None and image is not None:
            img_header = ros_header(image.header)
            if wants["semantic"]:
                self.pub_sem.publish(M.semantic_to_image(sem, img_header))
            if wants["semantic_color"]:
                self._publish_overlay(camera.for_display(self.contract.image_size), sem,
                                      result.semantic_net, img_header)

    def _publish_overlay(self, rgb: np.ndarray, sem: np.ndarray, sem_net: Optional[np.ndarray],
                         header: Header) -> None:
        """Publish the colour overlay of ``rgb`` (H, W, 3) with the frame's class ids.

        Coloured at the network's resolution (``sem_net`` (h, w) uint8, then scaled: the same
        pixels for less work) when the pipeline gave it, else from ``sem`` (H, W). Ids whose
        size does not match the image (the pipeline never makes them) are not published, with a
        throttled warning.
        """
        if sem.shape[:2] != rgb.shape[:2]:
            self._log.warning(f"semantic overlay skipped: class ids {sem.shape[:2]} and image "
                              f"{rgb.shape[:2]} differ in size", **self._every(10.0))
            return
        if sem_net is not None:
            self.pub_sem_color.publish(M.semantic_overlay(rgb, sem_net, header, upsample=True))
        else:
            self.pub_sem_color.publish(M.semantic_overlay(rgb, sem, header))

    def publish_timings(self, timings_ms: Mapping[str, float]) -> None:
        """Publish per-stage milliseconds on ``~/debug/processing_time_ms`` when subscribed."""
        if _has_subscribers(self.pub_timing):
            self.pub_timing.publish(M.timings_msg(timings_ms))

    def publish_diagnostics(self, statuses: Sequence[Any], stamp: Any) -> None:
        """Publish diagnostic_msgs/DiagnosticStatus ``statuses`` on /diagnostics at ``stamp``."""
        self.pub_diag.publish(M.diagnostic_array(statuses, stamp))
