"""PointCloud2 / Image <-> numpy conversions on hand-built messages of many layouts."""

import struct

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg",
                    reason="ROS 2 message wheels (ros-sensor-msgs) not installed")

from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from bev_mtl_ros.ros.conversions import (  # noqa: E402
    ConversionError, cloud_to_msg, cloud_to_structured, cloud_to_xyzi, image_to_msg, image_to_rgb,
)

RNG = np.random.default_rng(0)
N = 37


def _xyz():
    return RNG.normal(0, 20, size=(N, 3)).astype(np.float32)


def _header(sec=12, nsec=345, frame="cam_front_center"):
    h = Header()
    h.stamp.sec, h.stamp.nanosec, h.frame_id = sec, nsec, frame
    return h


def test_xyz_only_float32_has_no_intensity():
    xyz = _xyz()
    msg = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}, _header())
    assert msg.point_step == 12 and msg.row_step == 12 * N and len(msg.fields) == 3
    res = cloud_to_xyzi(msg)
    assert res.points.shape == (N, 4) and res.points.dtype == np.float32
    np.testing.assert_array_equal(res.points[:, :3], xyz)
    assert not res.has_intensity and np.all(res.points[:, 3] == 0) and res.num_nonfinite == 0


def test_xyzi_with_padding_and_scale():
    # PCL-style layout: x y z pad(4) intensity pad(12) -> point_step 32
    dt = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4,
                   "offsets": [0, 4, 8, 16], "itemsize": 32})
    arr = np.zeros(N, dt)
    xyz = _xyz()
    arr["x"], arr["y"], arr["z"] = xyz.T
    arr["intensity"] = np.linspace(0, 1, N, dtype=np.float32)
    msg = cloud_to_msg(arr, _header())
    assert msg.point_step == 32 and [f.offset for f in msg.fields] == [0, 4, 8, 16]
    res = cloud_to_xyzi(msg, intensity_scale=255.0)
    np.testing.assert_array_equal(res.points[:, :3], xyz)
    np.testing.assert_allclose(res.points[:, 3], np.linspace(0, 255, N), rtol=1e-6)
    assert res.has_intensity


def test_float64_fields_and_uint16_intensity():
    xyz = RNG.normal(0, 50, size=(N, 3))
    inten = RNG.integers(0, 65535, N).astype(np.uint16)
    msg = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "intensity": inten})
    assert [f.datatype for f in msg.fields] == [PointField.FLOAT64] * 3 + [PointField.UINT16]
    assert msg.point_step == 26
    res = cloud_to_xyzi(msg)
    np.testing.assert_allclose(res.points[:, :3], xyz.astype(np.float32))
    np.testing.assert_array_equal(res.points[:, 3], inten.astype(np.float32))


def test_big_endian_cloud_built_by_hand():
    xyz = _xyz()
    inten = np.arange(N, dtype=np.float32)
    data = b"".join(struct.pack(">ffff", *xyz[i], inten[i]) for i in range(N))
    msg = PointCloud2(height=1, width=N, is_bigendian=True, point_step=16, row_step=16 * N,
                      is_dense=True,
                      fields=[PointField(name=c, offset=4 * k, datatype=PointField.FLOAT32,
                                         count=1)
                              for k, c in enumerate("xyz")]
                      + [PointField(name="intensity", offset=12, datatype=PointField.FLOAT32,
                                    count=1)])
    msg.data = data
    res = cloud_to_xyzi(msg)
    np.testing.assert_array_equal(res.points[:, :3], xyz)
    np.testing.assert_array_equal(res.points[:, 3], inten)
    # the same values round-trip through the builder's big-endian path
    arr = np.zeros(N, dtype=[("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("intensity", ">f4")])
    arr["x"], arr["y"], arr["z"], arr["intensity"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], inten
    msg2 = cloud_to_msg(arr)
    assert msg2.is_bigendian and bytes(msg2.data) == data


def test_intensity_named_differently_and_missing_flag():
    xyz = _xyz()
    refl = np.full(N, 7, np.uint8)
    msg = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "reflectance": refl})
    res = cloud_to_xyzi(msg, intensity_field="reflectance", intensity_scale=2.0)
    assert res.has_intensity and np.all(res.points[:, 3] == 14.0)
    res2 = cloud_to_xyzi(msg, intensity_field="intensity")
    assert not res2.has_intensity and np.all(res2.points[:, 3] == 0.0)


def test_unusual_field_order_int_fields_and_padded_rows_organised():
    # fields stored as intensity(u1), pad, z(i2), y(i4), x(f8); organised cloud 3 rows, rows padded
    # by 5 bytes
    dt = np.dtype({"names": ["intensity", "z", "y", "x", "ring"],
                   "formats": ["u1", "<i2", "<i4", "<f8", "<u2"], "offsets": [0, 2, 4, 8, 16],
                   "itemsize": 20})
    arr = np.zeros(12, dt)
    arr["x"] = np.arange(12) * 0.5
    arr["y"] = -np.arange(12)
    arr["z"] = np.arange(12) * 3
    arr["intensity"] = 200
    arr["ring"] = 9
    msg = cloud_to_msg(arr, height=3, row_padding=5)
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 4 * 20 + 5)
    res = cloud_to_xyzi(msg)
    np.testing.assert_array_equal(res.points[:, 0], np.arange(12) * 0.5)
    np.testing.assert_array_equal(res.points[:, 1], -np.arange(12))
    np.testing.assert_array_equal(res.points[:, 2], np.arange(12) * 3)
    np.testing.assert_array_equal(res.points[:, 3], 200)
    # the structured view is zero-copy
    view = cloud_to_structured(msg)
    assert view.shape == (3, 4) and not view.flags.owndata and view["ring"][2, 3] == 9


