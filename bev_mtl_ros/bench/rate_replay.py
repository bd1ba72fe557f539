"""Open-loop replay at a fixed rate with every output subscribed: the benchmark row users see.

Issue 24: a user with RViz open subscribes to everything, and on a vehicle computer the node
shares its cores with other nodes. This section of ``bev-mtl-ros bench`` starts
``perception_node`` as a separate process (``end_to_end``'s command line, with
``publish_semantic_color:=true``), subscribes to every output through
:class:`~bev_mtl_ros.ros.feeder.NodeFeeder` (``all_outputs``), warms the node up with
``--warmup`` closed-loop frames and then publishes cloud + image at ``--rate-hz`` for
``--rate-seconds`` without waiting for any answer (open loop), twice:

* ``quiet`` - nothing else started by the benchmark;
* ``busy_core`` - with one competing process the benchmark starts itself (a Python busy loop,
  ``while True: pass``: one core), killed when the run ends, so the loaded figure is reproducible.

Per run:

* ``frames_in`` - frames published (clouds; each with an image of the same stamp);
* ``outputs[name]`` - per output: ``frames_out`` (input stamps that came back on it: the output's
  header stamp equals the input stamp), ``unmatched`` (stamps that were never sent), latency
  p50 / p95 / max (ms: cloud published -> that output received, this process's
  ``time.perf_counter``). ``timing`` (``~/debug/processing_time_ms``) has no header: its messages
  are matched to the frames by order (frames are published in order, one timing message each),
  only when as many arrived as detections did;
* ``skipped_in_minus_out`` - ``frames_in`` minus the frames out of each output;
* ``node_counters`` - how much the node's own counters grew over the run (``skipped_frames``: pairs
  replaced in its one-slot mailbox; ``pairs_in``, ``processed``, ``published``,
  ``output_stage_waits``, ``outputs_dropped``; read from the node's ``/diagnostics``, None when
  the node does not publish one);
* ``node_cpu_ms_per_frame`` - the node process's CPU time over the run (``utime + stime`` of
  ``/proc/<pid>/stat``, every thread) divided by ``frames_in`` (``node_cpu_ms_per_frame_out``:
  by the frames whose detections came back); ``node_cpu_cores`` the same CPU time over the run's
  wall time; ``bench_cpu_cores`` this process's (it receives 7 MB overlays),
  ``busy_cpu_cores`` the competing process's;
* ``node_frame_ms`` - the node's own per-frame ``total`` (convert + pipeline + outputs) from the
  timing messages; ``loadavg_1_5_15`` at the end of the run.

After its last frame a run waits until no output arrived for 1.5 s (at most 20 s), then reads
the CPU times and the node's counters.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from bev_mtl_ros.bench.end_to_end import (_feed_closed_loop, _node_command, _stop_node,
                                          wait_for_node_process)
from bev_mtl_ros.bench.timing import summarize_ms

__all__ = ["OUTPUTS", "RUNS", "match_outputs", "match_timing_by_order", "proc_cpu_seconds",
           "read_proc_cpu_s", "cpu_ms_per_frame", "counter_deltas", "rate_table_lines",
           "bench_rate_replay", "rate_section"]

#: output name -> label in the table; names are the node's topics below ``~/`` (``timing`` =
#: ``~/debug/processing_time_ms``)
OUTPUTS: Dict[str, str] = {
    "detections": "detections", "markers": "markers", "drivable_area": "drivable area image",
    "drivable_area/grid": "drivable area grid", "semantic": "semantic mask",
    "semantic/color": "semantic colour overlay", "timing": "timing (matched by order)",
}
#: the runs of the section: name -> competing busy processes started by the benchmark
RUNS: Dict[str, int] = {"quiet": 0, "busy_core": 1}
#: the node's /diagnostics counters reported per run (their growth over the run)
NODE_COUNTERS = ("pairs_in", "processed", "published", "skipped_frames", "output_stage_waits",
                 "outputs_dropped", "images_undistorted")
#: Python busy loop: one core of competing load
BUSY_LOOP = "while True: pass"


# ---------------------------------------------------------------------------- pure parts
def match_outputs(sent: Mapping[int, float],
                  received: Mapping[str, Mapping[int, float]]) -> Dict[str, Dict[str, Any]]:
    """Match each output's messages to the frames sent by their header stamp.

    Args:
        sent: input stamp (ns) -> publish time of the frame's cloud (s).
        received: output name -> {header stamp (ns) -> receive time (s)}, same clock.
    Returns:
        {name: {frames_out, unmatched, latency_ms}}: frames out = sent stamps that came back,
        unmatched = received stamps never sent, latency = receive - publish of the matched
        frames (ms, :func:`~bev_mtl_ros.bench.timing.summarize_ms`; {"n": 0} without any).
    """
    out: Dict[str, Dict[str, Any]] = {}
    for name, got in received.items():
        common = [k for k in got if k in sent]
        lat = [(got[k] - sent[k]) * 1e3 for k in common]
        out[name] = {"frames_out": len(common), "unmatched": len(got) - len(common),
                     "latency_ms": summarize_ms(lat)}
    return out


def match_timing_by_order(sent: Mapping[int, float], detections: Mapping[int, float],
                          timing_times: Sequence[float]) -> Dict[str, Any]:
    """Match header-less timing messages to the published frames by order.

    The node publishes every frame's outputs in frame order and one timing message per published
    frame, so the i-th timing message is that of the i-th stamp (ascending) whose detections
    arrived - when as many timing messages as detections arrived; otherwise no latency.

    Args:
        sent: input stamp (ns) -> publish time (s).
        detections: detections' header stamp (ns) -> receive time (s).
        timing_times: receive times (s) of the run's timing messages, in arrival order.
    Returns:
        {frames_out: len(timing_times), unmatched: 0, latency_ms: summary, or {"error": why}}.
    """
    stamps = sorted(k for k in detections if k in sent)
    res: Dict[str, Any] = {"frames_out": len(timing_times), "unmatched": 0}
    if len(stamps) != len(timing_times):
        res["latency_ms"] = {"error": f"{len(timing_times)} timing messages for {len(stamps)} "
                                      "detections: not matched"}
    else:
        res["latency_ms"] = summarize_ms([(t - sent[k]) * 1e3
                                          for k, t in zip(stamps, timing_times)])
    return res


def proc_cpu_seconds(stat_text: str, clk_tck: int) -> float:
    """Return ``utime + stime`` (s) of a ``/proc/<pid>/stat`` line.

    proc(5): fields 14 and 15 (1-based), in clock ticks (``clk_tck`` per second), summed over
    every thread of the process. The command name (field 2) may hold spaces and parentheses, so
    the fields are counted after its last ``)``. Raises ValueError on a malformed line.
    """
    head, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {stat_text[:80]!r}")
    return (int(fields[11]) + int(fields[12])) / float(clk_tck)


def read_proc_cpu_s(pid: int) -> Optional[float]:
    """CPU time (user + system, s) of process ``pid`` so far; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return proc_cpu_seconds(text, os.sysconf("SC_CLK_TCK"))


