"""A2D2(-format) directory -> rosbag2 (mcap or sqlite3), written with the ``rosbags`` library.

``bev-mtl-ros a2d2-to-bag A2D2_DIR OUT [--storage mcap|sqlite3] [--camera front_center]
[--cloud-frame view|base_link] [--camera-image rect|raw|png] [--period S] [--max-frames N]
[--scene NAME] [--calibration cams_lidars.json] [--compress] [--throughput]``

Topics (type; frame_id), ``<cam>`` = camera name, e.g. ``front_center``:

* ``/a2d2/lidar/points`` (sensor_msgs/PointCloud2; ``cam_<cam>``, or ``base_link``)
* the camera image (``cam_<cam>_optical``), by ``--camera-image``:

  - ``rect`` (default): ``/a2d2/camera/<cam>/image_rect`` (sensor_msgs/Image rgb8, undistorted
    with the calibration);
  - ``raw``: ``/a2d2/camera/<cam>/image_raw`` (sensor_msgs/Image rgb8, the PNG's pixels as
    recorded, distorted);
  - ``png``: ``/a2d2/camera/<cam>/image_raw/compressed`` (sensor_msgs/CompressedImage, format
    "png": the camera PNG file's bytes, unchanged; image_transport's topic naming). The player
    publishes it as a sensor_msgs/Image on ``.../image_raw`` with ``--decompress-images``.
* ``/a2d2/camera/<cam>/camera_info`` (sensor_msgs/CameraInfo; ``cam_<cam>_optical``)
* ``/tf_static`` (tf2_msgs/TFMessage, once, transient_local): ``base_link -> cam_<cam> ->
  cam_<cam>_optical``
* ``/a2d2/ground_truth/boxes`` (vision_msgs/Detection3DArray; ``cam_<cam>``)
* ``/a2d2/ground_truth/semantic`` (sensor_msgs/Image mono8 class ids; ``cam_<cam>_optical``)

* PointCloud2 fields: x, y, z, intensity (float32; A2D2 reflectance 0..255), lidar_id (uint8),
  t (float32, seconds of the point's own timestamp relative to the header stamp); point_step 24,
  little endian, height 1, is_dense False.
* CameraInfo (REP 104) of ``rect``: the undistorted image, K = CamMatrix, P = [CamMatrix | 0],
  R = I, D = 5 zeros, ``plumb_bob``. Of ``raw`` / ``png``: the raw image, K =
  CamMatrixOriginal, D = Distortion of cams_lidars.json (``plumb_bob``, 5 coefficients; a fisheye
  camera: ``equidistant``, 4), R = I, P = [CamMatrix | 0] (the undistorted image's camera matrix,
  as the converter's ``rect`` images and the lidar ``row``/``col`` use it). A node undistorting
  with K, D and P gets the ``rect`` image (the same OpenCV maps,
  :meth:`CameraCalibration.undistort_maps`).
* Detection3DArray: one Detection3D per ``label3D`` box; result class_id = A2D2 class name, score
  1.0, pose = box pose; bbox centre = box centre with a yaw quaternion, size = (length, width,
  height); id = the box's A2D2 id.
* Semantic ground truth: mono8, value = merged class id (index in ``A2D2_SEMANTIC_CLASSES``),
  255 where the undistorted image has no source pixel; always in the undistorted image's geometry
  (that of the node's semantic output), whatever ``--camera-image``.
* ``base_link`` is A2D2's vehicle frame; ``base_link -> cam_<cam>`` comes from cams_lidars.json.
* ``--cloud-frame base_link`` (as a robot records: the lidar driver or merger publishes in the
  vehicle frame) writes the clouds in ``base_link`` (points mapped with the camera's
  view -> vehicle transform, float64 arithmetic, stored float32) and ``/tf_static`` carries the
  full tree of cams_lidars.json: ``base_link -> cam_<name> -> cam_<name>_optical`` for every
  camera (the converted camera first) and ``base_link -> lidar_<name>`` for every lidar. Ground
  truth boxes stay in ``cam_<cam>``. The default (``view``) writes the clouds in ``cam_<cam>``
  and only the converted camera's two transforms.

Stamps: A2D2 time is TAI µs; ROS time is UTC: ``stamp = (t_us - 37 s) * 1000`` ns. Every message of
a frame (cloud included) is stamped with the camera timestamp (``cam_tstamp``), so cloud/image
pairs match exactly (an exact-time synchroniser fires); each point keeps its own time in ``t``. A
frame without a camera sidecar uses the median of its point timestamps. The bag's receive time
equals the header stamp.

``--period S`` re-stamps the frames for a bag of unrelated snapshots (frames of different drives
and days, which recorded stamps would space by months): written frame ``k`` gets
``stamp_0 + k * S`` (``stamp_0`` = the first written frame's own stamp), i.e. every time of the
frame is shifted by one offset, so cloud/image pairs still match exactly and the points' ``t``
(relative to the stamp) is unchanged. The recorded stamps are kept in the bag's custom data:
``bev_mtl_ros.source_stamps`` = JSON list of ``[bag stamp ns, recorded stamp ns, "scene/frame"]``
and ``bev_mtl_ros.stamp_period_s``.

Bag format: ``rosbags.rosbag2.Writer(version=8)``. ROS 2 Humble's reader decodes metadata
fields by ``version >= N`` tests and ignores newer ones; version 8 still stores
``offered_qos_profiles`` as a YAML string (version 9 switched to a list, which Humble cannot
parse). Message definitions come from rosbags' ROS2_HUMBLE type store plus vision_msgs (.msg files
of the installed package): :func:`bev_mtl_ros.data.bag_io.make_typestore`; the bags are read back
with :func:`bev_mtl_ros.data.bag_io.read_bag_messages`. ``custom_data`` is always set (newer
readers parse it as a map).

Bad frames (any :class:`A2D2FormatError`, ``OSError`` or ``ValueError`` while loading) are logged
as a warning, counted and skipped; conversion goes on. Messages of a frame are built completely
before any is written, so a skipped frame leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.a2d2 import (A2D2Dataset, A2D2FormatError, A2D2Frame, read_png_rgb,
                                   tai_us_to_utc_ns)
from bev_mtl_ros.data.bag_io import (MessageTypeError, make_compressed_image, make_detections,
                                     make_header, make_image, make_pointcloud2,
                                     make_transform_stamped, make_typestore, offered_qos)
from bev_mtl_ros.data.calibration import (VIEW_FROM_OPTICAL, Calibration, CameraCalibration,
                                          camera_info_matrices, transform_points)

LOG = logging.getLogger(__name__)

#: Topic names; ``{cam}`` is replaced by the camera name.
TOPICS: Dict[str, str] = {
    "points": "/a2d2/lidar/points",
    "image": "/a2d2/camera/{cam}/image_rect",
    "camera_info": "/a2d2/camera/{cam}/camera_info",
    "tf_static": "/tf_static",
    "boxes": "/a2d2/ground_truth/boxes",
    "semantic": "/a2d2/ground_truth/semantic",
}
BASE_FRAME = "base_link"
#: ``--cloud-frame`` choices: the camera's view frame (A2D2's own) or the vehicle frame.
CLOUD_FRAMES = ("view", "base_link")
#: ``--camera-image`` choices: undistorted rgb8 Image, raw rgb8 Image, raw PNG CompressedImage.
CAMERA_IMAGES = ("rect", "raw", "png")
#: image topic of each ``--camera-image`` choice (``{cam}`` = camera name)
IMAGE_TOPICS: Dict[str, str] = {"rect": "/a2d2/camera/{cam}/image_rect",
                                "raw": "/a2d2/camera/{cam}/image_raw",
                                "png": "/a2d2/camera/{cam}/image_raw/compressed"}

MSGTYPES: Dict[str, str] = {
    "points": "sensor_msgs/msg/PointCloud2",
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "tf_static": "tf2_msgs/msg/TFMessage",
    "boxes": "vision_msgs/msg/Detection3DArray",
    "semantic": "sensor_msgs/msg/Image",
}

#: PointCloud2 point layout written by the converter (little endian, 24 bytes per point).
CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "intensity", "lidar_id", "t"],
                        "formats": ["<f4", "<f4", "<f4", "<f4", "u1", "<f4"],
                        "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})

#: rosbag2 metadata version written (see module docstring).
BAG_VERSION = 8


class BagConversionError(RuntimeError):
    """The conversion cannot start.

    Bad input directory, output exists, unknown option, missing message definitions.
    """


def topic_names(camera: str = "front_center", camera_image: str = "rect") -> Dict[str, str]:
    """Topic names (key of :data:`TOPICS` -> name) with the camera substituted.

    ``camera_image`` (one of :data:`CAMERA_IMAGES`) picks the image topic (:data:`IMAGE_TOPICS`).
    """
    out = {k: v.format(cam=camera) for k, v in TOPICS.items()}
    out["image"] = IMAGE_TOPICS[camera_image].format(cam=camera)
    return out


def message_types(camera_image: str = "rect") -> Dict[str, str]:
    """Message type of each key of :data:`TOPICS` (the image's depends on ``camera_image``)."""
    out = dict(MSGTYPES)
    if camera_image == "png":
        out["image"] = "sensor_msgs/msg/CompressedImage"
    return out


def frame_ids(camera: str = "front_center") -> Dict[str, str]:
    """Return ``{"base": "base_link", "view": "cam_<cam>", "optical": "cam_<cam>_optical"}``."""
    return {"base": BASE_FRAME, "view": f"cam_{camera}", "optical": f"cam_{camera}_optical"}


# ---------------------------------------------------------------------------------------- messages
def cloud_array(frame: A2D2Frame, stamp_ns: int,
                to_frame: Optional[np.ndarray] = None) -> np.ndarray:
    """Return a frame's points as a structured (N,) :data:`CLOUD_DTYPE` array.

    ``t`` = point time - stamp, seconds. ``to_frame``: optional (4, 4) transform applied to the
    points (A2D2 gives them in the camera view frame), computed in float64, e.g. the camera's
    ``view_to_vehicle`` for ``base_link``.
    """
    n = len(frame.points)
    arr = np.zeros(n, dtype=CLOUD_DTYPE)
    xyz = np.asarray(frame.points[:, :3])
    if to_frame is not None:
        xyz = transform_points(to_frame, xyz)
    arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    arr["intensity"] = frame.reflectance
    arr["lidar_id"] = frame.lidar_id
    if n:
        arr["t"] = ((tai_us_to_utc_ns(frame.timestamp) - stamp_ns) * 1e-9).astype(np.float32)
    return arr


def make_camera_info(ts, cam: CameraCalibration, stamp_ns: int, frame_id: str,
                     size: Tuple[int, int], raw: bool = False):
    """Build the sensor_msgs/CameraInfo of the undistorted (default) or the raw image.

    The fields of :func:`~bev_mtl_ros.data.calibration.camera_info_matrices` (``raw``: the
    raw camera's K and D). ``size`` = (width, height) pixels.
    """
    m = camera_info_matrices(cam, raw=raw)
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                       do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=make_header(ts, stamp_ns, frame_id), height=int(size[1]), width=int(size[0]),
        distortion_model=m["distortion_model"], d=m["d"].astype(np.float64),
        k=m["k"].astype(np.float64),
        r=m["r"].astype(np.float64), p=m["p"].astype(np.float64), binning_x=0, binning_y=0,
        roi=roi)


