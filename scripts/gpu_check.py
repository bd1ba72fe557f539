#!/usr/bin/env python3
"""GPU check (issue 14): CUDA parity and in-process pipeline timing on a bare CUDA machine.

Needs only Python >= 3.11, torch, numpy, OpenCV, onnx, onnxruntime (CPU or GPU build) and this
package's source tree on ``PYTHONPATH``: no ROS, no PyYAML (nothing imported here pulls them in;
``test/test_gpu_check.py`` proves it with an import blocker). Sections, in order:

1. ``pillarize_parity``: ``runtime.pillarize`` on ``--device`` vs on the CPU, per contract (shipped
   model, default-width network) and scenario (20k points front camera, 120k points 360 deg; the
   synthetic scans of ``bev_mtl_ros.data.synth_scan``), ``--clouds`` seeds each: same pillars
   (cells, point counts, canvas, counters) and decorated features within ``PILLAR_ATOL`` (1e-5,
   issue 14).
2. ``backend_parity``: every output head of the shipped model, PyTorch on the device (FP32 with
   TF32 off, FP32 with torch's default TF32 convolutions, FP16 autocast) and onnxruntime (CPU; CUDA
   / TensorRT when installed) against PyTorch CPU FP32, camera on and off. Error of a head =
   ``max|out - ref| / max(1, max|ref|)``; tolerances ``HEAD_TOL``.
3. ``timing``: ``PerceptionPipeline`` (pillarize -> image resize -> network -> decode -> masks, as
   the node calls it) per model x variant x scenario: p50/p95 of every stage over ``--frames``
   frames after ``--warmup``, the scenario's clouds in turn with one 1920x1208 image.
4. ``acceleration`` (CUDA only): the shipped network at fixed shapes (pillars padded to
   ``max_pillars``) as one captured CUDA graph and through ``torch.compile``; each checked against
   eager outputs, timed in the pipeline, and the verdict says which pays.
5. ``onnxruntime_gpu``: CUDA / TensorRT execution providers, or "not available".

Writes one JSON report (``--out``, rewritten after every section so a killed run leaves what it
had) and a short table (stdout and ``--out`` with ``.md``). Exit status: 0 all parity checks
passed, 1 a parity check failed or a required section raised, 2 the device is unavailable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from bev_mtl_ros.bench import SCENARIOS, summarize_ms
from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.model.network import BevMultiTaskNet
from bev_mtl_ros.runtime.backends import (OUTPUT_NAMES, BackendError, InferenceBackend,
                                          OnnxRuntimeBackend, TorchBackend)
from bev_mtl_ros.runtime.checkpoint import save_checkpoint
from bev_mtl_ros.runtime.pillarize import PillarBatch, pillarize
from bev_mtl_ros.runtime.pipeline import TIMING_KEYS, PerceptionPipeline

SCHEMA = "bev_mtl_ros.gpu_check/1"
#: decorated pillar features, device vs CPU (absolute, metres or scaled intensity; issue 14)
PILLAR_ATOL = 1e-5
#: head error tolerances (error = max|out - ref| / max(1, max|ref|)). Measured on the CPU for the
#: shipped model, 20k points (``max|.|`` vs a float64 run of the same network): FP32 <= 4.1e-6,
#: FP16 autocast <= 5.6e-3, bfloat16 <= 0.23. TF32 keeps FP16's 10-bit mantissa.
HEAD_TOL = {"fp32": 1e-4, "tf32": 2e-2, "fp16": 5e-2}
#: issue 14 targets (shipped model, one H100/H200, in-process pipeline p50, ms)
TARGETS_MS = {"a2d2_front_center": 5.0, "lidar360_64beam": 8.0}
NOT_AVAILABLE = "not available"


# ============================================================================ helpers
def _cuda_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def tf32(enabled: bool):
    """Set torch's TF32 switches for CUDA convolutions and matmuls; restore them on exit."""
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def write_json(path: Path, obj: Dict[str, Any]) -> None:
    """Write ``obj`` as indented JSON through a temporary file (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def environment(device: torch.device) -> Dict[str, Any]:
    """Versions, the device, onnxruntime's providers and whether ROS/YAML modules got loaded."""
    import cv2
    env: Dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
        "opencv": cv2.__version__, "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=f"{props.major}.{props.minor}",
                   cudnn=torch.backends.cudnn.version())
    try:
        import onnx
        env["onnx"] = onnx.__version__
    except ImportError as e:
        env["onnx"] = f"{NOT_AVAILABLE} ({e})"
    try:
        import onnxruntime as ort
        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = list(ort.get_available_providers())
    except ImportError as e:
        env["onnxruntime"] = f"{NOT_AVAILABLE} ({e})"
        env["onnxruntime_providers"] = []
    env["ros_or_yaml_loaded"] = sorted(m for m in ("rclpy", "yaml") if m in sys.modules)
    return env


