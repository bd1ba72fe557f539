"""ONNX export of the multi-task network with its contract, and self-verification against PyTorch.

``export_onnx`` traces :class:`~bev_mtl_ros.model.network.DeployWrapper` (inputs
:data:`INPUT_NAMES`, outputs :data:`OUTPUT_NAMES`, sigmoid on heatmap and drivable) with the
TorchScript-based exporter (``dynamo=False``) at opset 17, which onnxruntime's CPU, CUDA and
TensorRT execution providers all support. Graph properties:

* dynamic axis 0 of ``pillars`` (P, M, F) float32 and ``num_points`` (P,) int32 ("num_pillars");
* fixed batch 1: ``canvas_index`` (1, grid_h*grid_w) int64, ``image`` (1, 3, Hi, Wi) float32,
  ``camera_valid`` (1,) float32;
* the pillar scatter is a Gather (no ScatterND); attention is MatMul + Softmax;
* the contract JSON is stored in the model's metadata under ``ONNX_CONTRACT_KEY``, the widths under
  ``bev_mtl_ros.widths``.

Verification runs the ONNX file with onnxruntime (CPU provider) on ``n_checks`` random inputs with
different pillar counts (one of them with camera_valid = 0) and requires max |ONNX - PyTorch| <=
1e-4 on every output, else raises :class:`ExportError` naming the output and the difference.

Command line: ``bev-mtl-ros export --checkpoint models/NAME.pt --out models/NAME.onnx [--opset 17]
[--no-verify] [--checks 3] [--keep-prelu] [--semantic-stride S --checkpoint-out
models/NAME.pt]``. PReLU activations are written as depth-wise convolutions unless
``--keep-prelu`` (``runtime/onnx_rewrite.py``: onnxruntime's CPU provider fuses those). With
``--semantic-stride`` the checkpoint's weights are exported with the semantic logits at
``image_size / S`` (:func:`~bev_mtl_ros.runtime.checkpoint.with_semantic_stride`), and
``--checkpoint-out`` writes the checkpoint with that contract, so that the PyTorch fallback and the
ONNX graph agree.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..model.contract import (ONNX_CONTRACT_KEY, ContractError, ModelContract,
                              contract_from_metadata)
from ..model.network import (INPUT_NAMES, OUTPUT_NAMES, BevMultiTaskNet, DeployWrapper,
                             random_inputs)
from .onnx_rewrite import prelu_as_depthwise_conv

#: metadata key holding the network widths (JSON)
ONNX_WIDTHS_KEY = "bev_mtl_ros.widths"
#: parity tolerance, absolute, on every output (probabilities and raw logits alike)
PARITY_ATOL = 1e-4


class ExportError(RuntimeError):
    """Export failed or the exported graph does not reproduce the PyTorch outputs."""


def _check_pillar_counts(contract: ModelContract, n_checks: int) -> List[int]:
    """Distinct pillar counts for the verification runs (small, medium, max)."""
    gw, gh = contract.grid_size
    top = min(contract.max_pillars, gw * gh)
    base = [max(1, top // 7), top, max(1, top // 2), max(1, top // 3), 1, max(1, top // 5)]
    out: List[int] = []
    for p in base:
        if p not in out:
            out.append(p)
    while len(out) < n_checks:
        out.append(max(1, (len(out) * 977) % top))
    return out[:max(1, n_checks)]


def export_onnx(net_or_checkpoint: Union[BevMultiTaskNet, str], contract: Optional[ModelContract],
                out_path: str,
                opset: int = 17, verify: bool = True, n_checks: int = 3, atol: float = PARITY_ATOL,
                trace_pillars: Optional[int] = None,
                rewrite_prelu: bool = True) -> Dict[str, Any]:
    """Export a network (or a checkpoint file) to ONNX with its contract.

    Optionally verifies parity.

    Args:
        net_or_checkpoint: a BevMultiTaskNet or the path of a checkpoint (runtime.checkpoint).
        contract: the model contract; None = the net's / checkpoint's own. Must equal it otherwise.
        out_path: the .onnx file to write (parent directories are created).
        opset: ONNX opset (17 default; >= 13 required for the ops used).
        verify: compare onnxruntime (CPU) against PyTorch on ``n_checks`` random inputs.
        atol: maximum allowed absolute difference per output.
        trace_pillars: pillar count of the tracing input (default: a third of max_pillars).
        rewrite_prelu: write channel-wise PReLUs as depth-wise 1x1 convolutions
            (:func:`~bev_mtl_ros.runtime.onnx_rewrite.prelu_as_depthwise_conv`: the same function
            up to float32 rounding, fused by onnxruntime's CPU provider into its convolutions);
            the parity check runs on the rewritten graph.
    Returns: dict with "path", "opset", "size_bytes", "export_s", "prelu" {"prelu",
        "rewritten"} (node counts; zeros when ``rewrite_prelu`` is False), "parity" {output: max
        abs diff over all checks} and "checks" [{"num_pillars", "camera_valid", "max_abs_diff":
        {output: diff}}].
    Raises: ContractError if ``contract`` disagrees with the net; ExportError if export fails or
        parity is violated (naming the output and the difference); CheckpointError from loading.
    """
    if isinstance(net_or_checkpoint, (str, os.PathLike)):
        from .checkpoint import load_checkpoint
        net, ck_contract, _ = load_checkpoint(str(net_or_checkpoint))
    else:
        net, ck_contract = net_or_checkpoint, net_or_checkpoint.contract
    if contract is None:
        contract = ck_contract
    diff = contract.mismatches(ck_contract)
    if diff:
        raise ContractError(f"export_onnx: the given contract differs from the network's: {diff}")
    if opset < 13:
        raise ExportError(f"opset {opset} is too old (>= 13 needed)")

    if next(net.parameters()).device.type != "cpu":
        # Export and verify from a CPU copy: the graph is device-independent, and CUDA convolutions
        # (TF32) would not meet the 1e-4 parity against onnxruntime CPU.
        net = copy.deepcopy(net).cpu()
    was_training = net.training
    device = next(net.parameters()).device
    net = net.eval()
    wrapper = DeployWrapper(net).eval()
    gw, gh = contract.grid_size
    p_trace = trace_pillars or max(2, min(contract.max_pillars, gw * gh) // 3)
    example = tuple(t.to(device) for t in random_inputs(contract, p_trace, batch=1, seed=123))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    t0 = time.perf_counter()
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, example, buf, input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={"pillars": {0: "num_pillars"}, "num_points": {0: "num_pillars"}},
                opset_version=int(opset), do_constant_folding=True, dynamo=False)
    except Exception as e:
        raise ExportError(f"ONNX export to {out_path} failed: {type(e).__name__}: {e}") from e
    finally:
        net.train(was_training)
    import onnx
    model = onnx.load_from_string(buf.getvalue())
    _set_metadata(model, {ONNX_CONTRACT_KEY: contract.to_json(),
                          ONNX_WIDTHS_KEY: json.dumps(net.widths, sort_keys=True)})
    model.producer_name = "bev_mtl_ros"
    prelu = (prelu_as_depthwise_conv(model) if rewrite_prelu
             else {"prelu": 0, "rewritten": 0})
    onnx.checker.check_model(model)
    tmp = str(out_path) + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, out_path)
    report: Dict[str, Any] = {"path": str(out_path), "opset": int(opset),
                              "size_bytes": os.path.getsize(out_path),
                              "export_s": time.perf_counter() - t0, "prelu": prelu,
                              "parity": {}, "checks": []}
    if verify:
        net.eval()
        try:
            report.update(verify_onnx(net, out_path, contract, n_checks=n_checks, atol=atol))
        finally:
            net.train(was_training)
    return report


def _set_metadata(model: Any, entries: Dict[str, str]) -> None:
    """Set (replace) string metadata entries of an ONNX ModelProto."""
    keep = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in entries.items():
        model.metadata_props.add(key=k, value=v)


def verify_onnx(net: BevMultiTaskNet, onnx_path: str, contract: ModelContract, n_checks: int = 3,
                atol: float = PARITY_ATOL,
                pillar_counts: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Compare onnxruntime (CPU) with PyTorch (DeployWrapper, eval mode) on random inputs.

    Returns {"parity": {output: max abs diff}, "checks": [...]} (see :func:`export_onnx`).
    Raises ExportError naming the first output whose difference exceeds ``atol`` (or is NaN), or if
    a shape differs.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = min(2, os.cpu_count() or 1)
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    wrapper = DeployWrapper(net).eval()
    device = next(net.parameters()).device
    counts = (list(pillar_counts) if pillar_counts is not None
              else _check_pillar_counts(contract, n_checks))
    parity = {k: 0.0 for k in OUTPUT_NAMES}
    checks = []
    for i, p in enumerate(counts):
        cv = [0.0] if i == 1 else [1.0]   # one lidar-only check
        inputs = random_inputs(contract, p, batch=1, seed=1000 + i, camera_valid=cv)
        with torch.no_grad():
            ref = [t.cpu().numpy() for t in wrapper(*(t.to(device) for t in inputs))]
        got = sess.run(list(OUTPUT_NAMES), {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})
        diffs = {}
        for name, r, g in zip(OUTPUT_NAMES, ref, got):
            if r.shape != g.shape:
                raise ExportError(f"{onnx_path}: output '{name}' shape {g.shape} != PyTorch "
                                  f"{r.shape} (P={p})")
            d = (float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) if r.size
                 else 0.0)
            if not d <= atol:  # also catches NaN
                raise ExportError(f"{onnx_path}: ONNX/PyTorch parity failed on output '{name}': "
                                  f"max abs diff {d:.3g} > {atol:g} (P={p}, camera_valid={cv[0]})")
            diffs[name] = d
            parity[name] = max(parity[name], d)
        checks.append({"num_pillars": p, "camera_valid": cv[0], "max_abs_diff": diffs})
    return {"parity": parity, "checks": checks}


def read_onnx_contract(path: str) -> ModelContract:
    """Return the contract stored in an exported ONNX file's metadata.

    Raises FileNotFoundError if ``path`` is missing, ContractError naming the file if it is not a
    readable ONNX model, lacks the ``ONNX_CONTRACT_KEY`` entry, or the entry is invalid.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    import onnx
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise ContractError(f"{path} is not a readable ONNX model: {type(e).__name__}: {e}") from e
    return contract_from_metadata({p.key: p.value for p in model.metadata_props}, path)


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros export``."""
    parser.add_argument("--checkpoint", required=True, help="PyTorch checkpoint (models/NAME.pt)")
    parser.add_argument("--out", required=True, help="output ONNX file (models/NAME.onnx)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the onnxruntime/PyTorch parity check")
    parser.add_argument("--checks", type=int, default=3,
                        help="random inputs for the parity check (default 3)")
    parser.add_argument("--atol", type=float, default=PARITY_ATOL,
                        help="parity tolerance (default 1e-4)")
    parser.add_argument("--keep-prelu", action="store_true",
                        help="keep PRelu nodes as they are (default: written as depth-wise 1x1 "
                             "convolutions, faster with onnxruntime's CPU provider)")
    parser.add_argument("--semantic-stride", type=int, choices=(1, 2, 4), default=None,
                        help="export the weights with the semantic logits at image_size / S "
                             "(default: the checkpoint's contract)")
    parser.add_argument("--checkpoint-out", default=None,
                        help="with --semantic-stride: also write the checkpoint with that "
                             "contract here (may be --checkpoint itself)")


def main(args: argparse.Namespace) -> int:
    """Run the export; prints size and parity figures. Returns 0 on success, 1 on failure."""
    from .checkpoint import (CheckpointError, load_checkpoint, save_checkpoint,
                             with_semantic_stride)
    if args.checkpoint_out and args.semantic_stride is None:
        print("export failed: --checkpoint-out needs --semantic-stride")
        return 1
    try:
        source: Union[BevMultiTaskNet, str] = args.checkpoint
        extra: Dict[str, Any] = {}
        if args.semantic_stride is not None:
            net, _, extra = load_checkpoint(args.checkpoint)
            source = with_semantic_stride(net, args.semantic_stride)
        rep = export_onnx(source, None, args.out, opset=args.opset,
                          verify=not args.no_verify, n_checks=args.checks, atol=args.atol,
                          rewrite_prelu=not args.keep_prelu)
        if args.checkpoint_out:      # only once the graph is written (and its parity checked)
            save_checkpoint(args.checkpoint_out, source, extra=extra)
            print(f"wrote {args.checkpoint_out} (semantic_stride {args.semantic_stride})")
    except (ExportError, CheckpointError, ContractError, OSError) as e:
        print(f"export failed: {e}")
        return 1
    print(f"wrote {rep['path']} ({rep['size_bytes'] / 1e6:.2f} MB, opset {rep['opset']}, "
          f"export {rep['export_s']:.1f} s; PRelu as depth-wise convolutions: "
          f"{rep['prelu']['rewritten']} of {rep['prelu']['prelu']})")
    if rep["checks"]:
        for c in rep["checks"]:
            worst = max(c["max_abs_diff"].values())
            print(f"  check P={c['num_pillars']:6d} camera_valid={c['camera_valid']:.0f}: max abs "
                  f"diff {worst:.2e}")
        print("  parity (max abs diff, ONNX vs PyTorch): " +
              ", ".join(f"{k} {v:.2e}" for k, v in rep["parity"].items())
              + f"  [tolerance {args.atol:g}]")
    else:
        print("  parity check skipped (--no-verify)")
    return 0
