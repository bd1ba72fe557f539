"""Where the network's time goes: onnxruntime's profiler, summed per module of the network.

:func:`profile_network` runs an ONNX graph with ``SessionOptions.enable_profiling`` (the node's
session settings: :func:`bev_mtl_ros.runtime.onnx_backend.session_options`) and sums the kernel
time of every node per module of :class:`~bev_mtl_ros.model.network.BevMultiTaskNet` (the second
part of an exported node's name, ``/net/<module>/...``: ``camera``, ``semantic_head``,
``fusion``, ``pfn``, ...) and per operator type. Nodes that onnxruntime adds while optimising
(layout reorders around its blocked-layout convolutions, fused nodes without a ``/net/`` name) are
counted with the module of the node they serve (:func:`node_modules`).

Kernel times are what the CPU provider's kernels took; their sum per run is below the wall time of
``session.run`` (thread hand-offs, the executor itself), which is reported beside it.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["module_of", "node_modules", "profile_network"]


def module_of(node_name: str) -> str:
    """Return the network module of an exported node name.

    ``'/net/camera/base_net/level1/Conv'`` -> ``'camera'``; a name outside ``/net/`` ->
    ``'other'``.
    """
    parts = node_name.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "net" else "other"


def node_modules(optimized_path: str) -> Dict[str, str]:
    """Map every node of a session's optimised graph (saved by onnxruntime) to its module.

    A node without a ``/net/`` name takes the module of the node producing its first input, else
    of the first node consuming its first output (through at most eight such nodes), so that its
    time counts with the layer it serves; ``'other'`` when neither leads to one.

    Args:
        optimized_path: the ``SessionOptions.optimized_model_filepath`` file onnxruntime wrote.
    Returns:
        {node name: module name}.
    Raises:
        OSError / onnx errors: the file is missing or not an ONNX model.
    """
    import onnx
    g = onnx.load(optimized_path).graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: Dict[str, List[Any]] = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    out = {}
    for n in g.node:
        mod, cur = module_of(n.name), n
        for _ in range(8):
            if mod != "other" or cur is None:
                break
            p = producer.get(cur.input[0]) if cur.input else None
            if p is not None and module_of(p.name) != "other":
                mod = module_of(p.name)
                break
            c = consumers.get(cur.output[0], []) if cur.output else []
            if c and module_of(c[0].name) != "other":
                mod = module_of(c[0].name)
                break
            cur = p if p is not None else (c[0] if c else None)
        out[n.name] = mod
    return out


def profile_network(path: str, feeds: Sequence[Dict[str, np.ndarray]], runs: int,
                    out_dir: str, intra_op_threads: Optional[int] = None,
                    spin_us: Optional[int] = None, top: int = 12) -> Dict[str, Any]:
    """Profile an ONNX graph on the CPU over ``runs`` passes of ``feeds``; sum per module and op.

    One warm-up pass over ``feeds`` first (not counted). The profile and the optimised graph are
    written to ``out_dir`` and removed afterwards.

    Args:
        path: the .onnx file.
        feeds: one or more {input name: numpy array} (the graph's dtypes), used in turn.
        runs: profiled passes (>= 1).
        out_dir: a writable folder for onnxruntime's files.
        intra_op_threads, spin_us: the node's onnxruntime settings (None: the backend's defaults,
            :data:`~bev_mtl_ros.runtime.onnx_backend.DEFAULT_SPIN_US`).
        top: operator types kept in ``top_ops`` and ``camera_ops``.
    Returns:
        {"runs", "wall_ms_p50" (``session.run`` wall time), "node_ms_per_frame" (summed kernel
        time), "per_module_ms" {module: ms per frame, largest first}, "share" {module: fraction
        of the kernel time}, "top_ops" {op type: ms per frame}, "camera_ops" (the same within
        the camera encoder)}.
    Raises:
        ValueError: ``runs`` < 1 or no feeds.
    """
    import onnxruntime as ort

    from bev_mtl_ros.runtime.onnx_backend import DEFAULT_SPIN_US, session_options
    if runs < 1 or not feeds:
        raise ValueError(f"profile_network needs runs >= 1 and feeds (got {runs}, {len(feeds)})")
    so = session_options(ort, intra_op_threads, DEFAULT_SPIN_US if spin_us is None else spin_us)
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(
        out_dir, "ort_profile_" + os.path.splitext(os.path.basename(path))[0])
    so.optimized_model_filepath = so.profile_file_prefix + "_optimized.onnx"
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    owner = node_modules(so.optimized_model_filepath)
    os.remove(so.optimized_model_filepath)
    names = [o.name for o in sess.get_outputs()]
    for f in feeds:
        sess.run(names, f)
    walls = []
    for r in range(runs):
        t0 = time.perf_counter()
        sess.run(names, feeds[r % len(feeds)])
        walls.append((time.perf_counter() - t0) * 1e3)
    prof = sess.end_profiling()
    with open(prof, encoding="utf-8") as fh:
        events = json.load(fh)
    os.remove(prof)
    # model_run events delimit the passes; the warm-up ones are skipped
    run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    t_min = run_starts[len(feeds)] if len(run_starts) > len(feeds) else 0
    per_mod: Dict[str, float] = collections.defaultdict(float)
    per_op: Dict[str, float] = collections.defaultdict(float)
    cam_op: Dict[str, float] = collections.defaultdict(float)
    for e in events:
        if (e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time")
                or e["ts"] < t_min):
            continue
        node = e["name"][:-len("_kernel_time")]
        mod = owner.get(node, module_of(node))
        op = e.get("args", {}).get("op_name", "?")
        per_mod[mod] += e["dur"] / 1e3
        per_op[op] += e["dur"] / 1e3
        if mod == "camera":
            cam_op[op] += e["dur"] / 1e3
    total = sum(per_mod.values()) or 1.0

    def largest(d: Dict[str, float], n: Optional[int] = None) -> Dict[str, float]:
        items = sorted(d.items(), key=lambda kv: -kv[1])[:n]
        return {k: round(v / runs, 3) for k, v in items}

    return {"runs": runs, "wall_ms_p50": round(float(np.median(walls)), 3),
            "node_ms_per_frame": round(sum(per_mod.values()) / runs, 3),
            "per_module_ms": largest(per_mod),
            "share": {k: round(v / total, 4) for k, v in
                      sorted(per_mod.items(), key=lambda kv: -kv[1])},
            "top_ops": largest(per_op, top), "camera_ops": largest(cam_op, top)}
