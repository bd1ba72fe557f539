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


def test_encoders_invert_the_decoders():
    """make_pointcloud2 / make_image / make_detections, decoded again, give their inputs back."""
    ts = bag_io.make_record_typestore()
    dt = np.dtype({"names": ["x", "y", "z", "ring", "t"],
                   "formats": ["<f4", "<f4", "<f4", "u1", "<f8"],
                   "offsets": [0, 4, 8, 12, 16], "itemsize": 32})
    arr = np.zeros(7, dt)
    arr["x"], arr["ring"], arr["t"] = np.arange(7), np.arange(7) * 3, np.linspace(0, 0.1, 7)
    cloud = bag_io.make_pointcloud2(ts, arr, 5, "lidar")
    assert cloud.point_step == 32 and bag_io.stamp_ns(cloud) == 5
    got = bag_io.cloud_to_structured(cloud)
    assert got.dtype == dt and got.tobytes() == arr.tobytes()
    with pytest.raises(ValueError, match="little-endian"):
        bag_io.make_pointcloud2(ts, arr.astype(dt.newbyteorder(">")), 5, "lidar")
    rgb = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        bag_io.image_to_array(bag_io.make_image(ts, rgb, 5, "cam", "rgb8")), rgb)
    np.testing.assert_array_equal(
        bag_io.image_to_array(bag_io.make_image(ts, rgb[..., 0], 5, "cam", "mono8")), rgb[..., 0])
    boxes = np.array([[1, 2, 3, 4, 2, 1.5, 0.5], [5, -1, 0, 1, 1, 2, -3.0]], np.float32)
    msg = bag_io.make_detections(ts, boxes, ["Car", "Pedestrian"], ["a", "b"], 5, "f",
                                 scores=np.array([0.9, 0.4]))
    b, s, lab = bag_io.detections_to_arrays(msg)
    np.testing.assert_allclose(b, boxes, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s, [0.9, 0.4], rtol=1e-6)
    assert lab == ["Car", "Pedestrian"] and [d.id for d in msg.detections] == ["a", "b"]


def test_image_to_array_demosaics_bayer_and_keeps_mono16():
    """Bayer is colour (RGB out, as cv_bridge gives it); other one-channel encodings pass."""
    from types import SimpleNamespace
    from bev_mtl_ros.data import image_encoding
    raw = np.arange(32, dtype=np.uint8).reshape(4, 8)
    bayer = SimpleNamespace(height=4, width=8, encoding="bayer_rggb8", is_bigendian=0, step=8,
                            data=raw.tobytes())
    rgb = bag_io.image_to_array(bayer)
    assert rgb.shape == (4, 8, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, image_encoding.image_to_rgb(bayer))
    mono16 = np.arange(32, dtype=np.uint16).reshape(4, 8) * 1000
    m = SimpleNamespace(height=4, width=8, encoding="mono16", is_bigendian=0, step=16,
                        data=mono16.astype("<u2").tobytes())
    np.testing.assert_array_equal(bag_io.image_to_array(m), mono16)
