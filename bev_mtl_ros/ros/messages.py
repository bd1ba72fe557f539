"""Builders of the node's output messages from numpy results (vectorised; no per-pixel loops).

Frames and headers: every builder takes the ``std_msgs/Header`` to publish with; the node passes
the input cloud's header for lidar/BEV outputs and the image's header for image-space outputs,
so stamps always come from the data (bag replay and ``use_sim_time`` work).

Boxes are float32 (N, 7) [x, y, z, length, width, height, yaw] in the cloud's frame (x forward,
y left, z up, metres; z = box centre; yaw about +z in radians, counter-clockwise from +x).

Outputs
-------
* :func:`detections_to_msg` -> ``vision_msgs/Detection3DArray`` (one ``ObjectHypothesisWithPose``
  per box: class_id = detection class *name*, score; bbox centre pose with the yaw quaternion
  (0, 0, sin(yaw/2), cos(yaw/2)); size = (length, width, height)). Empty array when N = 0.
* :func:`detections_to_markers` -> ``visualization_msgs/MarkerArray``: a DELETEALL marker first
  (stale boxes vanish), one LINE_LIST per class with the 12 edges of each of its boxes,
  one TEXT_VIEW_FACING "Class 0.87" label per box.
* :func:`drivable_to_image` -> mono8 Image, 255 = drivable, 0 = not; row = iy (y index from
  y_min), column = ix (x index from x_min), i.e. the image's row 0 is the y_min (rightmost) edge.
* :func:`drivable_to_occupancy_grid` -> ``nav_msgs/OccupancyGrid``: resolution = pillar size,
  origin = (x_min, y_min, 0) of the point-cloud range with identity orientation, cell
  (col=ix, row=iy) at data[iy * width + ix] (the same layout as the BEV grid); 0 = drivable,
  100 = not drivable; -1 (unknown) is never used.
* :func:`semantic_to_image` (mono8 class ids = index into contract.semantic_classes) and
  :func:`semantic_overlay` (rgb8 camera image blended with the A2D2 class colours).
* :func:`label_info_msg` -> ``vision_msgs/LabelInfo`` (class_map id -> name, threshold).
* :func:`diagnostic_array` -> ``diagnostic_msgs/DiagnosticArray``.
* :func:`timings_msg` -> ``std_msgs/Float64MultiArray`` of per-stage milliseconds; the stage names
  are in ``layout.dim[0].label`` as a comma-separated list in the order of ``data``.
"""

from __future__ import annotations

import array
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from nav_msgs.msg import MapMetaData, OccupancyGrid
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Float64MultiArray, Header, MultiArrayDimension
from visualization_msgs.msg import Marker, MarkerArray

from bev_mtl_ros import geometry

__all__ = [
    "yaw_to_quaternion", "box_edge_points", "detections_to_msg", "detections_to_markers",
    "drivable_to_image", "drivable_to_occupancy_grid", "semantic_to_image", "semantic_overlay",
    "label_info_msg", "diagnostic_status", "diagnostic_array", "timings_msg", "CLASS_COLOURS",
]

#: RGB colours (0..1) of the default detection classes in RViz markers; others cycle a palette.
CLASS_COLOURS: Dict[str, Tuple[float, float, float]] = {
    "Car": (0.1, 0.5, 1.0), "Truck": (1.0, 0.6, 0.0), "Pedestrian": (1.0, 0.1, 0.1),
    "Cyclist": (0.1, 0.9, 0.2),
}
_FALLBACK = np.array([(0.8, 0.2, 0.8), (0.2, 0.8, 0.8), (0.9, 0.9, 0.2), (0.6, 0.6, 0.6)],
                     dtype=np.float64)


def yaw_to_quaternion(yaw: float) -> Quaternion:
    """Return the rotation by ``yaw`` radians about +z as a geometry_msgs/Quaternion.

    (x, y, z, w); see :func:`bev_mtl_ros.geometry.yaw_to_quaternion`.
    """
    x, y, z, w = (float(v) for v in geometry.yaw_to_quaternion(yaw))
    return Quaternion(x=x, y=y, z=z, w=w)


def box_edge_points(boxes: np.ndarray) -> np.ndarray:
    """(N, 7) boxes -> (N * 24, 3) LINE_LIST vertices (12 edges x 2 end points per box)."""
    corners = geometry.box_corners_3d(np.asarray(boxes, dtype=np.float64).reshape(-1, 7))
    return corners[:, geometry.BOX_EDGES.reshape(-1)].reshape(-1, 3)


