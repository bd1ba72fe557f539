"""One frame end to end: points (+ image) -> pillars -> network -> detections and masks.

The masks are the drivable mask and the semantics.

:class:`PerceptionPipeline` is what the ROS node (and the benchmark / evaluation code) calls per
frame. It owns no ROS types: points are an (N, C>=4) float array in the model lidar frame, the
image an (H, W, 3) uint8 RGB array (or None for the lidar-only path).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..model.contract import ModelContract
from .backends import InferenceBackend
from .pillarize import PillarStats, pillarize
from .postprocess import (Detections, PostProcessConfig, decode_detections, drivable_mask,
                          resize_ids, semantic_ids)

__all__ = [
    "FrameResult", "PerceptionPipeline", "TIMING_KEYS", "halve_towards", "preprocess_image",
    "resize_to_input"]

#: keys of FrameResult.timings_ms, in pipeline order
TIMING_KEYS = ("pillarize", "image_preprocess", "network", "postprocess", "total")


@dataclass
class FrameResult:
    """Result of one frame.

    Attributes:
        detections: :class:`Detections` (boxes in the model lidar frame = the cloud's frame).
        drivable: (grid_h, grid_w) uint8 {0, 1} BEV drivable-area mask, row = iy, column = ix.
        semantic: (H, W) uint8 class ids at the *input* image's size (or the ``semantic_size``
            asked for), or None when no image was given (or ``semantic=False`` was asked for).
        pillar_stats: :class:`PillarStats` of the frame's pillarization (dropped points/pillars).
        camera_valid: whether the camera branch was used.
        timings_ms: per-stage wall time in ms, keys :data:`TIMING_KEYS` (CUDA synchronised).
        semantic_net: (Hs, Ws) uint8 class ids at the network's output resolution (the argmax
            before the resize; ``semantic`` is this scaled with
            :func:`~bev_mtl_ros.runtime.postprocess.resize_ids`), None when ``semantic`` is.
            The colour overlay is coloured at this size and then scaled (cheaper, same pixels).
    """

    detections: Detections
    drivable: np.ndarray
    semantic: Optional[np.ndarray]
    pillar_stats: PillarStats
    camera_valid: bool
    timings_ms: Dict[str, float] = field(default_factory=dict)
    semantic_net: Optional[np.ndarray] = None


def halve_towards(image: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """Halve an image with INTER_AREA while it stays at least twice ``size_wh`` on both axes.

    Each halving is a 2x2 box mean (OpenCV's fast integer path when the sides are even).

    Args:
        image: (H, W[, C]) uint8 image.
        size_wh: (width, height) the result must not go below, OpenCV order.
    Returns:
        The image itself when no halving applies, else a new (H / 2**k, W / 2**k[, C]) array.
    """
    import cv2
    wi, hi = int(size_wh[0]), int(size_wh[1])
    h, w = image.shape[:2]
    while w >= 2 * wi and h >= 2 * hi:
        w, h = w // 2, h // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


def resize_to_input(image: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 RGB image to the network's input size (the one resize to it).

    Shrinking is an anti-aliased resampling that costs about a fifth of OpenCV's INTER_AREA at a
    fractional factor: while the image is at least twice the target on both axes it is halved
    with INTER_AREA (:func:`halve_towards`: an exact 2x2 box mean); the remaining factor
    s (1 <= s < 2 on an axis) is low-passed with a 3-tap Gaussian of sigma = s / sqrt(12), the
    standard deviation of a box of width s (the area filter it stands for), then resampled with
    INTER_LINEAR. Enlarging is INTER_LINEAR. The image is returned unchanged at the target size.

    Measured on A2D2's 1920x1208 front camera to 512x320 (one OpenCV thread): 2.3 ms against
    11.1 ms for INTER_AREA, pixels 0.82 grey levels from it on average over the eleven real
    frames; the shipped models' real-frame coarse mIoU moved by +0.0009 (default) and +0.0013
    (street) (bench/README.md, "Camera resize").

    Args:
        image: (H, W, 3) uint8 RGB (any H, W >= 1).
        size_wh: (width, height) of the result, OpenCV order (``contract.image_size``).
    Returns:
        (height, width, 3) uint8, ``image`` itself when it already has that size.
    """
    import cv2
    wi, hi = int(size_wh[0]), int(size_wh[1])
    if image.shape[1::-1] == (wi, hi):
        return image
    image = halve_towards(image, (wi, hi))
    h, w = image.shape[:2]
    sx, sy = w / wi, h / hi
    if sx > 1.0 or sy > 1.0:
        image = cv2.GaussianBlur(image, (3 if sx > 1.0 else 1, 3 if sy > 1.0 else 1),
                                 sigmaX=max(sx, 1.0) / math.sqrt(12.0),
                                 sigmaY=max(sy, 1.0) / math.sqrt(12.0))
    return cv2.resize(image, (wi, hi), interpolation=cv2.INTER_LINEAR)


def preprocess_image(image: np.ndarray, contract: ModelContract,
                     device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """Convert (H, W, 3) uint8 RGB to the network's (1, 3, Hi, Wi) float32 in [0, 1] on ``device``.

    Resized to ``contract.image_size`` (Wi, Hi) with :func:`resize_to_input` (the normalisation
    with the contract's mean / std is inside the network). Raises ValueError for other
    shapes/dtypes.
    """
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
            or image.dtype != np.uint8):
        desc = (f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {desc}")
    image = resize_to_input(image, contract.image_size)
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=False)
    return t.permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0).contiguous()


