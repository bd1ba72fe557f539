"""Our zero-copy conversions against the reference implementations the ROS design names.

PointCloud2: ``bev_mtl_ros.ros.conversions`` (cloud_to_structured, cloud_to_xyzi, cloud_to_msg)
against PyPI ``pointcloud2`` (``read_points`` / ``create_cloud``, the API of
``sensor_msgs_py.point_cloud2`` without ROS; a test requirement) on every layout the codec
supports, in both directions; against ``sensor_msgs_py.point_cloud2`` itself where a ROS 2
installation provides it (the ROS 2 wheels on PyPI do not: those tests are skipped there, the
package is outside bev_mtl_ros).

Image: encodings and channel orders follow cv_bridge (``sensor_msgs/image_encodings`` names);
known pixel values for every encoding class, and ``cv_bridge.CvBridge`` itself where a ROS 2
installation provides it (skipped otherwise, for the same reason).
"""

import copy
import importlib.util

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg",
                    reason="ROS 2 message wheels (ros-sensor-msgs) not installed")

import pointcloud2  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from bev_mtl_ros.ros.conversions import (  # noqa: E402
    IMAGE_ENCODINGS, ConversionError, cloud_to_msg, cloud_to_structured, cloud_to_xyzi,
    encoding_layout, image_to_array, image_to_msg, image_to_rgb,
)

HAS_SENSOR_MSGS_PY = importlib.util.find_spec("sensor_msgs_py") is not None
HAS_CV_BRIDGE = importlib.util.find_spec("cv_bridge") is not None
NO_SENSOR_MSGS_PY = ("sensor_msgs_py (a ROS 2 package outside bev_mtl_ros) is not installed: "
                     "only a ROS 2 installation provides it, the PyPI wheels do not")
NO_CV_BRIDGE = ("cv_bridge (a ROS 2 package outside bev_mtl_ros) is not installed: only a ROS 2 "
                "installation provides it, the PyPI wheels do not")

N = 53


def _header():
    h = Header(frame_id="lidar")
    h.stamp.sec, h.stamp.nanosec = 3, 4
    return h


def _values(rng, dt, n):
    """``n`` random values of numpy dtype ``dt`` (floats with a few NaN)."""
    if dt.kind == "f":
        v = rng.normal(0, 30, n).astype(dt)
        v[::17] = np.nan
        return v
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, n, endpoint=True, dtype=dt)


def _layout(fields, point_step, big=False):
    """Structured dtype of ``fields`` [(name, offset, numpy type)] in one byte order."""
    order = ">" if big else "<"
    return np.dtype({"names": [f[0] for f in fields],
                     "formats": [np.dtype(f[2]).newbyteorder(order) for f in fields],
                     "offsets": [f[1] for f in fields], "itemsize": point_step})