def make_tf_static(ts, cam: CameraCalibration, stamp_ns: int, camera: str,
                   calibration: Optional[Calibration] = None):
    """Build the tf2_msgs/TFMessage of the camera's transforms.

    base_link -> cam_<cam> (A2D2 view -> vehicle transform) and cam_<cam> -> cam_<cam>_optical
    (z forward, x right, y down).

    With ``calibration`` (the full tree): the same two transforms first, then
    ``base_link -> cam_<name> -> cam_<name>_optical`` for every other camera and
    ``base_link -> lidar_<name>`` for every lidar view of ``cams_lidars.json``.
    """
    T_opt = np.eye(4)
    T_opt[:3, :3] = VIEW_FROM_OPTICAL
    cams = [(camera, np.asarray(cam.view_to_vehicle))]
    if calibration is not None:
        cams += [(k, np.asarray(c.view_to_vehicle))
                 for k, c in sorted(calibration.cameras.items()) if k != camera]
    out = []
    for name, V in cams:
        f = frame_ids(name)
        out += [make_transform_stamped(ts, stamp_ns, f["base"], f["view"], V),
                make_transform_stamped(ts, stamp_ns, f["view"], f["optical"], T_opt)]
    if calibration is not None:
        out += [make_transform_stamped(ts, stamp_ns, BASE_FRAME, f"lidar_{k}", np.asarray(V))
                for k, V in sorted(calibration.lidar_views.items())]
    return ts.types["tf2_msgs/msg/TFMessage"](transforms=out)


