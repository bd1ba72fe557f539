"""The byte layout of a sensor_msgs/PointCloud2 point as a numpy structured dtype (no ROS needed).

Shared by the node's zero-copy conversions of rclpy messages (``ros/cloud_codec.py``) and the bag
codec for rosbags messages (``data/bag_io.py``): both read ``fields`` / ``point_step`` /
``is_bigendian`` the same way, whichever library built the message object.

Datatype constants as in sensor_msgs/msg/PointField.msg: INT8 = 1, UINT8 = 2, INT16 = 3,
UINT16 = 4, INT32 = 5, UINT32 = 6, FLOAT32 = 7, FLOAT64 = 8.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.codec_base import ConversionError

#: sensor_msgs/PointField datatype constant -> numpy base type (byte order added per message).
POINTFIELD_DTYPES: Dict[int, np.dtype] = {
    1: np.dtype("i1"), 2: np.dtype("u1"), 3: np.dtype("i2"), 4: np.dtype("u2"),
    5: np.dtype("i4"), 6: np.dtype("u4"), 7: np.dtype("f4"), 8: np.dtype("f8"),
}
_NUMPY_TO_POINTFIELD: Dict[Tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in POINTFIELD_DTYPES.items()
}


def cloud_dtype(fields: Sequence[Any], point_step: int, is_bigendian: bool = False) -> np.dtype:
    """Return the numpy structured dtype of one point described by ``PointCloud2.fields``.

    Args:
        fields: sequence of PointField-like objects (name, offset bytes, datatype, count).
        point_step: bytes per point; becomes the dtype's itemsize (trailing padding kept).
        is_bigendian: byte order of multi-byte fields.
    Returns:
        np.dtype with one entry per named field (``count > 1`` gives a sub-array ``(count,)``;
        count 0, sometimes sent by hand-written publishers, is read as one value). Fields may
        overlap (numpy allows it for plain numbers). Fields with an empty name are skipped
        (padding).
    Raises:
        ConversionError: unknown datatype, a field outside ``point_step``, a duplicate name.
    """
    order = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        name = str(f.name)
        if not name:
            continue
        if name in names:
            raise ConversionError(
                f"PointCloud2 field name '{name}' appears twice (offsets "
                f"{offsets[names.index(name)]} and {f.offset}): which one holds the data is "
                "ambiguous")
        base = POINTFIELD_DTYPES.get(int(f.datatype))
        if base is None:
            raise ConversionError(
                f"PointCloud2 field '{name}' has unknown datatype {f.datatype} "
                f"(expected one of {sorted(POINTFIELD_DTYPES)} = INT8..FLOAT64)")
        count = max(1, int(f.count))
        dt = base.newbyteorder(order) if base.itemsize > 1 else base
        end = int(f.offset) + dt.itemsize * count
        if int(f.offset) < 0 or end > point_step:
            raise ConversionError(
                f"PointCloud2 field '{name}' (offset {f.offset}, {count} x {dt.itemsize} bytes) "
                f"does not fit in point_step {point_step}")
        names.append(name)
        formats.append(dt if count == 1 else (dt, (count,)))
        offsets.append(int(f.offset))
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": int(point_step)})


def pointfield_datatype(dt: np.dtype, name: str) -> int:
    """Return the PointField datatype constant of a numpy base type (byte order ignored).

    Raises:
        ConversionError: ``dt`` has no PointField equivalent (e.g. float16, bool, int64).
    """
    code = _NUMPY_TO_POINTFIELD.get((dt.kind, dt.itemsize))
    if code is None:
        raise ConversionError(f"field '{name}' has numpy dtype {dt} with no PointField "
                              "equivalent")
    return code
