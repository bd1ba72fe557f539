"""``bev-mtl-ros bench``: per-stage latency benchmark anyone can rerun (issue 7: "FPS claims that
don't reproduce").

Stages, each timed separately over ``--frames`` frames after ``--warmup`` frames (p50 / p95 / max,
ms):

* ``cloud_to_numpy`` / ``image_to_numpy`` — rclpy PointCloud2 / Image -> numpy
  (``ros.conversions.cloud_to_xyzi`` / ``image_to_rgb`` + resize to the network input);
* ``pillarize`` — ``runtime.pillarize`` on the chosen device, compared with a reference
  implementation: spconv's ``PointToVoxel`` when importable (``--spconv-path``), and always a naive
  dict-based numpy/Python reference written here; both must yield the same pillars;
* ``network[<backend>]`` — one forward pass: onnxruntime with every available execution provider,
  FP32 and FP16 where supported, and PyTorch eager, side by side, with the ratio to the fastest;
* ``postprocess`` — heat-map peak decoding + NMS and the masks (``runtime.postprocess``);
* ``build_messages`` — Detection3DArray/MarkerArray/mask Images (the node's message builders);
* ``end_to_end_dds`` — cloud (+ image) published by this process -> detections received from the
  node running as a separate process over DDS (closed loop: next frame after the answer).

Input sizes: A2D2 front-center (20k points, 1920x1208 image), a 360-degree 64-beam scan (120k
points), and a scaling series 10k -> 200k points. Clouds are synthetic scans of a ground plane
with box-shaped obstacles (same generator for every backend, fixed seed).

Peak host memory (``resource.getrusage`` ru_maxrss) and, on CUDA, peak device memory
(``torch.cuda.max_memory_allocated``) are reported. Output: a text table and ``--json OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "models/bev_mtl_default.onnx"
#: where ``pip install --target build/bench-spconv spconv`` puts the optional reference
DEFAULT_SPCONV_PATH = "build/bench-spconv"

SCENARIOS: Dict[str, Tuple[int, Tuple[int, int], str]] = {
    "a2d2_front_center": (20_000, (1920, 1208), "front"),
    "lidar360_64beam": (120_000, (1920, 1208), "360"),
}
SCALING_POINTS = (10_000, 25_000, 50_000, 100_000, 200_000)


# ====================================================================== timing helpers
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def time_stage(fn: Callable[[], Any], frames: int, warmup: int,
               device: str = "cpu") -> Dict[str, float]:
    """Call ``fn`` warmup + frames times; return {p50, p95, max, mean, n} in ms over the timed
    calls (CUDA synchronised before and after each call)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t = []
    for _ in range(frames):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        t.append((time.perf_counter() - t0) * 1e3)
    return summarize_ms(t)