def test_non_dense_cloud_counts_nonfinite_points():
    xyz = _xyz()
    xyz[3, 0] = np.nan
    xyz[5, 2] = np.inf
    msg = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    assert not msg.is_dense
    res = cloud_to_xyzi(msg)
    assert res.num_nonfinite == 2 and res.points.shape == (N, 4)


def test_empty_cloud_gives_zero_points():
    msg = cloud_to_msg({"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
                        "z": np.zeros(0, np.float32)})
    res = cloud_to_xyzi(msg)
    assert res.points.shape == (0, 4)


def test_cloud_errors_are_clear():
    xyz = _xyz()
    no_z = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1]})
    with pytest.raises(ConversionError, match=r"no field\(s\) \['z'\]"):
        cloud_to_xyzi(no_z)
    bad_type = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    bad_type.fields[2].datatype = 42
    with pytest.raises(ConversionError, match="field 'z' has unknown datatype 42"):
        cloud_to_xyzi(bad_type)
    short = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    short.data = bytes(short.data)[:-4]
    with pytest.raises(ConversionError, match="data has"):
        cloud_to_xyzi(short)
    outside = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    outside.fields[2].offset = 10
    with pytest.raises(ConversionError, match="does not fit in point_step 12"):
        cloud_to_xyzi(outside)
    small_row = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    small_row.row_step = 12
    with pytest.raises(ConversionError, match="row_step"):
        cloud_to_xyzi(small_row)


def test_large_cloud_conversion_is_vectorised():
    import time

    n = 120_000
    xyz = RNG.normal(0, 20, size=(n, 3)).astype(np.float32)
    msg = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "intensity": xyz[:, 0],
                        "lidar_id": np.zeros(n, np.uint8), "t": np.zeros(n, np.float32)})
    t0 = time.perf_counter()
    res = cloud_to_xyzi(msg)
    dt = time.perf_counter() - t0
    np.testing.assert_array_equal(res.points[:, :3], xyz)
    assert dt < 0.2, f"120k points took {dt * 1e3:.1f} ms"


# ---------------------------------------------------------------------------------- images
H, W = 5, 7


def _rgb():
    return RNG.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_image_encodings_with_padded_step(encoding, pad):
    rgb = _rgb()
    if encoding == "rgb8":
        arr = rgb
    elif encoding == "bgr8":
        arr = rgb[..., ::-1]
    elif encoding == "rgba8":
        arr = np.concatenate([rgb, np.full((H, W, 1), 9, np.uint8)], axis=2)
    elif encoding == "bgra8":
        arr = np.concatenate([rgb[..., ::-1], np.full((H, W, 1), 9, np.uint8)], axis=2)
    else:
        arr = rgb[..., 0]
    ch = 1 if encoding == "mono8" else arr.shape[2]
    msg = image_to_msg(arr, encoding, _header(), step=W * ch + pad)
    assert msg.step == W * ch + pad and len(msg.data) == msg.step * H
    out = image_to_rgb(msg)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    expected = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expected)


def test_rgb8_unpadded_is_zero_copy():
    msg = image_to_msg(_rgb(), "rgb8")
    out = image_to_rgb(msg)
    assert not out.flags.owndata


def test_image_errors():
    msg = image_to_msg(_rgb(), "rgb8")
    msg.encoding = "nv21"
    with pytest.raises(ConversionError, match="encoding 'nv21' unsupported"):
        image_to_rgb(msg)
    msg = image_to_msg(_rgb(), "rgb8")
    msg.step = W * 3 - 1
    with pytest.raises(ConversionError, match="step"):
        image_to_rgb(msg)
    msg = image_to_msg(_rgb(), "rgb8")
    msg.step = W * 3 + 2  # claims padding the data does not have
    with pytest.raises(ConversionError, match="expected step"):
        image_to_rgb(msg)
    with pytest.raises(ConversionError, match="does not match encoding"):
        image_to_msg(_rgb(), "mono8")


def test_header_is_kept_by_builders():
    msg = image_to_msg(_rgb(), "rgb8", _header(5, 6, "cam"))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (5, 6, "cam")
    c = cloud_to_msg({"x": np.zeros(1, np.float32), "y": np.zeros(1, np.float32),
                      "z": np.zeros(1, np.float32)},
                     _header(1, 2, "lidar"))
    assert c.header.frame_id == "lidar" and c.header.stamp.nanosec == 2


