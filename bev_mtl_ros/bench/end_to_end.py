"""End-to-end benchmark over DDS: this process feeds the node (a separate process) and times it."""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.bench.config import REPO_ROOT
from bev_mtl_ros.bench.timing import summarize_ms

__all__ = ["bench_end_to_end"]


def _node_command(model_path: Path, device: str, backend: str,
                  params_file: Optional[str], node_params: Sequence[str] = ()) -> List[str]:
    """Return the node's command line: inputs remapped to the replay topics, the given params.

    ``node_params``: extra ``name:=value`` parameters (``bench --node-param``), set last.
    """
    from bev_mtl_ros.ros.params import input_remap_args
    from bev_mtl_ros.ros.replay import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, LIDAR_TOPIC,
                                        default_node_cmd)

    cmd = (default_node_cmd() + ["--ros-args"]
           + input_remap_args(LIDAR_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC))
    pf = Path(params_file) if params_file else None
    if pf is not None and not pf.is_absolute():
        pf = REPO_ROOT / pf
    if pf is not None and pf.exists():
        cmd += ["--params-file", str(pf)]
    cmd += ["-p", f"model_path:={model_path}", "-p", f"device:={device}", "-p",
            f"backend:={backend}", "-p", "use_sim_time:=false"]
    for p in node_params:
        cmd += ["-p", p]
    return cmd


def wait_for_node_process(feeder: Any, proc: subprocess.Popen, log_file: IO[str],
                          timeout_s: float) -> None:
    """Wait until the node process ``proc`` subscribed to ``feeder``'s inputs.

    Then 1 s more for its publishers to match the feeder's subscriptions.
    Raises RuntimeError with the tail of ``log_file`` (the node's output) when the process exited,
    or when it did not subscribe within ``timeout_s`` seconds.
    """
    ready = feeder.wait_for_node(timeout_s, alive=lambda: proc.poll() is None, image=False)
    if proc.poll() is not None:
        log_file.seek(0)
        raise RuntimeError(f"node exited: {log_file.read()[-2000:]}")
    if not ready:
        raise RuntimeError("node did not subscribe in time")
    time.sleep(1.0)


def _feed_closed_loop(feeder: Any, points: np.ndarray, image: np.ndarray, frames: int,
                      warmup: int) -> Tuple[Dict[int, float], int]:
    """Send warmup + frames frames, each after the previous answer (or 10 s).

    Returns ({frame k: latency ms} for the timed frames that were answered, frames lost).
    """
    got = feeder.detections
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
    return lat, lost


def _node_figures(lat: Dict[int, float], lost: int, timings: List[Dict[str, float]],
                  frames: int, warmup: int) -> Dict[str, Any]:
    """Return the node's own pipeline time, its overhead and per-frame cost (ms summaries).

    The k-th timing message is frame k's when no frame was lost; otherwise only an error entry.
    """
    if lost or len(timings) != warmup + frames:
        return {"node_overhead_ms": {
            "error": f"{len(timings)} timing messages for {warmup + frames} frames, {lost} "
                     "lost: frames cannot be matched"}}
    pipe = {k: timings[k].get("pipeline_total", float("nan")) for k in lat}
    return {"node_pipeline_ms": summarize_ms(list(pipe.values())),
            "node_overhead_ms": summarize_ms([lat[k] - pipe[k] for k in lat]),
            "node_total_ms": summarize_ms([timings[k].get("total", float("nan")) for k in lat])}


def _stop_node(node_proc: subprocess.Popen) -> None:
    """SIGINT the node, wait 15 s, then kill it."""
    node_proc.send_signal(2)
    try:
        node_proc.wait(15)
    except subprocess.TimeoutExpired:
        node_proc.kill()
        node_proc.wait()