def summarize_ms(values: Sequence[float]) -> Dict[str, float]:
    """{n, p50, p95, max, mean} of a list of milliseconds (rounded to 0.01 ms)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "p50": round(float(np.percentile(v, 50)), 3),
            "p95": round(float(np.percentile(v, 95)), 3),
            "max": round(float(v.max()), 3), "mean": round(float(v.mean()), 3)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ====================================================================== pillarization references
def naive_pillarize(points: np.ndarray, contract) -> Dict[str, np.ndarray]:
    """Straightforward reference pillarization with a Python dict (slow; for checking).

    Same rules as ``runtime.pillarize`` (PointPillars, Lang et al. 2019, Sec. 2.1): points with
    finite x,y,z,intensity inside ``point_cloud_range`` (min <= v < max); cell
    ``floor((v - min) / size)`` in float32 arithmetic; the ``max_pillars`` most-populated pillars
    kept (ties: lower flat index), sorted by flat index; the first ``max_points_per_pillar`` points
    of each pillar in input order; decoration [x, y, z, i*scale, x-x_mean, y-y_mean, z-z_mean,
    x-x_centre, y-y_centre] with the mean over kept points.

    Returns {coords (P,2) int64 (iy, ix), num_points (P,) int32, pillars (P, M, F) float32}."""
    x0, y0, z0, x1, y1, z1 = (np.float32(v) for v in contract.point_cloud_range)
    dx, dy = (np.float32(v) for v in contract.pillar_size)
    gw, gh = contract.grid_size
    M = contract.max_points_per_pillar
    cells: Dict[int, List[int]] = {}
    count: Dict[int, int] = {}
    pts = np.asarray(points, np.float32)
    for i in range(len(pts)):
        x, y, z, it = pts[i, 0], pts[i, 1], pts[i, 2], pts[i, 3]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z) and np.isfinite(it)):
            continue
        if not (x0 <= x < x1 and y0 <= y < y1 and z0 <= z < z1):
            continue
        ix = min(max(int(np.floor(np.float32(x - x0) / dx)), 0), gw - 1)
        iy = min(max(int(np.floor(np.float32(y - y0) / dy)), 0), gh - 1)
        key = iy * gw + ix
        count[key] = count.get(key, 0) + 1
        lst = cells.setdefault(key, [])
        if len(lst) < M:
            lst.append(i)
    keys = sorted(count, key=lambda k: (-count[k], k))[: contract.max_pillars]
    keys.sort()
    F = contract.num_decorated_features
    out = np.zeros((len(keys), M, F), np.float32)
    coords = np.zeros((len(keys), 2), np.int64)
    num = np.zeros(len(keys), np.int32)
    for p, key in enumerate(keys):
        idx = cells[key]
        iy, ix = divmod(key, gw)
        sel = pts[idx, :4].copy()
        mean = sel[:, :3].mean(0)
        cx, cy = x0 + (ix + 0.5) * dx, y0 + (iy + 0.5) * dy
        out[p, : len(idx), :4] = sel
        out[p, : len(idx), 3] *= np.float32(contract.intensity_scale)
        out[p, : len(idx), 4:7] = sel[:, :3] - mean
        out[p, : len(idx), 7] = sel[:, 0] - cx
        out[p, : len(idx), 8] = sel[:, 1] - cy
        coords[p] = (iy, ix)
        num[p] = len(idx)
    return {"coords": coords, "num_points": num, "pillars": out}


def compare_pillars(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray],
                    atol: float = 1e-4) -> Dict[str, Any]:
    """Compare two pillarizations given as {coords (P,2) (iy,ix), num_points (P,), [pillars
    (P,M,F)]} (any pillar order). Returns {same_pillars, same_counts, max_abs_diff, pillars_a,
    pillars_b}."""
    ka = {tuple(c): i for i, c in enumerate(np.asarray(a["coords"]).tolist())}
    kb = {tuple(c): i for i, c in enumerate(np.asarray(b["coords"]).tolist())}
    same = set(ka) == set(kb)
    common = sorted(set(ka) & set(kb))
    ia = np.array([ka[k] for k in common], np.int64)
    ib = np.array([kb[k] for k in common], np.int64)
    counts_equal = (bool(np.array_equal(np.asarray(a["num_points"])[ia],
                                        np.asarray(b["num_points"])[ib])) if common else same)
    res: Dict[str, Any] = {"same_pillars": bool(same), "same_counts": counts_equal,
                           "pillars_a": len(ka), "pillars_b": len(kb), "common": len(common)}
    if "pillars" in a and "pillars" in b and common:
        pa, pb = np.asarray(a["pillars"])[ia], np.asarray(b["pillars"])[ib]
        f = min(pa.shape[-1], pb.shape[-1])
        res["max_abs_diff"] = float(np.abs(pa[..., :f] - pb[..., :f]).max())
        res["same_values"] = res["max_abs_diff"] <= atol
    return res


def spconv_voxelizer(contract, spconv_path: Optional[str], device: str):
    """spconv's ``PointToVoxel`` configured like the contract (one z-slab = pillars), or (None,
    reason)."""
    if spconv_path:
        p = Path(spconv_path)
        p = p if p.is_absolute() else REPO_ROOT / p
        if p.is_dir() and str(p) not in sys.path:
            # appended: the venv's own packages (numpy, lark) keep priority
            sys.path.append(str(p))
    try:
        import torch
        from spconv.pytorch.utils import PointToVoxel
    except Exception as e:  # ImportError, or a broken binary
        return (None, f"spconv not importable ({type(e).__name__}: {e}); install: pip install "
                      f"--target {DEFAULT_SPCONV_PATH} spconv")
    x0, y0, z0, x1, y1, z1 = contract.point_cloud_range
    dx, dy = contract.pillar_size
    gen = PointToVoxel(vsize_xyz=[dx, dy, z1 - z0], coors_range_xyz=[x0, y0, z0, x1, y1, z1],
                       num_point_features=4, max_num_voxels=contract.max_pillars,
                       max_num_points_per_voxel=contract.max_points_per_pillar,
                       device=torch.device(device))
    import spconv
    return gen, f"spconv {getattr(spconv, '__version__', '?')} PointToVoxel"


# ====================================================================== model / backends
def ensure_model(model: Optional[str], workdir: Path, log=print) -> Tuple[Path, str]:
    """The model to benchmark: ``model`` if given/exists, else the default model, else a randomly
    initialised default-width network exported to ONNX in ``workdir`` (timings are the same for
    random weights; detections are not). Returns (path, description)."""
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
    """Export a randomly initialised network (default contract; default or tiny widths) to ``out``
    (.onnx) plus the matching checkpoint ``out.with_suffix('.pt')`` for the PyTorch backend.
    Returns the ModelContract."""
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
    """The backend configurations to time: onnxruntime per available provider (CPU FP32; CUDA FP32;
    TensorRT FP16 — onnxruntime's FP16 path here is TensorRT's, CPU has none) and PyTorch eager
    (FP32; autocast FP16 on CUDA) from the ``.pt`` checkpoint next to the ONNX file."""
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


def make_backend(variant: Dict[str, Any], model_path: Path):
    """``runtime.backends.create_backend`` for a variant (the .pt checkpoint is used for PyTorch
    when it sits next to the .onnx file)."""
    from bev_mtl_ros.runtime.backends import create_backend
    path = model_path   # create_backend uses the sibling .pt for PyTorch
    kwargs: Dict[str, Any] = {"backend": variant["backend"], "device": variant["device"],
                              "fp16": variant["fp16"]}
    if variant.get("tensorrt"):
        kwargs["trt_cache_dir"] = str(REPO_ROOT / ".trt_cache")
    if variant.get("providers") and variant["backend"] == "onnxruntime":
        kwargs["providers"] = variant["providers"]
    return create_backend(str(path), **kwargs)


def network_inputs(batch, image_rgb: np.ndarray, contract):
    """Network inputs for one frame from a PillarBatch and an RGB image, as torch tensors on the
    batch's device (the backends take numpy or torch; CUDA backends then avoid host copies):
    (pillars, num_points, canvas_index (1, H*W), image (1, 3, Hi, Wi) in [0, 1], camera_valid
    (1,))."""
    import cv2
    import torch
    wi, hi = contract.image_size
    img = cv2.resize(image_rgb, (wi, hi), interpolation=cv2.INTER_AREA)
    dev = batch.pillars.device
    image = (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None]))
             .to(dev).float().div_(255.0))
    return (batch.pillars, batch.num_points, batch.canvas_index.unsqueeze(0), image,
            torch.ones((1,), dtype=torch.float32, device=dev))


def cuda_device_used_mb() -> Optional[float]:
    """Device memory in use on GPU 0 (all allocators, onnxruntime's arena included: total - free),
    MiB; None without CUDA."""
    try:
        import torch
        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return round((total - free) / 2**20, 1)
    except Exception:
        return None


# ====================================================================== end-to-end over DDS
def bench_end_to_end(model_path: Path, points: np.ndarray, image: np.ndarray, frames: int,
                     warmup: int,
                     device: str, backend: str = "auto",
                     params_file: Optional[str] = "config/perception.yaml",
                     timeout_s: float = 180.0, log=print,
                     all_outputs: bool = False) -> Dict[str, Any]:
    """Cloud (+ image + camera info) published by this process -> ``~/detections`` received from
    the node started as a separate process. The clock starts when the already serialized cloud is
    published (as a driver publishes a ready message; rclpy's Python-to-CDR conversion of this
    process is not the node's cost). Closed loop (the next frame is sent when the answer to the
    previous one arrived, or after 10 s). ``all_outputs``: this process also subscribes to every
    optional output (markers, drivable mask and grid, semantic, colour overlay), so the node builds
    and publishes them all (lazy outputs); otherwise only detections, diagnostics and the small
    debug timing message (subscribed in both cases) are built.

    ``node_overhead_ms`` is measured per frame, so machine load cancels out: the frame's
    end-to-end latency minus the pipeline time the node itself measured for that frame
    (``pipeline_total`` of ``~/debug/processing_time_ms``; frames are answered in order, so the
    k-th timing message is frame k's). What remains is the node's cost on top of its pipeline:
    transport both ways, message conversion, building and publishing the detections, and waiting
    for the previous frame's optional outputs (the next frame is sent when the detections of the
    previous one arrived, as a sensor would not wait for the rest). ``node_total_ms`` is the
    node's own per-frame cost (``total``: conversion + pipeline + every output it publishes).

    Returns {latency_ms, node_pipeline_ms, node_overhead_ms, node_total_ms (summaries), lost,
    frames, all_outputs, node_peak_rss_mb, node_log}."""
    from bev_mtl_ros.dds import DomainClaim
    from bev_mtl_ros.ros.feeder import NodeFeeder
    from bev_mtl_ros.ros.params import input_remap_args
    from bev_mtl_ros.ros.replay import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, LIDAR_TOPIC,
                                        default_node_cmd, ros_environment)

    claim = DomainClaim()
    domain = claim.domain_id
    env = ros_environment(domain)
    cmd = (default_node_cmd() + ["--ros-args"]
           + input_remap_args(LIDAR_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC))
    pf = Path(params_file) if params_file else None
    if pf is not None and not pf.is_absolute():
        pf = REPO_ROOT / pf
    if pf is not None and pf.exists():
        cmd += ["--params-file", str(pf)]
    cmd += ["-p", f"model_path:={model_path}", "-p", f"device:={device}", "-p",
            f"backend:={backend}", "-p", "use_sim_time:=false"]
    log_file = tempfile.NamedTemporaryFile("w+", suffix="_bench_node.log", delete=False)
    node_proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    feeder: Optional[NodeFeeder] = None
    result: Dict[str, Any] = {}
    try:
        # the k-th ~/debug/processing_time_ms message is frame k's (frames are answered in order)
        feeder = NodeFeeder(env, domain, "bench_e2e", camera_info=True, timings=True,
                            all_outputs=all_outputs, clock=time.perf_counter)
        ready = feeder.wait_for_node(timeout_s, alive=lambda: node_proc.poll() is None,
                                     image=False)
        if node_proc.poll() is not None:
            log_file.seek(0)
            raise RuntimeError(f"node exited: {log_file.read()[-2000:]}")
        if not ready:
            raise RuntimeError("node did not subscribe in time")
        time.sleep(1.0)
        got, timings = feeder.detections, feeder.timings
        lat: Dict[int, float] = {}
        lost = 0
        t_base = 1_000_000_000
        for k in range(warmup + frames):
            stamp_ns = t_base + k * 100_000_000
            feeder.set_frame(points, image)
            # serialized before the clock starts, as a driver has its message ready
            t0 = feeder.publish_frame(stamp_ns, serialized=True)
            if not feeder.spin_until(lambda: stamp_ns in got, 10.0, 0.01):
                lost += 1
            elif k >= warmup:
                lat[k] = (got[stamp_ns] - t0) * 1e3
        feeder.spin_until(lambda: len(timings) >= warmup + frames - lost, 5.0, 0.01)
        result = {"latency_ms": summarize_ms(list(lat.values())), "lost": lost, "frames": frames,
                  "all_outputs": all_outputs}
        if not lost and len(timings) == warmup + frames:   # k-th timing message = frame k
            pipe = {k: timings[k].get("pipeline_total", float("nan")) for k in lat}
            result["node_pipeline_ms"] = summarize_ms(list(pipe.values()))
            result["node_overhead_ms"] = summarize_ms([lat[k] - pipe[k] for k in lat])
            result["node_total_ms"] = summarize_ms([timings[k].get("total", float("nan"))
                                                    for k in lat])
        else:
            result["node_overhead_ms"] = {
                "error": f"{len(timings)} timing messages for {warmup + frames} frames, {lost} "
                         "lost: frames cannot be matched"}
    finally:
        if feeder is not None:
            feeder.close()
        node_proc.send_signal(2)
        try:
            node_proc.wait(15)
        except subprocess.TimeoutExpired:
            node_proc.kill()
            node_proc.wait()
        claim.release()
        result["node_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)
        result["node_log"] = log_file.name
        log_file.close()
    return result


# ====================================================================== main benchmark
@dataclass
class BenchConfig:
    """Options of one benchmark run (see ``add_arguments``)."""

    device: str = "cpu"
    frames: int = 20
    warmup: int = 3
    model: Optional[str] = None
    scenarios: Tuple[str, ...] = tuple(SCENARIOS)
    points: Optional[int] = None
    image: Optional[Tuple[int, int]] = None
    scaling: bool = True
    dds: bool = True
    reference: bool = True
    spconv_path: Optional[str] = DEFAULT_SPCONV_PATH
    backends: Optional[Tuple[str, ...]] = None
    threads: Optional[int] = None


def run_benchmark(cfg: BenchConfig, log=print) -> Dict[str, Any]:
    """Run every section; returns the JSON-compatible result dict (see module docstring)."""
    import onnxruntime as ort
    import torch

    from bev_mtl_ros.runtime.pillarize import pillarize

    # One torch thread count for the whole run (the pipeline would otherwise change it half-way):
    # default on CPU = 1, what the node's pipeline uses with the onnxruntime CPU backend (torch
    # then only pillarizes and decodes); onnxruntime keeps its own intra-op pool (all cores).
    threads = cfg.threads if cfg.threads else (1 if cfg.device == "cpu" else None)
    if threads:
        torch.set_num_threads(int(threads))
    workdir = Path(tempfile.mkdtemp(prefix="bev_bench_"))
    model_path, model_desc = ensure_model(cfg.model, workdir, log)
    res: Dict[str, Any] = {
        "machine": {"platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__,
                    "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
                    "torch_threads": torch.get_num_threads(),
                    "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "model": model_desc, "device": cfg.device, "frames": cfg.frames, "warmup": cfg.warmup,
        "scenarios": {},
    }
    scen: Dict[str, Tuple[int, Tuple[int, int], str]] = {k: SCENARIOS[k] for k in cfg.scenarios}
    if cfg.points or cfg.image:
        scen = {"custom": (cfg.points or 20_000, cfg.image or (1920, 1208), "front")}
    variants = backend_variants(cfg.device, model_path)
    if cfg.backends:
        variants = [v for v in variants if any(b in v["label"] for b in cfg.backends)]
    backends = {}
    for v in variants:
        try:
            backends[v["label"]] = make_backend(v, model_path)
        except Exception as e:
            log(f"[bench] {v['label']}: not available ({type(e).__name__}: {e})")
            res.setdefault("unavailable_backends", {})[v["label"]] = f"{type(e).__name__}: {e}"
    if not backends:
        raise RuntimeError("no inference backend could be created")
    contract = next(iter(backends.values())).contract
    res["contract"] = {"grid_size": list(contract.grid_size), "max_pillars": contract.max_pillars,
                       "max_points_per_pillar": contract.max_points_per_pillar,
                       "image_size": list(contract.image_size)}
    dev = cfg.device
    # global warm-up (first calls allocate, JIT-select kernels and start thread pools; measured
    # here to distort the first timed stage by up to 15x even with per-stage warm-up)
    wpts, wimg = synthetic_scan(20_000, "front", seed=99), synthetic_image((1920, 1208), seed=99)
    wb = pillarize(wpts, contract, device=dev)
    winputs = network_inputs(wb, wimg, contract)
    for _ in range(max(3, cfg.warmup)):
        pillarize(wpts, contract, device=dev)
        for be in backends.values():
            try:
                be.infer(*winputs)
            except Exception:
                pass
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    for name, (n_pts, img_wh, fov) in scen.items():
        log(f"[bench] scenario {name}: {n_pts} points, image {img_wh[0]}x{img_wh[1]}")
        pts = synthetic_scan(n_pts, fov)
        img = synthetic_image(img_wh)
        s: Dict[str, Any] = {"points": n_pts, "image": list(img_wh), "stages": {}}
        st = s["stages"]
        # message -> numpy
        try:
            from bev_mtl_ros.ros.conversions import (cloud_to_msg, cloud_to_xyzi, image_to_msg,
                                                     image_to_rgb, resize_rgb)
            cmsg = cloud_to_msg({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2],
                                 "intensity": pts[:, 3],
                                 "lidar_id": np.zeros(n_pts, np.uint8),
                                 "t": np.zeros(n_pts, np.float32)})
            imsg = image_to_msg(img, "rgb8")
            st["cloud_to_numpy"] = time_stage(lambda: cloud_to_xyzi(cmsg), cfg.frames, cfg.warmup)
            st["image_to_numpy"] = time_stage(
                lambda: resize_rgb(image_to_rgb(imsg), contract.image_size),
                cfg.frames, cfg.warmup)
        except ImportError as e:
            st["cloud_to_numpy"] = {"error": f"ros conversions unavailable: {e}"}
        # pillarization
        batch = pillarize(pts, contract, device=dev)
        st["pillarize"] = time_stage(lambda: pillarize(pts, contract, device=dev), cfg.frames,
                                     cfg.warmup, dev)
        s["pillar_stats"] = batch.stats.as_dict()
        mine = {"coords": batch.coords.cpu().numpy(), "num_points": batch.num_points.cpu().numpy(),
                "pillars": batch.pillars.cpu().numpy()}
        if cfg.reference:
            ref: Dict[str, Any] = {}
            t0 = time.perf_counter()
            naive = naive_pillarize(pts, contract)
            ref["naive_python_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
            ref["naive_vs_runtime"] = compare_pillars(mine, naive)
            ref.update(_spconv_reference(pts, contract, mine, batch.stats.pillars_dropped, cfg,
                                         dev))
            s["pillarize_reference"] = ref
        # network per backend
        inputs = network_inputs(batch, img, contract)
        net: Dict[str, Any] = {}
        outputs = None
        for label, be in backends.items():
            try:
                net[label] = time_stage(lambda: be.infer(*inputs), cfg.frames, cfg.warmup,
                                        "cuda" if "cuda" in label.lower() or "Tensorrt" in label
                                        or "CUDA" in label else "cpu")
                if outputs is None:
                    outputs = be.infer(*inputs)
            except Exception as e:
                net[label] = {"error": f"{type(e).__name__}: {e}"}
        fastest = min((v["p50"] for v in net.values() if "p50" in v), default=None)
        for v in net.values():
            if "p50" in v and fastest:
                v["ratio_to_fastest"] = round(v["p50"] / fastest, 2)
        st["network"] = net
        # post-processing (decode + NMS, masks) and message building, on one backend's outputs
        if outputs is not None:
            _bench_post_and_messages(st, s, outputs, pts, img, backends, contract, cfg)
        if cfg.dds:
            for key, every in (("end_to_end_dds", False), ("end_to_end_dds_all_outputs", True)):
                try:
                    s[key] = bench_end_to_end(model_path, pts, img, cfg.frames, cfg.warmup, dev,
                                              log=log, all_outputs=every)
                except Exception as e:
                    s[key] = {"error": f"{type(e).__name__}: {e}"}
            s["node_overhead_ms"] = node_overhead(s)
        s["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if dev.startswith("cuda"):
            s["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            s["cuda_device_used_mb"] = cuda_device_used_mb()
        res["scenarios"][name] = s

    if cfg.scaling:
        be_label, be = next(iter(backends.items()))
        rows = []
        for n in SCALING_POINTS:
            pts = synthetic_scan(n, "360", seed=1)
            img = synthetic_image((1920, 1208))
            b = pillarize(pts, contract, device=dev)
            row = {"points": n, "pillars": b.num_pillars,
                   "pillars_dropped": b.stats.pillars_dropped,
                   "pillarize": time_stage(lambda: pillarize(pts, contract, device=dev),
                                           cfg.frames, cfg.warmup, dev)}
            inputs = network_inputs(b, img, contract)
            row["network"] = time_stage(lambda: be.infer(*inputs), max(3, cfg.frames // 2), 1)
            row["network_backend"] = be_label
            row["peak_rss_mb"] = round(peak_rss_mb(), 1)
            rows.append(row)
            log(f"[bench] scaling {n}: pillarize p50 {row['pillarize']['p50']:.2f} ms, network "
                f"p50 {row['network']['p50']:.1f} ms")
        res["scaling"] = rows
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if dev.startswith("cuda"):
        res["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def _spconv_reference(pts: np.ndarray, contract, mine: Dict[str, np.ndarray], pillars_dropped: int,
                      cfg: "BenchConfig", dev: str) -> Dict[str, Any]:
    """Time spconv's PointToVoxel on the same cloud and compare its pillars with ours; returns
    {"spconv": description, ["spconv_ms": summary, "spconv_vs_runtime": comparison]}."""
    import torch
    try:
        gen, desc = spconv_voxelizer(contract, cfg.spconv_path, dev)
    except Exception as e:   # e.g. a CPU-only spconv asked for CUDA
        return {"spconv": f"spconv unusable on {dev}: {type(e).__name__}: {e}"}
    if gen is None:
        return {"spconv": desc}
    try:
        tp = torch.from_numpy(pts).to(dev)
        out: Dict[str, Any] = {"spconv": desc,
                               "spconv_ms": time_stage(lambda: gen(tp), cfg.frames, cfg.warmup,
                                                       dev)}
        vox, coors, nump = gen(tp)
        vox = vox.cpu().numpy().copy()
        vox[..., 3] *= np.float32(contract.intensity_scale)   # spconv keeps the raw features
        sp = {"coords": coors[:, 1:].cpu().numpy().astype(np.int64),  # (z, y, x) -> (y, x)
              "num_points": nump.cpu().numpy(), "pillars": vox}     # (P, M, 4): x, y, z, intensity
        cmp = compare_pillars(mine, sp)
        cmp["note"] = ("spconv keeps the first max_pillars voxels in point order, "
                       "runtime.pillarize the most-populated; sets agree only when no pillar is "
                       "dropped"
                       if pillars_dropped else "no pillar dropped: sets must agree")
        out["spconv_vs_runtime"] = cmp
        return out
    except Exception as e:
        return {"spconv": f"{desc}: failed ({type(e).__name__}: {e})"}


def _bench_post_and_messages(st: Dict[str, Any], s: Dict[str, Any], outputs, pts, img, backends,
                             contract, cfg: "BenchConfig") -> None:
    """Time decode/NMS, masks, message building and the whole in-process pipeline (fills st /
    s)."""
    from bev_mtl_ros.runtime.postprocess import decode_detections, drivable_mask, semantic_ids
    pcfg = _postprocess_config()
    st["postprocess_decode_nms"] = time_stage(lambda: decode_detections(outputs, contract, pcfg),
                                              cfg.frames, cfg.warmup)
    st["postprocess_masks"] = time_stage(
        lambda: (drivable_mask(outputs["drivable"]),
                 semantic_ids(outputs["semantic"], out_size=(img.shape[1], img.shape[0]))),
        cfg.frames, cfg.warmup)
    dets = decode_detections(outputs, contract, pcfg)
    s["detections_decoded"] = int(len(dets.scores))
    drv = drivable_mask(outputs["drivable"])
    sem = semantic_ids(outputs["semantic"], out_size=(img.shape[1], img.shape[0]))
    try:
        from std_msgs.msg import Header

        from bev_mtl_ros.ros import messages as M
        hdr = Header(frame_id="cam_front_center")
        names = list(contract.detection_classes)

        def build():
            M.detections_to_msg(dets.boxes, dets.scores, dets.labels, names, hdr)
            M.detections_to_markers(dets.boxes, dets.scores, dets.labels, names, hdr)
            M.drivable_to_image(drv, hdr)
            M.drivable_to_occupancy_grid(drv, contract.point_cloud_range, contract.pillar_size,
                                         hdr)
            M.semantic_to_image(sem, hdr)
            M.semantic_overlay(img, sem, hdr)
        st["build_messages"] = time_stage(build, cfg.frames, cfg.warmup)
    except Exception as e:  # rclpy / vision_msgs missing
        st["build_messages"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        pipe = _pipeline(next(iter(backends.values())))
    except Exception as e:
        s["pipeline_in_process"] = {"error": f"{type(e).__name__}: {e}"}
        return
    for key, semantic in (("pipeline_in_process", True),
                          ("pipeline_in_process_no_semantic", False)):
        try:
            tims: Dict[str, List[float]] = {}
            for k in range(cfg.warmup + cfg.frames):
                r = pipe(pts, img, semantic=semantic)
                if k >= cfg.warmup:
                    for kk, vv in r.timings_ms.items():
                        tims.setdefault(kk, []).append(float(vv))
            s[key] = {k: summarize_ms(v) for k, v in tims.items()}
        except Exception as e:
            s[key] = {"error": f"{type(e).__name__}: {e}"}


#: issue 11's targets for the node's overhead (end-to-end p50 - pipeline p50), ms, per scenario
OVERHEAD_TARGET_MS = {"a2d2_front_center": 10.0, "lidar360_64beam": 15.0}


def node_overhead(s: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """What the node costs on top of its pipeline, p50 per frame, ms: ``detections_only`` (only
    ~/detections subscribed, the optional outputs are not built) and ``all_outputs`` (every
    output subscribed), from :func:`bench_end_to_end`'s per-frame ``node_overhead_ms``
    (end-to-end latency minus the node's own pipeline time for the same frame). None where a
    figure is missing."""
    out: Dict[str, Optional[float]] = {}
    for name, key in (("detections_only", "end_to_end_dds"),
                      ("all_outputs", "end_to_end_dds_all_outputs")):
        v = ((s.get(key) or {}).get("node_overhead_ms") or {}).get("p50")
        out[name] = round(float(v), 2) if isinstance(v, (int, float)) else None
    return out


def _postprocess_config():
    """The node's default post-processing (:class:`PostProcessConfig` at the node's defaults)."""
    from bev_mtl_ros.ros.params import NODE_PARAMETERS, make_postprocess_config
    return make_postprocess_config(NODE_PARAMETERS["score_threshold"][0],
                                   NODE_PARAMETERS["nms"][0])


def _pipeline(backend):
    """The node's pipeline; torch's thread count is left as the benchmark set it."""
    from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
    return PerceptionPipeline(backend, _postprocess_config(), torch_threads=None)


# ====================================================================== output
def format_table(res: Dict[str, Any]) -> str:
    """Human-readable table of a result dict (ms: p50 / p95 / max)."""
    lines = [f"bev_mtl_ros benchmark — device {res['device']}, model {res['model']}, "
             f"{res['frames']} frames after {res['warmup']} warm-up; "
             f"{res['machine']['processor']} x{res['machine']['cpu_count']}, torch "
             f"{res['machine']['torch']} ({res['machine']['torch_threads']} threads), onnxruntime "
             f"{res['machine']['onnxruntime']}, load average {res['machine']['loadavg_1_5_15']}"]

    def row(name, v):
        if not isinstance(v, dict):
            return
        if "p50" in v:
            extra = f"  x{v['ratio_to_fastest']:.2f}" if "ratio_to_fastest" in v else ""
            lines.append(f"  {name:<52} {v['p50']:9.2f} {v['p95']:9.2f} {v['max']:9.2f}{extra}")
        elif "error" in v:
            lines.append(f"  {name:<52} n/a ({v['error'][:80]})")

    for name, s in res["scenarios"].items():
        lines.append(f"\n{name}: {s['points']} points, image {s['image'][0]}x{s['image'][1]}, "
                     f"pillars {s.get('pillar_stats', {}).get('pillars_occupied', '?')} occupied "
                     f"/ {s.get('pillar_stats', {}).get('pillars_dropped', '?')} dropped")
        lines.append(f"  {'stage':<52} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
        for k, v in s["stages"].items():
            if k == "network":
                for lab, vv in v.items():
                    row(f"network [{lab}]", vv)
            else:
                row(k, v)
        for k, v in (s.get("pipeline_in_process") or {}).items():
            row(f"pipeline in-process: {k}", v)
        row("pipeline in-process without semantic mask: total",
            (s.get("pipeline_in_process_no_semantic") or {}).get("total"))
        for key, what in (("end_to_end_dds", "detections only"),
                          ("end_to_end_dds_all_outputs", "all outputs")):
            e2e = s.get(key)
            if isinstance(e2e, dict) and "latency_ms" in e2e:
                row(f"end-to-end over DDS ({what} subscribed), lost {e2e.get('lost')}",
                    e2e["latency_ms"])
                row(f"  node's own pipeline time ({what})", e2e.get("node_pipeline_ms"))
                row(f"  node overhead = end-to-end - node's pipeline ({what})",
                    e2e.get("node_overhead_ms"))
                row(f"  node per-frame cost: convert + pipeline + outputs ({what})",
                    e2e.get("node_total_ms"))
            elif isinstance(e2e, dict):
                row(f"end-to-end over DDS ({what})", e2e)
        ov = s.get("node_overhead_ms")
        if ov:
            target = OVERHEAD_TARGET_MS.get(name)
            fmt = lambda v: "n/a" if v is None else f"{v:.1f} ms"  # noqa: E731
            lines.append("  node overhead p50 (end-to-end - pipeline, per frame): detections only "
                         f"{fmt(ov['detections_only'])}"
                         f", all outputs {fmt(ov['all_outputs'])}"
                         + (f" (target <= {target:.0f} ms)" if target else ""))
        ref = s.get("pillarize_reference")
        if ref:
            lines.append(f"  reference: naive Python {ref['naive_python_ms']} ms, same pillars "
                         f"{ref['naive_vs_runtime'].get('same_pillars')}, same values "
                         f"{ref['naive_vs_runtime'].get('same_values')}")
            if "spconv_ms" in ref:
                c = ref["spconv_vs_runtime"]
                lines.append(f"  reference: {ref['spconv']} p50 {ref['spconv_ms']['p50']:.2f} ms; "
                             f"same pillars {c['same_pillars']} ({c['common']} common of "
                             f"{c['pillars_a']}/{c['pillars_b']}), same counts {c['same_counts']}")
            else:
                lines.append(f"  reference: {ref['spconv']}")
        lines.append(f"  peak RSS {s.get('peak_rss_mb')} MiB" + (
            f", peak CUDA (torch) {s['peak_cuda_mb']} MiB, device in use "
            f"{s.get('cuda_device_used_mb')} MiB"
            if "peak_cuda_mb" in s else ""))
    if res.get("scaling"):
        lines.append("\nscaling (360-degree scans, network = "
                     f"{res['scaling'][0]['network_backend']}):")
        lines.append(f"  {'points':>8} {'pillars':>8} {'dropped':>8} {'pillarize p50':>14} "
                     f"{'network p50':>12} {'peak RSS MiB':>13}")
        for r in res["scaling"]:
            lines.append(f"  {r['points']:>8} {r['pillars']:>8} {r['pillars_dropped']:>8} "
                         f"{r['pillarize']['p50']:>14.2f} {r['network']['p50']:>12.1f} "
                         f"{r['peak_rss_mb']:>13.1f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bev-mtl-ros bench``."""
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", default=None,
                        help=f"ONNX model (default {DEFAULT_MODEL}, else a random-init export)")
    parser.add_argument("--points", type=int, default=None,
                        help="one custom scenario with N points")
    parser.add_argument("--image", default=None, help="custom image size WxH (e.g. 1920x1208)")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per stage")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up frames per stage")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--no-scaling", action="store_true",
                        help="skip the 10k..200k points series")
    parser.add_argument("--no-dds", action="store_true",
                        help="skip the end-to-end run through the node process")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the pillarization references")
    parser.add_argument("--spconv-path", default=DEFAULT_SPCONV_PATH,
                        help="directory with spconv installed by pip --target (appended to "
                             "sys.path)")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="only variants whose label contains one of these")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for the whole run (default on CPU: 1, as the "
                             "node's pipeline uses with onnxruntime; onnxruntime keeps its own "
                             "pool)")
    parser.add_argument("--json", default=None, help="write the results as JSON here")


def main(args: argparse.Namespace) -> int:
    """``bev-mtl-ros bench``: prints the table, writes ``--json``; 0 on success, 2 on bad
    options."""
    image = None
    if args.image:
        try:
            w, h = (int(v) for v in args.image.lower().split("x"))
            image = (w, h)
        except ValueError:
            print(f"bench: bad --image {args.image!r} (expected WxH)", file=sys.stderr)
            return 2
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print("bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
    cfg = BenchConfig(device=args.device, frames=args.frames, warmup=args.warmup, model=args.model,
                      scenarios=tuple(args.scenarios), points=args.points, image=image,
                      scaling=not args.no_scaling,
                      dds=not args.no_dds, reference=not args.no_reference,
                      spconv_path=args.spconv_path,
                      backends=tuple(args.backends) if args.backends else None,
                      threads=args.threads)
    res = run_benchmark(cfg)
    print(format_table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"[bench] JSON: {args.json}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros bench")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
