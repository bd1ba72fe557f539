"""Read rosbag2 recordings with ``rosbags``; decode their messages to numpy arrays and back.

The one bag codec of the package (no ROS install needed): typestores for writing and reading,
bag reading, message -> array decoding and array -> message encoding, used by the converter
(``data.to_bag``), the synthetic bags (``data.synth_scan``), the recorder (``ros.recorder``), the
replay analysis (``ros.recording``), the evaluator (``train.evaluate``), the demo, the benchmark
and the tests. The node's own zero-copy conversions of rclpy messages are
``ros/conversions.py``.

Messages here are ``rosbags`` message objects (dataclasses with the ROS field names), not rclpy
messages; stamps are integer nanoseconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.calibration import rotation_to_quaternion
from bev_mtl_ros.data import image_encoding
from bev_mtl_ros.data.codec_base import ConversionError
from bev_mtl_ros.data.pointfield import cloud_dtype, pointfield_datatype
from bev_mtl_ros.geometry import quaternion_to_yaw, yaw_to_quaternion

#: this source checkout's copies of the upstream ``.msg`` files (``msgs/<pkg>/msg``)
_CHECKOUT_MSGS = Path(__file__).resolve().parents[2] / "msgs"


class MessageTypeError(RuntimeError):
    """A message type is unknown to the typestore and no ``.msg`` file defines it.

    The message names the type and the places looked in.
    """


# ---------------------------------------------------------------------------------------- types
def _share_dirs(pkg: str) -> List[Path]:
    """Candidate ``share/<pkg>`` directories, in search order.

    The ament index, each ``AMENT_PREFIX_PATH`` entry, this interpreter's prefix (a venv holding
    the ROS 2 wheels), then this checkout's ``msgs/<pkg>`` (upstream ``.msg`` files shipped with
    the source).
    """
    out: List[Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory
        out.append(Path(get_package_share_directory(pkg)))
    except Exception:  # noqa: BLE001 - ament_index not installed, or the package not indexed
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) + [sys.prefix]:
        if prefix:
            out.append(Path(prefix) / "share" / pkg)
    out.append(_CHECKOUT_MSGS / pkg)
    return out


def offered_qos(durability: str = "volatile", depth: int = 10) -> Any:
    """Build the rosbags ``Qos`` a bag's metadata lists as a topic's offered QoS profile.

    Keep-last ``depth``, reliable, ``durability`` "volatile" or "transient_local" (e.g. for
    ``/tf_static``), every duration unspecified (RMW_DURATION_UNSPECIFIED: the default, infinite).
    """
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)
    inf = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if durability == "transient_local"
               else QosDurability.VOLATILE,
               deadline=inf, lifespan=inf, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=inf, avoid_ros_namespace_conventions=False)


def make_typestore(store: Any = None, msg_dir: Optional[str] = None):
    """Return a rosbags typestore that knows the converter's messages, vision_msgs included.

    rosbags' ROS2_HUMBLE store (std/sensor/geometry/tf2 messages as in Humble) plus every
    ``vision_msgs`` message parsed from ``share/vision_msgs/msg/*.msg`` (first directory of
    :func:`_share_dirs` that has them).

    Args:
        store: a ``rosbags.typesys.Stores`` member (default ROS2_HUMBLE).
        msg_dir: explicit directory of vision_msgs ``.msg`` files.
    Raises:
        MessageTypeError when no vision_msgs ``.msg`` files are found (names the places looked).
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(store if store is not None else Stores.ROS2_HUMBLE)
    dirs = [Path(msg_dir)] if msg_dir else [d / "msg" for d in _share_dirs("vision_msgs")]
    for d in dirs:
        files = sorted(d.glob("*.msg")) if d.is_dir() else []
        if files:
            types: Dict[str, Any] = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(encoding="utf-8"),
                                                f"vision_msgs/msg/{f.stem}"))
            ts.register(types)
            return ts
    raise MessageTypeError(
        "vision_msgs message definitions not found (looked "
        "in: " + ", ".join(str(d) for d in dirs)
        + "). Install the package's vision_msgs (pip install ./msgs/vision_msgs) or source a "
          "ROS 2 installation that has vision_msgs.")


def make_record_typestore():
    """Return the rosbags typestore used for recording and reading: Kilted's, plus vision_msgs.

    :func:`make_typestore` with ``Stores.ROS2_KILTED`` (the publishers are Kilted rclpy), else the
    plain Kilted store when no vision_msgs ``.msg`` files exist. Types still unknown are added
    later by :func:`ensure_type`.
    """
    from rosbags.typesys import Stores, get_typestore
    try:
        return make_typestore(Stores.ROS2_KILTED)
    # no vision_msgs .msg files: the plain store; ensure_type adds what it can
    except MessageTypeError:
        return get_typestore(Stores.ROS2_KILTED)


def ensure_type(typestore, msgtype: str, _depth: int = 0) -> None:
    """Register ``msgtype`` and the types it uses in a rosbags typestore that lacks it.

    The definitions come from the installed ``share/<pkg>/msg/<Type>.msg`` files.

    Raises:
        MessageTypeError: no ``.msg`` file for the type (or a nested one) was found.
    """
    from rosbags.typesys import get_types_from_msg

    if msgtype in typestore.fielddefs or _depth > 20:
        return
    pkg, _, name = msgtype.split("/")
    for d in _share_dirs(pkg):
        f = d / "msg" / f"{name}.msg"
        if f.is_file():
            types = get_types_from_msg(f.read_text(), msgtype)
            break
    else:
        raise MessageTypeError(f"message type {msgtype} is unknown to the typestore and no "
                               f"share/{pkg}/msg/{name}.msg is installed")
    # register dependencies first, then the type itself
    for _, fields in types.values():
        for _, (nodetype, detail) in fields:
            sub = _nested_name(nodetype, detail)
            if sub and sub not in typestore.fielddefs:
                ensure_type(typestore, sub, _depth + 1)
    typestore.register(types)


def _nested_name(nodetype, detail) -> Optional[str]:
    """Name of a complex type referenced by a rosbags field definition, or None for base types."""
    kind = getattr(nodetype, "name", str(nodetype))
    if kind == "NAME":
        return detail
    if kind in ("ARRAY", "SEQUENCE"):
        inner_type, inner_detail = detail[0]
        return _nested_name(inner_type, inner_detail)
    return None


# ---------------------------------------------------------------------------------------- reading
def read_bag_messages(bag: str | os.PathLike, topics: Optional[Sequence[str]] = None,
                      typestore: Any = None,
                      deserialize: bool = True) -> Iterator[Tuple[str, int, Any]]:
    """Yield ``(topic, bag receive time ns, message)`` of a rosbag2 in bag order.

    Reads mcap or sqlite3, compressed or not.

    Args:
        bag: bag directory (or a single ``.mcap`` / ``.db3`` file).
        topics: only these topics (default all); topics absent from the bag yield nothing.
        typestore: default :func:`make_record_typestore`; types it lacks are registered from
            the installed ``.msg`` files (:func:`ensure_type`).
        deserialize: yield rosbags message objects (default) or the raw CDR bytes.
    Raises:
        MessageTypeError when a message type to deserialize has no definition.
    """
    from rosbags.rosbag2 import Reader
    with Reader(bag) as reader:
        wanted = None if topics is None else set(topics)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:  # rosbags reads every connection when given an empty list
            return
        ts = None
        if deserialize:
            ts = typestore or make_record_typestore()
            for c in conns:
                ensure_type(ts, c.msgtype)
        for conn, t, raw in reader.messages(connections=conns):
            yield conn.topic, int(t), (ts.deserialize_cdr(raw, conn.msgtype) if deserialize
                                       else bytes(raw))


def read_topics(bag: str | os.PathLike, topics: Sequence[str],
                typestore=None) -> Dict[str, List[Tuple[int, Any]]]:
    """Deserialize the given topics of a bag: topic -> [(bag receive time ns, message)].

    Messages are in bag order; a topic the bag lacks maps to an empty list. Types missing from
    the typestore are registered from the installed ``.msg`` files (see
    :func:`read_bag_messages`).
    """
    out: Dict[str, List[Tuple[int, Any]]] = {t: [] for t in topics}
    for topic, t, msg in read_bag_messages(bag, topics, typestore):
        out[topic].append((t, msg))
    return out


def bag_topic_counts(bag: str | os.PathLike) -> Dict[str, int]:
    """Return topic -> message count of a rosbag2 file (from its metadata/summary)."""
    from rosbags.rosbag2 import Reader
    counts: Dict[str, int] = {}
    with Reader(bag) as r:
        for c in r.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
    return counts


def bag_topic_types(bag: str | os.PathLike) -> Dict[str, str]:
    """Return topic -> message type (``pkg/msg/Type``) of a rosbag2 file."""
    from rosbags.rosbag2 import Reader
    with Reader(bag) as r:
        return {c.topic: c.msgtype for c in r.connections}


def decompressed_topic(topic: str) -> str:
    """Return the Image topic a player publishes a CompressedImage topic's images on.

    image_transport's naming: without the trailing ``/compressed`` (``cam/image_raw/compressed``
    -> ``cam/image_raw``); a topic without the suffix gets ``/decompressed`` appended, so the two
    message types never share a topic.
    """
    return topic[: -len("/compressed")] if topic.endswith("/compressed") else \
        topic + "/decompressed"


def bag_span_s(bag: str | os.PathLike) -> float:
    """Return the seconds between a rosbag2's first and last message (receive times; 0 for one)."""
    from rosbags.rosbag2 import Reader
    with Reader(bag) as r:
        return max(0, r.end_time - r.start_time) * 1e-9


# ---------------------------------------------------------------------------------------- decoding
def stamp_ns(msg) -> Optional[int]:
    """Return ``header.stamp`` of a (rosbags) message in ns.

    For a MarkerArray (no header) its first marker's stamp; None when it has no marker.
    """
    if not hasattr(msg, "header"):
        markers = getattr(msg, "markers", None)
        if not markers:
            return None
        msg = markers[0]
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def detections_to_arrays(msg) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Decode a vision_msgs/Detection3DArray into boxes, scores and class ids.

    Returns:
        (boxes (N, 7) float32 [x, y, z, l, w, h, yaw] in the message's frame (m, rad), scores
        (N,) float32, class ids (N,) str). The best hypothesis (highest score; the first on a
        tie) gives class and score; a detection without results gets class ``""`` and score NaN.
        Box size is (length=x, width=y, height=z); yaw is the rotation about +z of the centre's
        quaternion.
    """
    boxes, scores, labels = [], [], []
    for d in msg.detections:
        c, s, q = d.bbox.center, d.bbox.size, d.bbox.center.orientation
        boxes.append([c.position.x, c.position.y, c.position.z, s.x, s.y, s.z,
                      float(quaternion_to_yaw((q.x, q.y, q.z, q.w)))])
        if d.results:
            h = max(d.results, key=lambda r: r.hypothesis.score).hypothesis
            labels.append(str(h.class_id))
            scores.append(float(h.score))
        else:
            labels.append("")
            scores.append(float("nan"))
    return (np.asarray(boxes, np.float32).reshape(-1, 7), np.asarray(scores, np.float32), labels)


def image_to_array(msg) -> np.ndarray:
    """Decode a sensor_msgs/Image or CompressedImage (rosbags) into (H, W, 3) RGB or (H, W).

    Image (a copy): colour, Bayer and YUV encodings give uint8 RGB
    (:func:`data.image_encoding.image_to_rgb`: cv_bridge's conversions); other one-channel
    encodings (mono8, mono16, 8UC1, ...) their pixels as they are
    (:func:`data.image_encoding.image_to_array`). Each image is decoded once; row padding
    (``step``) is dropped. CompressedImage (a message with ``format``): (H, W, 3) uint8 RGB by
    :func:`compressed_image_to_rgb`.

    Raises:
        ConversionError (a ValueError): an unsupported encoding, inconsistent sizes or an
        undecodable compressed image.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_image_to_rgb(msg)
    enc = str(msg.encoding)
    if image_encoding.encoding_layout(enc)[1] == 1 and not enc.startswith("bayer_"):
        return np.array(image_encoding.image_to_array(msg))
    return np.array(image_encoding.image_to_rgb(msg))


def compressed_image_to_rgb(msg) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (PNG or JPEG bytes) into (H, W, 3) uint8 RGB.

    ``cv2.imdecode`` reads the bytes whatever ``format`` says (image_transport writes e.g.
    ``"png"``, ``"jpeg"`` or ``"rgb8; png compressed bgr8"``); grey images are expanded to three
    channels, 16-bit ones are refused (no silent rescaling).

    Raises:
        ConversionError (a ValueError): empty data, bytes OpenCV cannot decode, or a 16-bit image.
    """
    import cv2
    buf = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if buf.size == 0:
        raise ConversionError(f"CompressedImage (format {msg.format!r}) has no data")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ConversionError(f"CompressedImage (format {msg.format!r}, {buf.size} bytes): "
                              "OpenCV cannot decode the data")
    if img.dtype != np.uint8:
        raise ConversionError(f"CompressedImage (format {msg.format!r}) decodes to {img.dtype}; "
                              "only 8-bit images are read")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def compressed_to_image(ts, msg):
    """Return the sensor_msgs/Image (rgb8, rosbags object of ``ts``) of a CompressedImage.

    The header (stamp, frame_id) is kept; pixels from :func:`compressed_image_to_rgb`. What the
    bag player publishes for a CompressedImage topic (``play --decompress-images``).

    Raises:
        ConversionError: the data cannot be decoded (see :func:`compressed_image_to_rgb`).
    """
    rgb = compressed_image_to_rgb(msg)
    h = msg.header
    return make_image(ts, rgb, int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec),
                      str(h.frame_id), "rgb8")


def decompress_image_cdr(ts, raw: bytes) -> bytes:
    """Return the CDR bytes of the rgb8 sensor_msgs/Image of a CompressedImage's CDR bytes.

    :func:`compressed_to_image` between rosbags' deserialisation and serialisation with the
    typestore ``ts`` (one that knows sensor_msgs, e.g. ``get_typestore(Stores.ROS2_KILTED)``).

    Raises:
        ConversionError: the image data cannot be decoded.
    """
    msg = ts.deserialize_cdr(raw, "sensor_msgs/msg/CompressedImage")
    return bytes(ts.serialize_cdr(compressed_to_image(ts, msg), "sensor_msgs/msg/Image"))


def cloud_to_structured(msg, fields: Optional[Sequence[str]] = None) -> np.ndarray:
    """Decode a sensor_msgs/PointCloud2 (rosbags) into a structured (N,) array.

    Any field order, offsets, padding, counts and byte order (layout:
    :func:`data.pointfield.cloud_dtype`); N = width * height.

    Args:
        msg: the PointCloud2.
        fields: field names to keep (default: all of the message's), each with its own dtype
            (e.g. ``x`` float32, ``lidar_id`` uint8).
    Returns:
        structured array with those fields, in native byte order (a view when the message's
        byte order is native and its buffer contiguous).
    Raises:
        ConversionError (a ValueError) when a requested field is missing
        or the layout cannot be read (unknown datatype, field outside the point step).
    """
    dt = cloud_dtype(msg.fields, int(msg.point_step), bool(msg.is_bigendian))
    names = list(dt.names) if fields is None else list(fields)
    missing = [f for f in names if f not in dt.names]
    if missing:
        raise ConversionError(f"PointCloud2 lacks fields {missing} (has {sorted(dt.names)})")
    n = int(msg.width) * int(msg.height)
    buf = np.asarray(msg.data, dtype=np.uint8)
    arr = np.frombuffer(buf if buf.flags.c_contiguous else buf.tobytes(), dtype=dt, count=n)
    if fields is not None:
        arr = arr[names]
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def cloud_to_array(msg, fields: Sequence[str] = ("x", "y", "z")) -> np.ndarray:
    """Decode the named fields of a sensor_msgs/PointCloud2 into an (N, len(fields)) float32 array.

    Raises:
        ValueError when a field is missing (see :func:`cloud_to_structured`).
    """
    arr = cloud_to_structured(msg, fields)
    return np.stack([arr[f].astype(np.float32) for f in fields], axis=1)


def grid_to_mask(msg) -> Tuple[np.ndarray, Dict[str, float]]:
    """Decode a nav_msgs/OccupancyGrid into a bool mask and its geometry.

    Returns:
        ((rows, cols) bool mask of cells >= 50, {origin_x, origin_y (m), resolution (m/cell),
        frame_id}). Row r, col c covers origin + (c, r) * resolution.
    """
    info = msg.info
    data = np.asarray(msg.data, dtype=np.int16).reshape(int(info.height), int(info.width))
    return data >= 50, {"origin_x": float(info.origin.position.x),
                        "origin_y": float(info.origin.position.y),
                        "resolution": float(info.resolution), "frame_id": msg.header.frame_id}


# ---------------------------------------------------------------------------------------- encoding
def make_header(ts, stamp_ns: int, frame_id: str):
    """Build a std_msgs/Header (rosbags object of typestore ``ts``) with a stamp in ns."""
    stamp = ts.types["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000),
                                                    nanosec=int(stamp_ns % 1_000_000_000))
    return ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def make_pointcloud2(ts, arr: np.ndarray, stamp_ns: int, frame_id: str):
    """Build a sensor_msgs/PointCloud2 (rosbags object) from a structured (N,) array.

    One PointField per field of ``arr.dtype`` (its name, offset and type; the dtype's item size is
    the point step), height 1, ``is_dense`` False. Fields must be little endian (or one byte).
    The inverse of :func:`cloud_to_structured`.

    Raises:
        ValueError for a big-endian field or a type PointField has no datatype for.
    """
    fields = []
    for name in arr.dtype.names:
        ft, offset = arr.dtype.fields[name][:2]
        if ft.byteorder == ">":
            raise ConversionError(f"cloud field {name!r} has type {ft.str}: not little-endian")
        fields.append(ts.types["sensor_msgs/msg/PointField"](
            name=name, offset=offset, datatype=pointfield_datatype(ft, name), count=1))
    data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8)
    step = arr.dtype.itemsize
    return ts.types["sensor_msgs/msg/PointCloud2"](
        header=make_header(ts, stamp_ns, frame_id), height=1, width=int(len(arr)), fields=fields,
        is_bigendian=False, point_step=step, row_step=step * int(len(arr)), data=data,
        is_dense=False)


def make_image(ts, img: np.ndarray, stamp_ns: int, frame_id: str, encoding: str):
    """Build a sensor_msgs/Image from (H, W, 3) uint8 (rgb8) or (H, W) uint8 (mono8).

    The inverse of :func:`image_to_array` for those encodings (rows unpadded).
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    ch = 1 if img.ndim == 2 else img.shape[2]
    return ts.types["sensor_msgs/msg/Image"](
        header=make_header(ts, stamp_ns, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=0, step=w * ch, data=img.reshape(-1))


def make_compressed_image(ts, data: bytes, stamp_ns: int, frame_id: str, fmt: str = "png"):
    """Build a sensor_msgs/CompressedImage (rosbags object) holding encoded image bytes as given.

    ``data``: the file's bytes (e.g. a camera PNG as recorded), stored unchanged; ``fmt``: the
    ``format`` field ("png", "jpeg"). The inverse of :func:`compressed_image_to_rgb` (which
    decodes them).
    """
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=make_header(ts, stamp_ns, frame_id), format=str(fmt),
        data=np.frombuffer(bytes(data), dtype=np.uint8))


def make_transform_stamped(ts, stamp_ns: int, parent: str, child: str,
                           T_parent_child: np.ndarray):
    """Build a geometry_msgs/TransformStamped from a (4, 4) parent <- child transform (m)."""
    q = rotation_to_quaternion(T_parent_child[:3, :3])
    t = T_parent_child[:3, 3]
    G = ts.types
    return G["geometry_msgs/msg/TransformStamped"](
        header=make_header(ts, stamp_ns, parent), child_frame_id=child,
        transform=G["geometry_msgs/msg/Transform"](
            translation=G["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]),
                                                       z=float(t[2])),
            rotation=G["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                       w=float(q[3]))))


def make_detections(ts, boxes: np.ndarray, classes: Sequence[str], ids: Sequence[Any],
                    stamp_ns: int, frame_id: str, scores: Optional[np.ndarray] = None):
    """Build a vision_msgs/Detection3DArray from (N, 7) boxes [x, y, z, l, w, h, yaw] and names.

    One result per detection (class name, score; 1.0 without ``scores``) whose pose is the box
    pose; bbox centre with a yaw quaternion, size (l, w, h); ``ids`` become the detections' ids.
    The inverse of :func:`detections_to_arrays`.
    """
    G = ts.types
    hdr = make_header(ts, stamp_ns, frame_id)
    dets = []
    for i in range(len(boxes)):
        x, y, z, l, w, h, yaw = (float(v) for v in boxes[i])
        qx, qy, qz, qw = (float(v) for v in yaw_to_quaternion(yaw))
        pose = G["geometry_msgs/msg/Pose"](
            position=G["geometry_msgs/msg/Point"](x=x, y=y, z=z),
            orientation=G["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
        hyp = G["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=G["vision_msgs/msg/ObjectHypothesis"](
                class_id=str(classes[i]), score=float(1.0 if scores is None else scores[i])),
            pose=G["geometry_msgs/msg/PoseWithCovariance"](
                pose=pose, covariance=np.zeros(36, dtype=np.float64)))
        bbox = G["vision_msgs/msg/BoundingBox3D"](
            center=pose, size=G["geometry_msgs/msg/Vector3"](x=l, y=w, z=h))
        dets.append(G["vision_msgs/msg/Detection3D"](header=hdr, results=[hyp], bbox=bbox,
                                                     id=str(ids[i])))
    return G["vision_msgs/msg/Detection3DArray"](header=hdr, detections=dets)
