#!/usr/bin/env python3
"""onnxruntime spinning settings on the shipped graph: network time and CPU cost per frame.

For each ``--spin-us`` value (``OnnxRuntimeBackend(spin_us=...)``, the node's ``onnx_spin_us``:
0 = no spinning, N > 0 = spin up to N us and stop at the end of each run, -1 = onnxruntime's
unbounded default) the node's in-process pipeline (``PerceptionPipeline``, detections only) runs
on the benchmark's 20k-point front scan and 1920x1208 image:

* back to back: ``--frames`` frames, network p50;
* paced at ``--rate-hz`` as a sensor would: network p50 and the process CPU time per frame
  (``getrusage``: every thread of this process, spinning included).

Settings alternate ``--rounds`` times so that a drift of the machine shows up in every setting.
Figures and the command: ``bench/README.md``, "onnxruntime threads: spin within a run".

    .venv/bin/python scripts/onnx_spin_check.py --spin-us 0 100 -1
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from bev_mtl_ros.bench.config import DEFAULT_MODEL
from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan
from bev_mtl_ros.runtime.onnx_backend import OnnxRuntimeBackend
from bev_mtl_ros.runtime.pipeline import PerceptionPipeline


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    """Run the comparison and print one line per setting and round."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--spin-us", type=int, nargs="+", default=[0, 100, -1])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rate-hz", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pts = synthetic_scan(20_000, "front", seed=0)
    img = synthetic_image((1920, 1208), seed=0)
    period = 1.0 / args.rate_hz
    for rnd in range(args.rounds):
        for spin in args.spin_us:
            pipe = PerceptionPipeline(OnnxRuntimeBackend(args.model, spin_us=spin))
            for _ in range(5):
                pipe(pts, img, semantic=False)
            b2b = [pipe(pts, img, semantic=False).timings_ms["network"]
                   for _ in range(args.frames)]
            paced = []
            c0 = _cpu_s()
            for _ in range(args.frames):
                t0 = time.perf_counter()
                paced.append(pipe(pts, img, semantic=False).timings_ms["network"])
                time.sleep(max(0.0, period - (time.perf_counter() - t0)))
            cpu_ms = (_cpu_s() - c0) / args.frames * 1e3
            print(f"round {rnd} spin_us {spin:5d}: network p50 back to back "
                  f"{np.median(b2b):5.1f} ms, at {args.rate_hz:g} Hz {np.median(paced):5.1f} ms; "
                  f"process CPU {cpu_ms:6.1f} ms per frame", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
