"""Network image input size and camera encoder: pipeline latency and training-step time.

A randomly initialised network of the shipped design (contract of config/train_default.yaml
with ``image_size`` replaced, its widths with ``camera_encoder`` replaced) at several image
sizes and encoders. Part of the benchmark package, run on its own (documented in
``bench/README.md``)::

    .venv/bin/python -m bev_mtl_ros.bench.encoder_sizes [--sizes 384x256 448x288 512x320] \
        [--frames 15] \
        [--encoders efficientnet_lite0 efficientnet_lite1 efficientnet_lite2 espnetv2_s1.5] \
        [--semantic-heads fpn espnetv2]

Per encoder and size: ``PerceptionPipeline`` p50 / p95 (ms) over ``--frames`` frames (after 3
warm-up ones) of
20k points in the front camera's view + a 1920x1208 image (``data.synth_scan.synthetic_scan`` /
``synthetic_image``) with onnxruntime CPU (1 intra-op thread) and with PyTorch eager; and the
median time of a training step (batch 4, ``--pillars`` pillars per frame, forward + backward +
AdamW step on a proxy loss: the mean square of every output) with the whole encoder trained and
with the stem + stride-4 level frozen (``freeze_camera_levels: 1``; for ESPNetv2 its strides 2
and 4). Torch uses 1 thread. Each encoder runs with each of ``--semantic-heads`` it supports
(``espnetv2``, the pretrained ESPNetv2 decoder, only with ESPNetv2 encoders), and with the
normalisation its pretrained weights expect (ImageNet mean / std for ESPNetv2).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from bev_mtl_ros.bench.config import REPO_ROOT
from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan
from bev_mtl_ros.model.camera_encoder import (ESPNETV2_IMAGE_MEAN, ESPNETV2_IMAGE_STD,
                                              ESPNETV2_VARIANTS, LITE_VARIANTS)
from bev_mtl_ros.model.network import (CAMERA_ENCODERS, DEFAULT_WIDTHS, ESPNETV2_HEADS,
                                       SEMANTIC_HEADS, random_inputs)
from bev_mtl_ros.runtime.backends import create_backend
from bev_mtl_ros.runtime.checkpoint import save_checkpoint
from bev_mtl_ros.runtime.export import export_onnx
from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
from bev_mtl_ros.train.train import MODEL_INIT_KEYS, build_model, contract_from_config


def pipeline_ms(model: Path, backend: str, frames: int) -> dict:
    """p50 / p95 (ms) of the whole in-process pipeline on 20k points + a 1920x1208 image."""
    kw = {"intra_op_threads": 1} if backend == "onnxruntime" else {}
    pipe = PerceptionPipeline(create_backend(str(model), backend=backend, **kw), torch_threads=1)
    pts = synthetic_scan(20000, "front", seed=0)
    img = synthetic_image((1920, 1208), seed=0)
    times = []
    for k in range(frames + 3):
        t0 = time.perf_counter()
        pipe(pts, img)
        if k >= 3:
            times.append(1e3 * (time.perf_counter() - t0))
    return {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}


def train_step_s(contract, model_cfg: dict, pillars: int, steps: int) -> float:
    """Median seconds of one training step (batch 4) on random inputs with a proxy loss."""
    torch.manual_seed(0)
    net = build_model(contract, model_cfg).train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    inputs = random_inputs(contract, pillars, batch=4, seed=0)
    times = []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        out = net(*inputs)
        loss = sum(v.float().square().mean() for v in out.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= 1:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Parse the options, then print one row per encoder, semantic head and image size."""
    ap = argparse.ArgumentParser(prog="python -m bev_mtl_ros.bench.encoder_sizes",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["384x256", "448x288", "512x320"])
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--pillars", type=int, default=4000)
    ap.add_argument("--config", default=str(REPO_ROOT / "config" / "train_default.yaml"))
    ap.add_argument("--encoders", nargs="+", choices=CAMERA_ENCODERS, default=None,
                    help="camera_encoder widths to compare (default: the config's)")
    ap.add_argument("--semantic-heads", nargs="+", choices=SEMANTIC_HEADS, default=None,
                    help="semantic_head widths to compare (default: the config's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    base = {k: v for k, v in (cfg.get("model") or {}).items() if k not in MODEL_INIT_KEYS}
    encoders = args.encoders or [base.get("camera_encoder", DEFAULT_WIDTHS["camera_encoder"])]
    heads = args.semantic_heads or [base.get("semantic_head", DEFAULT_WIDTHS["semantic_head"])]
    runs = [(e, h, s) for e, h, s in itertools.product(encoders, heads, args.sizes)
            if h not in ESPNETV2_HEADS or e in ESPNETV2_VARIANTS]
    print(f"{'encoder':>18} {'head':>8} {'image':>8} {'ort p50':>8} {'ort p95':>8} "
          f"{'torch p50':>9} {'torch p95':>9} {'step s':>7} {'step s frozen':>13}  (ms unless s)")
    with tempfile.TemporaryDirectory() as tmp:
        for encoder, head, size in runs:
            widths = {**base, "camera_encoder": encoder, "semantic_head": head}
            # the plain encoder (for comparison) has no frozen variant
            frozen = ({**widths, "freeze_camera_levels": 1}
                      if encoder in LITE_VARIANTS or encoder in ESPNETV2_VARIANTS else None)
            w, h = (int(v) for v in size.split("x"))
            overrides = {**cfg["contract"], "image_size": [w, h]}
            if encoder in ESPNETV2_VARIANTS:
                overrides.update(image_mean=list(ESPNETV2_IMAGE_MEAN),
                                 image_std=list(ESPNETV2_IMAGE_STD))
            contract = contract_from_config({"contract": overrides})
            torch.manual_seed(0)
            net = build_model(contract, widths).eval()
            onnx_path = Path(tmp) / f"net_{encoder}_{head}_{size}.onnx"
            save_checkpoint(str(onnx_path.with_suffix(".pt")), net, contract)
            export_onnx(net, contract, str(onnx_path), verify=False)
            ort = pipeline_ms(onnx_path, "onnxruntime", args.frames)
            pt = pipeline_ms(onnx_path, "pytorch", args.frames)
            step = train_step_s(contract, widths, args.pillars, args.train_steps)
            step_frozen = (train_step_s(contract, frozen, args.pillars, args.train_steps)
                           if frozen else float("nan"))
            print(f"{encoder:>18} {head:>8} {size:>8} {ort['p50']:8.1f} {ort['p95']:8.1f} "
                  f"{pt['p50']:9.1f} {pt['p95']:9.1f} "
                  f"{step:7.2f} {step_frozen:13.2f}", flush=True)


if __name__ == "__main__":
    main()
