"""sensor_msgs/PointCloud2 <-> numpy without per-point Python loops.

A ``sensor_msgs/PointCloud2`` is a 2-D array (``height`` rows x ``width`` columns) of points, each
``point_step`` bytes long, rows ``row_step`` bytes apart (``row_step >= width * point_step``; the
extra bytes are row padding). Every point holds the fields of ``msg.fields`` (name, byte offset,
datatype, count). :func:`cloud_dtype` turns that description into a numpy *structured* dtype whose
itemsize is ``point_step`` and whose fields sit at the given offsets with the message's byte order;
:func:`cloud_to_structured` lays that dtype over ``msg.data`` with explicit strides
``(row_step, point_step)``, so no bytes are copied, whatever the layout (padding between fields,
unusual field order, float64 or integer coordinates, big-endian, padded rows, organised clouds).
:func:`cloud_to_xyzi` then gathers x, y, z and the intensity field into the model's
``(N, 4) float32 [x, y, z, intensity]`` layout (one vectorised cast per column).
:func:`cloud_to_msg` builds a cloud of any of these layouts (tests, player, synthetic data).

The values read are those of ``sensor_msgs_py.point_cloud2.read_points`` (ROS 2) and of PyPI's
``pointcloud2.read_points`` (its stand-in without ROS); test/test_ros_conversions.py compares them
on every layout above. Differences in what is accepted: a field with ``count`` 0 is read as one
value (pointcloud2 and recent sensor_msgs_py refuse it), ``count > 1`` gives a sub-array
``(count,)`` (they split it into ``name_0 .. name_<count-1>``), unnamed fields are padding (they
name them ``unnamed_field_<i>``), big-endian fields keep their byte order in the view (they
byte-swap a copy; the values are the same).

Non-finite points (``is_dense == False`` clouds carry NaN for "no return") are kept and counted;
the pillarization drops them (``PillarStats.nonfinite_dropped``).

Import these names from :mod:`bev_mtl_ros.ros.conversions` (the codec's public module).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from bev_mtl_ros.data.codec_base import ConversionError, check_size, data_buffer
from bev_mtl_ros.data.pointfield import POINTFIELD_DTYPES, cloud_dtype, pointfield_datatype

__all__ = ["POINTFIELD_DTYPES", "CloudArrays", "check_cloud_size", "cloud_dtype",
           "cloud_to_structured", "cloud_to_xyzi", "cloud_to_msg"]


def check_cloud_size(msg: PointCloud2, max_points: int) -> None:
    """Refuse a cloud with more than ``max_points`` points before any byte is converted.

    Args:
        msg: sensor_msgs/PointCloud2 (only ``width``, ``height`` and ``len(data)`` are read).
        max_points: limit on ``width * height``; <= 0 = no limit.
    Raises:
        InputTooLarge: naming the size, the bytes and the limit.
    """
    check_size(msg, max_points, "PointCloud2", "points", "max_cloud_points")


def cloud_to_structured(msg: PointCloud2) -> np.ndarray:
    """Zero-copy structured view of a PointCloud2.

    Args:
        msg: ``sensor_msgs/PointCloud2``.
    Returns:
        (height, width) structured array (dtype from :func:`cloud_dtype`) viewing ``msg.data``
        with strides (row_step, point_step); no bytes copied.
    Raises:
        ConversionError: ``point_step`` 0 with points present, ``row_step < width * point_step``,
        ``len(data) != row_step * height``, or data in a cloud with width or height 0.
    """
    h, w = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    buf = data_buffer(msg.data)
    dt = cloud_dtype(msg.fields, max(point_step, 1), bool(msg.is_bigendian))
    if h * w == 0:
        if buf.size:
            raise ConversionError(
                f"PointCloud2 is {w}x{h} (no points) but carries {buf.size} bytes of data")
        return np.zeros((h, w), dtype=dt)
    if point_step <= 0:
        raise ConversionError(f"PointCloud2 point_step is {point_step} with {h}x{w} points")
    if row_step < w * point_step:
        raise ConversionError(
            f"PointCloud2 row_step {row_step} < width {w} * point_step {point_step} = "
            f"{w * point_step}")
    if buf.size != row_step * h:
        raise ConversionError(
            f"PointCloud2 data has {buf.size} bytes, expected row_step {row_step} * height {h} = "
            f"{row_step * h} (width {w}, point_step {point_step})")
    return np.ndarray(shape=(h, w), dtype=dt, buffer=buf, offset=0, strides=(row_step, point_step))


@dataclass
class CloudArrays:
    """Result of :func:`cloud_to_xyzi`.

    Attributes:
        points: (N, 4) float32 [x, y, z, intensity * intensity_scale], metres in the cloud's frame,
            N = width * height (row-major), non-finite points kept.
        has_intensity: False when the intensity field was missing (column 3 is then zeros).
        num_nonfinite: points with a NaN/Inf coordinate or intensity.
        intensity_field: name of the field read (or looked for).
    """

    points: np.ndarray
    has_intensity: bool
    num_nonfinite: int
    intensity_field: str


def _column(arr: np.ndarray, name: str) -> np.ndarray:
    """One scalar field of a structured (H, W) array as a flat array (view when possible)."""
    col = arr[name]
    if col.ndim != arr.ndim:
        raise ConversionError(f"PointCloud2 field '{name}' has count {col.shape[arr.ndim:]}; "
                              "expected 1")
    return col.reshape(-1)


def cloud_to_xyzi(msg: PointCloud2, intensity_field: str = "intensity",
                  intensity_scale: float = 1.0, out: Optional[np.ndarray] = None) -> CloudArrays:
    """PointCloud2 -> (N, 4) float32 [x, y, z, intensity] for any field layout.

    Args:
        msg: cloud with at least fields x, y, z (any numeric PointField type, any offsets and
            byte order). Points are left in the message's frame (``msg.header.frame_id``).
        intensity_field: name of the intensity-like field ("intensity", "reflectance", "i", ...);
            empty string = none. A missing field gives zeros and ``has_intensity=False``.
        intensity_scale: multiplier from the message's intensity units to the model's raw
            convention (e.g. 255.0 when a driver publishes 0..1 and the model expects A2D2's
            0..255).
        out: optional preallocated (>= N, 4) float32 array to fill (avoids an allocation).
    Returns:
        :class:`CloudArrays`.
    Raises:
        ConversionError: no x/y/z field, a coordinate field with count > 1, inconsistent sizes,
        unknown datatype, duplicate field names, an ``is_bigendian`` flag that contradicts the
        float coordinates' bytes (see :func:`_check_byte_order`).
    """
    names = [str(f.name) for f in msg.fields]
    missing = [c for c in ("x", "y", "z") if c not in names]
    if missing:
        raise ConversionError(f"PointCloud2 has no field(s) {missing}; fields present: {names}")
    arr = cloud_to_structured(msg)
    n = arr.size
    if out is None:
        pts = np.empty((n, 4), dtype=np.float32)
    else:
        if out.dtype != np.float32 or out.ndim != 2 or out.shape[1] != 4 or out.shape[0] < n:
            raise ValueError(f"out must be float32 (>={n}, 4), got {out.dtype} {out.shape}")
        pts = out[:n]
    if n == 0:
        return CloudArrays(pts, bool(intensity_field) and intensity_field in names, 0,
                           intensity_field)
    for j, c in enumerate(("x", "y", "z")):
        pts[:, j] = _column(arr, c)  # casts float64/int/big-endian to native float32
    has_i = bool(intensity_field) and intensity_field in names
    if has_i:
        np.multiply(_column(arr, intensity_field), np.float32(intensity_scale), out=pts[:, 3],
                    casting="unsafe")
    else:
        pts[:, 3] = 0.0
    finite = np.isfinite(pts).all(axis=1)
    num_bad = int(n - np.count_nonzero(finite))
    _check_byte_order(arr, pts, bool(msg.is_bigendian))
    return CloudArrays(pts, has_i, num_bad, intensity_field)


#: |coordinate| above this (m) is not a lidar return (byte-order check only)
_MAX_PLAUSIBLE_M = 1e5
#: 0 < |coordinate| below this (m) is a garbage bit pattern, not a measurement (same check)
_MIN_PLAUSIBLE_M = 1e-6


def _implausible_fraction(xyz: np.ndarray) -> float:
    """Fraction of rows of (N, 3) coordinates with a non-finite, huge or tiny non-zero value."""
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(xyz.astype(np.float64))
        bad = ~np.isfinite(a) | (a > _MAX_PLAUSIBLE_M) | ((a > 0) & (a < _MIN_PLAUSIBLE_M))
    return float(bad.any(axis=1).mean()) if a.shape[0] else 0.0


def _check_byte_order(arr: np.ndarray, pts: np.ndarray, is_bigendian: bool,
                      sample: int = 2048) -> None:
    """Raise when ``is_bigendian`` contradicts the bytes of multi-byte float coordinates.

    A wrong flag turns every float into a garbage bit pattern (e.g. 12.5 m read with swapped
    bytes is 2.6e-41). When more than half of a sample of points is implausible as read (NaN/Inf,
    |v| > 1e5 m or 0 < |v| < 1e-6 m) and under 5 % with the bytes swapped, the flag is wrong.
    Raises:
        ConversionError naming ``is_bigendian`` and both fractions.
    """
    x_dt = arr.dtype.fields["x"][0]
    if x_dt.kind != "f" or x_dt.itemsize < 2 or pts.shape[0] == 0:
        return
    step = max(1, pts.shape[0] // sample)
    native = _implausible_fraction(pts[::step, :3])
    if native <= 0.5:
        return
    cols = [arr[c].reshape(-1)[::step] for c in ("x", "y", "z")]
    swapped = np.stack([c.view(c.dtype.newbyteorder()) for c in cols], axis=1)
    other = _implausible_fraction(swapped)
    if other < 0.05:
        raise ConversionError(
            f"PointCloud2 is_bigendian={is_bigendian} but {native:.0%} of the sampled points are "
            f"implausible read that way and {other:.0%} with the other byte order: the "
            "is_bigendian flag does not match the data")


def cloud_to_msg(points: Union[np.ndarray, Mapping[str, np.ndarray]],
                 header: Optional[Header] = None,
                 height: int = 1, row_padding: int = 0,
                 is_dense: Optional[bool] = None) -> PointCloud2:
    """Build a PointCloud2 from a structured array or a dict of equal-length 1-D arrays.

    Args:
        points: structured array (N,) or (height, width) — its dtype's offsets, itemsize and byte
            order become the field offsets, point_step and is_bigendian (so padding, unusual order
            and big-endian layouts can be produced); or a dict name -> (N,) array packed in dict
            order, little-endian, no padding.
        header: std_msgs/Header (stamp, frame_id); a default Header when None.
        height: rows of an organised cloud (N must be divisible by it) when ``points`` is 1-D.
        row_padding: extra bytes appended to each row (row_step = width*point_step + row_padding).
        is_dense: value of ``is_dense``; None = computed (no NaN/Inf in float fields).
    Returns:
        sensor_msgs/PointCloud2.
    Raises:
        ConversionError: mixed byte orders, unsupported dtypes, lengths that do not match.
    """
    if isinstance(points, Mapping):
        cols = {k: np.asarray(v) for k, v in points.items()}
        lens = {k: v.shape[0] for k, v in cols.items()}
        if len(set(lens.values())) > 1:
            raise ConversionError(f"point dict columns differ in length: {lens}")
        n = next(iter(lens.values())) if lens else 0
        arr = np.empty(n,
                       dtype=[(k, v.dtype.newbyteorder("<") if v.dtype.itemsize > 1 else v.dtype)
                              for k, v in cols.items()])
        for k, v in cols.items():
            arr[k] = v
    else:
        arr = np.asarray(points)
        if arr.dtype.names is None:
            raise ConversionError("points must be a structured array or a dict of columns")
    if arr.ndim == 1:
        if height < 1 or arr.shape[0] % height:
            raise ConversionError(f"{arr.shape[0]} points cannot form {height} rows")
        arr = arr.reshape(height, -1)
    h, w = arr.shape
    dt = arr.dtype
    fields, orders = [], set()
    for name in dt.names:
        fdt, off = dt.fields[name][:2]
        base, count = (fdt.base, int(np.prod(fdt.shape))) if fdt.shape else (fdt, 1)
        if base.itemsize > 1:
            orders.add(">" if (base.byteorder == ">"
                               or (base.byteorder == "=" and sys.byteorder == "big")) else "<")
        fields.append(PointField(name=name, offset=int(off),
                                 datatype=pointfield_datatype(base, name), count=count))
    if len(orders) > 1:
        raise ConversionError("all multi-byte fields must share one byte order")
    big = orders == {">"}
    point_step = dt.itemsize
    raw = np.ascontiguousarray(arr).view(np.uint8).reshape(h, w * point_step)
    if row_padding:
        raw = np.concatenate([raw, np.zeros((h, row_padding), np.uint8)], axis=1)
    if is_dense is None:
        is_dense = True
        for name in dt.names:
            if dt.fields[name][0].base.kind == "f" and not np.isfinite(arr[name]).all():
                is_dense = False
                break
    msg = PointCloud2()
    msg.header = header if header is not None else Header()
    msg.height, msg.width = h, w
    msg.fields = fields
    msg.is_bigendian = big
    msg.point_step = point_step
    msg.row_step = w * point_step + row_padding
    msg.data = raw.tobytes()
    msg.is_dense = bool(is_dense)
    return msg
