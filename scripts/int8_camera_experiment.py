#!/usr/bin/env python3
"""int8 quantization of the camera encoder (issue 24 item 4): profile, quantize, time, evaluate.

What it measures, in one process, on the shipped model (``models/bev_mtl_default.onnx``,
onnxruntime CPU provider, the node's session options: :class:`OnnxRuntimeBackend` defaults):

1. **profile** (``--steps profile``): onnxruntime's profiler (``SessionOptions.enable_profiling``)
   over the real frames of ``--real``; the per-node kernel times are summed per module (the second
   component of the node name: ``/net/camera/...`` = the ESPNetv2 camera encoder, ``fusion``,
   ``semantic_head``, ``pfn``, ...) and reported in ms per frame and as a share of all node time.
   Run for the fp32 model and for every int8 variant; nodes that onnxruntime or the quantizer
   added (layout reorders, Q/DQ) count with the module of the node they feed or follow
   (``bev_mtl_ros.bench.network_profile``, which ``bev-mtl-ros bench`` prints too; run here
   without spinning, ``spin_us=0``, as when the figures in bench/README.md were taken).
2. **quantize** (``--steps quantize``): int8 variants of the camera-encoder nodes only (names
   starting with ``/net/camera/``; the pillar net, BEV backbone, fusion, neck and every head stay
   fp32), made with ``onnxruntime.quantization`` after its ``quant_pre_process`` (shape inference +
   basic graph optimisation), the contract metadata copied over:

   * ``qdq_u8s8``: static QDQ of the Conv, Add, Concat and AveragePool nodes, uint8 activations
     (asymmetric), int8 weights per output channel, MinMax calibration, ``reduce_range`` off
     (onnxruntime's advice for VNNI CPUs); PRelu and BatchNormalization stay fp32 (no int8
     kernel) between DequantizeLinear and QuantizeLinear;
   * ``qdq_u8s8_conv``: the same, Conv nodes only;
   * ``qdq_u8s8_pct``: the same with Percentile (99.999) calibration;
   * ``qdq_s8s8``: static QDQ, int8 activations and weights, MinMax;
   * ``dynamic``: ``quantize_dynamic`` of the camera Convs (ConvInteger, uint8 weights, activation
     scales computed per frame).

   Static calibration runs the network on ``--calib-frames`` frames of ``--calibration`` (the
   synthetic A2D2-format frames of ``build/default_model/synth_val``, made by ``bev-mtl-ros
   synth``), never on the eleven real frames (they are the evaluation set).
   **parity** (``--steps parity``): max |output - fp32| per graph output over the real frames and
   the share of semantic pixels whose argmax class is unchanged.
3. **bench** (``--steps bench``): network and pipeline time of fp32 and every int8 variant, side
   by side: one :class:`PerceptionPipeline` per model (``semantic=False``: detections only, as the
   benchmark's in-process pipeline), called on the same real frames (points + image) with the
   order of the models rotated every frame, so that the shared machine's load hits all alike;
   p50 / p90 of the pipeline's ``network`` and ``total`` timings over ``--rounds`` passes.
4. **eval** (``--steps eval``): :func:`evaluate_dataset` (what ``bev-mtl-ros evaluate --data DIR
   --model X --backend onnxruntime --render 0`` runs) on the real frames and on the synthetic
   held-out split for every model; semantic mIoU (fine and coarse 8-group), detection AP at 2 m,
   recall at 2 m and false positives (real), drivable IoU.

The decision rule of the issue: adopt only when faster in the benchmark and coarse mIoU costs
<= 0.01 on the real frames (and the synthetic figures stay within 0.01).

The figures below were measured on the shipped graph *with* its PRelu nodes; the shipped ONNX
now has them as depth-wise convolutions (``runtime/onnx_rewrite.py``), so to reproduce them pass
``--model`` a graph from ``bev-mtl-ros export --checkpoint models/bev_mtl_default.pt --out
build/q_eval/prelu.onnx --keep-prelu``.

Result (all figures of the runs in ``bench/int8_camera_experiment.json``; 2026-12-07,
onnxruntime 1.31.1, CPU provider, Intel Xeon Sapphire Rapids KVM guest, 2 cores shared with
another user's training run (load average 2.5-4), so absolute times are above the quiet-machine
~42 ms network; compare within one run). The CPU has the int8 dot-product
instructions onnxruntime can use: avx512_vnni, avx_vnni and amx_int8.

* Profile of the fp32 graph (node time per frame, 30 runs over the ten real frames with lidar):
  camera encoder 58.7 ms of 81.8 ms (72 %), semantic head 7.5 (9 %), fusion 4.8 (6 %), BEV
  backbone 2.7, pillar net 2.6, drivable head 2.3, detection head 1.3, scatter 0.9, neck 0.9.
  Inside the camera encoder: PRelu 28.1 ms, Conv 16.2 ms, NCHWc layout reorders around the convs
  8.1 ms, Concat 2.3, Add 2.2, AveragePool 1.2. The convolutions int8 could speed up are 16 ms.
* Network p50 (pipeline, ``semantic=False``, alternated in one process, 100 calls each):
  fp32 77.7 ms; qdq_u8s8 101.7; qdq_u8s8_conv 107.3; qdq_s8s8 117.6; dynamic 98.7. Every int8
  variant is slower: the int8 convs themselves (QLinearConv 17.9 ms, ConvInteger 19.2 ms) are no
  faster than the fp32 NCHWc convs (grouped 1x1 and dilated depth-wise convs, little arithmetic
  per byte), and the fp32 PRelu / BatchNormalization between them add QuantizeLinear /
  DequantizeLinear (11 ms), Transposes, a slow QLinearAveragePool (6 ms vs 1.2) and a slower
  PRelu (37 ms: it now runs on NHWC tensors).
* Accuracy, real frames (coarse mIoU / mIoU / Car AP@2m) and synthetic held-out split (coarse
  mIoU / mIoU / Car AP@2m): fp32 0.602 / 0.215 / 0.734 and 0.833 / 0.631 / 0.850;
  qdq_u8s8 0.580 / 0.202 / 0.733 and 0.807 / 0.598 / 0.850 (Cyclist AP@2m 0.669 -> 0.641);
  qdq_u8s8_conv 0.591 / 0.212 / 0.725 and 0.823 / 0.616 / 0.847; qdq_s8s8 as qdq_u8s8;
  dynamic 0.593 / 0.211 / 0.734 and 0.832 / 0.630 / 0.851. Static QDQ also fails the accuracy
  rule (-0.022 coarse mIoU on the real frames); only dynamic stays within 0.01, 27 % slower.
* Decision: not adopted (no variant is faster).
* Side check ``--prelu-rewrite`` (fp32 graph rewrites of the 50 PRelus, no int8; separate run
  ``--variants --prelu-rewrite --out build/q_eval_prelu``, key ``prelu_side_check`` of the JSON):
  network p50 fp32 75.1 ms, :func:`rewrite_prelu_max` 63.5 ms (-15 %, outputs bit-identical),
  :func:`rewrite_prelu_dwconv` 55.5 ms (-26 %; max |diff| 1e-5 on the semantic logits, 4e-6 on
  the detection outputs, every semantic argmax unchanged); every evaluation figure of both
  rewrites equals fp32's exactly, on the real and the synthetic sets. Camera encoder node time
  56.2 -> 43.0 ms (PRelu 27.2 ms and most layout reorders gone, Conv 15.5 -> 27.4 ms). PRelu, not
  the convolutions, is what to attack for the 45 ms target.

Usage::

    # the run above (about 8 minutes on the loaded 2-core machine)
    .venv/bin/python scripts/int8_camera_experiment.py --variants qdq_u8s8 qdq_u8s8_conv \
        qdq_s8s8 dynamic --prelu-rewrite --rounds 10 --profile-runs 30 --out build/q_eval
    # timing again only (the models are kept in --out; results.json is updated per step)
    .venv/bin/python scripts/int8_camera_experiment.py --variants qdq_u8s8 dynamic \
        --prelu-rewrite --steps bench --rounds 20
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from onnxruntime.quantization import CalibrationDataReader  # noqa: E402

from bev_mtl_ros.bench.network_profile import profile_network  # noqa: E402
from bev_mtl_ros.model.contract import ModelContract  # noqa: E402

#: node-name prefix of the camera encoder in the exported graph
CAMERA_PREFIX = "/net/camera/"
#: the variants this script knows (see the module docstring)
VARIANTS = ("qdq_u8s8", "qdq_u8s8_conv", "qdq_u8s8_pct", "qdq_s8s8", "dynamic")
#: op types a static variant quantizes (BatchNormalization, PRelu and the input normalisation stay
#: fp32: onnxruntime's CPU provider has no int8 kernel for them); "_conv" variants: Conv only
STATIC_OPS = ("Conv", "Add", "Concat", "AveragePool")


# ------------------------------------------------------------------------------------ frames
def frame_inputs(data_dir: str, contract: ModelContract, max_frames: Optional[int] = None,
                 need_lidar: bool = True) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield (points (N, 4) float32 x y z intensity, image (H, W, 3) uint8 RGB) of A2D2 frames.

    Frames without lidar (when ``need_lidar``) or without a camera image are skipped; at most
    ``max_frames`` are yielded, evenly spaced over the directory.
    """
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    reader = A2D2Dataset(data_dir, camera="front_center", require=())
    n = len(reader)
    idx = (range(n) if not max_frames or max_frames >= n
           else np.linspace(0, n - 1, int(max_frames)).round().astype(int).tolist())
    for i in idx:
        frame = reader.load_frame(int(i))
        if frame.image is None or (need_lidar and frame.paths.get("lidar") is None):
            continue
        yield np.asarray(frame.points_xyzi, np.float32), frame.image


