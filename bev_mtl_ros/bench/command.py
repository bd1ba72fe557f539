"""``bev-mtl-ros bench`` command line: options, then the run (``bench/run.py``) and the table."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bev_mtl_ros.bench.config import DEFAULT_MODEL, DEFAULT_SPCONV_PATH, SCENARIOS, BenchConfig
from bev_mtl_ros.bench.models import onnx_backend_options
from bev_mtl_ros.bench.report import format_table
from bev_mtl_ros.bench.run import run_benchmark

__all__ = ["add_arguments", "main"]


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
    parser.add_argument("--rate-hz", type=float, default=10.0,
                        help="open-loop replay rate with every output subscribed (default 10)")
    parser.add_argument("--rate-seconds", type=float, default=60.0,
                        help="length of each open-loop run, quiet and one core busy (default 60)")
    parser.add_argument("--no-rate", action="store_true",
                        help="skip the open-loop replay with every output subscribed")
    parser.add_argument("--raw-camera", action="store_true",
                        help="end-to-end and 10 Hz runs with a raw camera: the image distorted "
                             "with A2D2's front-center lens and its CameraInfo, undistorted by "
                             "the node (default: a rectified image)")
    parser.add_argument("--no-network-profile", action="store_true",
                        help="skip onnxruntime's profile of the network per module (CPU)")
    parser.add_argument("--param", "-p", "--node-param", dest="node_param", action="extend",
                        nargs="+", default=[], metavar="NAME:=VALUE",
                        help="node parameters for the end-to-end and 10 Hz runs, after "
                             "config/perception.yaml (several after one --param, or --param "
                             "repeated; e.g. pipeline_outputs:=false; --node-param is the same); "
                             "onnx_spin_us and onnx_intra_op_threads also set the in-process "
                             "onnxruntime backend")
    parser.add_argument("--json", default=None, help="write the results as JSON here")


def main(args: argparse.Namespace) -> int:
    """Run ``bev-mtl-ros bench``: print the table, write ``--json``; 0 = done, 2 = bad option."""
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
    bad = [p for p in args.node_param if not re.fullmatch(r"[A-Za-z_][\w.]*:=.+", p)]
    if bad:
        print(f"bench: bad --node-param {bad[0]!r} (expected NAME:=VALUE)", file=sys.stderr)
        return 2
    try:
        onnx_backend_options(args.node_param)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    if not args.no_rate and not (args.rate_hz > 0 and args.rate_seconds > 0):
        print(f"bench: --rate-hz {args.rate_hz} and --rate-seconds {args.rate_seconds} must be "
              "positive", file=sys.stderr)
        return 2
    cfg = BenchConfig(device=args.device, frames=args.frames, warmup=args.warmup, model=args.model,
                      scenarios=tuple(args.scenarios), points=args.points, image=image,
                      scaling=not args.no_scaling,
                      dds=not args.no_dds, reference=not args.no_reference,
                      spconv_path=args.spconv_path,
                      backends=tuple(args.backends) if args.backends else None,
                      threads=args.threads, rate=not args.no_rate, rate_hz=args.rate_hz,
                      rate_seconds=args.rate_seconds, node_params=tuple(args.node_param),
                      network_profile=not args.no_network_profile, raw_camera=args.raw_camera)
    res = run_benchmark(cfg)
    print(format_table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"[bench] JSON: {args.json}")
    return 0
