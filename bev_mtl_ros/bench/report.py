"""The benchmark's report: the node's overhead per scenario and the human-readable table."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from bev_mtl_ros.bench.rate_replay import rate_table_lines

__all__ = ["OVERHEAD_TARGET_MS", "node_overhead", "format_table"]

#: issue 11's targets for the node's overhead (end-to-end p50 - pipeline p50), ms, per scenario
OVERHEAD_TARGET_MS = {"a2d2_front_center": 10.0, "lidar360_64beam": 15.0}


def node_overhead(s: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """Return what the node costs on top of its pipeline, p50 per frame, ms.

    ``detections_only`` (only ~/detections subscribed, the optional outputs are not built) and
    ``all_outputs`` (every output subscribed), from ``bench_end_to_end``'s per-frame
    ``node_overhead_ms`` (end-to-end latency minus the node's own pipeline time for the same
    frame). None where a figure is missing.
    """
    out: Dict[str, Optional[float]] = {}
    for name, key in (("detections_only", "end_to_end_dds"),
                      ("all_outputs", "end_to_end_dds_all_outputs")):
        v = ((s.get(key) or {}).get("node_overhead_ms") or {}).get("p50")
        out[name] = round(float(v), 2) if isinstance(v, (int, float)) else None
    return out


def _row(lines: List[str], name: str, v: Any) -> None:
    """Append one table row: p50 / p95 / max (and the ratio to the fastest), or the error."""
    if not isinstance(v, dict):
        return
    if "p50" in v:
        extra = f"  x{v['ratio_to_fastest']:.2f}" if "ratio_to_fastest" in v else ""
        lines.append(f"  {name:<52} {v['p50']:9.2f} {v['p95']:9.2f} {v['max']:9.2f}{extra}")
    elif "error" in v:
        lines.append(f"  {name:<52} n/a ({v['error'][:80]})")


def _header(res: Dict[str, Any]) -> str:
    """Return the table's first line: device, model, frames, machine."""
    m = res["machine"]
    return (f"bev_mtl_ros benchmark — device {res['device']}, model {res['model']}, "
            f"{res['frames']} frames after {res['warmup']} warm-up; "
            f"{m['processor']} x{m['cpu_count']}, torch "
            f"{m['torch']} ({m['torch_threads']} threads), onnxruntime "
            f"{m['onnxruntime']}, load average {m['loadavg_1_5_15']}"
            + (f"; node parameters {' '.join(res['node_params'])}" if res.get("node_params")
               else "")
            + ("; raw camera (distorted image + CameraInfo, undistorted by the node)"
               if res.get("raw_camera") else ""))


def _stage_lines(lines: List[str], s: Dict[str, Any]) -> None:
    """Append the in-process stage rows of one scenario (network: one row per backend)."""
    for k, v in s["stages"].items():
        if k == "network":
            for lab, vv in v.items():
                _row(lines, f"network [{lab}]", vv)
        else:
            _row(lines, k, v)
    for k, v in (s.get("pipeline_in_process") or {}).items():
        _row(lines, f"pipeline in-process: {k}", v)
    _row(lines, "pipeline in-process without semantic mask: total",
         (s.get("pipeline_in_process_no_semantic") or {}).get("total"))
    _profile_lines(lines, s.get("network_profile"))


def _profile_lines(lines: List[str], prof: Optional[Dict[str, Any]]) -> None:
    """Append the network's onnxruntime profile: ms per frame per module and per op type."""
    if not prof:
        return
    if "error" in prof:
        lines.append(f"  network profile: {prof['error']}")
        return
    lines.append(f"  network profile (onnxruntime profiler, {prof['runs']} runs): session.run "
                 f"p50 {prof['wall_ms_p50']:.1f} ms, kernels {prof['node_ms_per_frame']:.1f} ms "
                 "per frame")
    lines.append("    per module: " + ", ".join(
        f"{k} {v:.1f} ({100 * prof['share'][k]:.0f} %)" for k, v in prof["per_module_ms"].items()))
    lines.append("    per op type: " + ", ".join(
        f"{k} {v:.1f}" for k, v in prof["top_ops"].items()))
    if prof.get("camera_ops"):
        lines.append("    camera encoder per op type: " + ", ".join(
            f"{k} {v:.1f}" for k, v in prof["camera_ops"].items()))


def _end_to_end_lines(lines: List[str], name: str, s: Dict[str, Any]) -> None:
    """Append the end-to-end rows of one scenario and its node-overhead line."""
    for key, what in (("end_to_end_dds", "detections only"),
                      ("end_to_end_dds_all_outputs", "all outputs")):
        e2e = s.get(key)
        if isinstance(e2e, dict) and "latency_ms" in e2e:
            _row(lines, f"end-to-end over DDS ({what} subscribed), lost {e2e.get('lost')}",
                 e2e["latency_ms"])
            _row(lines, f"  node's own pipeline time ({what})", e2e.get("node_pipeline_ms"))
            _row(lines, f"  node overhead = end-to-end - node's pipeline ({what})",
                 e2e.get("node_overhead_ms"))
            _row(lines, f"  node per-frame cost: convert + pipeline + outputs ({what})",
                 e2e.get("node_total_ms"))
        elif isinstance(e2e, dict):
            _row(lines, f"end-to-end over DDS ({what})", e2e)
    ov = s.get("node_overhead_ms")
    if ov:
        target = OVERHEAD_TARGET_MS.get(name)

        def fmt(v: Optional[float]) -> str:
            return "n/a" if v is None else f"{v:.1f} ms"
        lines.append("  node overhead p50 (end-to-end - pipeline, per frame): detections only "
                     f"{fmt(ov['detections_only'])}"
                     f", all outputs {fmt(ov['all_outputs'])}"
                     + (f" (target <= {target:.0f} ms)" if target else ""))


def _reference_lines(lines: List[str], s: Dict[str, Any]) -> None:
    """Append the pillarization-reference lines and the memory line of one scenario."""
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


def _scaling_lines(lines: List[str], scaling: List[Dict[str, Any]]) -> None:
    """Append the scaling series (points -> pillars, pillarize and network p50, peak RSS)."""
    lines.append("\nscaling (360-degree scans, network = "
                 f"{scaling[0]['network_backend']}):")
    lines.append(f"  {'points':>8} {'pillars':>8} {'dropped':>8} {'pillarize p50':>14} "
                 f"{'network p50':>12} {'peak RSS MiB':>13}")
    for r in scaling:
        lines.append(f"  {r['points']:>8} {r['pillars']:>8} {r['pillars_dropped']:>8} "
                     f"{r['pillarize']['p50']:>14.2f} {r['network']['p50']:>12.1f} "
                     f"{r['peak_rss_mb']:>13.1f}")


def format_table(res: Dict[str, Any]) -> str:
    """Return a human-readable table of a result dict (ms: p50 / p95 / max)."""
    lines = [_header(res)]
    for name, s in res["scenarios"].items():
        lines.append(f"\n{name}: {s['points']} points, image {s['image'][0]}x{s['image'][1]}, "
                     f"pillars {s.get('pillar_stats', {}).get('pillars_occupied', '?')} occupied "
                     f"/ {s.get('pillar_stats', {}).get('pillars_dropped', '?')} dropped")
        lines.append(f"  {'stage':<52} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
        _stage_lines(lines, s)
        _end_to_end_lines(lines, name, s)
        _reference_lines(lines, s)
    if res.get("rate_replay"):
        lines.extend(rate_table_lines(res["rate_replay"]))
    if res.get("scaling"):
        _scaling_lines(lines, res["scaling"])
    return "\n".join(lines)
