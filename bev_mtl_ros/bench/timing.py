"""Timing and memory helpers of the benchmark: per-call latency summaries, peak RSS, GPU memory."""

from __future__ import annotations

import resource
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

__all__ = ["time_stage", "summarize_ms", "peak_rss_mb", "cuda_device_used_mb"]


def _sync(device: str) -> None:
    """Wait for the CUDA device when ``device`` is a CUDA device."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def time_stage(fn: Callable[[], Any], frames: int, warmup: int,
               device: str = "cpu") -> Dict[str, float]:
    """Call ``fn`` warmup + frames times; return {p50, p95, max, mean, n} ms of the timed calls.

    On CUDA the device is synchronised before and after each call.
    """
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


def cuda_device_used_mb() -> Optional[float]:
    """Return the device memory in use on GPU 0, MiB; None without CUDA.

    All allocators, onnxruntime's arena included: total - free.
    """
    try:
        import torch
        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return round((total - free) / 2**20, 1)
    except Exception:
        return None