# ----------------------------------------------------------------------------------------
# conversion
@dataclass
class ConversionStats:
    """Result of :func:`convert`.

    Counts, bag size (bytes), wall time and its split into reading A2D2 files (PNG decode,
    undistortion, label lookup), CDR serialisation and bag writing (s).
    """

    frames_written: int = 0
    frames_skipped: int = 0
    skipped: List[str] = field(default_factory=list)
    messages: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0
    output: str = ""
    load_s: float = 0.0
    serialize_s: float = 0.0
    write_s: float = 0.0
    #: per written frame: (bag stamp ns, the frame's recorded stamp ns, "scene/frame")
    source_stamps: List[Tuple[int, int, str]] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.frames_written / self.seconds if self.seconds > 0 else 0.0


def _frame_stamp_ns(frame: A2D2Frame) -> int:
    us = frame.stamp_us
    if us is None:
        raise A2D2FormatError(f"{frame.scene}/{frame.frame}: no camera timestamp and no lidar "
                              "points: no stamp")
    return tai_us_to_utc_ns(us)


def _dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


@dataclass
class _Target:
    """What every frame of one conversion is written with (typestore, topics, frames)."""

    ds: A2D2Dataset
    ts: Any
    topics: Dict[str, str]            # key of TOPICS -> topic name
    frames: Dict[str, str]            # frame_ids()
    cloud_frame_id: str
    to_base: Optional[np.ndarray]     # (4, 4) view -> vehicle for base_link clouds, else None
    calibration: Optional[Calibration]  # full tf tree for base_link clouds, else None
    camera_image: str = "rect"        # one of CAMERA_IMAGES
    period_ns: Optional[int] = None   # re-stamping period (--period), else None
    msgtypes: Dict[str, str] = field(default_factory=lambda: dict(MSGTYPES))


