"""The benchmark run: machine facts, backends, global warm-up, scenarios, the scaling series."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

from bev_mtl_ros.bench.config import SCALING_POINTS, SCENARIOS, BenchConfig
from bev_mtl_ros.bench.end_to_end import bench_end_to_end
from bev_mtl_ros.bench.models import (backend_variants, ensure_model, make_backend,
                                      network_inputs, onnx_backend_options)
from bev_mtl_ros.bench.rate_replay import rate_section
from bev_mtl_ros.bench.report import node_overhead
from bev_mtl_ros.bench.stages import (time_conversions, time_messages, time_network,
                                      time_pillarize, time_pipeline, time_postprocess)
from bev_mtl_ros.bench.timing import cuda_device_used_mb, peak_rss_mb, time_stage
from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan

__all__ = ["run_benchmark", "machine_info"]


def machine_info() -> Dict[str, Any]:
    """Return platform, CPU count, torch / onnxruntime versions and threads, load, GPU name."""
    import onnxruntime as ort
    import torch
    return {"platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "torch_threads": torch.get_num_threads(),
            "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _create_backends(cfg: BenchConfig, model_path: Path, res: Dict[str, Any],
                     log) -> Dict[str, Any]:
    """Return {label: backend} of every variant that can be created (others noted in ``res``).

    Raises RuntimeError when none can be created.
    """
    variants = backend_variants(cfg.device, model_path)
    if cfg.backends:
        variants = [v for v in variants if any(b in v["label"] for b in cfg.backends)]
    backends = {}
    onnx_options = onnx_backend_options(cfg.node_params)
    for v in variants:
        try:
            backends[v["label"]] = make_backend(v, model_path, onnx_options)
        except Exception as e:
            log(f"[bench] {v['label']}: not available ({type(e).__name__}: {e})")
            res.setdefault("unavailable_backends", {})[v["label"]] = f"{type(e).__name__}: {e}"
    if not backends:
        raise RuntimeError("no inference backend could be created")
    return backends


def _global_warmup(backends: Dict[str, Any], contract, cfg: BenchConfig) -> None:
    """Pillarize and run every backend a few times before any stage is timed.

    First calls allocate, JIT-select kernels and start thread pools; measured here to distort the
    first timed stage by up to 15x even with per-stage warm-up.
    """
    from bev_mtl_ros.runtime.pillarize import pillarize
    dev = cfg.device
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


def _bench_scenario(n_pts: int, img_wh: Tuple[int, int], fov: str, backends: Dict[str, Any],
                    contract, model_path: Path, cfg: BenchConfig, log) -> Dict[str, Any]:
    """Time every stage of one scenario (synthetic scan + image), end to end included."""
    import torch
    dev = cfg.device
    pts = synthetic_scan(n_pts, fov)
    img = synthetic_image(img_wh)
    s: Dict[str, Any] = {"points": n_pts, "image": list(img_wh), "stages": {}}
    st = s["stages"]
    time_conversions(st, pts, img, contract, cfg)
    batch = time_pillarize(s, pts, contract, cfg, dev)
    outputs = time_network(st, backends, network_inputs(batch, img, contract), cfg)
    # post-processing (decode + NMS, masks) and message building, on one backend's outputs
    if outputs is not None:
        dets, drv, sem = time_postprocess(st, s, outputs, img, contract, cfg)
        time_messages(st, dets, drv, sem, img, contract, cfg)
        time_pipeline(s, next(iter(backends.values())), pts, img, cfg)
    if cfg.network_profile and cfg.device == "cpu" and model_path.suffix == ".onnx":
        s["network_profile"] = _profile(model_path, batch, img, contract, cfg)
    if cfg.dds:
        for key, every in (("end_to_end_dds", False), ("end_to_end_dds_all_outputs", True)):
            try:
                s[key] = bench_end_to_end(model_path, pts, img, cfg.frames, cfg.warmup, dev,
                                          log=log, all_outputs=every,
                                          node_params=cfg.node_params,
                                          raw_camera=cfg.raw_camera)
            except Exception as e:
                s[key] = {"error": f"{type(e).__name__}: {e}"}
        s["node_overhead_ms"] = node_overhead(s)
    s["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if dev.startswith("cuda"):
        s["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        s["cuda_device_used_mb"] = cuda_device_used_mb()
    return s


def _profile(model_path: Path, batch, img, contract, cfg: BenchConfig) -> Dict[str, Any]:
    """Return onnxruntime's profile of the network on this frame (:mod:`bench.network_profile`).

    The node's onnxruntime settings (``--param onnx_intra_op_threads / onnx_spin_us``);
    ``cfg.frames`` profiled runs. Returns the profile, or {"error": ...} when it fails.
    """
    from bev_mtl_ros.bench.network_profile import profile_network
    from bev_mtl_ros.model.network import INPUT_NAMES
    feeds = {n: t.cpu().numpy() for n, t in zip(INPUT_NAMES, network_inputs(batch, img, contract))}
    opts = onnx_backend_options(cfg.node_params)
    with tempfile.TemporaryDirectory(prefix="bev_bench_profile_") as d:
        try:
            return profile_network(str(model_path), [feeds], cfg.frames, d,
                                   intra_op_threads=opts.get("intra_op_threads"),
                                   spin_us=opts.get("spin_us"))
        except Exception as e:  # a graph the profiler cannot read must not end the benchmark
            return {"error": f"{type(e).__name__}: {e}"}


def _bench_scaling(backends: Dict[str, Any], contract, cfg: BenchConfig,
                   log) -> List[Dict[str, Any]]:
    """Time pillarize and the first backend on 360-degree scans of 10k..200k points."""
    from bev_mtl_ros.runtime.pillarize import pillarize
    dev = cfg.device
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
    return rows


def run_benchmark(cfg: BenchConfig, log=print) -> Dict[str, Any]:
    """Run every section; return the JSON-compatible result dict (see the package docstring)."""
    import torch

    # One torch thread count for the whole run (the pipeline would otherwise change it half-way):
    # default on CPU = 1, what the node's pipeline uses with the onnxruntime CPU backend (torch
    # then only pillarizes and decodes); onnxruntime keeps its own intra-op pool (all cores).
    threads = cfg.threads if cfg.threads else (1 if cfg.device == "cpu" else None)
    if threads:
        torch.set_num_threads(int(threads))
    workdir = Path(tempfile.mkdtemp(prefix="bev_bench_"))
    model_path, model_desc = ensure_model(cfg.model, workdir, log)
    res: Dict[str, Any] = {
        "machine": machine_info(),
        "model": model_desc, "device": cfg.device, "frames": cfg.frames, "warmup": cfg.warmup,
        "node_params": list(cfg.node_params), "raw_camera": cfg.raw_camera,
        "scenarios": {},
    }
    scen: Dict[str, Tuple[int, Tuple[int, int], str]] = {k: SCENARIOS[k] for k in cfg.scenarios}
    if cfg.points or cfg.image:
        scen = {"custom": (cfg.points or 20_000, cfg.image or (1920, 1208), "front")}
    backends = _create_backends(cfg, model_path, res, log)
    contract = next(iter(backends.values())).contract
    res["contract"] = {"grid_size": list(contract.grid_size), "max_pillars": contract.max_pillars,
                       "max_points_per_pillar": contract.max_points_per_pillar,
                       "image_size": list(contract.image_size)}
    _global_warmup(backends, contract, cfg)
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for name, (n_pts, img_wh, fov) in scen.items():
        log(f"[bench] scenario {name}: {n_pts} points, image {img_wh[0]}x{img_wh[1]}")
        res["scenarios"][name] = _bench_scenario(n_pts, img_wh, fov, backends, contract,
                                                 model_path, cfg, log)
    if cfg.dds and cfg.rate:
        name, (n_pts, img_wh, fov) = next(iter(scen.items()))
        res["rate_replay"] = rate_section(model_path, name, n_pts, img_wh, fov, cfg.rate_hz,
                                          cfg.rate_seconds, cfg.warmup, cfg.device, log,
                                          node_params=cfg.node_params,
                                          raw_camera=cfg.raw_camera)
    if cfg.scaling:
        res["scaling"] = _bench_scaling(backends, contract, cfg, log)
    res["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if cfg.device.startswith("cuda"):
        res["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res
