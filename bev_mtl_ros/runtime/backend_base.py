"""Common interface of the inference backends, their errors, device parsing and output shapes.

The backends themselves are in ``runtime/onnx_backend.py`` (onnxruntime) and
``runtime/torch_backend.py`` (PyTorch); ``runtime/backends.py`` chooses one
(:func:`~bev_mtl_ros.runtime.backends.create_backend`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ..model.contract import ModelContract

__all__ = ["BackendError", "InferenceBackend", "ArrayLike", "INPUT_NAMES", "OUTPUT_NAMES",
           "default_trt_cache_dir", "parse_device", "output_shapes"]

#: input / output names of the deployed graph (same as model.network; repeated here so that the
#: onnxruntime backend does not need to import the network code)
INPUT_NAMES: Tuple[str, ...] = ("pillars", "num_points", "canvas_index", "image", "camera_valid")
OUTPUT_NAMES: Tuple[str, ...] = ("heatmap", "offset", "z", "size", "rot", "drivable", "semantic")


class BackendError(RuntimeError):
    """A backend cannot be created or run.

    Causes: missing file/library/provider/GPU, bad model, bad input.
    """


ArrayLike = Union[np.ndarray, torch.Tensor]


def default_trt_cache_dir() -> str:
    """Return where TensorRT engines are cached when no ``trt_cache_dir`` is given.

    ``$XDG_CACHE_HOME/bev_mtl_ros/trt`` (``~/.cache/bev_mtl_ros/trt``).
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bev_mtl_ros", "trt")


def parse_device(device: str) -> Tuple[str, int]:
    """Split "cpu" / "cuda" / "gpu" / "cuda:N" into (kind, index); BackendError otherwise."""
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu", 0
    if d == "cuda" or d == "gpu":
        return "cuda", 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise BackendError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def output_shapes(contract: ModelContract, batch: int = 1) -> Dict[str, Tuple[int, ...]]:
    """Return the shapes of the deployed graph's outputs for ``batch`` frames (all float32)."""
    wb, hb = contract.bev_size
    gw, gh = contract.grid_size
    wi, hi = contract.semantic_size
    k, s = len(contract.detection_classes), len(contract.semantic_classes)
    return {"heatmap": (batch, k, hb, wb), "offset": (batch, 2, hb, wb), "z": (batch, 1, hb, wb),
            "size": (batch, 3, hb, wb), "rot": (batch, 2, hb, wb), "drivable": (batch, 1, gh, gw),
            "semantic": (batch, s, hi, wi)}


class InferenceBackend:
    """Common interface of the inference backends.

    Attributes:
        name: "onnxruntime" or "pytorch".
        device: "cpu" or "cuda:N".
        providers: onnxruntime providers in use (priority order), or ["torch:cpu"] /
        ["torch:cuda:N"]. contract: :class:`ModelContract` read from the model file.
        model_path: the file the model was loaded from.
        fp16: half precision requested (TensorRT FP16 / torch autocast on CUDA).
    """

    name: str = "base"

    def __init__(self, model_path: str, contract: ModelContract, device: str, fp16: bool,
                 logger: Any = None):
        self.model_path = str(model_path)
        self.contract = contract
        kind, index = parse_device(device)
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        self.device_index = index
        self.fp16 = bool(fp16)
        self.logger = logger or logging.getLogger(__name__)
        self.providers: List[str] = []

    @property
    def torch_device(self) -> torch.device:
        """Return where pillarization should place its tensors for this backend.

        CPU unless the backend consumes torch CUDA tensors directly.
        """
        return (torch.device(self.device) if self.device != "cpu" and torch.cuda.is_available()
                else torch.device("cpu"))

    def infer(self, pillars: ArrayLike, num_points: ArrayLike, canvas_index: ArrayLike,
              image: ArrayLike, camera_valid: ArrayLike) -> Dict[str, Any]:
        """Run the network.

        Args (numpy or torch, any device; converted as needed):
            pillars (P, M, F) float32; num_points (P,) int; canvas_index (B, H*W) int64 (P =
            empty); image (B, 3, Hi, Wi) float32 RGB in [0, 1]; camera_valid (B,) float32 1/0.
            The onnxruntime graph is exported with B = 1.

        Returns:
            dict name -> output for every name in OUTPUT_NAMES (float32; numpy on CPU, torch
            tensors on CUDA; shapes see :func:`output_shapes`).

        Raises:
            BackendError: wrong input shapes or a runtime failure (message names the input /
            backend).
        """
        raise NotImplementedError

    def warmup(self, num_pillars: Optional[int] = None) -> None:
        """Run once on a synthetic frame (builds/loads TensorRT engines, allocates CUDA memory)."""
        c = self.contract
        p = int(num_pillars or max(1, c.max_pillars // 4))
        gw, gh = c.grid_size
        wi, hi = c.image_size
        canvas = np.full((1, gw * gh), p, np.int64)
        canvas[0, :p] = np.arange(p)
        self.infer(np.zeros((p, c.max_points_per_pillar, c.num_decorated_features), np.float32),
                   np.ones((p,), np.int32), canvas, np.zeros((1, 3, hi, wi), np.float32),
                   np.zeros((1,), np.float32))

    def close(self) -> None:
        """Release the session / model."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model_path!r}, device={self.device!r}, "
                f"providers={self.providers})")

    def _check_inputs(self, pillars, num_points, canvas_index, image, camera_valid) -> None:
        c = self.contract
        m, f = c.max_points_per_pillar, c.num_decorated_features
        gw, gh = c.grid_size
        wi, hi = c.image_size
        if tuple(pillars.shape[1:]) != (m, f) or len(pillars.shape) != 3:
            raise BackendError(f"{self.name}: input 'pillars' shape {tuple(pillars.shape)}, "
                               f"expected (P, {m}, {f})")
        p = int(pillars.shape[0])
        if tuple(num_points.shape) != (p,):
            raise BackendError(f"{self.name}: input 'num_points' shape {tuple(num_points.shape)}, "
                               f"expected ({p},)")
        if len(canvas_index.shape) != 2 or int(canvas_index.shape[1]) != gw * gh:
            raise BackendError(f"{self.name}: input 'canvas_index' shape "
                               f"{tuple(canvas_index.shape)}, expected (B, {gw * gh})")
        b = int(canvas_index.shape[0])
        if tuple(image.shape) != (b, 3, hi, wi):
            raise BackendError(f"{self.name}: input 'image' shape {tuple(image.shape)}, expected "
                               f"({b}, 3, {hi}, {wi})")
        if tuple(camera_valid.shape) != (b,):
            raise BackendError(f"{self.name}: input 'camera_valid' shape "
                               f"{tuple(camera_valid.shape)}, expected ({b},)")