#: name -> (fields [(name, offset, type)], point_step, intensity field, big-endian, height,
#: row padding bytes). Every layout cloud_to_structured / cloud_to_xyzi documents.
LAYOUTS = {
    "xyz_float32": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4")], 12, "", False, 1, 0),
    "xyzi_float32_packed": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"),
                             ("intensity", 12, "f4")], 16, "intensity", False, 1, 0),
    "velodyne_padded_ring_time": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"),
                                   ("intensity", 16, "f4"), ("ring", 20, "u2"),
                                   ("time", 24, "f4")], 32, "intensity", False, 1, 0),
    "a2d2_uint8_intensity_lidar_id_t": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"),
                                         ("intensity", 12, "u1"), ("lidar_id", 13, "u1"),
                                         ("t", 16, "f4")], 20, "intensity", False, 1, 0),
    "ouster_uint16_reflectivity": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"),
                                    ("t", 16, "u4"), ("reflectivity", 20, "u2"),
                                    ("ring", 22, "u2"), ("ambient", 24, "u2"),
                                    ("range", 28, "u4")], 48, "reflectivity", False, 1, 0),
    "float64_xyzi": ([("x", 0, "f8"), ("y", 8, "f8"), ("z", 16, "f8"),
                      ("intensity", 24, "f8")], 32, "intensity", False, 1, 0),
    "integer_coordinates_every_type": ([("x", 0, "i4"), ("y", 4, "i2"), ("z", 6, "i1"),
                                        ("i", 7, "u1"), ("a", 8, "u2"), ("b", 12, "u4"),
                                        ("c", 16, "i4")], 20, "i", False, 1, 0),
    "unusual_field_order": ([("intensity", 0, "f4"), ("z", 4, "f4"), ("x", 8, "f8"),
                             ("y", 16, "f4")], 24, "intensity", False, 1, 0),
    "big_endian": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "u2"),
                    ("t", 16, "f8")], 24, "intensity", True, 1, 0),
    "organised_height_4": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"),
                            ("intensity", 12, "f4")], 16, "intensity", False, 4, 0),
    "organised_row_padding": ([("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"),
                               ("intensity", 12, "u1")], 16, "intensity", False, 4, 12),
    "big_endian_organised_padded": ([("x", 0, "f8"), ("y", 8, "f4"), ("z", 12, "f4"),
                                     ("intensity", 16, "i2")], 20, "intensity", True, 2, 6),
}
N_BY_HEIGHT = {1: N, 2: 2 * 27, 4: 4 * 13}


def _cloud(name, seed=0):
    """(message built by cloud_to_msg, structured source array) of layout ``name``."""
    fields, step, _, big, height, pad = LAYOUTS[name]
    rng = np.random.default_rng(seed)
    dt = _layout(fields, step, big)
    n = N_BY_HEIGHT[height]
    arr = np.zeros(n, dtype=dt)
    for fname, _, ftype in fields:
        arr[fname] = _values(rng, np.dtype(ftype), n)  # floats with NaN: non-dense clouds
    return cloud_to_msg(arr, _header(), height=height, row_padding=pad), arr