# ============================================================================ comparisons
def compare_pillars(ref: PillarBatch, got: PillarBatch,
                    atol: float = PILLAR_ATOL) -> Dict[str, Any]:
    """Compare two pillarizations of one cloud (any devices).

    Same pillars = equal (P, coords (P, 2), num_points (P,), canvas_index (H*W,), stats); then the
    decorated features (P, M, F) float32 must agree within ``atol`` (absolute).

    Returns:
        {"pillars", "same_pillars", "mismatch" (what differs, or None), "max_abs_diff",
        "atol", "passed"}.
    """
    r = {k: getattr(ref, k).cpu() for k in ("pillars", "num_points", "coords", "canvas_index")}
    g = {k: getattr(got, k).cpu() for k in ("pillars", "num_points", "coords", "canvas_index")}
    mismatch = None
    if r["pillars"].shape != g["pillars"].shape:
        mismatch = f"shapes {tuple(r['pillars'].shape)} vs {tuple(g['pillars'].shape)}"
    else:
        for k in ("coords", "num_points", "canvas_index"):
            if not torch.equal(r[k], g[k]):
                n = int((r[k] != g[k]).reshape(r[k].shape[0], -1).any(1).sum())
                mismatch = f"{k} differs in {n} rows"
                break
        else:
            if ref.stats.as_dict() != got.stats.as_dict():
                mismatch = f"stats {ref.stats.as_dict()} vs {got.stats.as_dict()}"
    diff = None
    if r["pillars"].shape == g["pillars"].shape and r["pillars"].numel():
        diff = float((r["pillars"] - g["pillars"]).abs().max())
    passed = mismatch is None and (diff is None or diff <= atol)
    return {"pillars": int(ref.pillars.shape[0]), "same_pillars": mismatch is None,
            "mismatch": mismatch, "max_abs_diff": diff, "atol": atol, "passed": passed}


def _np(x: Any) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def compare_heads(ref: Dict[str, Any], got: Dict[str, Any], tol: float) -> Dict[str, Any]:
    """Compare the network outputs of two backends, head by head (:data:`OUTPUT_NAMES`).

    Error of a head = ``max|got - ref| / max(1, max|ref|)`` (absolute for probabilities and small
    regressions, relative for large logits). Also reports, for information, the fraction of
    semantic pixels with the same argmax class and of drivable cells on the same side of 0.5.

    Returns:
        {"heads": {name: {"error", "max_abs_diff", "ref_max_abs", "passed"}}, "tolerance",
        "worst_head", "semantic_argmax_agreement", "drivable_agreement", "passed"}.
    """
    heads: Dict[str, Any] = {}
    for name in OUTPUT_NAMES:
        a, b = _np(ref[name]).astype(np.float64), _np(got[name]).astype(np.float64)
        if a.shape != b.shape:
            heads[name] = {"error": None, "shape": [list(a.shape), list(b.shape)], "passed": False}
            continue
        d = float(np.abs(a - b).max()) if a.size else 0.0
        scale = float(np.abs(a).max()) if a.size else 0.0
        err = d / max(1.0, scale)
        heads[name] = {"error": err, "max_abs_diff": d, "ref_max_abs": scale,
                       "passed": bool(np.isfinite(err) and err <= tol)}
    errs = {k: (v["error"] if v["error"] is not None else float("inf")) for k, v in heads.items()}
    sem_a, sem_b = _np(ref["semantic"]), _np(got["semantic"])
    drv_a, drv_b = _np(ref["drivable"]) >= 0.5, _np(got["drivable"]) >= 0.5
    same_shape = sem_a.shape == sem_b.shape and drv_a.shape == drv_b.shape
    return {"heads": heads, "tolerance": tol, "worst_head": max(errs, key=errs.get),
            "semantic_argmax_agreement": (float((sem_a.argmax(1) == sem_b.argmax(1)).mean())
                                          if same_shape else None),
            "drivable_agreement": float((drv_a == drv_b).mean()) if same_shape else None,
            "passed": all(v["passed"] for v in heads.values())}


def exit_code(report: Dict[str, Any]) -> int:
    """0 when every parity entry passed and no required section failed, else 1."""
    return 0 if not report.get("failures") else 1


