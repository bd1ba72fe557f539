"""sensor_msgs/Image -> numpy with cv_bridge's encoding names and conventions (no ROS needed).

The decoders read only the message fields (``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data``), so rclpy messages and rosbags message objects decode alike: the node
(through ``ros/conversions.py``) and the bag codec (``data/bag_io.py``) use this one module.

Encodings (``sensor_msgs/image_encodings.hpp`` names, case-sensitive, as cv_bridge reads them):

==========================================  =========  =========  ============================
encoding                                    dtype      channels   channel order
==========================================  =========  =========  ============================
``rgb8`` ``bgr8`` ``rgba8`` ``bgra8``       uint8      3 / 4      as named (alpha last)
``rgb16`` ``bgr16`` ``rgba16`` ``bgra16``   uint16     3 / 4      as named
``mono8`` / ``mono16``                      uint8/16   1          grey
``bayer_{rggb,bggr,gbrg,grbg}{8,16}``       uint8/16   1          colour-filter mosaic
``yuv422`` (UYVY) / ``yuv422_yuy2`` (YUYV)  uint8      2          U Y0 V Y1 / Y0 U Y1 V
``8UC1`` .. ``64FC4`` (``{8U,8S,16U,16S,    as named   1..4       none (a plain array)
32S,32F,64F}C{1..4}``)
==========================================  =========  =========  ============================

:func:`image_to_array` returns the pixels as they are (cv_bridge's ``passthrough``): (H, W) or
(H, W, C) of the encoding's dtype in native byte order (``is_bigendian`` is honoured for
multi-byte encodings, as cv_bridge does). :func:`image_to_rgb` gives the network's (H, W, 3)
uint8 RGB from every colour, mono, Bayer and YUV encoding (cv_bridge's ``imgmsg_to_cv2(msg,
"rgb8")``): colour conversion first (Bayer demosaicing with cv_bridge's OpenCV codes: RGGB =
``COLOR_BayerBG2RGB`` and so on), then 16-bit values scaled by 255/65535 and rounded
(``convertTo``, as cv_bridge scales between 16 and 8 bits); alpha is dropped, grey replicated.
The generic ``nUCk``-style encodings carry no channel order, so - like cv_bridge, which refuses
to turn e.g. ``8UC3`` into ``rgb8`` - image_to_rgb refuses them (:func:`image_to_array` reads
them). Rows are read ``step`` bytes apart, so padded rows are handled; ``rgb8`` without padding is
returned as a zero-copy view of ``msg.data``.

The resize to the network input is ``runtime/pipeline.py::resize_to_input``. The rclpy builder
(cv_bridge's ``cv2_to_imgmsg``) is ``ros/image_codec.py::image_to_msg``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Tuple

import cv2
import numpy as np

from bev_mtl_ros.data.codec_base import ConversionError, data_buffer

__all__ = ["IMAGE_ENCODINGS", "encoding_layout", "image_to_array", "image_to_rgb"]

_U8, _U16 = np.dtype("u1"), np.dtype("u2")

#: Named encodings (colour, mono, Bayer, YUV) -> channels per pixel. The generic
#: ``{8U,8S,16U,16S,32S,32F,64F}C{1..4}`` names are accepted too (:func:`encoding_layout`).
IMAGE_ENCODINGS: Dict[str, int] = {
    "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1,
    "rgb16": 3, "bgr16": 3, "rgba16": 4, "bgra16": 4, "mono16": 1,
    **{f"bayer_{p}{bits}": 1 for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
    "yuv422": 2, "yuv422_yuy2": 2,
}

#: encoding (without bit depth) -> OpenCV code to RGB; None = already RGB
_TO_RGB = {
    "rgb": None, "bgr": cv2.COLOR_BGR2RGB, "rgba": cv2.COLOR_RGBA2RGB,
    "bgra": cv2.COLOR_BGRA2RGB, "mono": cv2.COLOR_GRAY2RGB,
    # cv_bridge's table: OpenCV names a Bayer pattern by the second row's first two pixels
    "bayer_rggb": cv2.COLOR_BayerBG2RGB, "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB, "bayer_grbg": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}

_GENERIC = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$")
_GENERIC_DTYPES = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4",
                   "64F": "f8"}


def encoding_layout(encoding: str) -> Tuple[np.dtype, int]:
    """Return (numpy dtype, channels) of one pixel of ``encoding`` (cv_bridge's names).

    Raises:
        ConversionError: an encoding cv_bridge does not name, or one this module does not read
        (e.g. ``nv21``); names are case-sensitive.
    """
    ch = IMAGE_ENCODINGS.get(encoding)
    if ch is not None:
        return (_U16 if encoding.endswith("16") else _U8), ch
    m = _GENERIC.match(encoding)
    if m:
        return np.dtype(_GENERIC_DTYPES[m.group(1)]), int(m.group(2))
    raise ConversionError(f"Image encoding '{encoding}' unsupported; use one of "
                          f"{sorted(IMAGE_ENCODINGS)} or a generic one such as 8UC3, 16UC1, "
                          "32FC1 (sensor_msgs/image_encodings names, case-sensitive)")


def image_to_array(msg: Any) -> np.ndarray:
    """Return the pixels of an Image as they are (cv_bridge's ``passthrough``).

    Args:
        msg: sensor_msgs/Image in any encoding of :func:`encoding_layout`; rows ``step`` bytes
            apart; ``is_bigendian`` gives the byte order of multi-byte encodings.
    Returns:
        (H, W) for one channel, else (H, W, C), of the encoding's dtype in native byte order:
        a view of ``msg.data`` when the byte order is native (do not modify it), else a
        byte-swapped copy.
    Raises:
        ConversionError: unsupported encoding, an empty image, ``step`` shorter than a row or
        not a multiple of the element size, ``len(data) != step * height``.
    """
    enc = str(msg.encoding)
    dt, ch = encoding_layout(enc)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = data_buffer(msg.data)
    if h == 0 or w == 0:
        raise ConversionError(f"Image is empty ({w}x{h})")
    row = w * ch * dt.itemsize
    if step < row:
        raise ConversionError(f"Image step {step} < width {w} * {ch} channels * "
                              f"{dt.itemsize} bytes ({enc}) = {row}")
    if step % dt.itemsize:
        raise ConversionError(f"Image step {step} is not a multiple of the {dt.itemsize}-byte "
                              f"elements of {enc}")
    if buf.size != step * h:
        raise ConversionError(f"Image data has {buf.size} bytes, expected step {step} * height "
                              f"{h} = {step * h}")
    stored = dt.newbyteorder(">" if msg.is_bigendian else "<") if dt.itemsize > 1 else dt
    view = np.ndarray(shape=(h, w, ch), dtype=stored, buffer=buf,
                      strides=(step, ch * dt.itemsize, dt.itemsize))
    if not stored.isnative:
        view = view.astype(dt.newbyteorder("="))  # cv_bridge swaps the bytes too
    return view[..., 0] if ch == 1 else view


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (cv_bridge's ``imgmsg_to_cv2(msg, "rgb8")``).

    Args:
        msg: Image in a colour, mono, Bayer or YUV encoding (see the module docstring).
    Returns:
        (height, width, 3) uint8 RGB, C-contiguous. For rgb8 without row padding this is a
        zero-copy view of ``msg.data`` (do not modify it); otherwise a new array. Alpha is
        dropped, mono is replicated to three channels, 16-bit values are scaled by 255/65535.
    Raises:
        ConversionError: unsupported or generic (``8UC3``-style, no channel order) encoding,
        ``step < width * channels * bytes``, ``len(data) != step * height``, a yuv422 image of
        odd width.
    """
    enc = str(msg.encoding)
    if _GENERIC.match(enc):
        raise ConversionError(
            f"Image encoding '{enc}' has no channel order: cv_bridge does not convert it to "
            "rgb8 either; publish rgb8, bgr8, mono8 (or another colour/mono encoding)")
    pixels = image_to_array(msg)
    if enc.startswith("yuv422") and pixels.shape[1] % 2:
        raise ConversionError(f"Image '{enc}' has odd width {msg.width}: two pixels share one "
                              "U and V sample, the width must be even")
    base = enc[:-2] if enc.endswith("16") else enc[:-1] if enc.endswith("8") else enc
    if enc == "rgb8":
        return pixels if pixels.flags.c_contiguous else np.ascontiguousarray(pixels)
    code = _TO_RGB[base]
    try:  # OpenCV reads padded rows through the row stride (no copy)
        rgb = pixels if code is None else cv2.cvtColor(pixels, code)
    except cv2.error as e:
        raise ConversionError(f"Image {msg.width}x{msg.height} '{enc}' cannot be converted to "
                              f"rgb8: {str(e).strip().splitlines()[-1]}") from None
    if rgb.dtype != np.uint8:  # 16-bit: cv_bridge's convertTo(..., 255.0 / 65535.0)
        rgb = cv2.convertScaleAbs(rgb, alpha=255.0 / 65535.0)
    return np.ascontiguousarray(rgb)