# ------------------------------------------------------------ inputs found by fault injection
def _good_cloud(n=200):
    xyz = np.random.default_rng(3).uniform(-30, 30, (n, 3)).astype(np.float32)
    return cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                         "intensity": np.ones(n, np.float32)}, _header()), xyz


def test_duplicate_field_names_are_refused():
    msg, _ = _good_cloud()
    msg.fields = list(msg.fields) + [PointField(name="x", offset=12, datatype=PointField.FLOAT32,
                                                count=1)]
    with pytest.raises(ConversionError, match="'x' appears twice"):
        cloud_to_xyzi(msg)


def test_zero_height_with_data_is_malformed_not_empty():
    msg, _ = _good_cloud()
    msg.height = 0
    with pytest.raises(ConversionError, match="no points.*carries 3200 bytes"):
        cloud_to_xyzi(msg)
    empty = cloud_to_msg({"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
                          "z": np.zeros(0, np.float32)}, _header())
    assert cloud_to_xyzi(empty).points.shape == (0, 4)  # a truly empty cloud stays valid


def test_wrong_bigendian_flag_is_refused():
    msg, _ = _good_cloud(20800)
    msg.is_bigendian = True  # little-endian bytes flagged big-endian
    with pytest.raises(ConversionError, match="is_bigendian=True.*does not match"):
        cloud_to_xyzi(msg)


def test_true_bigendian_and_nan_heavy_clouds_pass_the_byte_order_check():
    _, xyz = _good_cloud()
    dt = np.dtype([("x", ">f4"), ("y", ">f4"), ("z", ">f4")])
    arr = np.zeros(len(xyz), dt)
    arr["x"], arr["y"], arr["z"] = xyz.T
    msg = cloud_to_msg(arr, _header())
    assert msg.is_bigendian
    np.testing.assert_array_equal(cloud_to_xyzi(msg).points[:, :3], xyz)
    xyz[: int(0.8 * len(xyz))] = np.nan  # organised cloud: most beams without a return
    nan_msg = cloud_to_msg({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}, _header())
    assert cloud_to_xyzi(nan_msg).num_nonfinite == 160
    far = np.full((50, 3), 1e9, np.float32)  # absurd but not byte-swapped: left to the range check
    far_msg = cloud_to_msg({"x": far[:, 0], "y": far[:, 1], "z": far[:, 2]}, _header())
    assert cloud_to_xyzi(far_msg).points.shape == (50, 4)


def test_size_limits_checked_from_the_header_fields():
    from bev_mtl_ros.ros.conversions import InputTooLarge, check_cloud_size, check_image_size

    msg, _ = _good_cloud(200)
    check_cloud_size(msg, 200)
    check_cloud_size(msg, 0)  # no limit
    with pytest.raises(InputTooLarge, match="200 points.*> max_cloud_points 199"):
        check_cloud_size(msg, 199)
    img = image_to_msg(np.zeros((30, 40, 3), np.uint8))
    check_image_size(img, 1200)
    with pytest.raises(InputTooLarge, match="40x30 = 1200 pixels.*> max_image_pixels 1199"):
        check_image_size(img, 1199)
    assert issubclass(InputTooLarge, ConversionError)


def test_serialized_messages_decode_zero_copy_and_convert_like_rclpy_ones():
    """The node's raw subscriptions: CDR bytes from rclpy -> decode_serialized.

    They give the same points and pixels as the rclpy message; ros_header gives a publishable
    Header; bad bytes -> error.
    """
    from rclpy.serialization import serialize_message

    from bev_mtl_ros.ros.conversions import (ConversionError, cloud_to_msg, cloud_to_xyzi,
                                             decode_serialized, image_to_msg, image_to_rgb,
                                             ros_header)

    rng = np.random.default_rng(4)
    h = Header(frame_id="velodyne")
    h.stamp.sec, h.stamp.nanosec = 17, 250
    cols = {"x": rng.normal(size=500).astype(np.float64),
            "y": rng.normal(size=500).astype(np.float32),
            "z": rng.normal(size=500).astype(np.float32),
            "i": rng.uniform(0, 1, 500).astype(np.float32)}
    cloud = cloud_to_msg(cols, h, row_padding=8)
    raw = serialize_message(cloud)
    dec = decode_serialized(raw, "sensor_msgs/msg/PointCloud2")
    a = cloud_to_xyzi(cloud, intensity_field="i", intensity_scale=255.0).points
    b = cloud_to_xyzi(dec, intensity_field="i", intensity_scale=255.0).points
    np.testing.assert_array_equal(a, b)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    dec_img = decode_serialized(serialize_message(image_to_msg(img, "bgr8", h)),
                                "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(image_to_rgb(dec_img), img[..., ::-1])
    out = ros_header(dec.header)
    assert isinstance(out, Header)
    assert (out.stamp.sec, out.stamp.nanosec, out.frame_id) == (17, 250, "velodyne")
    assert ros_header(dec.header, "cam_front_center").frame_id == "cam_front_center"
    with pytest.raises(ConversionError, match="PointCloud2"):
        decode_serialized(raw[:40], "sensor_msgs/msg/PointCloud2")