def _reference_fields(msg):
    """{field: values} read by pointcloud2.read_points (rows in message order)."""
    ref = pointcloud2.read_points(msg)
    return {n: ref[n] for n in ref.dtype.names}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_structured_view_equals_pointcloud2_read_points(name):
    """Every field, every point: our zero-copy view holds pointcloud2's values (NaN included)."""
    msg, src = _cloud(name)
    ours = cloud_to_structured(msg)
    fields, step, _, big, height, pad = LAYOUTS[name]
    assert ours.shape == (height, src.size // height)
    assert msg.row_step == ours.shape[1] * step + pad and bool(msg.is_bigendian) == big
    ref = _reference_fields(msg)
    assert sorted(ref) == sorted(ours.dtype.names)
    for field in ref:
        np.testing.assert_array_equal(ours[field].reshape(-1), ref[field], err_msg=field)
        np.testing.assert_array_equal(ours[field].reshape(-1), src[field], err_msg=field)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_xyzi_equals_pointcloud2_columns(name, scale):
    """cloud_to_xyzi = pointcloud2's x, y, z, intensity cast to float32 (intensity * scale)."""
    msg, _ = _cloud(name, seed=1)
    ifield = LAYOUTS[name][2]
    conv = cloud_to_xyzi(msg, intensity_field=ifield, intensity_scale=scale)
    ref = pointcloud2.read_points(msg, field_names=["x", "y", "z"] + ([ifield] if ifield else []))
    expect = np.zeros((ref.size, 4), np.float32)
    for j, c in enumerate("xyz"):
        expect[:, j] = ref[c]
    if ifield:
        expect[:, 3] = ref[ifield] * np.float32(scale)
    np.testing.assert_array_equal(conv.points, expect)
    assert conv.has_intensity == bool(ifield)
    assert conv.num_nonfinite == int((~np.isfinite(expect).all(axis=1)).sum())


@pytest.mark.parametrize("name", sorted(n for n in LAYOUTS if not LAYOUTS[n][3]))
def test_cloud_to_msg_equals_pointcloud2_create_cloud(name):
    """Reverse direction: the same fields, steps and bytes as pointcloud2.create_cloud.

    And each library reads the other's cloud.
    """
    fields, step, ifield, _, height, _ = LAYOUTS[name]
    pfields = [pointcloud2.PointField(f, off, _PF_CODE[np.dtype(t).str[1:]], 1)
               for f, off, t in fields]
    dt = pointcloud2.dtype_from_fields(pfields, point_step=step)
    rng = np.random.default_rng(2)
    pts = np.zeros(N_BY_HEIGHT[height], dt)
    for f, _, t in fields:
        pts[f] = _values(rng, np.dtype(t), pts.size)
    pts = pts.reshape(height, -1)
    theirs = pointcloud2.create_cloud(_header(), pfields, pts, step=step)
    ours = cloud_to_msg(pts, _header())
    assert (ours.height, ours.width, ours.point_step, ours.row_step) == \
        (theirs.height, theirs.width, theirs.point_step, theirs.row_step)
    assert [(f.name, f.offset, f.datatype, f.count) for f in ours.fields] == \
        [(f.name, f.offset, f.datatype, f.count) for f in theirs.fields]
    assert bytes(ours.data) == bytes(theirs.data)
    cross = cloud_to_structured(theirs)
    back = pointcloud2.read_points(ours)
    for f, _, _ in fields:
        np.testing.assert_array_equal(cross[f].reshape(-1), pts[f].reshape(-1))
        np.testing.assert_array_equal(back[f], pts[f].reshape(-1))


#: numpy type code -> PointField datatype
_PF_CODE = {"i1": PointField.INT8, "u1": PointField.UINT8, "i2": PointField.INT16,
            "u2": PointField.UINT16, "i4": PointField.INT32, "u4": PointField.UINT32,
            "f4": PointField.FLOAT32, "f8": PointField.FLOAT64}


def test_count_and_unnamed_fields_against_pointcloud2():
    """Fields with count > 1 and unnamed fields read the same bytes as pointcloud2.

    count > 1 is a sub-array here and name_0.. in pointcloud2; unnamed fields are padding here
    and unnamed_field_<i> there.
    """
    rng = np.random.default_rng(5)
    dt = np.dtype({"names": ["x", "y", "z", "normal", "pad"],
                   "formats": ["<f4", "<f4", "<f4", ("<f4", (3,)), "<u4"],
                   "offsets": [0, 4, 8, 12, 24], "itemsize": 28})
    arr = np.zeros(N, dt)
    for c in "xyz":
        arr[c] = rng.normal(size=N)
    arr["normal"] = rng.normal(size=(N, 3))
    arr["pad"] = 7
    msg = cloud_to_msg(arr, _header())
    msg.fields[4].name = ""
    ours = cloud_to_structured(msg)
    ref = pointcloud2.read_points(msg)
    assert "pad" not in ours.dtype.names and "unnamed_field_4" in ref.dtype.names
    for k in range(3):
        np.testing.assert_array_equal(ours["normal"][0, :, k], ref[f"normal_{k}"])
    np.testing.assert_array_equal(cloud_to_xyzi(msg, "").points[:, :3],
                                  np.stack([ref[c] for c in "xyz"], axis=1))


def test_empty_cloud_matches_pointcloud2():
    msg = cloud_to_msg({"x": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
                        "z": np.zeros(0, np.float32)}, _header())
    assert pointcloud2.read_points(msg).size == 0
    assert cloud_to_xyzi(msg).points.shape == (0, 4)


@pytest.mark.skipif(not HAS_SENSOR_MSGS_PY, reason=NO_SENSOR_MSGS_PY)
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_against_sensor_msgs_py(name):  # pragma: no cover - needs a ROS 2 installation
    """The ROS 2 package itself: read_points per field, read_points_numpy on x, y, z."""
    from sensor_msgs_py import point_cloud2 as pc2

    msg, _ = _cloud(name, seed=3)
    ours = cloud_to_structured(msg)
    ref = pc2.read_points(copy.deepcopy(msg))  # some versions byte-swap the buffer in place
    for field in ours.dtype.names:
        np.testing.assert_array_equal(ours[field].reshape(-1), ref[field], err_msg=field)
    same_type = [f for f in msg.fields if f.name in "xyz"]
    if len({f.datatype for f in same_type}) == 1:
        xyz = pc2.read_points_numpy(copy.deepcopy(msg), field_names=["x", "y", "z"])
        np.testing.assert_array_equal(cloud_to_xyzi(msg, "").points[:, :3],
                                      xyz.astype(np.float32))


# ------------------------------------------------------------------------------ images
H, W = 6, 8


def _rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_encoding_names_are_cv_bridges():
    """sensor_msgs/image_encodings names, case-sensitive; generic names with their dtypes."""
    for enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "rgba16", "bgra16",
                "mono16", "bayer_rggb8", "bayer_bggr16", "yuv422", "yuv422_yuy2"):
        assert enc in IMAGE_ENCODINGS
    assert encoding_layout("8UC1") == (np.dtype("u1"), 1)
    assert encoding_layout("8UC3") == (np.dtype("u1"), 3)
    assert encoding_layout("16UC1") == (np.dtype("u2"), 1)
    assert encoding_layout("16SC2") == (np.dtype("i2"), 2)
    assert encoding_layout("32FC1") == (np.dtype("f4"), 1)
    assert encoding_layout("64FC4") == (np.dtype("f8"), 4)
    assert encoding_layout("mono16") == (np.dtype("u2"), 1)
    for bad in ("RGB8", "Mono8", "8uc3", "32UC1", "nv21"):
        with pytest.raises(ConversionError, match="unsupported"):
            encoding_layout(bad)