def _class_name(names: Sequence[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else f"class_{label}"


def detections_to_msg(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      class_names: Sequence[str], header: Header) -> Any:
    """Build a vision_msgs/Detection3DArray from detections.

    Args:
        boxes: (N, 7) float32 [x, y, z, l, w, h, yaw] in ``header.frame_id``.
        scores: (N,) float32 in [0, 1].
        labels: (N,) int64 index into ``class_names`` (contract.detection_classes).
        class_names: detection class names; ``hypothesis.class_id`` is the name.
        header: the input cloud's header (stamp, frame_id), copied to the array and every
        detection.
    Returns:
        Detection3DArray (empty ``detections`` when N == 0). ``Detection3D.id`` = index in the
        array.
    """
    from vision_msgs.msg import (BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesis,
                                 ObjectHypothesisWithPose)

    out = Detection3DArray()
    out.header = header
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    lb = np.asarray(labels, dtype=np.int64).reshape(-1)
    quat = geometry.yaw_to_quaternion(b[:, 6])                       # (N, 4) x, y, z, w
    qz, qw = quat[:, 2], quat[:, 3]
    dets = []
    for i in range(b.shape[0]):
        pose = Pose(position=Point(x=b[i, 0], y=b[i, 1], z=b[i, 2]),
                    orientation=Quaternion(x=0.0, y=0.0, z=qz[i], w=qw[i]))
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis = ObjectHypothesis(class_id=_class_name(class_names, int(lb[i])),
                                          score=float(sc[i]))
        hyp.pose.pose = pose
        det = Detection3D()
        det.header = header
        det.id = str(i)
        det.results = [hyp]
        det.bbox = BoundingBox3D(center=pose, size=Vector3(x=b[i, 3], y=b[i, 4], z=b[i, 5]))
        dets.append(det)
    out.detections = dets
    return out


def _colours(labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(N,) labels -> (N, 3) float RGB 0..1."""
    table = np.array([CLASS_COLOURS.get(n, tuple(_FALLBACK[k % len(_FALLBACK)]))
                      for k, n in enumerate(class_names)]
                     + [(1.0, 1.0, 1.0)], dtype=np.float64)
    idx = np.where((labels >= 0) & (labels < len(class_names)), labels, len(class_names))
    return table[idx]


def detections_to_markers(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                          class_names: Sequence[str],
                          header: Header, ns: str = "detections", line_width: float = 0.08,
                          text_height: float = 0.8) -> MarkerArray:
    """Build a visualization_msgs/MarkerArray of detections for RViz.

    Marker 0: action DELETEALL (clears the previous frame's markers in every namespace).
    Then, if N > 0: ``<ns>/boxes`` ids 0.., one LINE_LIST per class present with 24 vertices
    (12 edges) per box in the class colour; ``<ns>/labels`` ids 0..N-1, TEXT_VIEW_FACING "Car 0.87"
    0.3 m above each box top. All markers carry ``header`` (the cloud's stamp and frame).
    """
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    markers = [clear]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    lb = np.asarray(labels, dtype=np.int64).reshape(-1)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0]:
        verts = box_edge_points(b).reshape(-1, 24, 3)
        rgb_all = _colours(lb, class_names)
        for k, lab in enumerate(np.unique(lb)):  # one LINE_LIST per class: a single colour each
            sel = lb == lab
            m = Marker()
            m.header = header
            m.ns = ns + "/boxes"
            m.id = int(k)
            m.type = Marker.LINE_LIST
            m.action = Marker.ADD
            m.pose.orientation.w = 1.0
            m.scale.x = float(line_width)
            c = rgb_all[np.argmax(sel)]
            m.color = ColorRGBA(r=c[0], g=c[1], b=c[2], a=1.0)
            m.points = [Point(x=p[0], y=p[1], z=p[2]) for p in verts[sel].reshape(-1, 3).tolist()]
            markers.append(m)
        top = b[:, 2] + 0.5 * b[:, 5] + 0.3
        rgb = rgb_all
        for i in range(b.shape[0]):
            t = Marker()
            t.header = header
            t.ns = ns + "/labels"
            t.id = i
            t.type = Marker.TEXT_VIEW_FACING
            t.action = Marker.ADD
            t.pose.position = Point(x=b[i, 0], y=b[i, 1], z=float(top[i]))
            t.pose.orientation.w = 1.0
            t.scale.z = float(text_height)
            t.color = ColorRGBA(r=rgb[i, 0], g=rgb[i, 1], b=rgb[i, 2], a=1.0)
            t.text = f"{_class_name(class_names, int(lb[i]))} {sc[i]:.2f}"
            markers.append(t)
    out.markers = markers
    return out


def _mono8(array2d: np.ndarray, header: Header) -> Image:
    """Return a mono8 Image of (H, W) values (cast to uint8) with ``header``.

    One copy of the pixels, into the message's own buffer (:func:`_image_with_buffer`).
    Raises ValueError for arrays that are not 2-D.
    """
    a = np.asarray(array2d)
    if a.ndim != 2:
        raise ValueError(f"mono8 image: expected (H, W) values, got shape {a.shape}")
    msg, out = _image_with_buffer(a.shape[0], a.shape[1], 1, "mono8", header)
    np.copyto(out[..., 0], a, casting="unsafe")
    return msg


def drivable_to_image(mask: np.ndarray, header: Header) -> Image:
    """Build a mono8 Image of a (grid_h, grid_w) {0,1} (or bool) BEV mask: 255 drivable, 0 not.

    Row = iy, column = ix (see module docstring); header = the cloud's header.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"drivable image: expected a (grid_h, grid_w) mask, got shape {m.shape}")
    msg, out = _image_with_buffer(m.shape[0], m.shape[1], 1, "mono8", header)
    np.multiply(m > 0, np.uint8(255), out=out[..., 0], casting="unsafe")
    return msg


def drivable_to_occupancy_grid(mask: np.ndarray, point_cloud_range: Sequence[float],
                               pillar_size: Sequence[float], header: Header) -> OccupancyGrid:
    """(grid_h, grid_w) BEV mask -> nav_msgs/OccupancyGrid (0 drivable, 100 not, never -1).

    Args:
        mask: (grid_h, grid_w) {0,1}/bool, row = iy, col = ix.
        point_cloud_range: contract range (x_min, y_min, z_min, x_max, y_max, z_max), metres.
        pillar_size: (dx, dy), metres; the grid resolution is dx (OccupancyGrid cells are square;
            ValueError when dx != dy).
        header: the cloud's header; ``info.map_load_time`` = header.stamp.
    Returns:
        OccupancyGrid with width = grid_w, height = grid_h, origin = (x_min, y_min, 0).
    """
    dx, dy = float(pillar_size[0]), float(pillar_size[1])
    if abs(dx - dy) > 1e-9:
        raise ValueError(f"OccupancyGrid needs square cells; pillar_size is {tuple(pillar_size)}")
    m = np.asarray(mask)
    grid = OccupancyGrid()
    grid.header = header
    info = MapMetaData()
    info.map_load_time = header.stamp
    info.resolution = dx
    info.height, info.width = int(m.shape[0]), int(m.shape[1])
    info.origin.position.x = float(point_cloud_range[0])
    info.origin.position.y = float(point_cloud_range[1])
    info.origin.orientation.w = 1.0
    grid.info = info
    cells = np.where(m > 0, 0, 100).astype(np.int8)
    grid.data = array.array("b", cells.tobytes())
    return grid


def semantic_to_image(ids: np.ndarray, header: Header) -> Image:
    """Build a mono8 Image of (H, W) uint8 class ids (index into contract.semantic_classes).

    header = the camera image's header.
    """
    return _mono8(ids, header)


def _image_with_buffer(height: int, width: int, channels: int, encoding: str,
                       header: Header) -> Tuple[Image, np.ndarray]:
    """Return an 8-bit Image of (height, width, channels) and a writable numpy view of its data.

    ``msg.data`` is a fresh ``array.array('B')`` (zero-filled, what rclpy stores a uint8[] as);
    the returned (height, width, channels) uint8 array shares its memory, so OpenCV can write the
    pixels straight into the message (no ``tobytes`` copy). The message is built with
    ``check_fields=True``: rosidl's setter then stores a ``'B'`` array as it is, whereas without
    field checks it copies every assigned value into a new array.
    """
    data = array.array("B", b"\0") * (height * width * channels)
    msg = Image(check_fields=True)
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(width) * int(channels)
    msg.data = data
    return msg, np.frombuffer(data, np.uint8).reshape(height, width, channels)


def _colour_tables(palette: Optional[np.ndarray]) -> Tuple[int, Tuple[np.ndarray, ...]]:
    """Return (K, three (256,) uint8 look-up tables id -> R, G, B) of a (K, 3) palette.

    Default (None): A2D2's ``bev_mtl_ros.data.classes.class_id_to_colour``. Ids >= K map to 0.
    Raises ValueError for more than 256 colours.
    """
    if palette is None:
        from bev_mtl_ros.data.classes import class_id_to_colour as palette  # noqa: N813
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    k = len(pal)
    if k > 256:
        raise ValueError(f"overlay: {k} palette colours, more than 256 uint8 class ids")
    return k, tuple(np.ascontiguousarray(np.pad(pal[:, c], (0, 256 - k))) for c in range(3))


def semantic_overlay(rgb: np.ndarray, ids: np.ndarray, header: Header, alpha: float = 0.5,
                     palette: Optional[np.ndarray] = None, upsample: bool = False) -> Image:
    """Camera image blended with class colours -> rgb8 Image.

    Args:
        rgb: (H, W, 3) uint8 RGB camera image (the one the semantic ids belong to).
        ids: (H, W) uint8 class ids; ids without a palette entry (e.g. 255) leave the pixel as is.
            With ``upsample``: (h, w) ids at a lower resolution (the network's,
            ``FrameResult.semantic_net``).
        header: the image's header.
        alpha: weight of the class colour, 0..1.
        palette: (K, 3) uint8 colours, K <= 256; default A2D2's
            (``bev_mtl_ros.data.classes.class_id_to_colour``).
        upsample: colour the (h, w) ids, then scale the colour image to (H, W) with
            :func:`bev_mtl_ros.runtime.postprocess.resize_ids` (nearest neighbour). The result
            equals the overlay of ``resize_ids(ids, (W, H))`` pixel for pixel (nearest
            neighbour picks the same source pixel for every channel), with the look-ups done on
            h * w pixels instead of H * W.
    Returns:
        rgb8 Image, out = (1 - alpha) * rgb + alpha * colour, rounded to the nearest integer and
        saturated (OpenCV ``addWeighted`` on uint8).
    Raises:
        ValueError: image and ids of different sizes (without ``upsample``), ``rgb`` not
        (H, W, 3), an empty image or ids, more than 256 colours.

    Cost at 1920x1208 (``bench/README.md``, lazy outputs): integer work only - the class colour
    image through three 256-entry look-up tables (``cv2.LUT``) and ``cv2.merge`` (at the ids'
    size), scaled into the message's buffer, and one in-place ``cv2.addWeighted`` there: no
    other full-size buffer; the camera pixels of ids without a colour are restored only when
    such ids occur (one ``max`` over the ids first).
    """
    import cv2

    from bev_mtl_ros.runtime.postprocess import resize_ids

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    ids8 = np.ascontiguousarray(ids, dtype=np.uint8)
    if (rgb.ndim != 3 or rgb.shape[2] != 3 or ids8.ndim != 2
            or (not upsample and rgb.shape[:2] != ids8.shape)):
        raise ValueError(f"overlay: image {rgb.shape} and class ids {ids8.shape} differ in size "
                         "(expected (H, W, 3) and (H, W))")
    if rgb.size == 0 or ids8.size == 0:
        raise ValueError(f"overlay: empty image {rgb.shape} or class ids {ids8.shape}")
    h, w = rgb.shape[:2]
    k, luts = _colour_tables(palette)
    msg, out = _image_with_buffer(h, w, 3, "rgb8", header)
    # class colours first into the message's buffer, then blended there in place
    resize_ids(cv2.merge([cv2.LUT(ids8, lut) for lut in luts]), (w, h), out=out)
    cv2.addWeighted(rgb, 1.0 - float(alpha), out, float(alpha), 0.0, dst=out)
    if int(ids8.max()) >= k:  # ids without a colour keep the camera pixel
        unknown = resize_ids(ids8, (w, h)) >= k
        out[unknown] = rgb[unknown]
    return msg


def label_info_msg(class_names: Sequence[str], header: Header, threshold: float = 0.0) -> Any:
    """Build a vision_msgs/LabelInfo.

    class_map [VisionClass(id, name)] in index order; ``threshold`` (the score threshold in use,
    or 0 for argmax segmentation).
    """
    from vision_msgs.msg import LabelInfo, VisionClass

    msg = LabelInfo()
    msg.header = header
    msg.class_map = [VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(class_names)]
    msg.threshold = float(threshold)
    return msg


_LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN,
           "ERROR": DiagnosticStatus.ERROR, "STALE": DiagnosticStatus.STALE}


def diagnostic_status(name: str, level: str, message: str, values: Mapping[str, Any],
                      hardware_id: str = "") -> DiagnosticStatus:
    """Build one DiagnosticStatus.

    ``level`` in OK/WARN/ERROR/STALE; values become KeyValue strings (floats with 3 decimals).
    """
    st = DiagnosticStatus()
    st.level = _LEVELS[level]
    st.name = name
    st.message = message
    st.hardware_id = hardware_id
    st.values = [KeyValue(key=str(k), value=(f"{v:.3f}" if isinstance(v, float) else str(v)))
                 for k, v in values.items()]
    return st


def diagnostic_array(statuses: Sequence[DiagnosticStatus], stamp: Any) -> DiagnosticArray:
    """Build a DiagnosticArray with ``header.stamp = stamp`` (builtin_interfaces/Time)."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg


def timings_msg(timings_ms: Mapping[str, float]) -> Float64MultiArray:
    """Per-stage processing times -> std_msgs/Float64MultiArray.

    ``data[k]`` is the time in ms of the stage named by the k-th entry of the comma-separated
    ``layout.dim[0].label`` (e.g. "convert,pillarize,infer,decode,publish,total"); dim size =
    stride = number of stages.
    """
    names = list(timings_ms)
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=",".join(names), size=len(names),
                                          stride=len(names))]
    msg.layout.data_offset = 0
    msg.data = [float(timings_ms[n]) for n in names]
    return msg