def _check_options(out: Path, storage: str, cloud_frame: str, camera_image: str = "rect",
                   period_s: Optional[float] = None) -> None:
    """Raise BagConversionError for an unusable option or an existing output.

    Unknown storage, cloud frame or camera image; a period that is not a positive number.
    """
    if cloud_frame not in CLOUD_FRAMES:
        raise BagConversionError(f"unknown cloud frame {cloud_frame!r}; use one of {CLOUD_FRAMES}")
    if camera_image not in CAMERA_IMAGES:
        raise BagConversionError(f"unknown camera image {camera_image!r}; use one of "
                                 f"{CAMERA_IMAGES}")
    if period_s is not None and not (np.isfinite(period_s) and period_s > 0):
        raise BagConversionError(f"period must be a positive number of seconds, got {period_s}")
    if storage not in ("mcap", "sqlite3"):
        raise BagConversionError(f"unknown storage {storage!r}; use mcap or sqlite3")
    if out.exists():
        raise BagConversionError(f"output {out} exists already; not overwriting")


def _frame_indices(ds: A2D2Dataset, a2d2_dir: str, scene: Optional[str],
                   max_frames: Optional[int]) -> List[int]:
    """Return the indices into ``ds.frames`` to convert.

    The scene's frames (all frames without a scene), at most ``max_frames``.

    Raises:
        BagConversionError when the scene has no frames.
    """
    indices = [i for i, r in enumerate(ds.frames)
               if scene is None or r.scene == scene or os.path.basename(r.scene) == scene]
    if scene is not None and not indices:
        raise BagConversionError(f"{a2d2_dir}: no frames of scene {scene!r}; scenes: {ds.scenes}")
    if max_frames is not None:
        indices = indices[: max(0, int(max_frames))]
    return indices