@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]),
                                            ("rgba8", [0, 1, 2, None]),
                                            ("bgra8", [2, 1, 0, None])])
@pytest.mark.parametrize("bits", [8, 16])
def test_colour_channel_orders(encoding, order, bits):
    """Channel k of the message holds colour ``order[k]`` (None = alpha, dropped).

    16-bit values v become round(v * 255 / 65535), as cv_bridge's convertTo.
    """
    rgb = _rgb()
    enc = encoding[:-1] + str(bits)
    planes = [rgb[..., c] if c is not None else np.full((H, W), 200, np.uint8) for c in order]
    arr = np.stack(planes, axis=2)
    if bits == 16:
        arr = arr.astype(np.uint16) * 257  # 8-bit v -> 16-bit v * 257 (exact inverse scale)
    msg = image_to_msg(arr, enc, step=arr.shape[1] * arr.shape[2] * arr.itemsize + 4)
    np.testing.assert_array_equal(image_to_array(msg), arr)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_mono16_scaling_and_big_endian():
    """mono16: 65535 -> 255, 257 -> 1, 128 -> 0 (rounded); is_bigendian data is byte-swapped."""
    v = np.array([[0, 128, 129, 257, 32768, 65535]], np.uint16)
    msg = image_to_msg(v, "mono16")
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out[..., 0], np.rint(v * (255 / 65535)).astype(np.uint8))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    big = image_to_msg(v, "mono16")
    big.data = v.astype(">u2").tobytes()
    big.is_bigendian = 1
    np.testing.assert_array_equal(image_to_array(big), v)
    np.testing.assert_array_equal(image_to_rgb(big), out)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_patterns_demosaic_to_their_colour(pattern, bits):
    """A mosaic of one colour in each pattern demosaics to that colour.

    The pattern names read the top-left 2x2 block row by row.
    """
    colour = {"r": 200, "g": 90, "b": 30}
    block = np.array([[colour[pattern[0]], colour[pattern[1]]],
                      [colour[pattern[2]], colour[pattern[3]]]], np.uint16)
    mosaic = np.tile(block, (4, 5))
    if bits == 8:
        mosaic = mosaic.astype(np.uint8)
    else:
        mosaic = mosaic * 257
    out = image_to_rgb(image_to_msg(mosaic, f"bayer_{pattern}{bits}"))
    inner = out[2:-2, 2:-2].reshape(-1, 3)
    np.testing.assert_array_equal(inner, np.tile([200, 90, 30], (inner.shape[0], 1)))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_orders(encoding):
    """UYVY (yuv422) and YUYV (yuv422_yuy2): neutral chroma gives grey rising with Y.

    Read in the other order, the chroma bytes would be taken for luma.
    """
    y = np.array([[16, 60, 120, 235]], np.uint8)
    uv = np.full_like(y, 128)
    if encoding == "yuv422":
        arr = np.stack([uv, y], axis=2)  # U Y0 V Y1: chroma first
    else:
        arr = np.stack([y, uv], axis=2)  # Y0 U Y1 V: luma first
    out = image_to_rgb(image_to_msg(arr, encoding))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    grey = out[0, :, 0].astype(int)
    assert (np.diff(grey) > 0).all() and grey[0] <= 1 and grey[-1] >= 254, grey
    with pytest.raises(ConversionError, match="even"):
        image_to_rgb(image_to_msg(arr[:, :3], encoding))


