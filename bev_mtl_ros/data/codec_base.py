"""What the PointCloud2 and Image codecs share: their errors, size limits and the byte view.

No ROS needed: the decoders work on rclpy messages and on rosbags message objects alike (same
field names), so the node (``ros/conversions.py``) and the bag codec (``data/bag_io.py``) share
them.

* :class:`ConversionError` - every malformed input (the message names the field and values);
  :class:`InputTooLarge` - a message over the node's size limit.
* :func:`check_size` - refuse a message by ``width * height`` before any byte is converted.
* :func:`data_buffer` - ``msg.data`` as a flat uint8 array without copying.

The node's code imports them from :mod:`bev_mtl_ros.ros.conversions`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ConversionError", "InputTooLarge", "check_size", "data_buffer"]


class ConversionError(ValueError):
    """A ROS message cannot be converted.

    Missing field, unknown datatype, inconsistent sizes, unsupported encoding: the message names
    the field and values.
    """


class InputTooLarge(ConversionError):
    """A message exceeds the node's size limit (``max_cloud_points`` / ``max_image_pixels``)."""


def check_size(msg: Any, limit: int, what: str, unit: str, param: str) -> None:
    """Raise InputTooLarge when ``msg.width * msg.height`` exceeds ``limit`` (> 0).

    The message names ``what`` (message type), the size in ``unit``, the MB of ``msg.data`` and
    the parameter ``param`` that sets the limit; ``limit <= 0`` means no limit.
    """
    n = int(msg.width) * int(msg.height)
    if limit > 0 and n > limit:
        raise InputTooLarge(
            f"{what} is {msg.width}x{msg.height} = {n} {unit} ({len(msg.data) / 1e6:.1f} MB) "
            f"> {param} {limit}")


def data_buffer(data: Any) -> np.ndarray:
    """Return ``msg.data`` as a flat uint8 array.

    Accepts array.array('B'), bytes, bytearray, memoryview, a list of ints or an ndarray;
    zero-copy for every buffer-protocol type.
    """
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8)