def cpu_ms_per_frame(cpu_before_s: Optional[float], cpu_after_s: Optional[float],
                     frames_in: int) -> Optional[float]:
    """CPU ms per input frame: (after - before) * 1000 / frames_in; None if not measurable."""
    if cpu_before_s is None or cpu_after_s is None or frames_in <= 0:
        return None
    return round((cpu_after_s - cpu_before_s) * 1e3 / frames_in, 2)


def counter_deltas(before: Mapping[str, str], after: Mapping[str, str],
                   names: Sequence[str] = NODE_COUNTERS) -> Dict[str, Optional[int]]:
    """Growth of the node's cumulative counters between two ``/diagnostics`` value maps.

    Args:
        before, after: {key: value} of the node's pipeline status (values are strings).
    Returns:
        {name: after - before} (int), None where a value is missing or not an integer.
    """
    out: Dict[str, Optional[int]] = {}
    for n in names:
        try:
            out[n] = int(after[n]) - int(before.get(n, 0))
        except (KeyError, ValueError):
            out[n] = None
    return out


def _fmt(v: Any, spec: str, width: int) -> str:
    """``v`` formatted with ``spec`` right-aligned in ``width``, or "n/a"."""
    return f"{'n/a':>{width}}" if v is None else f"{v:>{width}{spec}}"