@pytest.mark.parametrize("encoding,dtype,ch", [("8UC1", "u1", 1), ("8UC3", "u1", 3),
                                               ("16UC1", "u2", 1), ("32FC1", "f4", 1),
                                               ("64FC2", "f8", 2)])
def test_generic_encodings_read_as_they_are_and_have_no_rgb(encoding, dtype, ch):
    """Generic encodings read as they are and have no rgb8.

    image_to_array = the array (cv_bridge's passthrough); image_to_rgb refuses them, as
    cv_bridge refuses 8UC3 -> rgb8 (no channel order).
    """
    rng = np.random.default_rng(7)
    arr = (rng.uniform(0, 1000, (H, W, ch))).astype(dtype)
    msg = image_to_msg(arr, encoding, step=W * ch * np.dtype(dtype).itemsize + 8)
    got = image_to_array(msg)
    np.testing.assert_array_equal(got, arr[..., 0] if ch == 1 else arr)
    with pytest.raises(ConversionError, match="no channel order"):
        image_to_rgb(msg)
    with pytest.raises(ConversionError, match="does not match encoding"):
        image_to_msg(arr.astype(np.float64 if dtype != "f8" else np.float32), encoding)


@pytest.mark.skipif(not HAS_CV_BRIDGE, reason=NO_CV_BRIDGE)
@pytest.mark.parametrize("encoding", sorted(IMAGE_ENCODINGS) + ["8UC3", "16UC1", "32FC1"])
def test_against_cv_bridge(encoding):  # pragma: no cover - needs a ROS 2 installation
    """cv_bridge itself: the same passthrough pixels and rgb8, and the same built bytes.

    rgb8 where cv_bridge converts; cv2_to_imgmsg builds the bytes image_to_msg builds.
    """
    from cv_bridge import CvBridge

    bridge = CvBridge()
    dt, ch = encoding_layout(encoding)
    rng = np.random.default_rng(8)
    shape = (H, W) if ch == 1 else (H, W, ch)
    if dt.kind == "f":
        arr = rng.uniform(0, 1, shape).astype(dt)
    else:
        arr = rng.integers(0, np.iinfo(dt).max, shape, endpoint=True, dtype=dt)
    ours = image_to_msg(arr, encoding)
    theirs = bridge.cv2_to_imgmsg(arr, encoding=encoding)
    assert (theirs.step, bytes(theirs.data)) == (ours.step, bytes(ours.data))
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(ours, "passthrough"),
                                  image_to_array(ours))
    if encoding in IMAGE_ENCODINGS:
        np.testing.assert_array_equal(bridge.imgmsg_to_cv2(ours, "rgb8"), image_to_rgb(ours))
    else:
        with pytest.raises(ConversionError):
            image_to_rgb(ours)


def test_pointcloud2_is_the_rclpy_message_reader():
    """pointcloud2 reads rclpy messages directly (the same field names as sensor_msgs)."""
    msg, _ = _cloud("xyzi_float32_packed")
    assert isinstance(msg, PointCloud2)
    assert pointcloud2.read_points(msg).size == N
