"""``bev-mtl-ros soak``: run ``perception_node`` for minutes under a steady open-loop load.

It runs as a separate process; the report says whether it keeps up and stays flat.

Load: every ``1 / rate`` s this process publishes one camera image (``--image``, rgb8) and one
lidar cloud (``--points``, the benchmark's synthetic front scan: x, y, z, intensity float32)
carrying the same stamp, over DDS with the package's Fast DDS profile, on an isolated domain
(RELIABLE keep-last 5, as the benchmark does). Nothing waits for the node (open loop), so a node
slower than the input skips frames (its one-slot mailbox; ``skipped_frames`` in diagnostics).

Measured:
  * frames in (clouds published) and frames out (``~/detections`` and ``~/semantic`` received);
  * latency per frame = cloud publish -> its ``~/detections`` received (ms, this host's
    monotonic clock), p50 / p95 over the first and the last ``--window`` seconds;
  * the node's resident set size (``VmRSS`` of ``/proc/<pid>/status``, MiB) once a second:
    start (first output received) and end, min and max;
  * the node's last ``/diagnostics`` values (skipped frames, lidar-only frames, bad inputs), and
    how many diagnostics messages during the load were OK / WARN / ERROR, with their causes
    (numbers masked as ``#``).

Example (10 minutes at 10 Hz, 21k points + 1920x1208 images)::

    .venv/bin/bev-mtl-ros soak --minutes 10 --json out/soak/soak.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["read_rss_mb", "window_summary", "run_soak", "add_arguments", "main"]


def read_rss_mb(pid: int) -> Optional[float]:
    """Resident set size of process ``pid`` in MiB (``VmRSS``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def window_summary(sent: Dict[int, float], got: Dict[int, float], t_from: float,
                   t_to: float) -> Dict[str, Any]:
    """Frames published in [t_from, t_to) (monotonic s) and their latencies.

    Args:
        sent: stamp (ns) -> publish time (s) of each cloud.
        got: stamp (ns) -> receive time (s) of its ``~/detections``.
    Returns:
        {frames_in, frames_out, latency_p50_ms, latency_p95_ms} (latencies None without output).
    """
    keys = [k for k, t in sent.items() if t_from <= t < t_to]
    lat = np.array([(got[k] - sent[k]) * 1e3 for k in keys if k in got], dtype=np.float64)
    return {"frames_in": len(keys), "frames_out": int(lat.size),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None}


def _diag_level(st: Any) -> str:
    """Return "OK" / "WARN" / "ERROR" / "STALE" for a DiagnosticStatus (level as byte or int)."""
    lv = st.level
    lv = lv[0] if isinstance(lv, (bytes, bytearray)) else int(lv)
    return {0: "OK", 1: "WARN", 2: "ERROR"}.get(lv, "STALE")


class _DiagnosticsTally:
    """Counts the node's ``: pipeline`` diagnostics while the load runs (``loading`` True).

    Attributes:
        levels: {"OK"/"WARN"/"ERROR"/"STALE": messages}.
        causes: {cause with numbers masked as ``#``: messages}.
        last: key/value pairs (and ``message``) of the last status seen.
    """

    def __init__(self) -> None:
        self.loading = False
        self.levels: Dict[str, int] = {}
        self.causes: Dict[str, int] = {}
        self.last: Dict[str, str] = {}

    def on_diagnostics(self, arr: Any) -> None:
        """Count one DiagnosticArray (subscription callback)."""
        for st in arr.status:
            if not st.name.endswith(": pipeline") or not self.loading:
                continue
            lv = _diag_level(st)
            self.levels[lv] = self.levels.get(lv, 0) + 1
            for cause in st.message.split("; "):
                c = re.sub(r"[0-9.]+", "#", cause)
                self.causes[c] = self.causes.get(c, 0) + 1
            self.last.clear()
            self.last.update({kv.key: kv.value for kv in st.values})
            self.last["message"] = st.message


def _node_command(model_path: Path, backend: str, device: str, params_file: Optional[str],
                  node_params: Sequence[str]) -> List[str]:
    """Return the node's command line: reliable inputs on the replay topics, the given params."""
    from bev_mtl_ros.bench.models import REPO_ROOT
    from bev_mtl_ros.ros.replay import IMAGE_TOPIC, LIDAR_TOPIC, NODE_NAME, default_node_cmd

    cmd = default_node_cmd() + ["--ros-args", "-r", f"__node:={NODE_NAME}"]
    if params_file:
        pf = Path(params_file) if Path(params_file).is_absolute() else REPO_ROOT / params_file
        cmd += ["--params-file", str(pf)]
    for p in [f"model_path:={model_path}", f"backend:={backend}", f"device:={device}",
              f"cloud_topic:={LIDAR_TOPIC}", f"image_topic:={IMAGE_TOPIC}", "input_qos:=reliable",
              *node_params]:
        cmd += ["-p", p]
    return cmd


@dataclass
class _Load:
    """What the open-loop load recorded (monotonic seconds)."""

    t0: float = 0.0                                   # load start
    t_end: float = 0.0                                # load end
    sent: Dict[int, float] = field(default_factory=dict)            # stamp ns -> publish time
    rss: List[Tuple[float, float]] = field(default_factory=list)    # (s since t0, MiB)


def _drive_load(feeder: Any, proc: subprocess.Popen, seconds: float, rate: float,
                tally: _DiagnosticsTally, log_path: Path, log) -> _Load:
    """Publish a frame every ``1 / rate`` s for ``seconds``; sample the node's RSS each second.

    Raises RuntimeError when the node process is gone.
    """
    load = _Load(t0=time.monotonic())
    t0, rss, sent = load.t0, load.rss, load.sent
    tally.loading = True
    next_rss = t0
    k = 0
    stamp0 = 1_700_000_000
    while True:
        t_k = t0 + k / rate
        if t_k >= t0 + seconds:
            break
        feeder.spin_until(lambda: time.monotonic() >= t_k, t_k - time.monotonic(), 0.005)
        now = time.monotonic()
        if now >= next_rss:
            r = read_rss_mb(proc.pid)
            if r is None:
                raise RuntimeError(f"node exited (rc {proc.poll()}); log {log_path}")
            rss.append((now - t0, r))
            next_rss += 1.0
        ns = stamp0 * 1_000_000_000 + k * int(round(1e9 / rate))
        sent[ns] = feeder.publish_frame(ns)
        k += 1
        if k % int(max(1, 60 * rate)) == 0:
            log(f"[soak] {now - t0:5.0f} s: in {len(sent)} out {len(feeder.detections)} "
                f"rss {rss[-1][1]:.0f} MiB")
    load.t_end = time.monotonic()
    tally.loading = False
    feeder.spin_for(5.0, 0.05)
    rss_end = read_rss_mb(proc.pid)
    if rss_end is not None:
        rss.append((time.monotonic() - t0, rss_end))
    return load


def _rss_summary(load: _Load, got: Dict[int, float]) -> Dict[str, Optional[float]]:
    """Return the node's RSS (MiB): at the first output received, at the end, min and max."""
    rss = load.rss
    first_out = min((got[k] for k in got), default=None)
    rss_start = next((r for t, r in rss if first_out is not None and load.t0 + t >= first_out),
                     None)
    return {"start": None if rss_start is None else round(rss_start, 1),
            "end": round(rss[-1][1], 1) if rss else None,
            "min": round(min(r for _, r in rss), 1) if rss else None,
            "max": round(max(r for _, r in rss), 1) if rss else None}


def run_soak(seconds: float, rate: float = 10.0, points: int = 21_000,
             image_wh: Tuple[int, int] = (1920, 1208), model: Optional[str] = None,
             backend: str = "auto", device: str = "cpu", window: float = 60.0,
             params_file: Optional[str] = "config/perception.yaml",
             node_params: Sequence[str] = (), log=print) -> Dict[str, Any]:
    """Run the soak (see module docstring) and return its figures as a dict.

    Args:
        seconds: load duration (after the node is up), s.
        rate: frames per second.
        points: points per cloud.
        image_wh: image (width, height).
        model: model file (default: the packaged default model).
        backend, device: node parameters.
        window: length of the first/last windows for the latency percentiles, s.
        params_file: parameter file for the node (relative to the repository), None = none.
        node_params: extra ``name:=value`` node parameters.
        log: print-like callable for progress lines.

    Raises:
        RuntimeError: the node exits or does not come up within 180 s.
    """
    from bev_mtl_ros.bench.models import ensure_model
    from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan
    from bev_mtl_ros.dds import DomainClaim
    from bev_mtl_ros.ros.feeder import RMW_ENV_KEYS, NodeFeeder
    from bev_mtl_ros.ros.replay import _stop_process, ros_environment

    workdir = Path(tempfile.mkdtemp(prefix="bev_soak_"))
    model_path, model_desc = ensure_model(model, workdir, log=log)
    claim = DomainClaim()
    env = ros_environment(claim.domain_id)
    cmd = _node_command(model_path, backend, device, params_file, node_params)
    log_path = workdir / "node.log"
    log_file = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    tally = _DiagnosticsTally()
    feeder = None
    try:
        feeder = NodeFeeder(env, claim.domain_id, "soak_driver", semantic=True,
                            on_diagnostics=tally.on_diagnostics,
                            env_keys=RMW_ENV_KEYS + ("AMENT_PREFIX_PATH",))
        got, sem_got = feeder.detections, feeder.semantic
        feeder.set_frame(synthetic_scan(points, "front", seed=0),
                         synthetic_image(image_wh, seed=0))
        if not feeder.wait_for_node(180.0, alive=lambda: proc.poll() is None):
            raise RuntimeError(f"node did not come up (rc {proc.poll()}); log {log_path}")
        log(f"[soak] node up (pid {proc.pid}, model {model_desc}); {seconds:.0f} s at "
            f"{rate:g} Hz, "
            f"{points} points + {image_wh[0]}x{image_wh[1]} rgb8")
        load = _drive_load(feeder, proc, seconds, rate, tally, log_path, log)
    finally:
        if feeder is not None:
            feeder.close()
        rc = _stop_process(proc, 20.0)
        log_file.close()
        claim.release()
    win = min(window, seconds / 2.0)
    t0, t_end, sent = load.t0, load.t_end, load.sent
    return {
        "seconds": round(t_end - t0, 1), "rate_hz": rate, "points": points,
        "image": f"{image_wh[0]}x{image_wh[1]}", "model": model_desc, "backend": backend,
        "device": device, "frames_in": len(sent), "detections_out": len(got),
        "semantic_out": len(sem_got),
        "rss_mb": _rss_summary(load, got),
        "window_s": win,
        "first_window": window_summary(sent, got, t0, t0 + win),
        "last_window": window_summary(sent, got, t_end - win, t_end),
        "diagnostics_levels": tally.levels, "diagnostics_causes": tally.causes,
        "diagnostics_last": {k: tally.last.get(k) for k in (
            "message", "skipped_frames", "processed", "published", "lidar_only_frames",
            "sync.matched", "latency_p50_ms", "latency_p95_ms") if k in tally.last},
        "node_exit_code": rc, "node_log": str(log_path),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bev-mtl-ros soak``."""
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="load duration in s (overrides --minutes)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument("--points", type=int, default=21_000,
                        help="points per cloud (default 21000)")
    parser.add_argument("--image", default="1920x1208",
                        help="image WIDTHxHEIGHT (default 1920x1208)")
    parser.add_argument("--model", default=None,
                        help="model file (default models/bev_mtl_default.onnx)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--window", type=float, default=60.0,
                        help="first/last window for the latency percentiles, s (default 60)")
    parser.add_argument("--param", "-p", action="extend", nargs="+", default=[],
                        metavar="NAME:=VALUE",
                        help="extra node parameters (several after one --param, or --param "
                             "repeated)")
    parser.add_argument("--json", default=None, help="write the figures to this file")


def main(args: argparse.Namespace) -> int:
    """Run ``bev-mtl-ros soak``: print the figures as JSON; 0 when the node ran and answered."""
    w, h = (int(v) for v in args.image.lower().split("x"))
    seconds = args.seconds if args.seconds is not None else 60.0 * args.minutes
    res = run_soak(seconds, rate=args.rate, points=args.points, image_wh=(w, h), model=args.model,
                   backend=args.backend, device=args.device, window=args.window,
                   node_params=args.param)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0 if res["node_exit_code"] == 0 and res["detections_out"] > 0 else 1