def rate_table_lines(sec: Mapping[str, Any]) -> List[str]:
    """Return the table section "10 Hz, every output" of a :func:`rate_section` result.

    One line per run (frames in, the rate actually sent, node CPU per frame and in cores,
    frames in - out of the detections, the node's own skip counters, load average), then one
    line per output with frames out, share of frames in, latency p50 / p95 for each run.
    """
    lines = [f"\n{sec.get('rate_hz', 10):g} Hz, every output (open loop "
             f"{sec.get('seconds', '?')} s, {sec.get('scenario', '?')}: {sec.get('points', '?')} "
             f"points + {'x'.join(str(v) for v in sec.get('image', ()))} image; "
             "latency = cloud published -> output received):"]
    if "error" in sec:
        lines.append(f"  n/a ({str(sec['error'])[:120]})")
        return lines
    runs: Mapping[str, Any] = sec["runs"]
    lines.append(f"  {'run':<10} {'in':>5} {'sent Hz':>7} {'CPU ms/frame':>12} {'cores':>5} "
                 f"{'in-out':>6} {'mailbox skips':>13} {'output waits':>12} {'load 1 min':>10}")
    for name, r in runs.items():
        if "error" in r:
            lines.append(f"  {name:<10} n/a ({str(r['error'])[:100]})")
            continue
        det = r["outputs"]["detections"]["frames_out"]
        c = r.get("node_counters") or {}
        lines.append(f"  {name:<10} {r['frames_in']:>5} {_fmt(r.get('sent_hz'), '.2f', 7)} "
                     f"{_fmt(r.get('node_cpu_ms_per_frame'), '.1f', 12)} "
                     f"{_fmt(r.get('node_cpu_cores'), '.2f', 5)} {r['frames_in'] - det:>6} "
                     f"{_fmt(c.get('skipped_frames'), 'd', 13)} "
                     f"{_fmt(c.get('output_stage_waits'), 'd', 12)} "
                     f"{_fmt((r.get('loadavg_1_5_15') or [None])[0], '.2f', 10)}")
    ok = [n for n, r in runs.items() if "error" not in r]
    if not ok:
        return lines
    lines.append(f"  {'output':<26}" + " |".join(
        f" {n + ': out':>15} {'%':>5} {'p50 ms':>7} {'p95 ms':>7}" for n in ok))
    for key, label in OUTPUTS.items():
        cells = []
        for n in ok:
            o = runs[n]["outputs"].get(key) or {}
            lat = o.get("latency_ms") or {}
            out = o.get("frames_out")
            share = None if out is None else 100.0 * out / max(1, runs[n]["frames_in"])
            cells.append(f" {_fmt(out, 'd', 15)} {_fmt(share, '.1f', 5)} "
                         f"{_fmt(lat.get('p50'), '.1f', 7)} {_fmt(lat.get('p95'), '.1f', 7)}")
        lines.append(f"  {label:<26}" + " |".join(cells))
    return lines


# ---------------------------------------------------------------------------- the runs
class _Diagnostics:
    """Keeps the values of the node's latest ``<node>: pipeline`` status (``/diagnostics``)."""

    def __init__(self) -> None:
        self.values: Dict[str, str] = {}
        self.count = 0

    def on_diagnostics(self, arr: Any) -> None:
        """Subscription callback: keep the pipeline status's key/value pairs."""
        for st in arr.status:
            if st.name.endswith(": pipeline"):
                self.values = {kv.key: kv.value for kv in st.values}
                self.count += 1

    def fresh(self, feeder: Any, timeout_s: float = 2.5) -> Dict[str, str]:
        """Wait (spinning ``feeder``) for the next status, at most ``timeout_s``; its values."""
        n = self.count
        feeder.spin_until(lambda: self.count > n, timeout_s, 0.02)
        return dict(self.values)


def _received_total(feeder: Any) -> int:
    """How many output messages ``feeder`` has recorded so far (every output)."""
    return (len(feeder.detections) + len(feeder.timing_times)
            + sum(len(v) for v in feeder.outputs.values()))


def _drain(feeder: Any, settle_s: float = 1.5, cap_s: float = 20.0) -> None:
    """Spin until no output arrived for ``settle_s`` (at most ``cap_s``)."""
    t_cap = time.monotonic() + cap_s
    last, t_last = _received_total(feeder), time.monotonic()
    while time.monotonic() < t_cap:
        feeder.spin_for(0.1, 0.02)
        n = _received_total(feeder)
        if n != last:
            last, t_last = n, time.monotonic()
        elif time.monotonic() - t_last >= settle_s:
            return


def _self_cpu_s() -> float:
    """CPU time (user + system, s) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _start_busy(n: int) -> List[subprocess.Popen]:
    """Start ``n`` busy-loop processes (one core each); give them 0.3 s to start spinning."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    if procs:
        time.sleep(0.3)
    return procs