def _open_writer(out: Path, storage: str, compress: bool, tgt: _Target, a2d2_dir: str):
    """Open a rosbag2 Writer with the converter's custom data; return (writer, key -> connection).

    Raises:
        BagConversionError when rosbags cannot create the bag.
    """
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
    from rosbags.rosbag2.errors import WriterError

    writer = Writer(out, version=BAG_VERSION,
                    storage_plugin=StoragePlugin.MCAP if storage == "mcap"
                    else StoragePlugin.SQLITE3)
    if compress:
        writer.set_compression(CompressionMode.STORAGE if storage == "mcap"
                               else CompressionMode.FILE,
                               CompressionFormat.ZSTD)
    writer.set_custom_data("bev_mtl_ros.converter", "a2d2-to-bag")
    writer.set_custom_data("bev_mtl_ros.a2d2_camera", tgt.ds.camera)
    # as given (a relative path keeps a committed bag independent of the checkout's location)
    writer.set_custom_data("bev_mtl_ros.a2d2_source", str(a2d2_dir))
    writer.set_custom_data("bev_mtl_ros.cloud_frame", tgt.cloud_frame_id)
    writer.set_custom_data("bev_mtl_ros.camera_image", tgt.camera_image)
    try:
        writer.open()
    except WriterError as e:
        raise BagConversionError(str(e)) from None
    conns = {}
    for key, topic in tgt.topics.items():
        qos = offered_qos("transient_local", 1) if key == "tf_static" else offered_qos()
        conns[key] = writer.add_connection(topic, tgt.msgtypes[key], typestore=tgt.ts,
                                           offered_qos_profiles=[qos])
    return writer, conns


def png_size(data: bytes, where: str = "PNG") -> Tuple[int, int]:
    """Return (width, height) from a PNG's IHDR chunk, checking it is an 8-bit RGB(A) PNG.

    Reads the header only (the pixels are not decoded; a truncated body is not detected here).

    Raises:
        A2D2FormatError naming ``where``: not a PNG, or not 8-bit RGB / RGBA.
    """
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise A2D2FormatError(f"{where}: not a PNG file")
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    if depth != 8 or colour not in (2, 6):
        raise A2D2FormatError(f"{where}: PNG is not 8-bit RGB/RGBA (bit depth {depth}, colour "
                              f"type {colour})")
    return int(w), int(h)


def _camera_image(tgt: _Target, frame: A2D2Frame):
    """Return the frame's image for ``tgt.camera_image``.

    None (no camera file), (H, W, 3) uint8 RGB (``rect``: undistorted; ``raw``: read from the file
    as recorded, distorted), or the PNG file's bytes (``png``).

    Raises:
        A2D2FormatError when the file is not an 8-bit RGB image of the calibration's size.
    """
    path = frame.paths.get("camera")
    if tgt.camera_image == "rect" or not path:
        return frame.image
    cam = tgt.ds.cam
    if tgt.camera_image == "raw":
        return read_png_rgb(path, (cam.width, cam.height))
    data = Path(path).read_bytes()
    if png_size(data, path) != (cam.width, cam.height):
        raise A2D2FormatError(f"{path}: image is {'x'.join(map(str, png_size(data)))}, "
                              f"calibration expects {cam.width}x{cam.height}")
    return data