def _run_against_node(node_proc: subprocess.Popen, log_file: IO[str], env: Dict[str, str],
                      domain: int, points: np.ndarray, image: np.ndarray, frames: int,
                      warmup: int, timeout_s: float, all_outputs: bool,
                      raw_camera: bool = False) -> Dict[str, Any]:
    """Wait for the node, feed it closed-loop and collect the figures (see bench_end_to_end)."""
    from bev_mtl_ros.ros.feeder import NodeFeeder

    feeder: Optional[NodeFeeder] = None
    try:
        # the k-th ~/debug/processing_time_ms message is frame k's (frames are answered in order)
        feeder = NodeFeeder(env, domain, "bench_e2e", camera_info=True, raw_camera=raw_camera,
                            timings=True, all_outputs=all_outputs, clock=time.perf_counter)
        wait_for_node_process(feeder, node_proc, log_file, timeout_s)
        lat, lost = _feed_closed_loop(feeder, points, image, frames, warmup)
        timings = feeder.timings
        feeder.spin_until(lambda: len(timings) >= warmup + frames - lost, 5.0, 0.01)
        result = {"latency_ms": summarize_ms(list(lat.values())), "lost": lost, "frames": frames,
                  "all_outputs": all_outputs}
        result.update(_node_figures(lat, lost, timings, frames, warmup))
        return result
    finally:
        if feeder is not None:
            feeder.close()


def bench_end_to_end(model_path: Path, points: np.ndarray, image: np.ndarray, frames: int,
                     warmup: int,
                     device: str, backend: str = "auto",
                     params_file: Optional[str] = "config/perception.yaml",
                     timeout_s: float = 180.0, log=print,
                     all_outputs: bool = False,
                     node_params: Sequence[str] = (), raw_camera: bool = False) -> Dict[str, Any]:
    """Time cloud (+ image + camera info) -> ``~/detections`` through the node in its own process.

    The cloud is published by this process and the detections received from the node started as
    a separate process. The clock starts when the already serialized cloud is
    published (as a driver publishes a ready message; rclpy's Python-to-CDR conversion of this
    process is not the node's cost). Closed loop (the next frame is sent when the answer to the
    previous one arrived, or after 10 s). ``all_outputs``: this process also subscribes to every
    optional output (markers, drivable mask and grid, semantic, colour overlay), so the node builds
    and publishes them all (lazy outputs); otherwise only detections, diagnostics and the small
    debug timing message (subscribed in both cases) are built. ``node_params``: extra node
    parameters ``name:=value`` (e.g. ``pipeline_outputs:=false``). ``raw_camera``: the image is
    published distorted with a CameraInfo of A2D2's lens, which the node undistorts
    (:class:`~bev_mtl_ros.ros.feeder.NodeFeeder`).

    ``node_overhead_ms`` is measured per frame, so machine load cancels out: the frame's
    end-to-end latency minus the pipeline time the node itself measured for that frame
    (``pipeline_total`` of ``~/debug/processing_time_ms``; frames are answered in order, so the
    k-th timing message is frame k's). What remains is the node's cost on top of its pipeline:
    transport both ways, message conversion, building and publishing the detections, and waiting
    for the previous frame's optional outputs (the next frame is sent when the detections of the
    previous one arrived, as a sensor would not wait for the rest). ``node_total_ms`` is the
    node's own per-frame cost (``total``: conversion + pipeline + every output it publishes).

    Returns {latency_ms, node_pipeline_ms, node_overhead_ms, node_total_ms (summaries), lost,
    frames, all_outputs, node_peak_rss_mb, node_log}. Raises RuntimeError when the node exits or
    does not subscribe within ``timeout_s``.
    """
    from bev_mtl_ros.dds import DomainClaim
    from bev_mtl_ros.ros.replay import ros_environment

    claim = DomainClaim()
    env = ros_environment(claim.domain_id)
    cmd = _node_command(model_path, device, backend, params_file, node_params)
    log_file = tempfile.NamedTemporaryFile("w+", suffix="_bench_node.log", delete=False)
    node_proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    result: Dict[str, Any] = {}
    try:
        result = _run_against_node(node_proc, log_file, env, claim.domain_id, points, image,
                                   frames, warmup, timeout_s, all_outputs, raw_camera)
    finally:
        _stop_node(node_proc)
        claim.release()
        result["node_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)
        result["node_log"] = log_file.name
        log_file.close()
    return result