def network_feeds(points: np.ndarray, image: np.ndarray, contract: ModelContract
                  ) -> Dict[str, np.ndarray]:
    """Network inputs of one frame exactly as :class:`PerceptionPipeline` builds them.

    Returns {input name: numpy array} with the graph's dtypes: pillars (P, M, F) float32,
    num_points (P,) int32, canvas_index (1, grid_h*grid_w) int64, image (1, 3, Hi, Wi) float32 in
    [0, 1], camera_valid (1,) float32 = 1.
    """
    from bev_mtl_ros.runtime.pillarize import pillarize
    from bev_mtl_ros.runtime.pipeline import preprocess_image
    b = pillarize(points, contract)
    img = preprocess_image(image, contract)
    return {"pillars": b.pillars.numpy().astype(np.float32),
            "num_points": b.num_points.numpy().astype(np.int32),
            "canvas_index": b.canvas_index.unsqueeze(0).numpy().astype(np.int64),
            "image": img.numpy(), "camera_valid": np.ones((1,), np.float32)}


class FrameCalibrationReader(CalibrationDataReader):
    """``onnxruntime.quantization.CalibrationDataReader`` over A2D2-format frames.

    Yields the network feeds (:func:`network_feeds`) of up to ``max_frames`` frames with lidar and
    a camera image of ``data_dir``, one at a time (nothing is kept in memory).
    """

    def __init__(self, data_dir: str, contract: ModelContract, max_frames: int):
        self._it = frame_inputs(data_dir, contract, max_frames)
        self.contract = contract
        self.count = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        item = next(self._it, None)
        if item is None:
            return None
        self.count += 1
        return network_feeds(item[0], item[1], self.contract)

    def __iter__(self):
        return self

    def __next__(self):
        nxt = self.get_next()
        if nxt is None:
            raise StopIteration
        return nxt