def _frame_messages(tgt: _Target, frame: A2D2Frame, has_boxes: bool, stamp: int,
                    with_tf: bool, source_stamp: Optional[int] = None
                    ) -> List[Tuple[str, bytes]]:
    """Serialize the messages of one frame, as (key of TOPICS, CDR bytes), in writing order.

    ``/tf_static`` first when ``with_tf``; then camera info + image (when the frame has an
    image), cloud, ground-truth boxes (when it has a label3D file) and semantics (when labelled).
    All share one stamp; a player keeps this order, so a node has a frame's CameraInfo before its
    image and the image before the cloud that triggers processing (a CompressedImage the player
    decodes is not late). Every header gets ``stamp`` (ns); the points' ``t`` is relative to
    ``source_stamp`` (the frame's own stamp; default ``stamp``).
    """
    ts, fid = tgt.ts, tgt.frames
    msgs: List[Tuple[str, Any]] = []
    if with_tf:
        msgs.append(("tf_static", make_tf_static(ts, tgt.ds.cam, stamp, tgt.ds.camera,
                                                 tgt.calibration)))
    image = _camera_image(tgt, frame)
    if image is not None:
        cam = tgt.ds.cam
        msgs.append(("camera_info", make_camera_info(ts, cam, stamp, fid["optical"],
                                                     (cam.width, cam.height),
                                                     raw=tgt.camera_image != "rect")))
        if tgt.camera_image == "png":
            msgs.append(("image", make_compressed_image(ts, image, stamp, fid["optical"], "png")))
        else:
            msgs.append(("image", make_image(ts, image, stamp, fid["optical"], "rgb8")))
    arr = cloud_array(frame, stamp if source_stamp is None else source_stamp, tgt.to_base)
    msgs.append(("points", make_pointcloud2(ts, arr, stamp, tgt.cloud_frame_id)))
    if has_boxes:
        ids = frame.box_ids or [str(k) for k in range(len(frame.boxes))]
        msgs.append(("boxes", make_detections(ts, frame.boxes, frame.box_classes, ids, stamp,
                                              fid["view"])))
    if frame.semantic is not None:
        msgs.append(("semantic", make_image(ts, frame.semantic, stamp, fid["optical"], "mono8")))
    return [(key, ts.serialize_cdr(m, tgt.msgtypes[key])) for key, m in msgs]


def _write_frames(tgt: _Target, indices: Sequence[int], writer, conns: Dict[str, Any],
                  stats: ConversionStats, progress: bool, desc: str) -> None:
    """Load, build and write every frame of ``indices``; bad frames are counted and skipped."""
    it: Iterable[int] = indices
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(indices), unit="frame", desc=desc, dynamic_ncols=True)
    tf_written = False
    for i in it:
        rec = tgt.ds.frames[i]
        try:
            t0 = time.perf_counter()
            frame = tgt.ds.load_frame(i, load_image=tgt.camera_image == "rect")
            t1 = time.perf_counter()
            stats.load_s += t1 - t0
            source = _frame_stamp_ns(frame)
            stamp = source
            if tgt.period_ns is not None:
                first = stats.source_stamps[0][1] if stats.source_stamps else source
                stamp = first + stats.frames_written * tgt.period_ns
            msgs = _frame_messages(tgt, frame, bool(rec.paths.get("label3D")), stamp,
                                   with_tf=not tf_written, source_stamp=source)
        except (A2D2FormatError, OSError, ValueError, KeyError) as e:
            stats.frames_skipped += 1
            stats.skipped.append(f"{rec.key}: {e}")
            LOG.warning("skipping frame %s (%d skipped so far): %s", rec.key,
                        stats.frames_skipped, e)
            continue
        t2 = time.perf_counter()
        stats.serialize_s += t2 - t1
        for key, data in msgs:
            writer.write(conns[key], stamp, data)
            stats.messages[tgt.topics[key]] += 1
        stats.write_s += time.perf_counter() - t2
        tf_written = True
        stats.frames_written += 1
        stats.source_stamps.append((stamp, source, rec.key))


