"""onnxruntime inference backend (TensorRT -> CUDA -> CPU providers), with CUDA I/O binding.

On ``device="cuda"`` with a CUDA build of torch, torch CUDA inputs and preallocated torch CUDA
outputs are bound by ``data_ptr`` through onnxruntime's I/O binding, so pillars produced on the GPU
never round-trip through the host. Without CUDA in torch (onnxruntime-gpu alone) inputs and
outputs are numpy and onnxruntime copies them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..model.contract import ContractError, ModelContract, contract_from_metadata
from .backend_base import (INPUT_NAMES, OUTPUT_NAMES, ArrayLike, BackendError, InferenceBackend,
                           default_trt_cache_dir, output_shapes, parse_device)

__all__ = ["DEFAULT_SPIN_US", "OnnxRuntimeBackend", "session_options"]

_TRT = "TensorrtExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"

_ORT_NP = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
           "tensor(float16)": np.float16, "tensor(double)": np.float64}
_NP_TORCH = {np.float32: torch.float32, np.int32: torch.int32, np.int64: torch.int64,
             np.float16: torch.float16, np.float64: torch.float64}
_DEFAULT_IN_DTYPES = {"pillars": np.float32, "num_points": np.int32, "canvas_index": np.int64,
                      "image": np.float32, "camera_valid": np.float32}


def _import_onnxruntime():
    """Import onnxruntime (an optional package); separated so tests can simulate its absence."""
    import onnxruntime
    return onnxruntime


def _to_numpy(a: ArrayLike, dtype) -> np.ndarray:
    """Return ``a`` as a contiguous host numpy array of ``dtype`` (copies only when needed)."""
    if isinstance(a, torch.Tensor):
        a = a.detach()
        if a.device.type != "cpu":
            a = a.cpu()
        a = a.numpy()
    return np.ascontiguousarray(a, dtype=dtype)


#: default ``spin_us`` of :class:`OnnxRuntimeBackend` (and the node's ``onnx_spin_us``):
#: onnxruntime's CPU worker threads busy-wait up to 100 us for the graph's next parallel section
#: and stop at the end of each run. Measured on the shipped model, 2 cores (``bench/README.md``,
#: "onnxruntime threads: spin within a run"): network p50 43 -> 32 ms against no spinning, with
#: less process CPU time per frame at 10 Hz (waking blocked threads costs more than the short
#: spin); unbounded spinning (onnxruntime's own default) kept spinning after each run and cost
#: +25 ms of CPU per frame.
DEFAULT_SPIN_US = 100


def session_options(ort, intra_op_threads: Optional[int], spin_us: int):
    """Return the node's onnxruntime SessionOptions: warnings off, thread count, spinning.

    Args:
        ort: the imported ``onnxruntime`` module.
        intra_op_threads: intra-op pool size (None or 0: onnxruntime's choice, one per core).
        spin_us: spinning of the pool's workers within a run, microseconds per wait (0 = none,
            -1 = onnxruntime's unbounded default; :class:`OnnxRuntimeBackend` explains it).
    Raises:
        BackendError: ``spin_us`` below -1.
    """
    spin = int(spin_us)
    if spin < -1:
        raise BackendError(f"spin_us must be >= -1 (0 = no spinning, -1 = onnxruntime's "
                           f"unbounded default), got {spin_us}")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if intra_op_threads:
        so.intra_op_num_threads = int(intra_op_threads)
    # the graph runs sequentially: the inter-op pool is unused and never spins
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.add_session_config_entry("session.intra_op.allow_spinning", "0" if spin == 0 else "1")
    if spin > 0:
        so.add_session_config_entry("session.intra_op.spin_duration_us", str(spin))
        # without this the idle workers keep spinning after the run, on cores that the node's
        # other threads (pillarization, outputs, ROS callbacks) and other processes need
        so.add_session_config_entry("session.force_spinning_stop", "1")
    return so


def _choose_providers(device: str, available: Sequence[str],
                      providers: Optional[Sequence[str]]) -> List[str]:
    """Return the providers to ask for, in order: ``providers`` if given, else by device.

    Raises BackendError for ``device="cuda"`` when onnxruntime has no CUDA/TensorRT provider.
    """
    if providers is not None:
        return list(providers)
    if parse_device(device)[0] == "cpu":
        return [_CPU]
    chosen = [p for p in (_TRT, _CUDA) if p in available]
    if not chosen:
        raise BackendError(f"device={device!r} requested but onnxruntime has no "
                           f"CUDA/TensorRT provider (available: {list(available)}); install "
                           "onnxruntime-gpu or use device='cpu'")
    return chosen + [_CPU]


def _provider_args(chosen: Sequence[str], device_index: int, contract: ModelContract, fp16: bool,
                   trt_cache_dir: str, trt_opt_pillars: Optional[int]) -> List[Any]:
    """Return the ``providers`` argument of InferenceSession: each provider with its options.

    TensorRT gets the engine/timing cache in ``trt_cache_dir`` (created), FP16 and the pillar
    profile (min 1, opt ``trt_opt_pillars`` or max_pillars // 2, max max_pillars); CUDA its device.
    """
    c = contract
    m, f = c.max_points_per_pillar, c.num_decorated_features
    opt = int(trt_opt_pillars or max(1, c.max_pillars // 2))
    prov_args: List[Any] = []
    for p in chosen:
        if p == _TRT:
            os.makedirs(trt_cache_dir, exist_ok=True)
            prov_args.append((p, {
                "device_id": device_index,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": trt_cache_dir,
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": trt_cache_dir,
                "trt_fp16_enable": bool(fp16),
                "trt_profile_min_shapes": f"pillars:1x{m}x{f},num_points:1",
                "trt_profile_opt_shapes": f"pillars:{opt}x{m}x{f},num_points:{opt}",
                "trt_profile_max_shapes":
                    f"pillars:{c.max_pillars}x{m}x{f},num_points:{c.max_pillars}",
            }))
        elif p == _CUDA:
            prov_args.append((p, {"device_id": device_index}))
        else:
            prov_args.append(p)
    return prov_args


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
        spin_us: how long onnxruntime's CPU worker threads busy-wait for the graph's next
            parallel section, microseconds (default :data:`DEFAULT_SPIN_US`); spinning stops at
            the end of every run. 0 = no spinning (threads block and are woken per section);
            -1 = onnxruntime's own default (spinning without a bound, also after the run).

    Raises:
        BackendError: onnxruntime missing, file missing, no metadata contract, session creation
            failure, or no GPU provider for ``device="cuda"``.
    """

    name = "onnxruntime"

    def __init__(self, model_path: str, device: str = "cpu", fp16: bool = False,
                 trt_cache_dir: Optional[str] = None, logger: Any = None,
                 intra_op_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                 trt_opt_pillars: Optional[int] = None, spin_us: int = DEFAULT_SPIN_US):
        try:
            ort = _import_onnxruntime()
        except ImportError as e:
            raise BackendError(f"onnxruntime is not importable: {e}") from e
        if not os.path.isfile(model_path):
            raise BackendError(f"ONNX model not found: {model_path}")
        so = session_options(ort, intra_op_threads, spin_us)
        self._trt_cache_dir = trt_cache_dir or default_trt_cache_dir()
        chosen = _choose_providers(device, list(ort.get_available_providers()), providers)
        # The contract comes first (from the file) because the TensorRT profile needs its shapes.
        contract = self._read_contract(ort, model_path)
        super().__init__(model_path, contract, device, fp16, logger)
        prov_args = _provider_args(chosen, self.device_index, contract, fp16, self._trt_cache_dir,
                                   trt_opt_pillars)
        # TensorRT failing (library, option or engine build problem) falls back to the next
        # provider in the automatic order only
        trt_fallback = providers is None and chosen[0] == _TRT and len(chosen) > 2
        self.session = self._create_session(ort, so, chosen, prov_args, trt_fallback)
        self.providers = list(self.session.get_providers())
        self._check_session(chosen)
        self._in_dtypes = {i.name: _ORT_NP.get(i.type, _DEFAULT_IN_DTYPES.get(i.name, np.float32))
                           for i in self.session.get_inputs()}
        self._use_binding = self.device != "cpu" and torch.cuda.is_available()
        self.logger.info(f"onnxruntime backend: {model_path} on {self.providers}")

    def _create_session(self, ort, so, chosen: Sequence[str], prov_args: Sequence[Any],
                        trt_fallback: bool):
        """Return the InferenceSession; with ``trt_fallback`` retry without TensorRT once.

        Raises BackendError (naming the providers and the errors) when no session can be made.
        """
        path = self.model_path
        try:
            return ort.InferenceSession(path, so, providers=list(prov_args))
        except Exception as e:
            if not trt_fallback:
                raise BackendError(f"onnxruntime could not create a session for {path} with "
                                   f"providers {list(chosen)}: {type(e).__name__}: {e}") from e
            self.logger.warning(f"TensorRT provider failed for {path} ({type(e).__name__}: "
                                f"{e}); trying {list(chosen[1:])}")
            try:
                return ort.InferenceSession(path, so, providers=list(prov_args[1:]))
            except Exception as e2:
                raise BackendError(f"onnxruntime could not create a session for {path} with "
                                   f"providers {list(chosen)} ({type(e).__name__}: {e}) nor "
                                   f"{list(chosen[1:])} ({type(e2).__name__}: {e2})") from e2

    def _check_session(self, chosen: Sequence[str]) -> None:
        """Check the session's active providers and graph names against what was asked for.

        Logs a warning when TensorRT or FP16 is not honoured; raises BackendError when a CUDA
        device fell back to CPU or the graph's inputs/outputs are not INPUT_NAMES/OUTPUT_NAMES.
        """
        path = self.model_path
        if chosen[0] == _TRT and _TRT not in self.providers:
            self.logger.warning(f"TensorRT provider not active for {path}; running on "
                                f"{self.providers}")
        if self.device != "cpu" and not (set(self.providers) & {_TRT, _CUDA}):
            raise BackendError(f"device={self.device!r}: onnxruntime fell back to "
                               f"{self.providers} for {path} (CUDA libraries missing?)")
        if self.fp16 and _TRT not in self.providers:
            self.logger.warning("fp16 requested but only honoured by TensorRT; running FP32 on "
                                f"{self.providers}")
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if set(names_in) != set(INPUT_NAMES) or set(names_out) != set(OUTPUT_NAMES):
            raise BackendError(f"{path}: graph inputs {names_in} / outputs {names_out} do "
                               f"not match {list(INPUT_NAMES)} / {list(OUTPUT_NAMES)}")

    @staticmethod
    def _read_contract(ort, model_path: str) -> ModelContract:
        """Read the contract from the model's metadata.

        Read with the optional onnx package when installed, else through a CPU session.
        """
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
        try:
            return contract_from_metadata(meta, model_path)
        except ContractError as e:
            raise BackendError(str(e)) from e

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
        """Run with I/O binding on CUDA.

        Torch tensors are bound by data_ptr (inputs moved to the device and cast only when
        needed); outputs are preallocated torch CUDA tensors.
        """
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
