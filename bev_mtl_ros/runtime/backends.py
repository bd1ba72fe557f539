"""Inference backends: onnxruntime (TensorRT -> CUDA -> CPU providers) with a PyTorch fallback.

Both backends run the same deployed graph (:class:`bev_mtl_ros.model.network.DeployWrapper`:
inputs ``INPUT_NAMES``, outputs ``OUTPUT_NAMES``, sigmoid on heatmap and drivable), so they give
the same numbers up to float rounding, and both read the model contract from the model file
(ONNX metadata key ``ONNX_CONTRACT_KEY`` / checkpoint key ``"contract"``).

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
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..model.contract import ONNX_CONTRACT_KEY, ContractError, ModelContract

__all__ = ["BackendError", "InferenceBackend", "OnnxRuntimeBackend", "TorchBackend",
           "create_backend", "INPUT_NAMES", "OUTPUT_NAMES", "default_trt_cache_dir"]

#: input / output names of the deployed graph (same as model.network; repeated here so that the
#: onnxruntime backend does not need to import the network code)
INPUT_NAMES: Tuple[str, ...] = ("pillars", "num_points", "canvas_index", "image", "camera_valid")
OUTPUT_NAMES: Tuple[str, ...] = ("heatmap", "offset", "z", "size", "rot", "drivable", "semantic")

_TRT = "TensorrtExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"

_ORT_NP = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
           "tensor(float16)": np.float16, "tensor(double)": np.float64}
_NP_TORCH = {np.float32: torch.float32, np.int32: torch.int32, np.int64: torch.int64,
             np.float16: torch.float16, np.float64: torch.float64}
_DEFAULT_IN_DTYPES = {"pillars": np.float32, "num_points": np.int32, "canvas_index": np.int64,
                      "image": np.float32, "camera_valid": np.float32}


class BackendError(RuntimeError):
    """A backend cannot be created or run (missing file/library/provider/GPU, bad model, bad
    input)."""


ArrayLike = Union[np.ndarray, torch.Tensor]


def default_trt_cache_dir() -> str:
    """``$XDG_CACHE_HOME/bev_mtl_ros/trt`` (``~/.cache/bev_mtl_ros/trt``): where TensorRT engines
    are cached when no ``trt_cache_dir`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bev_mtl_ros", "trt")


def _parse_device(device: str) -> Tuple[str, int]:
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu", 0
    if d == "cuda" or d == "gpu":
        return "cuda", 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise BackendError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def output_shapes(contract: ModelContract, batch: int = 1) -> Dict[str, Tuple[int, ...]]:
    """Shapes of the deployed graph's outputs for ``batch`` frames (all float32)."""
    wb, hb = contract.bev_size
    gw, gh = contract.grid_size
    wi, hi = contract.image_size
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
        kind, index = _parse_device(device)
        self.device = "cpu" if kind == "cpu" else f"cuda:{index}"
        self.device_index = index
        self.fp16 = bool(fp16)
        self.logger = logger or logging.getLogger(__name__)
        self.providers: List[str] = []

    @property
    def torch_device(self) -> torch.device:
        """Where pillarization should place its tensors for this backend (CPU unless the backend
        consumes torch CUDA tensors directly)."""
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


# --------------------------------------------------------------------------------- onnxruntime
def _import_onnxruntime():
    """Import onnxruntime; separated so that tests can simulate its absence."""
    import onnxruntime
    return onnxruntime


def _to_numpy(a: ArrayLike, dtype) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach()
        if a.device.type != "cpu":
            a = a.cpu()
        a = a.numpy()
    return np.ascontiguousarray(a, dtype=dtype)


class OnnxRuntimeBackend(InferenceBackend):
    """onnxruntime session of an exported model (see ``runtime/export.py``).

    Providers, in order, among those installed: TensorRT (``device="cuda"``), CUDA
    (``device="cuda"``), CPU. ``device="cuda"`` without a CUDA/TensorRT provider, or a session that
    silently fell back to CPU, raises :class:`BackendError`.

    TensorRT options: ``trt_engine_cache_enable`` with ``trt_engine_cache_path = trt_cache_dir``
    (default :func:`default_trt_cache_dir`) and the timing cache, ``trt_fp16_enable = fp16``, and
    one optimisation profile for the dynamic pillar count: min 1, opt ``trt_opt_pillars`` (default
    max_pillars // 2), max ``contract.max_pillars`` (so the engine is never rebuilt per frame).
    ``fp16`` has no effect on the CUDA and CPU providers (a warning is logged).

    Args:
        model_path: ``.onnx`` file with the contract in its metadata.
        device: "cpu", "cuda" or "cuda:N".
        fp16: TensorRT FP16.
        trt_cache_dir: TensorRT engine cache directory (created).
        logger: logging.Logger-like (``.info``/``.warning``), e.g. an rclpy node logger.
        intra_op_threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        providers: explicit provider list (overrides the automatic choice).
        trt_opt_pillars: TensorRT profile's optimal pillar count.
        allow_spinning: let onnxruntime's CPU worker threads busy-wait between runs (its default;
            off here because the spinning threads starve pillarization and ROS callbacks on small
            CPUs).

    Raises:
        BackendError: onnxruntime missing, file missing, no metadata contract, session creation
            failure, or no GPU provider for ``device="cuda"``.
    """

    name = "onnxruntime"

    def __init__(self, model_path: str, device: str = "cpu", fp16: bool = False,
                 trt_cache_dir: Optional[str] = None, logger: Any = None,
                 intra_op_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 trt_opt_pillars: Optional[int] = None, allow_spinning: bool = False):
        try:
            ort = _import_onnxruntime()
        except ImportError as e:
            raise BackendError(f"onnxruntime is not importable: {e}") from e
        if not os.path.isfile(model_path):
            raise BackendError(f"ONNX model not found: {model_path}")
        kind, index = _parse_device(device)
        available = list(ort.get_available_providers())
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        if not allow_spinning:
            # onnxruntime's idle worker threads busy-wait after each run by default; in a process
            # that also runs torch (pillarization) and ROS callbacks on few cores they steal the
            # CPU.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._trt_cache_dir = trt_cache_dir or default_trt_cache_dir()
        if providers is not None:
            chosen = [p for p in providers]
        elif kind == "cpu":
            chosen = [_CPU]
        else:
            chosen = [p for p in (_TRT, _CUDA) if p in available]
            if not chosen:
                raise BackendError(f"device={device!r} requested but onnxruntime has no "
                                   f"CUDA/TensorRT provider (available: {available}); install "
                                   "onnxruntime-gpu or use device='cpu'")
            chosen.append(_CPU)
        # The contract comes first (from the file) because the TensorRT profile needs its shapes.
        contract = self._read_contract(ort, model_path)
        super().__init__(model_path, contract, device, fp16, logger)
        c = contract
        m, f = c.max_points_per_pillar, c.num_decorated_features
        opt = int(trt_opt_pillars or max(1, c.max_pillars // 2))
        prov_args: List[Any] = []
        for p in chosen:
            if p == _TRT:
                os.makedirs(self._trt_cache_dir, exist_ok=True)
                prov_args.append((p, {
                    "device_id": index,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": self._trt_cache_dir,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": self._trt_cache_dir,
                    "trt_fp16_enable": bool(fp16),
                    "trt_profile_min_shapes": f"pillars:1x{m}x{f},num_points:1",
                    "trt_profile_opt_shapes": f"pillars:{opt}x{m}x{f},num_points:{opt}",
                    "trt_profile_max_shapes":
                        f"pillars:{c.max_pillars}x{m}x{f},num_points:{c.max_pillars}",
                }))
            elif p == _CUDA:
                prov_args.append((p, {"device_id": index}))
            else:
                prov_args.append(p)
        try:
            self.session = ort.InferenceSession(model_path, so, providers=prov_args)
        except Exception as e:
            if not (providers is None and chosen[0] == _TRT and len(chosen) > 2):
                raise BackendError(f"onnxruntime could not create a session for {model_path} with "
                                   f"providers {chosen}: {type(e).__name__}: {e}") from e
            # TensorRT failed (library, option or engine build problem): next provider in the
            # order.
            self.logger.warning(f"TensorRT provider failed for {model_path} ({type(e).__name__}: "
                                f"{e}); trying {chosen[1:]}")
            try:
                self.session = ort.InferenceSession(model_path, so, providers=prov_args[1:])
            except Exception as e2:
                raise BackendError(f"onnxruntime could not create a session for {model_path} with "
                                   f"providers {chosen} ({type(e).__name__}: {e}) nor "
                                   f"{chosen[1:]} ({type(e2).__name__}: {e2})") from e2
        self.providers = list(self.session.get_providers())
        if chosen[0] == _TRT and _TRT not in self.providers:
            self.logger.warning(f"TensorRT provider not active for {model_path}; running on "
                                f"{self.providers}")
        if kind == "cuda" and not (set(self.providers) & {_TRT, _CUDA}):
            raise BackendError(f"device={device!r}: onnxruntime fell back to {self.providers} for "
                               f"{model_path} (CUDA libraries missing?)")
        if fp16 and _TRT not in self.providers:
            self.logger.warning("fp16 requested but only honoured by TensorRT; running FP32 on "
                                f"{self.providers}")
        self._in_dtypes = {i.name: _ORT_NP.get(i.type, _DEFAULT_IN_DTYPES.get(i.name, np.float32))
                           for i in self.session.get_inputs()}
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if set(names_in) != set(INPUT_NAMES) or set(names_out) != set(OUTPUT_NAMES):
            raise BackendError(f"{model_path}: graph inputs {names_in} / outputs {names_out} do "
                               f"not match {list(INPUT_NAMES)} / {list(OUTPUT_NAMES)}")
        self._use_binding = kind == "cuda" and torch.cuda.is_available()
        self.logger.info(f"onnxruntime backend: {model_path} on {self.providers}")

    @staticmethod
    def _read_contract(ort, model_path: str) -> ModelContract:
        """Contract from the model's metadata (read with the onnx package, else via a CPU
        session)."""
        try:
            try:
                import onnx
            except ImportError:
                meta = dict(ort.InferenceSession(model_path, providers=[_CPU])
                            .get_modelmeta().custom_metadata_map)
            else:
                model = onnx.load(model_path, load_external_data=False)
                meta = {p.key: p.value for p in model.metadata_props}
        except Exception as e:
            raise BackendError(f"{model_path} is not a readable ONNX model: {type(e).__name__}: "
                               f"{e}") from e
        if ONNX_CONTRACT_KEY not in meta:
            raise BackendError(f"{model_path} has no '{ONNX_CONTRACT_KEY}' metadata (not exported "
                               "by bev_mtl_ros?)")
        try:
            return ModelContract.from_json(meta[ONNX_CONTRACT_KEY])
        except (ContractError, TypeError) as e:
            raise BackendError(f"{model_path}: invalid contract metadata: {e}") from e

    def infer(self, pillars, num_points, canvas_index, image, camera_valid) -> Dict[str, Any]:
        self._check_inputs(pillars, num_points, canvas_index, image, camera_valid)
        feeds = dict(zip(INPUT_NAMES, (pillars, num_points, canvas_index, image, camera_valid)))
        try:
            if self._use_binding:
                return self._infer_bound(feeds)
            arrays = {k: _to_numpy(v, self._in_dtypes.get(k, _DEFAULT_IN_DTYPES[k]))
                      for k, v in feeds.items()}
            outs = self.session.run(list(OUTPUT_NAMES), arrays)
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(f"onnxruntime inference failed ({self.model_path}): "
                               f"{type(e).__name__}: {e}") from e
        return dict(zip(OUTPUT_NAMES, outs))

    def _infer_bound(self, feeds: Dict[str, ArrayLike]) -> Dict[str, torch.Tensor]:
        """I/O binding on CUDA: torch tensors are bound by data_ptr (inputs moved to the device and
        cast only when needed); outputs are preallocated torch CUDA tensors."""
        dev = torch.device(self.device)
        binding = self.session.io_binding()
        keep_alive = []
        for name, v in feeds.items():
            np_dt = self._in_dtypes.get(name, _DEFAULT_IN_DTYPES[name])
            t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
            t = t.to(device=dev, dtype=_NP_TORCH[np_dt]).contiguous()
            keep_alive.append(t)
            binding.bind_input(name, "cuda", self.device_index, np_dt, tuple(t.shape),
                               t.data_ptr())
        batch = int(feeds["canvas_index"].shape[0])
        outs = {k: torch.empty(s, dtype=torch.float32, device=dev)
                for k, s in output_shapes(self.contract, batch).items()}
        for name, t in outs.items():
            binding.bind_output(name, "cuda", self.device_index, np.float32, tuple(t.shape),
                                t.data_ptr())
        # inputs written by torch's stream are complete
        torch.cuda.current_stream(dev).synchronize()
        # synchronises onnxruntime's stream on return
        self.session.run_with_iobinding(binding)
        del keep_alive
        return outs

    def close(self) -> None:
        self.session = None


# --------------------------------------------------------------------------------- PyTorch
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
        kind, index = _parse_device(device)
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device={device!r} requested but torch has no CUDA device "
                               f"(torch {torch.__version__}, cuda available: False)")
        from .checkpoint import load_checkpoint
        map_location = "cpu" if kind == "cpu" else f"cuda:{index}"
        try:
            net, contract, _extra = load_checkpoint(model_path, map_location=map_location)
        except (OSError, RuntimeError, ValueError) as e:   # CheckpointError / ContractError
            raise BackendError(f"cannot load PyTorch checkpoint {model_path}: {e}") from e
        super().__init__(model_path, contract, device, fp16, logger)
        from ..model.network import DeployWrapper
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


# --------------------------------------------------------------------------------- factory
def _sibling(path: str, ext: str) -> str:
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
            trt_opt_pillars, allow_spinning).

    Returns:
        :class:`InferenceBackend` (``.contract`` read from the model file).

    Raises:
        BackendError: unknown backend name or device; the requested backend cannot be created; with
            "auto" when neither onnxruntime nor PyTorch can load the model (message gives both
            reasons); ``device="cuda"`` where neither onnxruntime nor torch has a usable GPU.
    """
    log = logger or logging.getLogger(__name__)
    _parse_device(device)
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