# ============================================================================ models & inputs
def build_default_width_model(workdir: Path, seed: int = 0) -> Path:
    """The default-width network (``BevMultiTaskNet(ModelContract())``: the package's default
    contract and widths, randomly initialised with ``seed``) saved as a checkpoint in ``workdir``.
    Same graph and cost as a trained one; its outputs carry no meaning."""
    torch.manual_seed(seed)
    net = BevMultiTaskNet(ModelContract())
    path = workdir / "default_width.pt"
    save_checkpoint(str(path), net, extra={"note": "gpu_check: random init, default widths"})
    return path


def model_summary(backend: TorchBackend) -> Dict[str, Any]:
    """Contract figures and widths of a loaded model, as read from its file."""
    c = backend.contract
    return {"path": backend.model_path, "grid_size": list(c.grid_size),
            "bev_size": list(c.bev_size),
            "max_pillars": c.max_pillars, "max_points_per_pillar": c.max_points_per_pillar,
            "image_size": list(c.image_size), "detection_classes": list(c.detection_classes),
            "semantic_classes": len(c.semantic_classes),
            "parameters": backend.wrapper.net.num_parameters(),
            "widths": dict(backend.wrapper.net.widths)}


def make_clouds(n_clouds: int) -> Dict[str, Dict[str, Any]]:
    """Per scenario of ``bench.SCENARIOS``: ``n_clouds`` synthetic scans (seeds 0..) and one
    image."""
    out = {}
    for name, (n_points, image_wh, fov) in SCENARIOS.items():
        out[name] = {"points": n_points, "image_size": list(image_wh),
                     "clouds": [synthetic_scan(n_points, fov, seed=s) for s in range(n_clouds)],
                     "image": synthetic_image(image_wh, seed=0)}
    return out


def network_inputs(pipe: PerceptionPipeline, points: np.ndarray, image: np.ndarray,
                   camera_valid: float) -> tuple:
    """CPU network inputs of one frame, prepared by the pipeline's own pillarize / image steps."""
    b = pillarize(points, pipe.contract, device="cpu")
    wi, hi = pipe.contract.image_size
    img = pipe.preprocess_image(image).cpu() if camera_valid else torch.zeros((1, 3, hi, wi))
    return (b.pillars, b.num_points, b.canvas_index.unsqueeze(0), img,
            torch.tensor([camera_valid], dtype=torch.float32))


# ============================================================================ fixed-shape network
def static_inputs(contract: ModelContract, device: torch.device) -> List[torch.Tensor]:
    """Zero network inputs at the fixed shapes of :class:`StaticShapeBackend`: pillars
    (max_pillars, M, F) f32, num_points (max_pillars,) i32, canvas_index (1, H*W) i64 (all cells
    empty = max_pillars), image (1, 3, Hi, Wi) f32, camera_valid (1,) f32."""
    c, p_max = contract, int(contract.max_pillars)
    gw, gh = c.grid_size
    wi, hi = c.image_size
    return [torch.zeros((p_max, c.max_points_per_pillar, c.num_decorated_features), device=device),
            torch.zeros((p_max,), dtype=torch.int32, device=device),
            torch.full((1, gw * gh), p_max, dtype=torch.int64, device=device),
            torch.zeros((1, 3, hi, wi), device=device),
            torch.zeros((1,), device=device)]


def fill_static(static: List[torch.Tensor], pillars, num_points, canvas_index, image,
                camera_valid) -> None:
    """Copy one frame's network inputs (P pillars, B = 1) into the buffers of
    :func:`static_inputs`: rows >= P get ``num_points = 0`` (the pillar net gives them a zero
    feature) and empty cells point at ``max_pillars`` (the appended zero row), so the network's
    outputs equal those of the unpadded inputs. Raises BackendError when P > max_pillars."""
    p_max = int(static[0].shape[0])
    p = int(pillars.shape[0])
    if p > p_max:
        raise BackendError(f"{p} pillars exceed max_pillars={p_max}")
    ci = torch.as_tensor(canvas_index).to(static[2].device)
    static[0][:p].copy_(torch.as_tensor(pillars))
    static[1][:p].copy_(torch.as_tensor(num_points))
    static[1][p:].zero_()
    static[2].copy_(torch.where(ci == p, torch.full_like(ci, p_max), ci))
    static[3].copy_(torch.as_tensor(image))
    static[4].copy_(torch.as_tensor(camera_valid))