# ---------------------------------------------------------------------------------- quantize
def _copy_metadata(src: str, dst: str) -> None:
    """Copy the ONNX metadata_props of ``src`` (the contract, the widths) onto ``dst``."""
    import onnx
    from bev_mtl_ros.runtime.export import _set_metadata
    meta = {p.key: p.value for p in onnx.load(src, load_external_data=False).metadata_props}
    model = onnx.load(dst)
    _set_metadata(model, meta)
    onnx.save(model, dst)


def quantize_variant(fp32_path: str, out_path: str, variant: str, calib_dir: str,
                     calib_frames: int, contract: ModelContract) -> Dict[str, Any]:
    """Write the int8 ``variant`` of ``fp32_path`` to ``out_path``; returns what was done.

    Raises ValueError for an unknown variant; onnxruntime's errors propagate.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    t0 = time.perf_counter()
    pre = out_path[:-len(".onnx")] + ".pre.onnx"
    try:
        quant_pre_process(fp32_path, pre)
        pre_note = "quant_pre_process"
    except Exception as e:  # symbolic shape inference may not cope with the dynamic pillar axis
        print(f"  quant_pre_process failed ({type(e).__name__}: {e}); without symbolic shapes")
        quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
        pre_note = "quant_pre_process(skip_symbolic_shape=True)"
    nodes = [n.name for n in onnx.load(pre).graph.node if n.name.startswith(CAMERA_PREFIX)]
    info: Dict[str, Any] = {"variant": variant, "pre_process": pre_note,
                            "camera_nodes": len(nodes)}
    if variant == "dynamic":
        quantize_dynamic(pre, out_path, op_types_to_quantize=["Conv"], nodes_to_quantize=nodes,
                         weight_type=QuantType.QUInt8, per_channel=False)
    else:
        act = QuantType.QInt8 if variant == "qdq_s8s8" else QuantType.QUInt8
        method = (CalibrationMethod.Percentile if variant.endswith("_pct")
                  else CalibrationMethod.MinMax)
        # (MinMax keeps per-tensor ReduceMin/ReduceMax outputs only; onnxruntime 1.31's
        # CalibMaxIntermediateOutputs drops the collected batches instead of merging them)
        extra: Dict[str, Any] = {}
        if method == CalibrationMethod.Percentile:
            extra["CalibPercentile"] = 99.999
        reader = FrameCalibrationReader(calib_dir, contract, calib_frames)
        op_types = ["Conv"] if variant.endswith("_conv") else list(STATIC_OPS)
        quantize_static(pre, out_path, reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=op_types,
                        nodes_to_quantize=nodes, per_channel=True, reduce_range=False,
                        activation_type=act, weight_type=QuantType.QInt8,
                        calibrate_method=method, extra_options=extra)
        info.update(calibration_frames=reader.count,
                    calibration_dir=os.path.relpath(calib_dir, ROOT),
                    op_types=op_types,
                    activation_type=str(act), calibrate_method=str(method))
    _copy_metadata(fp32_path, out_path)
    os.remove(pre)
    ops = collections.Counter(n.op_type for n in onnx.load(out_path).graph.node)
    info.update(seconds=time.perf_counter() - t0, size_mb=os.path.getsize(out_path) / 1e6,
                ops={k: v for k, v in sorted(ops.items()) if k in (
                    "QuantizeLinear", "DequantizeLinear", "ConvInteger", "DynamicQuantizeLinear",
                    "Conv", "PRelu")})
    return info


# ------------------------------------------------------------------ side check: PRelu rewrite
def rewrite_prelu_max(src: str, dst: str) -> Dict[str, Any]:
    """Write ``src`` with every PRelu replaced by an exact fp32 equivalent (not a quantization).

    PRelu(x, s) = Max(x, s * x) where every slope s <= 1 (x >= 0: x >= s x; x < 0: s x >= x),
    else Relu(x) + s * Min(x, 0); both give bit-identical results (one multiplication, no
    rounding difference). Side measurement of this experiment: the profile shows PRelu as the
    camera encoder's most expensive op type on onnxruntime's CPU provider. Metadata is kept.
    Returns {"prelu": count, "as_max": count}.
    """
    import onnx
    from onnx import helper, numpy_helper
    model = onnx.load(src)
    g = model.graph
    vals = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    vals.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
                 if n.op_type == "Constant" and n.attribute})
    nodes, n_prelu, n_max = [], 0, 0
    for n in g.node:
        if n.op_type != "PRelu":
            nodes.append(n)
            continue
        n_prelu += 1
        x, slope = n.input
        y, b = n.output[0], n.name
        if slope in vals and float(np.max(vals[slope])) <= 1.0:
            n_max += 1
            nodes += [helper.make_node("Mul", [x, slope], [b + "_sx"], name=b + "/mul"),
                      helper.make_node("Max", [x, b + "_sx"], [y], name=b + "/max")]
        else:
            nodes += [helper.make_node("Relu", [x], [b + "_r"], name=b + "/relu"),
                      helper.make_node("Min", [x, "prelu_rewrite_zero"], [b + "_m"],
                                       name=b + "/min"),
                      helper.make_node("Mul", [b + "_m", slope], [b + "_ms"], name=b + "/mul"),
                      helper.make_node("Add", [b + "_r", b + "_ms"], [y], name=b + "/add")]
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32),
                                                 "prelu_rewrite_zero"))
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return {"prelu": n_prelu, "as_max": n_max}


def rewrite_prelu_dwconv(src: str, dst: str) -> Dict[str, Any]:
    """Write ``src`` with every channel-wise PRelu as depth-wise 1x1 convolutions: the package's
    :func:`~bev_mtl_ros.runtime.onnx_rewrite.prelu_as_depthwise_conv` (which ``bev-mtl-ros
    export`` now applies; use ``export --keep-prelu`` for a graph to rewrite here). Metadata is
    kept. Returns {"prelu": count, "rewritten": count}."""
    import onnx

    from bev_mtl_ros.runtime.onnx_rewrite import prelu_as_depthwise_conv
    model = onnx.load(src)
    rep = prelu_as_depthwise_conv(model)
    onnx.save(model, dst)
    return rep


# ------------------------------------------------------------------------------------ parity
def output_diffs(paths: Dict[str, str], feeds: Sequence[Dict[str, np.ndarray]]
                 ) -> Dict[str, Dict[str, float]]:
    """Per model, max |output - fp32 output| per graph output over ``feeds``.

    Also "semantic_argmax_agree": the share of semantic pixels (network resolution) whose argmax
    class equals fp32's. ``paths`` must hold "fp32".
    """
    import onnxruntime as ort
    sessions = {k: ort.InferenceSession(p, providers=["CPUExecutionProvider"])
                for k, p in paths.items()}
    names = [o.name for o in sessions["fp32"].get_outputs()]
    ref = [sessions["fp32"].run(names, f) for f in feeds]
    out: Dict[str, Dict[str, float]] = {}
    for k, sess in sessions.items():
        if k == "fp32":
            continue
        d = {n: 0.0 for n in names}
        agree, total = 0, 0
        for f, r in zip(feeds, ref):
            got = sess.run(names, f)
            for n, a, b in zip(names, r, got):
                d[n] = max(d[n], float(np.max(np.abs(a.astype(np.float64) - b))))
                if n == "semantic":
                    same = a.argmax(1) == b.argmax(1)
                    agree += int(same.sum())
                    total += same.size
        d["semantic_argmax_agree"] = agree / max(total, 1)
        out[k] = d
    return out


# ------------------------------------------------------------------------------------- bench
def bench_models(paths: Dict[str, str], frames: Sequence[Tuple[np.ndarray, np.ndarray]],
                 rounds: int, warmup: int = 2) -> Dict[str, Any]:
    """Time one PerceptionPipeline per model on the same frames, model order rotated per frame.

    Returns {name: {"network_p50", "network_p90", "total_p50", "total_p90", "n"}} in ms (the
    pipeline's own stage timings, ``semantic=False``).
    """
    from bev_mtl_ros.runtime.onnx_backend import OnnxRuntimeBackend
    from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
    names = list(paths)
    pipes = {k: PerceptionPipeline(OnnxRuntimeBackend(p)) for k, p in paths.items()}
    times: Dict[str, Dict[str, List[float]]] = {k: {"network": [], "total": []} for k in names}
    step = 0
    for r in range(warmup + rounds):
        for pts, img in frames:
            order = names[step % len(names):] + names[:step % len(names)]
            step += 1
            for k in order:
                res = pipes[k](pts, img, semantic=False)
                if r >= warmup:
                    times[k]["network"].append(res.timings_ms["network"])
                    times[k]["total"].append(res.timings_ms["total"])
    out = {}
    for k in names:
        t = times[k]
        out[k] = {"network_p50": float(np.median(t["network"])),
                  "network_p90": float(np.percentile(t["network"], 90)),
                  "total_p50": float(np.median(t["total"])),
                  "total_p90": float(np.percentile(t["total"], 90)), "n": len(t["network"])}
    return out


# -------------------------------------------------------------------------------------- eval
def eval_figures(rep: Dict[str, Any]) -> Dict[str, Any]:
    """Pick the figures compared across models from an :func:`evaluate_dataset` report."""
    det = rep["detection"]
    at2 = rep["detection_at_2m"]
    pts = rep["detection_point_labels"]
    return {"miou": rep["semantic"]["miou"], "coarse_miou": rep["semantic_coarse"]["miou"],
            "car_ap_2m": det["ap"].get("dist@2m", {}).get("Car"),
            "map_2m": det["map"].get("dist@2m"),
            "ap_2m": {k: v for k, v in det["ap"].get("dist@2m", {}).items()
                      if v is not None and v == v},   # no ground truth: None / NaN
            "recall_2m": at2.get("recall"), "false_positives_2m": at2.get("false_positives"),
            "detections_at_threshold": pts.get("detections"),
            "clutter_fp_by_points": pts.get("clutter_false_positives"),
            "drivable_iou": rep["drivable"]["iou"],
            "network_p50_ms": rep["timings_ms"].get("network", {}).get("p50")}


def evaluate_models(paths: Dict[str, str], data: Dict[str, str], out_dir: str
                    ) -> Dict[str, Dict[str, Any]]:
    """Run :func:`evaluate_dataset` for every (model, data set); returns {set: {model: figs}}."""
    from bev_mtl_ros.train.evaluate import evaluate_dataset
    res: Dict[str, Dict[str, Any]] = {}
    for dname, ddir in data.items():
        res[dname] = {}
        for mname, mpath in paths.items():
            rep = evaluate_dataset(ddir, mpath, os.path.join(out_dir, f"{dname}_{mname}"),
                                   backend="onnxruntime", num_render=0, progress=False)
            res[dname][mname] = eval_figures(rep)
            print(f"  {dname:5s} {mname:14s} " + "  ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in res[dname][mname].items() if k != "ap_2m"), flush=True)
            aps = res[dname][mname]["ap_2m"]
            print("        AP@2m " + ", ".join(f"{c} {v:.3f}" for c, v in aps.items()))
    return res


# -------------------------------------------------------------------------------------- main
def cpu_int8_flags() -> List[str]:
    """Return the CPU's int8 flags among avx512_vnni, avx_vnni, amx_int8, avx512_bf16 (Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")),
                         [])
    except OSError:
        return []
    return [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16") if f in flags]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the selected steps; prints the figures and writes ``--out``/results.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "bev_mtl_default.onnx"))
    ap.add_argument("--calibration", default=os.path.join(ROOT, "build", "default_model",
                                                          "synth_val"))
    ap.add_argument("--calib-frames", type=int, default=40)
    ap.add_argument("--real", default=os.path.join(ROOT, "test", "data", "real_a2d2"))
    ap.add_argument("--synth", default=os.path.join(ROOT, "build", "default_model", "synth_val"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "q_eval"))
    ap.add_argument("--variants", nargs="*", default=["qdq_u8s8"], choices=VARIANTS,
                    help="int8 variants (none: fp32 and, with --prelu-rewrite, its rewrites)")
    ap.add_argument("--steps", nargs="+",
                    default=["quantize", "parity", "profile", "bench", "eval"],
                    choices=("quantize", "parity", "profile", "bench", "eval"))
    ap.add_argument("--rounds", type=int, default=10, help="bench passes over the real frames")
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--prelu-rewrite", action="store_true",
                    help="side check: also profile / time / evaluate the fp32 graph with PRelu "
                         "rewritten (rewrite_prelu_max: 'fp32_prelu_max', exact; "
                         "rewrite_prelu_dwconv: 'fp32_prelu_dw')")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    from bev_mtl_ros.runtime.export import read_onnx_contract
    import onnxruntime as ort
    contract = read_onnx_contract(args.model)
    res_path = os.path.join(args.out, "results.json")
    results: Dict[str, Any] = {}
    if os.path.isfile(res_path):
        with open(res_path) as fh:
            results = json.load(fh)
    results.update(cpu_int8_flags=cpu_int8_flags(), onnxruntime=ort.__version__,
                   model=os.path.relpath(args.model, ROOT))
    print(f"CPU int8 flags: {results['cpu_int8_flags']}; onnxruntime {ort.__version__}")
    paths = {"fp32": args.model}
    paths.update({v: os.path.join(args.out, f"camera_{v}.onnx") for v in args.variants})

    if args.prelu_rewrite:
        paths["fp32_prelu_max"] = os.path.join(args.out, "fp32_prelu_max.onnx")
        paths["fp32_prelu_dw"] = os.path.join(args.out, "fp32_prelu_dw.onnx")
        results["prelu_rewrite"] = {
            "max": rewrite_prelu_max(args.model, paths["fp32_prelu_max"]),
            "dwconv": rewrite_prelu_dwconv(args.model, paths["fp32_prelu_dw"])}
    if "quantize" in args.steps:
        results.setdefault("quantize", {})
        for v in args.variants:
            print(f"quantizing {v} ...", flush=True)
            info = quantize_variant(args.model, paths[v], v, args.calibration, args.calib_frames,
                                    contract)
            results["quantize"][v] = info
            print(f"  {info}", flush=True)
    real = list(frame_inputs(args.real, contract))
    feeds = ([network_feeds(p, i, contract) for p, i in real]
             if {"profile", "parity"} & set(args.steps) else [])
    if "parity" in args.steps:
        results["parity"] = output_diffs(paths, feeds)
        for k, d in results["parity"].items():
            print(f"parity {k:14s} vs fp32 (max abs diff, real frames): " + ", ".join(
                f"{n} {v:.3g}" for n, v in d.items()), flush=True)
    if "profile" in args.steps:
        results.setdefault("profile", {})
        for k, p in paths.items():
            prof = profile_network(p, feeds, args.profile_runs, args.out, spin_us=0)
            results["profile"][k] = prof
            print(f"profile {k}: node time {prof['node_ms_per_frame']:.1f} ms/frame, wall p50 "
                  f"{prof['wall_ms_p50']:.1f} ms; " + ", ".join(
                      f"{m} {ms:.1f} ms ({prof['share'][m]:.0%})"
                      for m, ms in prof["per_module_ms"].items()), flush=True)
            for key in ("top_ops", "camera_ops"):
                print(f"  {key} (ms/frame): "
                      + ", ".join(f"{o} {ms:.1f}" for o, ms in prof[key].items()))
    if "bench" in args.steps:
        b = bench_models(paths, real, args.rounds)
        results["bench"] = {"rounds": args.rounds, "frames": len(real), "models": b}
        for k, v in b.items():
            print(f"bench {k:14s} network p50 {v['network_p50']:.1f} ms (p90 "
                  f"{v['network_p90']:.1f}), pipeline total p50 {v['total_p50']:.1f} ms (p90 "
                  f"{v['total_p90']:.1f}), n={v['n']}", flush=True)
    if "eval" in args.steps:
        results["eval"] = evaluate_models(paths, {"real": args.real, "synth": args.synth},
                                          args.out)
    with open(res_path, "w") as fh:
        json.dump(results, fh, indent=1, sort_keys=True)
    print(f"wrote {res_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
