"""sensor_msgs/Image for the node: the size check and the rclpy builder (cv_bridge's names).

The decoders and the encoding table (:func:`image_to_rgb`, :func:`image_to_array`,
:func:`encoding_layout`, :data:`IMAGE_ENCODINGS`) are ROS-free and live in
:mod:`bev_mtl_ros.data.image_encoding`; :func:`image_to_msg` builds an Image in any of those
encodings from an array already in the encoding's channel order and dtype (cv_bridge's
``cv2_to_imgmsg``). Import these names from :mod:`bev_mtl_ros.ros.conversions` (the codec's
public module).
"""

from __future__ import annotations

import array as pyarray
from typing import Optional

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from bev_mtl_ros.data.codec_base import ConversionError, check_size
from bev_mtl_ros.data.image_encoding import encoding_layout

__all__ = ["check_image_size", "image_to_msg"]


def check_image_size(msg: Image, max_pixels: int) -> None:
    """Refuse an image with more than ``max_pixels`` pixels before any byte is converted.

    Reads only ``width``, ``height`` and ``len(data)``; ``max_pixels <= 0`` = no limit.
    Raises:
        InputTooLarge: naming the size, the bytes and the limit.
    """
    check_size(msg, max_pixels, "Image", "pixels", "max_image_pixels")


def image_to_msg(array: np.ndarray, encoding: str = "rgb8", header: Optional[Header] = None,
                 step: Optional[int] = None) -> Image:
    """Build a sensor_msgs/Image from an array already in ``encoding``'s channel order.

    Args:
        array: (H, W) or (H, W, 1) for one channel, (H, W, C) otherwise, of the encoding's dtype
            (:func:`encoding_layout`: uint8 for rgb8/bgr8/rgba8/bgra8/mono8/bayer_*8/yuv422,
            uint16 for the 16-bit ones, the named type for 8UC3, 16UC1, 32FC1, ...).
        encoding: a sensor_msgs/image_encodings name (case-sensitive).
        header: std_msgs/Header; default Header when None.
        step: row length in bytes (>= W * C * element size); rows are zero-padded; default
            W * C * element size.
    Returns:
        sensor_msgs/Image, little-endian data (``is_bigendian`` False).
    Raises:
        ConversionError: unknown encoding, shape/dtype not matching the encoding, step too small.
    """
    dt, ch = encoding_layout(encoding)
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.dtype.newbyteorder("=") != dt or a.ndim != 3 or a.shape[2] != ch:
        raise ConversionError(f"array {a.dtype} {a.shape} does not match encoding {encoding} "
                              f"({ch} x {dt.name})")
    h, w = a.shape[:2]
    row = w * ch * dt.itemsize
    step = row if step is None else int(step)
    if step < row:
        raise ConversionError(f"step {step} < width {w} * {ch} * {dt.itemsize} bytes = {row}")
    raw = np.ascontiguousarray(a, dtype=dt.newbyteorder("<")).view(np.uint8).reshape(h, row)
    if step > row:
        raw = np.concatenate([raw, np.zeros((h, step - row), np.uint8)], axis=1)
    data = pyarray.array("B")
    data.frombytes(raw.data)  # the pixels' one copy
    # check_fields=True: rosidl's setter then keeps a 'B' array as it is (without, it copies it)
    msg = Image(check_fields=True)
    msg.header = header if header is not None else Header()
    msg.height, msg.width = h, w
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = data
    return msg
