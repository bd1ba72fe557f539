"""The bag codec (``data/bag_io.py``): typestores and decoding of rosbags messages."""

from __future__ import annotations

import numpy as np
import pytest

from bev_mtl_ros.data import bag_io


def test_typestore_error_names_missing_definitions(tmp_path):
    with pytest.raises(bag_io.MessageTypeError, match="vision_msgs"):
        bag_io.make_typestore(msg_dir=str(tmp_path))
    ts = bag_io.make_typestore()
    assert ("vision_msgs/msg/Detection3DArray" in ts.fielddefs
            and "tf2_msgs/msg/TFMessage" in ts.fielddefs)


def _cloud(ts, arr: np.ndarray, datatypes, bigendian: bool):
    """Build a rosbags PointCloud2 holding the structured array ``arr`` (its offsets, padding)."""
    PF = ts.types["sensor_msgs/msg/PointField"]
    fields = [PF(name=n, offset=arr.dtype.fields[n][1], datatype=datatypes[n], count=1)
              for n in arr.dtype.names]
    hdr = ts.types["std_msgs/msg/Header"](
        stamp=ts.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="f")
    return ts.types["sensor_msgs/msg/PointCloud2"](
        header=hdr, height=1, width=len(arr), fields=fields, is_bigendian=bigendian,
        point_step=arr.dtype.itemsize, row_step=arr.dtype.itemsize * len(arr),
        data=np.frombuffer(arr.tobytes(), np.uint8), is_dense=False)


@pytest.mark.parametrize("order", ["<", ">"])
def test_cloud_decoding_any_layout_and_byte_order(order):
    """Fields in any order, with padding, either byte order.

    The structured decoding keeps each field's type, the float decoding gives the named columns.
    """
    ts = bag_io.make_record_typestore()
    dt = np.dtype({"names": ["intensity", "ring", "x", "y", "z"],
                   "formats": [order + "f4", order + "u2", order + "f8", order + "f4",
                               order + "f4"],
                   "offsets": [0, 4, 8, 20, 28], "itemsize": 40})
    arr = np.zeros(5, dt)
    rng = np.random.default_rng(0)
    for n in ("x", "y", "z", "intensity"):
        arr[n] = rng.normal(size=5)
    arr["ring"] = np.arange(5) * 1000
    msg = _cloud(ts, arr, {"intensity": 7, "ring": 4, "x": 8, "y": 7, "z": 7}, order == ">")
    s = bag_io.cloud_to_structured(msg)
    assert s.dtype.names == dt.names and s.dtype.isnative
    for n in dt.names:
        np.testing.assert_array_equal(s[n], arr[n])
    assert s["ring"].dtype == np.uint16
    xyz = bag_io.cloud_to_array(msg)
    assert xyz.dtype == np.float32 and xyz.shape == (5, 3)
    np.testing.assert_array_equal(xyz, np.stack([arr["x"], arr["y"], arr["z"]], 1)
                                  .astype(np.float32))
    with pytest.raises(ValueError, match="lacks fields"):
        bag_io.cloud_to_array(msg, ("x", "t"))


def test_detections_take_the_best_hypothesis():
    ts = bag_io.make_record_typestore()
    G = ts.types
    hdr = G["std_msgs/msg/Header"](stamp=G["builtin_interfaces/msg/Time"](sec=3, nanosec=0),
                                   frame_id="f")
    q = np.array([0.0, 0.0, np.sin(0.25), np.cos(0.25)])   # yaw 0.5 rad
    pose = G["geometry_msgs/msg/Pose"](
        position=G["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=3.0),
        orientation=G["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))

    def hyp(name, score):
        return G["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=G["vision_msgs/msg/ObjectHypothesis"](class_id=name, score=score),
            pose=G["geometry_msgs/msg/PoseWithCovariance"](pose=pose,
                                                           covariance=np.zeros(36)))

    bbox = G["vision_msgs/msg/BoundingBox3D"](center=pose,
                                              size=G["geometry_msgs/msg/Vector3"](x=4, y=2, z=1.5))
    dets = [G["vision_msgs/msg/Detection3D"](header=hdr, results=r, bbox=bbox, id="")
            for r in ([hyp("Car", 0.3), hyp("Truck", 0.7)], [])]
    msg = G["vision_msgs/msg/Detection3DArray"](header=hdr, detections=dets)
    boxes, scores, labels = bag_io.detections_to_arrays(msg)
    assert boxes.shape == (2, 7) and boxes.dtype == np.float32
    np.testing.assert_allclose(boxes[0], [1, 2, 3, 4, 2, 1.5, 0.5], rtol=1e-6)
    assert labels == ["Truck", ""] and scores[0] == pytest.approx(0.7) and np.isnan(scores[1])
    assert bag_io.stamp_ns(msg) == 3_000_000_000