class StaticShapeBackend(InferenceBackend):
    """The network of a :class:`TorchBackend` at fixed input shapes, as a CUDA graph or compiled.

    Pillars are padded to ``contract.max_pillars`` (:func:`fill_static`), so every frame has the
    same shapes: one captured CUDA graph
    (``mode="cuda_graph"``, ``torch.cuda.CUDAGraph``) or one ``torch.compile`` specialisation
    (``mode="compile"``, ``compile_mode`` e.g. "reduce-overhead" = inductor + CUDA graphs).
    Outputs are float32 CUDA tensors, overwritten by the next call.

    Raises:
        BackendError: the base backend is not on CUDA; RuntimeError from capture / compilation.
    """

    name = "pytorch"

    def __init__(self, base: TorchBackend, mode: str, compile_mode: str = "reduce-overhead"):
        super().__init__(base.model_path, base.contract, base.device, base.fp16, base.logger)
        if not base.device.startswith("cuda"):
            raise BackendError("StaticShapeBackend needs a CUDA TorchBackend")
        self.base, self.mode = base, mode
        suffix = f":{compile_mode}" if mode == "compile" else ""
        self.providers = [f"torch:{base.device}:{mode}{suffix}"]
        dev = torch.device(base.device)
        self.static = static_inputs(base.contract, dev)
        fp16, wrapper = base.fp16, base.wrapper

        def run(*args):
            with torch.autocast("cuda", dtype=torch.float16, enabled=fp16, cache_enabled=False):
                return tuple([o.float() for o in wrapper(*args)])

        if mode == "cuda_graph":
            side = torch.cuda.Stream(device=dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.inference_mode():
                with torch.cuda.stream(side):
                    for _ in range(3):
                        run(*self.static)
                torch.cuda.current_stream(dev).wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.outs = run(*self.static)
            self._fn: Callable[[], tuple] = self._replay
        elif mode == "compile":
            compiled = torch.compile(run, mode=compile_mode, dynamic=False)

            def call() -> tuple:
                with torch.no_grad():
                    return compiled(*self.static)
            self._fn = call
        else:
            raise BackendError(f"mode must be 'cuda_graph' or 'compile', got {mode!r}")

    def _replay(self) -> tuple:
        self.graph.replay()
        return self.outs

    def infer(self, pillars, num_points, canvas_index, image, camera_valid) -> Dict[str, Any]:
        self._check_inputs(pillars, num_points, canvas_index, image, camera_valid)
        fill_static(self.static, pillars, num_points, canvas_index, image, camera_valid)
        return dict(zip(OUTPUT_NAMES, self._fn()))


# ============================================================================ sections
class Check:
    """One run of the check: arguments, models, inputs, the report and its writing."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.device = torch.device(args.device)
        self.t0 = time.monotonic()
        self.out = Path(args.out)
        self.report: Dict[str, Any] = {
            "schema": SCHEMA, "device": str(self.device), "started_utc": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "arguments": vars(args),
            "tolerances": {"pillar_features_abs": PILLAR_ATOL, "heads": HEAD_TOL,
                           "head_error": "max|out - ref| / max(1, max|ref|)"},
            "targets_ms": TARGETS_MS, "failures": [], "errors": {}}
        self.report["environment"] = environment(self.device)
        self.clouds = make_clouds(args.clouds)
        self.cpu = {"shipped": TorchBackend(args.model, device="cpu"),
                    "default_width": TorchBackend(str(build_default_width_model(workdir)),
                                                  device="cpu")}
        self.report["models"] = {k: model_summary(b) for k, b in self.cpu.items()}
        self.report["scenarios"] = {
            k: {"points": v["points"], "image_size": v["image_size"], "clouds": len(v["clouds"])}
            for k, v in self.clouds.items()}
        self.save()

    def elapsed(self) -> float:
        """Seconds since the check started."""
        return time.monotonic() - self.t0

    def save(self) -> None:
        """Update duration and pass/fail and rewrite the JSON report."""
        self.report["duration_s"] = round(self.elapsed(), 1)
        self.report["passed"] = not self.report["failures"]
        write_json(self.out, self.report)

    def section(self, name: str, fn: Callable[[], Any], required: bool) -> None:
        """Run one section, store its result under ``name``; an exception is recorded (and is a
        failure when ``required``). The report is written afterwards."""
        t = time.monotonic()
        try:
            self.report[name] = fn()
        except Exception as e:   # recorded in the report, the run goes on with the next section
            msg = f"{type(e).__name__}: {e}"
            self.report["errors"][name] = msg
            if required:
                self.report["failures"].append(f"{name}: {msg}")
        self.report.setdefault("section_seconds", {})[name] = round(time.monotonic() - t, 1)
        self.save()

    def fail(self, what: str) -> None:
        """Record a parity failure (makes the exit status 1)."""
        self.report["failures"].append(what)

    # ------------------------------------------------------------------ 1. pillarize
    def pillarize_parity(self) -> List[Dict[str, Any]]:
        """Section 1: one row per (model contract, scenario), every cloud compared."""
        rows = []
        for model, backend in self.cpu.items():
            for scen, data in self.clouds.items():
                results = [compare_pillars(pillarize(pts, backend.contract, device="cpu"),
                                           pillarize(pts, backend.contract, device=self.device))
                           for pts in data["clouds"]]
                worst = [r["max_abs_diff"] for r in results if r["max_abs_diff"] is not None]
                row = {"contract_of": model, "scenario": scen, "points": data["points"],
                       "reference": "cpu", "target": str(self.device),
                       "pillars": [r["pillars"] for r in results],
                       "same_pillars": all(r["same_pillars"] for r in results),
                       "mismatches": [r["mismatch"] for r in results if r["mismatch"]],
                       "max_abs_diff": max(worst) if worst else None, "atol": PILLAR_ATOL,
                       "passed": all(r["passed"] for r in results)}
                if self.device.type == "cpu":
                    row["note"] = "CPU vs CPU: no CUDA device, the comparison only runs"
                if not row["passed"]:
                    what = row["mismatches"] or row["max_abs_diff"]
                    self.fail(f"pillarize {model} {scen}: {what}")
                rows.append(row)
        return rows

    # ------------------------------------------------------------------ 2. heads
    def backend_parity(self) -> List[Dict[str, Any]]:
        """Section 2: one row per (backend variant, camera_valid) on the first 20k cloud."""
        ref_be = self.cpu["shipped"]
        pipe = PerceptionPipeline(ref_be, torch_threads=None)
        data = self.clouds["a2d2_front_center"]
        variants: List[tuple] = [("onnxruntime cpu fp32", "fp32", lambda: self._ort("cpu", None))]
        if self.device.type == "cuda":
            dev = str(self.device)
            variants = [
                ("pytorch cuda fp32 (TF32 off)", "fp32",
                 lambda: TorchBackend(self.args.model, dev)),
                ("pytorch cuda fp32 (torch default TF32)", "tf32",
                 lambda: TorchBackend(self.args.model, dev)),
                ("pytorch cuda fp16 autocast", "fp16",
                 lambda: TorchBackend(self.args.model, dev, fp16=True)),
            ] + variants
        frames = {cam: network_inputs(pipe, data["clouds"][0], data["image"], cam)
                  for cam in (1.0, 0.0)}
        refs = {cam: ref_be.infer(*inputs) for cam, inputs in frames.items()}
        on_cuda = self.device.type == "cuda"
        rows = []
        for label, tol_key, make in variants:
            base = {"variant": label, "reference": "pytorch cpu fp32", "model": "shipped"}
            try:
                be = make()
            except BackendError as e:
                if not label.startswith("onnxruntime"):
                    raise
                # onnxruntime (CPU) is a reference here, not the GPU path under test: its absence
                # or a failure to load the model is reported, not a parity failure
                missing = "not importable" in str(e)
                rows.append(dict(base, result=f"{NOT_AVAILABLE if missing else 'error'} ({e})",
                                 passed=None))
                if not missing:
                    self.report["errors"][f"backend_parity {label}"] = str(e)
                continue
            for cam, inputs in frames.items():
                with tf32(tol_key != "fp32") if on_cuda else contextlib.nullcontext():
                    got = be.infer(*inputs)
                row = dict(base, camera_valid=cam, pillars=int(inputs[0].shape[0]),
                           providers=be.providers,
                           **compare_heads(refs[cam], got, HEAD_TOL[tol_key]))
                if not row["passed"]:
                    self.fail(f"heads {label} camera_valid={cam}: worst {row['worst_head']}")
                rows.append(row)
        if self.device.type == "cpu":
            rows.append({"variant": "pytorch fp16 autocast", "result": "skipped: CUDA only",
                         "passed": None})
        return rows

    def _ort(self, device: str, providers: Optional[List[str]], fp16: bool = False):
        onnx_path = str(Path(self.args.model).with_suffix(".onnx"))
        threads = self.args.threads if device == "cpu" else None
        return OnnxRuntimeBackend(onnx_path, device=device, fp16=fp16, providers=providers,
                                  intra_op_threads=threads,
                                  trt_cache_dir=str(Path(tempfile.gettempdir()) / "gpu_check_trt"))

    # ------------------------------------------------------------------ 3. timing
    def time_pipeline(self, backend: InferenceBackend, model: str, variant: str,
                      kind: str = "eager") -> List[Dict[str, Any]]:
        """Pipeline stage timings of one backend over every scenario (``kind``: "eager",
        "accelerated" or "onnxruntime", for the verdict)."""
        pipe = PerceptionPipeline(backend, torch_threads=None)
        rows = []
        for scen, data in self.clouds.items():
            clouds, image = data["clouds"], data["image"]
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            for i in range(self.args.warmup):
                pipe(clouds[i % len(clouds)], image)
            stages: Dict[str, List[float]] = {k: [] for k in TIMING_KEYS}
            pillars, dets = [], []
            for i in range(self.args.frames):
                res = pipe(clouds[i % len(clouds)], image)
                for k in TIMING_KEYS:
                    stages[k].append(res.timings_ms[k])
                if i < len(clouds):
                    st = res.pillar_stats
                    pillars.append(int(st.pillars_occupied - st.pillars_dropped))
                    dets.append(len(res.detections))
            row = {"model": model, "variant": variant, "kind": kind,
                   "providers": backend.providers,
                   "scenario": scen, "points": data["points"], "image_size": data["image_size"],
                   "pillars": pillars, "detections": dets, "frames": self.args.frames,
                   "warmup": self.args.warmup,
                   "stages_ms": {k: summarize_ms(v) for k, v in stages.items()}}
            if self.device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(self.device)
                row["peak_cuda_mib"] = round(peak / 2**20, 1)
            rows.append(row)
            self.report.setdefault("timing", []).append(row)
            self.save()
        return rows

    def timing(self) -> List[Dict[str, Any]]:
        """Section 3: eager PyTorch (and onnxruntime CPU off CUDA) pipelines, both models."""
        self.report["timing"] = []
        paths = {k: b.model_path for k, b in self.cpu.items()}
        if self.device.type == "cpu":
            plan = [(m, "pytorch cpu fp32", lambda m=m: self.cpu[m], "eager") for m in paths]
            plan.append(("shipped", "onnxruntime cpu fp32", lambda: self._ort("cpu", None),
                         "onnxruntime"))
        else:
            dev = str(self.device)
            plan = []
            for m, p in paths.items():
                plan.append((m, "pytorch cuda fp32", lambda p=p: TorchBackend(p, dev), "eager"))
                plan.append((m, "pytorch cuda fp16", lambda p=p: TorchBackend(p, dev, fp16=True),
                             "eager"))
        for model, variant, make, kind in plan:
            try:
                self.time_pipeline(make(), model, variant, kind)
            except BackendError as e:
                if "not importable" not in str(e):
                    raise
                self.report["timing"].append({"model": model, "variant": variant,
                                              "result": f"{NOT_AVAILABLE} ({e})"})
        return self.report["timing"]

    # ------------------------------------------------------------------ 4. acceleration
    def acceleration(self) -> Dict[str, Any]:
        """Section 4: compiled / CUDA-graph shipped network, FP16 and FP32 (CUDA only)."""
        if self.device.type != "cuda":
            return {"result": "skipped: CUDA graphs and torch.compile are checked on CUDA only"}
        out: Dict[str, Any] = {"variants": []}
        self.report["acceleration"] = out
        dev = str(self.device)
        # compile first: a failed graph capture (expected while the network syncs with the host)
        # must not be able to disturb the compiled variants
        modes = [("compile", m) for m in self.args.compile_modes] + [("cuda_graph", None)]
        data = self.clouds["a2d2_front_center"]
        for fp16 in (True, False):
            eager = TorchBackend(self.args.model, dev, fp16=fp16)
            inputs = network_inputs(PerceptionPipeline(eager, torch_threads=None),
                                    data["clouds"][0], data["image"], 1.0)
            ref = eager.infer(*inputs)
            for mode, cmode in modes:
                label = f"pytorch cuda {'fp16' if fp16 else 'fp32'} {mode} {cmode or ''}".strip()
                row: Dict[str, Any] = {"variant": label}
                out["variants"].append(row)
                if self.elapsed() > self.args.budget_s:
                    row["result"] = f"skipped: time budget ({self.args.budget_s} s) spent"
                    continue
                t = time.monotonic()
                try:
                    be = StaticShapeBackend(eager, mode, cmode or "reduce-overhead")
                    got = be.infer(*inputs)
                    _cuda_sync(self.device)
                    row["build_s"] = round(time.monotonic() - t, 1)
                    tol = HEAD_TOL["fp16" if fp16 else "tf32"]
                    row["parity_vs_eager"] = compare_heads(ref, got, tol)
                    if not row["parity_vs_eager"]["passed"]:
                        self.fail(f"acceleration {label}: outputs differ from eager")
                    row["pipeline_p50_ms"] = {r["scenario"]: r["stages_ms"]["total"]["p50"]
                                              for r in self.time_pipeline(be, "shipped", label,
                                                                          "accelerated")}
                except Exception as e:   # capture / compile failures are findings, not crashes
                    row["result"] = f"failed: {type(e).__name__}: {str(e)[:500]}"
                self.save()
        return out

    def verdict(self) -> Dict[str, Any]:
        """Per scenario: the fastest shipped-model pipeline (p50 of the total), the fastest eager
        and accelerated variants, whether acceleration pays (>= 10 % lower p50) and the target."""
        verdict: Dict[str, Any] = {}
        for row in self.report.get("timing", []):
            if row.get("model") != "shipped" or "stages_ms" not in row:
                continue
            kind = row["kind"]
            v = verdict.setdefault(row["scenario"], {})
            p50 = row["stages_ms"]["total"]["p50"]
            if kind not in v or p50 < v[kind]["p50_ms"]:
                v[kind] = {"variant": row["variant"], "p50_ms": p50,
                           "p95_ms": row["stages_ms"]["total"]["p95"]}
        for scen, v in verdict.items():
            best = min(v.values(), key=lambda b: b["p50_ms"])
            v["best"] = best
            v["target_ms"] = TARGETS_MS.get(scen)
            v["target_met"] = (None if self.device.type != "cuda" or v["target_ms"] is None
                               else best["p50_ms"] <= v["target_ms"])
            if "accelerated" in v and "eager" in v:
                gain = 1.0 - v["accelerated"]["p50_ms"] / v["eager"]["p50_ms"]
                v["acceleration_pays"] = gain >= 0.10
                v["acceleration_gain"] = round(gain, 3)
        return verdict

    # ------------------------------------------------------------------ 5. onnxruntime GPU
    def onnxruntime_gpu(self) -> Dict[str, Any]:
        """Section 5: onnxruntime's CUDA / TensorRT providers, or why they are not available."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            return {p: f"{NOT_AVAILABLE} (onnxruntime not importable: {e})"
                    for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")}
        avail = list(ort.get_available_providers())
        res: Dict[str, Any] = {"available_providers": avail}
        cuda, trt = "CUDAExecutionProvider", "TensorrtExecutionProvider"
        cpu = "CPUExecutionProvider"
        chains = {cuda: ([cuda, cpu], False), trt: ([trt, cuda, cpu], True)}
        for prov, (chain, fp16) in chains.items():
            if prov not in avail or self.device.type != "cuda":
                why = "install onnxruntime-gpu" if prov not in avail else "needs --device cuda"
                res[prov] = (f"{NOT_AVAILABLE} (onnxruntime {ort.__version__} providers {avail}; "
                             f"{why})")
                continue
            if self.elapsed() > self.args.budget_s:
                res[prov] = f"skipped: time budget ({self.args.budget_s} s) spent"
                continue
            entry: Dict[str, Any] = {}
            res[prov] = entry
            try:
                be = self._ort(str(self.device), chain, fp16=fp16)
                pipe = PerceptionPipeline(self.cpu["shipped"], torch_threads=None)
                data = self.clouds["a2d2_front_center"]
                inputs = network_inputs(pipe, data["clouds"][0], data["image"], 1.0)
                entry["parity"] = compare_heads(self.cpu["shipped"].infer(*inputs),
                                                be.infer(*inputs),
                                                HEAD_TOL["fp16" if fp16 else "tf32"])
                if not entry["parity"]["passed"]:
                    self.fail(f"onnxruntime {prov}: outputs differ from pytorch cpu fp32")
                entry["pipeline_p50_ms"] = {
                    r["scenario"]: r["stages_ms"]["total"]["p50"]
                    for r in self.time_pipeline(be, "shipped", f"onnxruntime {prov}",
                                                "onnxruntime")}
            except Exception as e:   # a provider that fails to build/run is reported, not fatal
                entry["result"] = f"failed: {type(e).__name__}: {str(e)[:500]}"
        return res


# ============================================================================ table & main
def format_table(report: Dict[str, Any]) -> str:
    """A short Markdown summary of the report."""
    env = report.get("environment", {})
    hw = env.get("gpu", platform.processor() or "CPU")
    lines = [f"# gpu_check on {report['device']} ({hw}), "
             f"torch {env.get('torch')}, {report.get('duration_s')} s: "
             f"{'PASSED' if report.get('passed') else 'FAILED'}", "",
             "| parity | reference | result |", "|---|---|---|"]
    for r in report.get("pillarize_parity", []):
        lines.append(f"| pillarize {r['contract_of']} {r['scenario']} ({r['points']} pts, "
                     f"{len(r['pillars'])} clouds) on {r['target']} | cpu | "
                     f"{'pass' if r['passed'] else 'FAIL'}: same pillars {r['same_pillars']}, "
                     f"max abs {r['max_abs_diff']:.1e} <= {r['atol']:.0e} |")
    for r in report.get("backend_parity", []):
        if "heads" in r:
            w = r["worst_head"]
            res = (f"{'pass' if r['passed'] else 'FAIL'}: worst {w} {r['heads'][w]['error']:.1e} "
                   f"<= {r['tolerance']:.0e}")
            lines.append(f"| heads {r['variant']}, camera {int(r['camera_valid'])} | "
                         f"{r['reference']} | {res} |")
        else:
            lines.append(f"| heads {r['variant']} | | {r.get('result')} |")
    lines += ["", "| model | variant | scenario | pillars | total p50 / p95 ms | network p50 | "
              "pillarize p50 | image p50 | post p50 |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report.get("timing", []):
        if "stages_ms" not in r:
            lines.append(f"| {r['model']} | {r['variant']} | | | {r.get('result')} | | | | |")
            continue
        s = r["stages_ms"]
        lines.append(f"| {r['model']} | {r['variant']} | {r['scenario']} | {max(r['pillars'])} | "
                     f"{s['total']['p50']:.2f} / {s['total']['p95']:.2f} | "
                     f"{s['network']['p50']:.2f} | "
                     f"{s['pillarize']['p50']:.2f} | {s['image_preprocess']['p50']:.2f} | "
                     f"{s['postprocess']['p50']:.2f} |")
    acc = report.get("acceleration", {})
    for v in acc.get("variants", []):
        if "result" in v:
            lines.append(f"- {v['variant']}: {v['result']}")
    for scen, v in report.get("verdict", {}).items():
        b = v["best"]
        pays = ("" if "acceleration_pays" not in v else
                f"; acceleration {'pays' if v['acceleration_pays'] else 'does not pay'} "
                f"({100 * v['acceleration_gain']:.0f} % vs {v['eager']['variant']})")
        met = {None: "not judged off CUDA", True: "met", False: "not met"}[v["target_met"]]
        lines.append(f"- best {scen}: {b['variant']} p50 {b['p50_ms']:.2f} ms (target "
                     f"{v['target_ms']} ms: {met}){pays}")
    if "result" in acc:
        lines.append(f"- acceleration: {acc['result']}")
    for prov, v in report.get("onnxruntime_gpu", {}).items():
        if prov != "available_providers":
            res = v if isinstance(v, str) else v.get("result") or (
                f"parity {'pass' if v['parity']['passed'] else 'FAIL'}, pipeline p50 ms "
                f"{v.get('pipeline_p50_ms')}")
            lines.append(f"- onnxruntime {prov}: {res}")
    for f in report.get("failures", []):
        lines.append(f"- FAILURE: {f}")
    for k, e in report.get("errors", {}).items():
        lines.append(f"- error in {k}: {e}")
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--model", default="models/bev_mtl_default.pt",
                   help="shipped model checkpoint (.pt; its .onnx sibling for onnxruntime)")
    p.add_argument("--out", default="out/gpu_check/gpu_check.json", help="JSON report path")
    p.add_argument("--frames", type=int, default=None,
                   help="timed frames per model/variant/scenario (default 200 on CUDA, 20 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed frames first (20 / 3)")
    p.add_argument("--clouds", type=int, default=4, help="synthetic clouds per scenario (seeds)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: 1 on CPU, unchanged on CUDA)")
    p.add_argument("--compile-modes", nargs="*", default=["reduce-overhead"],
                   help="torch.compile modes to try on CUDA (none: skip torch.compile)")
    p.add_argument("--budget-s", type=float, default=330.0,
                   help="optional sections (CUDA graphs, compile, onnxruntime GPU) are skipped "
                        "once this many seconds have passed")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.frames = args.frames if args.frames is not None else (200 if cuda else 20)
    args.warmup = args.warmup if args.warmup is not None else (20 if cuda else 3)
    if args.threads is None and not cuda:
        args.threads = 1
    if args.frames < 1 or args.warmup < 0 or args.clouds < 1:
        p.error("--frames and --clouds must be >= 1, --warmup >= 0")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run every section; print the table; return the exit status (0 / 1 / 2)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no CUDA "
              "device",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        check = Check(args, Path(tmp))
        check.section("pillarize_parity", check.pillarize_parity, required=True)
        check.section("backend_parity", check.backend_parity, required=True)
        check.section("timing", check.timing, required=True)
        check.section("acceleration", check.acceleration, required=False)
        check.section("onnxruntime_gpu", check.onnxruntime_gpu, required=False)
        check.report["verdict"] = check.verdict()
        check.report["environment"]["ros_or_yaml_loaded"] = sorted(
            m for m in ("rclpy", "yaml") if m in sys.modules)
        check.save()
    table = format_table(check.report)
    Path(args.out).with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    print(f"gpu_check: report {args.out}")
    return exit_code(check.report)


if __name__ == "__main__":
    sys.exit(main())