def _stop_busy(procs: List[subprocess.Popen]) -> None:
    """Kill the busy-loop processes started by :func:`_start_busy` (by their own handle)."""
    for p in procs:
        p.kill()
        p.wait()


def _publish_open_loop(feeder: Any, alive: Callable[[], bool], n: int, rate_hz: float,
                       stamp0_ns: int) -> Dict[int, float]:
    """Publish ``n`` frames every ``1 / rate_hz`` s (not waiting for answers); spin in between.

    Frame k is stamped ``stamp0_ns + k * period`` and published at ``t0 + k * period`` (or at
    once when this process is late). Returns {stamp ns: cloud publish time (perf_counter s)}.
    Raises RuntimeError when ``alive()`` turns False (the node exited).
    """
    period_ns = int(round(1e9 / rate_hz))
    sent: Dict[int, float] = {}
    t0 = time.perf_counter()
    for k in range(n):
        t_k = t0 + k / rate_hz
        feeder.spin_until(lambda: time.perf_counter() >= t_k,
                          max(0.0, t_k - time.perf_counter()) + 0.01, 0.002)
        if k % max(1, int(rate_hz)) == 0 and not alive():
            raise RuntimeError("node exited during the replay")
        stamp = stamp0_ns + k * period_ns
        sent[stamp] = feeder.publish_frame(stamp, serialized=True)
    return sent


