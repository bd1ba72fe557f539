"""The model and inference backends the benchmark times, and the network inputs of one frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.bench.config import DEFAULT_MODEL, REPO_ROOT

__all__ = ["REPO_ROOT", "ONNX_NODE_PARAMS", "ensure_model", "export_random_model",
           "backend_variants", "make_backend", "onnx_backend_options", "network_inputs"]


def ensure_model(model: Optional[str], workdir: Path, log=print) -> Tuple[Path, str]:
    """Return (path, description) of the model to benchmark.

    ``model`` if given/exists, else the default model, else a randomly initialised default-width
    network exported to ONNX in ``workdir`` (timings are the same for random weights; detections
    are not). Raises FileNotFoundError when ``model`` is given but missing.
    """
    if model:
        p = Path(model)
        p = p if p.exists() else REPO_ROOT / model
        if not p.exists():
            raise FileNotFoundError(f"model {model} not found")
        return p, str(model)
    p = REPO_ROOT / DEFAULT_MODEL
    if p.exists():
        return p, DEFAULT_MODEL
    out = workdir / "bench_random.onnx"
    log(f"[bench] {DEFAULT_MODEL} missing: exporting a randomly initialised default-width network "
        f"to {out}")
    export_random_model(out)
    return out, "random-init default widths (no trained model present)"


def export_random_model(out: Path, tiny: bool = False, seed: int = 0):
    """Export a randomly initialised network to ONNX; return its ModelContract.

    Default contract, default or tiny widths, written to ``out`` (.onnx) plus the matching
    checkpoint ``out.with_suffix('.pt')`` for the PyTorch backend.
    """
    import torch

    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.model.network import BevMultiTaskNet
    from bev_mtl_ros.runtime.checkpoint import save_checkpoint
    from bev_mtl_ros.runtime.export import export_onnx
    torch.manual_seed(seed)
    contract = ModelContract()
    net = BevMultiTaskNet.tiny(contract) if tiny else BevMultiTaskNet(contract)
    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(str(out.with_suffix(".pt")), net, contract)
    export_onnx(net, contract, str(out), verify=False)
    return contract


def backend_variants(device: str, model_path: Path) -> List[Dict[str, Any]]:
    """Return the backend configurations to time.

    onnxruntime per available provider (CPU FP32; CUDA FP32; TensorRT FP16 — onnxruntime's FP16
    path here is TensorRT's, CPU has none) and PyTorch eager (FP32; autocast FP16 on CUDA) from
    the ``.pt`` checkpoint next to the ONNX file.
    """
    import onnxruntime as ort
    avail = ort.get_available_providers()
    out: List[Dict[str, Any]] = []
    if device == "cpu":
        out.append({"backend": "onnxruntime", "device": "cpu", "fp16": False,
                    "label": "onnxruntime CPUExecutionProvider fp32"})
    else:
        if "TensorrtExecutionProvider" in avail:
            out.append({"backend": "onnxruntime", "device": "cuda", "fp16": True, "tensorrt": True,
                        "label": "onnxruntime TensorrtExecutionProvider fp16"})
        if "CUDAExecutionProvider" in avail:
            out.append({"backend": "onnxruntime", "device": "cuda", "fp16": False,
                        "label": "onnxruntime CUDAExecutionProvider fp32",
                        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
        out.append({"backend": "onnxruntime", "device": "cpu", "fp16": False,
                    "label": "onnxruntime CPUExecutionProvider fp32"})
    out.append({"backend": "pytorch", "device": device, "fp16": False,
                "label": f"pytorch eager {device} fp32"})
    if device != "cpu":
        out.append({"backend": "pytorch", "device": device, "fp16": True,
                    "label": f"pytorch eager {device} fp16"})
    return out


#: node parameters (``bench --node-param``) that the in-process onnxruntime backends take too,
#: with the ``OnnxRuntimeBackend`` argument each sets
ONNX_NODE_PARAMS: Dict[str, str] = {"onnx_spin_us": "spin_us",
                                    "onnx_intra_op_threads": "intra_op_threads"}


def onnx_backend_options(node_params: Sequence[str]) -> Dict[str, Any]:
    """Return the ``OnnxRuntimeBackend`` keyword arguments set by ``name:=value`` node parameters.

    Only the names of :data:`ONNX_NODE_PARAMS` count (integers); the others are the node's alone.
    ``onnx_intra_op_threads:=0`` means onnxruntime's choice (None). Raises ValueError for a value
    that is not an integer.
    """
    out: Dict[str, Any] = {}
    for item in node_params:
        name, _, value = item.partition(":=")
        if name in ONNX_NODE_PARAMS:
            try:
                v = int(value)
            except ValueError:
                raise ValueError(f"--node-param {item}: {name} takes an integer") from None
            out[ONNX_NODE_PARAMS[name]] = (v or None) if name == "onnx_intra_op_threads" else v
    return out


def make_backend(variant: Dict[str, Any], model_path: Path,
                 onnx_options: Optional[Dict[str, Any]] = None):
    """Create the backend of a variant with ``runtime.backends.create_backend``.

    The .pt checkpoint is used for PyTorch when it sits next to the .onnx file. ``onnx_options``
    (:func:`onnx_backend_options`) go to the onnxruntime CPU variants.
    """
    from bev_mtl_ros.runtime.backends import create_backend
    path = model_path   # create_backend uses the sibling .pt for PyTorch
    kwargs: Dict[str, Any] = {"backend": variant["backend"], "device": variant["device"],
                              "fp16": variant["fp16"]}
    if variant.get("tensorrt"):
        kwargs["trt_cache_dir"] = str(REPO_ROOT / ".trt_cache")
    if variant.get("providers") and variant["backend"] == "onnxruntime":
        kwargs["providers"] = variant["providers"]
    if variant["backend"] == "onnxruntime" and variant["device"] == "cpu":
        kwargs.update(onnx_options or {})
    return create_backend(str(path), **kwargs)


def network_inputs(batch, image_rgb: np.ndarray, contract):
    """Return the network inputs of one frame from a PillarBatch and an RGB image.

    Torch tensors on the batch's device (the backends take numpy or torch; CUDA backends then
    avoid host copies): (pillars, num_points, canvas_index (1, H*W), image (1, 3, Hi, Wi) in
    [0, 1], camera_valid (1,)).
    """
    import torch

    from bev_mtl_ros.runtime.pipeline import preprocess_image
    dev = batch.pillars.device
    image = preprocess_image(image_rgb, contract, dev)
    return (batch.pillars, batch.num_points, batch.canvas_index.unsqueeze(0), image,
            torch.ones((1,), dtype=torch.float32, device=dev))