class PerceptionPipeline:
    """Pillarize -> image preprocessing -> backend -> decoding, for one frame at a time.

    Args:
        backend: an :class:`InferenceBackend` (its ``contract`` drives every stage).
        postprocess_cfg: :class:`PostProcessConfig` (default settings when None).
        drivable_threshold: probability threshold of the drivable-area mask.
        torch_threads: ``torch.set_num_threads`` for this process (process-wide!). "auto" (default)
            sets 1 when the network runs in onnxruntime on the CPU, where torch only does
            pillarization and decoding (small ops), and leaves torch alone otherwise; an int sets
            that; None never touches it. Measured on a shared 2-core machine under load:
            pillarizing 120k points took median 15 ms with 1 torch thread but ~1 s with 2 (OpenMP
            workers contending with onnxruntime's and other processes' threads); idle, 1 thread
            costs ~3 ms.

    Pillarization runs on ``backend.torch_device`` (the GPU for CUDA backends, so the pillars reach
    the network without a host round trip).
    """

    def __init__(self, backend: InferenceBackend,
                 postprocess_cfg: Optional[PostProcessConfig] = None,
                 drivable_threshold: float = 0.5, torch_threads: Union[int, str, None] = "auto"):
        if torch_threads == "auto":
            torch_threads = 1 if (backend.name == "onnxruntime"
                                  and backend.torch_device.type == "cpu") else None
        if torch_threads is not None and int(torch_threads) != torch.get_num_threads():
            logging.getLogger(__name__).info(
                f"PerceptionPipeline: torch.set_num_threads({max(1, int(torch_threads))}) (was "
                f"{torch.get_num_threads()}; torch_threads={torch_threads!r})")
            torch.set_num_threads(max(1, int(torch_threads)))
        self.backend = backend
        self.contract = backend.contract
        self.cfg = postprocess_cfg or PostProcessConfig()
        # fail early on bad class names
        self.cfg.class_thresholds(self.contract.detection_classes)
        self.cfg.class_radii(self.contract.detection_classes)
        self.drivable_threshold = float(drivable_threshold)
        self.device = backend.torch_device
        wi, hi = self.contract.image_size
        self._zero_image = torch.zeros((1, 3, hi, wi), dtype=torch.float32, device=self.device)
        self._cam_on = torch.ones((1,), dtype=torch.float32, device=self.device)
        self._cam_off = torch.zeros((1,), dtype=torch.float32, device=self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def preprocess_image(self, image: np.ndarray) -> torch.Tensor:
        """:func:`preprocess_image` with this pipeline's contract and device."""
        return preprocess_image(image, self.contract, self.device)

    def __call__(self, points: Union[np.ndarray, torch.Tensor], image: Optional[np.ndarray] = None,
                 semantic: bool = True,
                 semantic_size: Optional[Tuple[int, int]] = None) -> FrameResult:
        """Process one frame.

        Args:
            points: (N, C>=4) float [x, y, z, intensity_raw, ...], model lidar frame, metres.
            image: (H, W, 3) uint8 RGB camera image (undistorted, the camera the model was trained
                on), or None for the lidar-only path (zero image, camera_valid = 0, semantic None).
            semantic: build the semantic id mask (argmax resized to the input image, the costly
                part at full camera resolution); False gives ``semantic=None`` (the node's lazy
                outputs: nobody subscribes to it). The network runs the same either way.
            semantic_size: (width, height) of the semantic id mask when it is not the image's
                size: the node passes a reduced image of the camera (undistorted at a lower
                resolution, for the network only) and asks for the mask at the camera's size.

        Returns:
            :class:`FrameResult`.

        Raises:
            PillarizeError / ValueError for malformed points / image; BackendError from the
            backend.
        """
        tm: Dict[str, float] = {}
        t_start = time.perf_counter()
        batch = pillarize(points, self.contract, device=self.device)
        self._sync()
        t1 = time.perf_counter()
        tm["pillarize"] = (t1 - t_start) * 1e3

        if image is None:
            img, cam = self._zero_image, self._cam_off
        else:
            img, cam = self.preprocess_image(image), self._cam_on
        self._sync()
        t2 = time.perf_counter()
        tm["image_preprocess"] = (t2 - t1) * 1e3

        outs = self.backend.infer(batch.pillars, batch.num_points, batch.canvas_index.unsqueeze(0),
                                  img, cam)
        self._sync()
        t3 = time.perf_counter()
        tm["network"] = (t3 - t2) * 1e3

        dets = decode_detections(outs, self.contract, self.cfg)
        drivable = drivable_mask(outs["drivable"], self.drivable_threshold)
        sem = sem_net = None
        if image is not None and semantic:
            sem_net = semantic_ids(outs["semantic"])
            sem = resize_ids(sem_net, semantic_size or (image.shape[1], image.shape[0]))
        t4 = time.perf_counter()
        tm["postprocess"] = (t4 - t3) * 1e3
        tm["total"] = (t4 - t_start) * 1e3
        return FrameResult(detections=dets, drivable=drivable, semantic=sem,
                           pillar_stats=batch.stats, camera_valid=image is not None, timings_ms=tm,
                           semantic_net=sem_net)
