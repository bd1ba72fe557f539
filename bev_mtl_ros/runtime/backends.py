"""Inference backends: onnxruntime (TensorRT -> CUDA -> CPU providers) with a PyTorch fallback.

Both backends run the same deployed graph (:class:`bev_mtl_ros.model.network.DeployWrapper`:
inputs ``INPUT_NAMES``, outputs ``OUTPUT_NAMES``, sigmoid on heatmap and drivable), so they give
the same numbers up to float rounding, and both read the model contract from the model file
(ONNX metadata key ``ONNX_CONTRACT_KEY`` / checkpoint key ``"contract"``).

Modules: ``runtime/backend_base.py`` (the :class:`InferenceBackend` interface, errors, names),
``runtime/onnx_backend.py`` (:class:`OnnxRuntimeBackend`), ``runtime/torch_backend.py``
(:class:`TorchBackend`); this module chooses between them and re-exports their public names.

Output placement (``InferenceBackend.infer``):

* ``device="cpu"``: dict of numpy arrays on the host.
* ``device="cuda"``: dict of torch CUDA tensors (no device->host copy; post-processing moves only
  the few values it needs). The onnxruntime backend binds torch CUDA inputs and preallocated torch
  CUDA outputs by ``data_ptr`` through onnxruntime's I/O binding, so pillars produced on the GPU by
  :func:`bev_mtl_ros.runtime.pillarize.pillarize` never round-trip through the host. When the
  installed torch has no CUDA (onnxruntime-gpu alone) inputs and outputs are numpy and onnxruntime
  copies them.

:func:`create_backend` picks the backend: ``auto`` tries onnxruntime first and falls back to
PyTorch with a logged reason (onnxruntime not importable, ``.onnx`` file missing, session/provider
failure); a ``.onnx`` path finds its sibling ``.pt`` for the fallback and vice versa.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from .backend_base import (INPUT_NAMES, OUTPUT_NAMES, BackendError, InferenceBackend,
                           default_trt_cache_dir, output_shapes, parse_device)
from .onnx_backend import OnnxRuntimeBackend
from .torch_backend import TorchBackend

__all__ = ["BackendError", "InferenceBackend", "OnnxRuntimeBackend", "TorchBackend",
           "create_backend", "INPUT_NAMES", "OUTPUT_NAMES", "default_trt_cache_dir",
           "output_shapes"]


def _sibling(path: str, ext: str) -> str:
    """Return ``path`` with its extension replaced by ``ext``."""
    root, _ = os.path.splitext(path)
    return root + ext


def create_backend(model_path: str, backend: str = "auto", device: str = "cpu", fp16: bool = False,
                   trt_cache_dir: Optional[str] = None, logger: Any = None,
                   **kwargs: Any) -> InferenceBackend:
    """Create an inference backend for a model file.

    Args:
        model_path: ``models/<name>.onnx`` or ``models/<name>.pt``; the sibling with the other
            extension is used when the chosen backend needs it.
        backend: "auto" (onnxruntime, else PyTorch with a logged reason), "onnxruntime" or
        "pytorch". device: "cpu", "cuda" or "cuda:N".
        fp16: TensorRT FP16 (onnxruntime) / autocast FP16 (PyTorch on CUDA).
        trt_cache_dir: TensorRT engine cache directory (onnxruntime + TensorRT only).
        logger: logging.Logger-like object (``.info``/``.warning`` taking one string).
        **kwargs: passed to :class:`OnnxRuntimeBackend` (intra_op_threads, providers,
            trt_opt_pillars, spin_us).

    Returns:
        :class:`InferenceBackend` (``.contract`` read from the model file).

    Raises:
        BackendError: unknown backend name or device; the requested backend cannot be created; with
            "auto" when neither onnxruntime nor PyTorch can load the model (message gives both
            reasons); ``device="cuda"`` where neither onnxruntime nor torch has a usable GPU.
    """
    log = logger or logging.getLogger(__name__)
    parse_device(device)
    path = str(model_path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".onnx", ".pt"):
        raise BackendError(f"model_path must end in .onnx or .pt: {path}")
    onnx_path = path if ext == ".onnx" else _sibling(path, ".onnx")
    pt_path = path if ext == ".pt" else _sibling(path, ".pt")
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, device=device, fp16=fp16, trt_cache_dir=trt_cache_dir,
                                  logger=log, **kwargs)
    if backend == "pytorch":
        return TorchBackend(pt_path, device=device, fp16=fp16, logger=log)
    if backend != "auto":
        raise BackendError(f"backend must be 'auto', 'onnxruntime' or 'pytorch', got {backend!r}")
    try:
        return OnnxRuntimeBackend(onnx_path, device=device, fp16=fp16, trt_cache_dir=trt_cache_dir,
                                  logger=log, **kwargs)
    except BackendError as e:
        reason = str(e)
    log.warning(f"onnxruntime backend unavailable ({reason}); falling back to PyTorch with "
                f"{pt_path}")
    try:
        return TorchBackend(pt_path, device=device, fp16=fp16, logger=log)
    except BackendError as e2:
        raise BackendError(f"no backend for {path}: onnxruntime: {reason}; pytorch: {e2}") from e2
