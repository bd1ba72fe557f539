"""Reading rosbag2 recordings with ``rosbags`` (no ROS install needed) and decoding their
messages into numpy arrays: the one codec used by the demo's analysis, the replay harness, the
benchmark and the tests for bags written by the converter (``data.to_bag``) or the recorder
(``ros.recorder``).

Messages here are ``rosbags`` message objects (dataclasses with the ROS field names), not rclpy
messages; stamps are integer nanoseconds.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.geometry import quaternion_to_yaw


class MessageTypeError(RuntimeError):
    """A message type is unknown to the typestore and no ``.msg`` file defines it (message names
    the type and the file looked for)."""


# ---------------------------------------------------------------------------------------- types
def make_record_typestore():
    """The rosbags typestore used for writing: ``data.to_bag.make_typestore(ROS2_KILTED)``
    (rosbags' Kilted store + vision_msgs), else the plain Kilted store. Unknown types are added
    later by :func:`ensure_type`."""
    from rosbags.typesys import Stores, get_typestore

    from bev_mtl_ros.data.to_bag import BagConversionError, make_typestore
    try:  # the publishers are Kilted rclpy: use Kilted's definitions (+ vision_msgs)
        return make_typestore(Stores.ROS2_KILTED)
    # no vision_msgs .msg files: plain store, ensure_type adds what it can
    except BagConversionError:
        return get_typestore(Stores.ROS2_KILTED)


def _share_dirs(pkg: str) -> List[Path]:
    """Candidate ``share/<pkg>`` directories: the ament index, AMENT_PREFIX_PATH, the venv
    prefix."""
    out: List[Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory
        out.append(Path(get_package_share_directory(pkg)))
    except Exception:
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) + [sys.prefix]:
        if prefix:
            out.append(Path(prefix) / "share" / pkg)
    return out


def ensure_type(typestore, msgtype: str, _depth: int = 0) -> None:
    """Register ``msgtype`` (and the types it uses) in a rosbags typestore from the installed
    ``share/<pkg>/msg/<Type>.msg`` files if the store lacks it.

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
def _typestore():
    """A fresh :func:`make_record_typestore` (the default of :func:`read_topics`)."""
    return make_record_typestore()


def read_topics(bag: Path, topics: Sequence[str],
                typestore=None) -> Dict[str, List[Tuple[int, Any]]]:
    """Deserialize the given topics of a bag: topic -> [(bag receive time ns, message)] in bag
    order.

    Types missing from the typestore are registered from the installed ``.msg`` files."""
    from rosbags.rosbag2 import Reader
    ts = typestore or _typestore()
    out: Dict[str, List[Tuple[int, Any]]] = {t: [] for t in topics}
    with Reader(bag) as r:
        conns = [c for c in r.connections if c.topic in out]
        for c in conns:
            ensure_type(ts, c.msgtype)
        for c, t, raw in r.messages(connections=conns):
            out[c.topic].append((t, ts.deserialize_cdr(raw, c.msgtype)))
    return out


def bag_topic_counts(bag: Path) -> Dict[str, int]:
    """topic -> message count of a rosbag2 file (from its metadata/summary)."""
    from rosbags.rosbag2 import Reader
    counts: Dict[str, int] = {}
    with Reader(bag) as r:
        for c in r.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
    return counts


def bag_span_s(bag: Path) -> float:
    """Seconds between a rosbag2 file's first and last message (bag receive times; 0 for one
    message)."""
    from rosbags.rosbag2 import Reader
    with Reader(bag) as r:
        return max(0, r.end_time - r.start_time) * 1e-9


# ---------------------------------------------------------------------------------------- decoding
def stamp_ns(msg) -> Optional[int]:
    """``header.stamp`` of a (rosbags) message in ns; for a MarkerArray (no header) its first
    marker's stamp, None when it has no marker."""
    if not hasattr(msg, "header"):
        markers = getattr(msg, "markers", None)
        if not markers:
            return None
        msg = markers[0]
    s = msg.header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


def _yaw(q) -> float:
    """Yaw about +z (rad) of a geometry_msgs Quaternion."""
    return float(quaternion_to_yaw((q.x, q.y, q.z, q.w)))


def detections_to_arrays(msg) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """vision_msgs/Detection3DArray -> (boxes (N,7) f32 [x,y,z,l,w,h,yaw], scores (N,) f32, class
    ids).

    The best hypothesis (first result) gives class and score; box size is (length=x, width=y,
    height=z) in the detection's frame."""
    boxes, scores, labels = [], [], []
    for d in msg.detections:
        c, s = d.bbox.center, d.bbox.size
        boxes.append([c.position.x, c.position.y, c.position.z, s.x, s.y, s.z,
                      _yaw(c.orientation)])
        if d.results:
            h = d.results[0].hypothesis
            labels.append(str(h.class_id))
            scores.append(float(h.score))
        else:
            labels.append("")
            scores.append(float("nan"))
    return (np.asarray(boxes, np.float32).reshape(-1, 7), np.asarray(scores, np.float32), labels)


def image_to_array(msg) -> np.ndarray:
    """sensor_msgs/Image (rosbags) -> (H, W, C) or (H, W) uint8 array (rgb8/bgr8 -> RGB, mono8)."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(h, step)
    enc = msg.encoding.lower()
    if enc in ("rgb8", "bgr8"):
        img = data[:, : w * 3].reshape(h, w, 3)
        return img[..., ::-1].copy() if enc == "bgr8" else img.copy()
    if enc in ("mono8", "8uc1"):
        return data[:, :w].copy()
    raise ValueError(f"unsupported image encoding {msg.encoding!r} (expected rgb8, bgr8 or mono8)")


_PF_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def cloud_to_array(msg, fields: Sequence[str] = ("x", "y", "z")) -> np.ndarray:
    """sensor_msgs/PointCloud2 (rosbags) -> (N, len(fields)) float32 (fields by name, any
    layout)."""
    order = ">" if msg.is_bigendian else "<"
    have = {f.name: f for f in msg.fields}
    missing = [f for f in fields if f not in have]
    if missing:
        raise ValueError(f"PointCloud2 lacks fields {missing} (has {sorted(have)})")
    dt = np.dtype({"names": list(fields),
                   "formats": [order + _PF_DTYPES[have[f].datatype] for f in fields],
                   "offsets": [have[f].offset for f in fields], "itemsize": int(msg.point_step)})
    n = int(msg.width) * int(msg.height)
    buf = np.asarray(msg.data, dtype=np.uint8)
    arr = np.frombuffer(buf.tobytes() if not buf.flags.c_contiguous else buf, dtype=dt, count=n)
    return np.stack([arr[f].astype(np.float32) for f in fields], axis=1)


def grid_to_mask(msg) -> Tuple[np.ndarray, Dict[str, float]]:
    """nav_msgs/OccupancyGrid -> ((rows, cols) bool mask of cells >= 50, geometry dict with origin
    x/y (m), resolution (m/cell), frame_id). Row r, col c covers origin + (c, r) * resolution."""
    info = msg.info
    data = np.asarray(msg.data, dtype=np.int16).reshape(int(info.height), int(info.width))
    return data >= 50, {"origin_x": float(info.origin.position.x),
                        "origin_y": float(info.origin.position.y),
                        "resolution": float(info.resolution), "frame_id": msg.header.frame_id}