def _one_run(feeder: Any, proc: subprocess.Popen, diag: _Diagnostics, busy: int,
             rate_hz: float, seconds: float, stamp0_ns: int) -> Dict[str, Any]:
    """One open-loop run (see module docstring); returns its figures."""
    n = int(round(seconds * rate_hz))
    before = diag.fresh(feeder)
    marks = {k: set(v) for k, v in feeder.outputs.items()}
    det0, timing0 = set(feeder.detections), len(feeder.timing_times)
    busy_procs = _start_busy(busy)
    try:
        cpu0, self0, t0 = read_proc_cpu_s(proc.pid), _self_cpu_s(), time.perf_counter()
        busy0 = [read_proc_cpu_s(p.pid) for p in busy_procs]
        sent = _publish_open_loop(feeder, lambda: proc.poll() is None, n, rate_hz, stamp0_ns)
        t_last = time.perf_counter()
        _drain(feeder)
        cpu1, self1, t1 = read_proc_cpu_s(proc.pid), _self_cpu_s(), time.perf_counter()
        busy1 = [read_proc_cpu_s(p.pid) for p in busy_procs]
    finally:
        _stop_busy(busy_procs)
    after = diag.fresh(feeder)
    wall = t1 - t0
    det = {k: v for k, v in feeder.detections.items() if k not in det0}
    received = {"detections": det}
    received.update({k: {s: t for s, t in v.items() if s not in marks.get(k, ())}
                     for k, v in feeder.outputs.items()})
    outputs = match_outputs(sent, received)
    outputs["timing"] = match_timing_by_order(sent, det, feeder.timing_times[timing0:])
    totals = [t.get("total", float("nan")) for t in feeder.timings[timing0:]]
    busy_s = [b1 - b0 for b0, b1 in zip(busy0, busy1) if b0 is not None and b1 is not None]
    return {
        "busy_processes": busy, "frames_in": n,
        "sent_hz": round((n - 1) / (t_last - t0), 2) if n > 1 and t_last > t0 else None,
        "seconds": round(wall, 2), "outputs": outputs,
        "skipped_in_minus_out": {k: n - v["frames_out"] for k, v in outputs.items()},
        "node_counters": (counter_deltas(before, after) if before and after
                          else dict.fromkeys(NODE_COUNTERS)),
        "node_cpu_ms_per_frame": cpu_ms_per_frame(cpu0, cpu1, n),
        "node_cpu_ms_per_frame_out": cpu_ms_per_frame(cpu0, cpu1, outputs["detections"]
                                                      ["frames_out"]),
        "node_cpu_cores": (None if cpu0 is None or cpu1 is None
                           else round((cpu1 - cpu0) / wall, 2)),
        "bench_cpu_cores": round((self1 - self0) / wall, 2),
        "busy_cpu_cores": round(sum(busy_s) / wall, 2) if busy_s else None,
        "node_frame_ms": summarize_ms(totals),
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def bench_rate_replay(model_path: Path, points: np.ndarray, image: np.ndarray,
                      rate_hz: float = 10.0, seconds: float = 60.0, warmup: int = 3,
                      device: str = "cpu", backend: str = "auto",
                      params_file: Optional[str] = "config/perception.yaml",
                      runs: Mapping[str, int] = RUNS, timeout_s: float = 180.0,
                      log=print, node_params: Sequence[str] = (),
                      raw_camera: bool = False) -> Dict[str, Any]:
    """Replay one frame open loop at ``rate_hz`` through the node, every output subscribed.

    Args:
        model_path: model file for the node.
        points: (N, 4) float32 x, y, z, intensity cloud (m), published in ``cam_front_center``.
        image: (H, W, 3) uint8 RGB image, published as rgb8 with the cloud's stamp.
        rate_hz: frames per second (> 0); seconds: length of each run (s, > 0).
        warmup: closed-loop frames sent before the first run (not counted).
        device, backend, params_file: the node's (``end_to_end``'s command line) plus
            ``publish_semantic_color:=true``.
        runs: run name -> competing busy processes (default :data:`RUNS`: quiet, one core busy).
        timeout_s: longest wait for the node to subscribe.
        log: print-like callable for progress lines.
        node_params: extra node parameters ``name:=value`` (``bench --param``).
        raw_camera: publish the image distorted, with a CameraInfo of A2D2's lens, so that the
            node undistorts it (``bench --raw-camera``; ``ros.feeder.NodeFeeder``).
    Returns:
        {runs: {name: figures (see module docstring) or {"error": ...}}, node_log}.
    Raises:
        ValueError: ``rate_hz`` or ``seconds`` not positive.
        RuntimeError: the node exits or does not subscribe within ``timeout_s``.
    """
    from bev_mtl_ros.dds import DomainClaim
    from bev_mtl_ros.ros.feeder import NodeFeeder
    from bev_mtl_ros.ros.replay import ros_environment

    if not rate_hz > 0 or not seconds > 0:
        raise ValueError(f"rate replay needs rate_hz > 0 and seconds > 0, got {rate_hz}, "
                         f"{seconds}")
    claim = DomainClaim()
    env = ros_environment(claim.domain_id)
    cmd = _node_command(model_path, device, backend, params_file,
                        ("publish_semantic_color:=true", *node_params))
    log_file = tempfile.NamedTemporaryFile("w+", suffix="_bench_rate_node.log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    diag = _Diagnostics()
    feeder: Optional[NodeFeeder] = None
    result: Dict[str, Any] = {"runs": {}, "node_log": log_file.name}
    try:
        feeder = NodeFeeder(env, claim.domain_id, "bench_rate", camera_info=True,
                            raw_camera=raw_camera, timings=True, all_outputs=True,
                            on_diagnostics=diag.on_diagnostics, clock=time.perf_counter)
        feeder.set_frame(points, image)
        wait_for_node_process(feeder, proc, log_file, timeout_s)
        _feed_closed_loop(feeder, points, image, 0, warmup)
        stamp0 = 100 * 1_000_000_000      # after the warm-up's stamps (1 s + k * 0.1 s)
        for name, busy in runs.items():
            log(f"[bench] {rate_hz:g} Hz every output, {name}: {seconds:g} s open loop")
            result["runs"][name] = _one_run(feeder, proc, diag, busy, rate_hz, seconds, stamp0)
            stamp0 += int(round((seconds + 10.0) * 1e9))
    finally:
        if feeder is not None:
            feeder.close()
        _stop_node(proc)
        claim.release()
        log_file.close()
    return result


def rate_section(model_path: Path, scenario: str, n_points: int, image_wh: Sequence[int],
                 fov: str, rate_hz: float, seconds: float, warmup: int, device: str,
                 log=print, node_params: Sequence[str] = (),
                 raw_camera: bool = False) -> Dict[str, Any]:
    """Run the rate section on one scenario's synthetic scan + image (fixed seeds).

    Returns {scenario, points, image, rate_hz, seconds, runs, node_log}, or the same keys with
    ``error`` instead of ``runs`` when the node could not be run.
    """
    from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan

    sec: Dict[str, Any] = {"scenario": scenario, "points": n_points, "image": list(image_wh),
                           "rate_hz": rate_hz, "seconds": seconds, "raw_camera": raw_camera}
    try:
        sec.update(bench_rate_replay(model_path, synthetic_scan(n_points, fov),
                                     synthetic_image(tuple(image_wh)), rate_hz, seconds,
                                     warmup, device, log=log, node_params=node_params,
                                     raw_camera=raw_camera))
    except Exception as e:
        sec["error"] = f"{type(e).__name__}: {e}"
    return sec