def convert(a2d2_dir: str, out: str, storage: str = "mcap", camera: str = "front_center",
            max_frames: Optional[int] = None, compress: bool = False, progress: bool = True,
            typestore: Any = None, dataset: Optional[A2D2Dataset] = None,
            scene: Optional[str] = None, cloud_frame: str = "view",
            camera_image: str = "rect", period_s: Optional[float] = None,
            calibration: Optional[str] = None) -> ConversionStats:
    """Convert an A2D2(-format) directory to a rosbag2 directory ``out``.

    Args:
        a2d2_dir: dataset root (see :class:`A2D2Dataset`).
        out: output bag directory (must not exist).
        storage: "mcap" or "sqlite3".
        camera: A2D2 camera name.
        max_frames: convert at most this many frames (in scene/frame order).
        compress: zstd compression: mcap chunk compression, or sqlite3 file compression (both read
            by ``ros2 bag`` and by rosbags).
        progress: show a tqdm progress bar.
        typestore: rosbags typestore to serialize with (default
            :func:`bev_mtl_ros.data.bag_io.make_typestore`: Humble + vision_msgs).
        dataset: an opened :class:`A2D2Dataset` of ``a2d2_dir`` (default: opened here).
        scene: only frames of this scene (folder name, or its path relative to ``a2d2_dir``).
            Without it all scenes go into one bag in scene order; their stamps are those of their
            recording dates, so a multi-scene bag has time jumps between scenes.
        cloud_frame: "view" (clouds in ``cam_<cam>``, A2D2's own frame) or "base_link" (clouds in
            the vehicle frame, full /tf_static tree; see the module docstring).
        camera_image: "rect" (undistorted rgb8 Image), "raw" (rgb8 Image as recorded) or "png"
            (the PNG file's bytes as CompressedImage); see the module docstring.
        period_s: re-stamp written frame k at ``stamp_0 + k * period_s`` (s; None: recorded
            stamps); the recorded ones go to the custom data ``bev_mtl_ros.source_stamps``.
        calibration: path of a ``cams_lidars.json`` (default: found beside the data, else the
            packaged copy of A2D2's; see :class:`A2D2Dataset`).
    Returns:
        :class:`ConversionStats` (frames written/skipped, messages per topic, seconds, bag bytes).
    Raises:
        BagConversionError for an unusable output/input or missing vision_msgs definitions;
        FileNotFoundError for a missing input.
    """
    outp = Path(out)
    _check_options(outp, storage, cloud_frame, camera_image, period_s)
    ds = dataset or A2D2Dataset(a2d2_dir, camera=camera, calibration=calibration)
    LOG.info("%s", ds.scan_report()["summary"])
    try:
        ts = typestore or make_typestore()
    except MessageTypeError as e:
        raise BagConversionError(str(e)) from None
    fid = frame_ids(ds.camera)
    in_base = cloud_frame == "base_link"
    tgt = _Target(ds=ds, ts=ts, topics=topic_names(ds.camera, camera_image), frames=fid,
                  cloud_frame_id=fid["base"] if in_base else fid["view"],
                  to_base=np.asarray(ds.cam.view_to_vehicle, np.float64) if in_base else None,
                  calibration=ds.calibration if in_base else None, camera_image=camera_image,
                  period_ns=None if period_s is None else int(round(period_s * 1e9)),
                  msgtypes=message_types(camera_image))
    indices = _frame_indices(ds, a2d2_dir, scene, max_frames)
    stats = ConversionStats(output=str(outp), messages={t: 0 for t in tgt.topics.values()})
    t_start = time.perf_counter()
    writer, conns = _open_writer(outp, storage, compress, tgt, a2d2_dir)
    try:
        _write_frames(tgt, indices, writer, conns, stats, progress,
                      desc=f"a2d2-to-bag {outp.name}")
        if period_s is not None:
            writer.set_custom_data("bev_mtl_ros.stamp_period_s", repr(float(period_s)))
            writer.set_custom_data("bev_mtl_ros.source_stamps",
                                   json.dumps([list(x) for x in stats.source_stamps]))
    finally:
        writer.close()
    stats.seconds = time.perf_counter() - t_start
    stats.bytes = _dir_size(outp)
    return stats


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros a2d2-to-bag``."""
    parser.add_argument("a2d2_dir", help="A2D2(-format) directory (subset root, scene, or "
                                         "<City>/camera_lidar)")
    parser.add_argument("out", help="output rosbag2 directory (must not exist)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="storage plugin (default mcap)")
    parser.add_argument("--camera", default="front_center",
                        help="A2D2 camera name (default front_center)")
    parser.add_argument("--cloud-frame", choices=CLOUD_FRAMES, default="view",
                        help="frame of the clouds: view = cam_<camera> (A2D2's, default), "
                             "base_link = the vehicle frame with the full /tf_static tree of "
                             "cams_lidars.json")
    parser.add_argument("--camera-image", choices=CAMERA_IMAGES, default="rect",
                        help="rect = undistorted rgb8 Image on image_rect (default); raw = the "
                             "image as recorded (rgb8 Image on image_raw); png = the camera PNG's "
                             "bytes as CompressedImage on image_raw/compressed. raw/png come "
                             "with the raw image's CameraInfo (K, D of cams_lidars.json)")
    parser.add_argument("--period", type=float, default=None, metavar="S",
                        help="re-stamp frame k at first stamp + k*S seconds (for snapshots of "
                             "different drives); the recorded stamps go to the bag's custom data")
    parser.add_argument("--calibration", default=None, metavar="CAMS_LIDARS_JSON",
                        help="A2D2 cams_lidars.json (default: beside the data, else the packaged "
                             "copy of A2D2's)")
    parser.add_argument("--max-frames", type=int, default=None, help="convert at most N frames")
    parser.add_argument("--scene", default=None,
                        help="only this scene (folder name); default all scenes")
    parser.add_argument("--compress", action="store_true",
                        help="zstd compression (mcap chunks / sqlite3 file); ros2 bag and rosbags "
                             "read both")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--throughput", action="store_true",
                        help="print the measured conversion throughput (frames/s, MB/s) at the "
                             "end")


def main(args: argparse.Namespace) -> int:
    """Run the conversion and print a summary.

    Exit code 0 on success (skipped frames are reported, not fatal), 2 when nothing could be
    converted or the input/output is unusable.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        st = convert(args.a2d2_dir, args.out, storage=args.storage, camera=args.camera,
                     max_frames=args.max_frames,
                     compress=args.compress, progress=not args.no_progress, scene=args.scene,
                     cloud_frame=args.cloud_frame, camera_image=args.camera_image,
                     period_s=args.period, calibration=args.calibration)
    except (BagConversionError, FileNotFoundError, KeyError) as e:
        print(f"a2d2-to-bag: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {st.output}: {st.frames_written} frames, {st.frames_skipped} skipped, "
          f"{st.bytes / 1e6:.1f} MB")
    for topic, c in st.messages.items():
        print(f"  {topic}: {c}")
    for s in st.skipped[:20]:
        print(f"  skipped {s}")
    if args.throughput:
        print(f"throughput: {st.frames_per_s:.2f} frames/s, "
              f"{st.bytes / 1e6 / max(st.seconds, 1e-9):.1f} MB/s ({st.seconds:.2f} s: "
              f"read+undistort {st.load_s:.2f} s, serialize {st.serialize_s:.2f} s, write "
              f"{st.write_s:.2f} s)")
    return 0 if st.frames_written > 0 else 2
