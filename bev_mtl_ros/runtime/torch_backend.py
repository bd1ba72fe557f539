"""PyTorch inference backend: the checkpoint's network in DeployWrapper (the fallback backend)."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from .backend_base import OUTPUT_NAMES, BackendError, InferenceBackend, parse_device

__all__ = ["TorchBackend"]


class TorchBackend(InferenceBackend):
    """PyTorch backend: the checkpoint's network wrapped in DeployWrapper, eval mode, no grad.

    Args:
        model_path: ``.pt`` checkpoint written by ``runtime/checkpoint.save_checkpoint``.
        device: "cpu", "cuda" or "cuda:N" (CUDA needs a CUDA build of torch and a GPU).
        fp16: torch.autocast(float16) on CUDA (outputs cast back to float32); ignored on CPU with a
            warning.
        logger: logging.Logger-like.

    Raises:
        BackendError: file missing/corrupt (wraps CheckpointError/ContractError), or CUDA requested
            but unavailable.
    """

    name = "pytorch"

    def __init__(self, model_path: str, device: str = "cpu", fp16: bool = False,
                 logger: Any = None):
        kind, index = parse_device(device)
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device={device!r} requested but torch has no CUDA device "
                               f"(torch {torch.__version__}, cuda available: False)")
        # the network code is imported only when this fallback is built (not on the ONNX path)
        from ..model.network import DeployWrapper
        from .checkpoint import load_checkpoint
        map_location = "cpu" if kind == "cpu" else f"cuda:{index}"
        try:
            net, contract, _extra = load_checkpoint(model_path, map_location=map_location)
        except (OSError, RuntimeError, ValueError) as e:   # CheckpointError / ContractError
            raise BackendError(f"cannot load PyTorch checkpoint {model_path}: {e}") from e
        super().__init__(model_path, contract, device, fp16, logger)
        self.wrapper = DeployWrapper(net).eval()
        self.providers = [f"torch:{self.device}"]
        if fp16 and kind == "cpu":
            self.logger.warning("fp16 requested on CPU; the PyTorch backend runs FP32 there")
            self.fp16 = False
        self.logger.info(f"PyTorch backend: {model_path} on {self.device}")

    def infer(self, pillars, num_points, canvas_index, image, camera_valid) -> Dict[str, Any]:
        self._check_inputs(pillars, num_points, canvas_index, image, camera_valid)
        dev = torch.device(self.device)

        def t(a, dtype):
            x = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
            return x.to(device=dev, dtype=dtype)

        args = (t(pillars, torch.float32), t(num_points, torch.int32),
                t(canvas_index, torch.int64),
                t(image, torch.float32), t(camera_valid, torch.float32))
        try:
            with torch.inference_mode():
                if self.fp16 and dev.type == "cuda":
                    with torch.autocast(device_type="cuda", dtype=torch.float16):
                        outs = self.wrapper(*args)
                else:
                    outs = self.wrapper(*args)
        except Exception as e:
            raise BackendError(f"PyTorch inference failed ({self.model_path}): "
                               f"{type(e).__name__}: {e}") from e
        outs = [o.float() for o in outs]
        if dev.type == "cpu":
            return {k: o.numpy() for k, o in zip(OUTPUT_NAMES, outs)}
        return dict(zip(OUTPUT_NAMES, outs))

    def close(self) -> None:
        self.wrapper = None
