"""The perception node's ``/diagnostics`` verdict: which causes are active *now*.

Pure Python (no rclpy), so it is testable without ROS. The node calls
:meth:`PipelineHealth.assess` once per diagnostics period (1 Hz) with its cumulative counters;
causes that come from counters are judged on how much each counter grew over the last
``window_s`` seconds, so a cause clears once it has not recurred for ``window_s`` (at most one
diagnostics period later). Causes and levels (REP 107 / ``diagnostic_msgs/DiagnosticStatus``):

====================================================  =======  ==============================
cause                                                 level    clears when
====================================================  =======  ==============================
no cloud for more than ``input_stale_s``              WARN     a cloud arrives
the synchronizer's diagnosis (``ApproxTimeSync``)     WARN     its own windows (see sync.py)
``errors.inference`` grew in the window               ERROR    window without new errors
``pillars_dropped`` grew in the window                WARN     window without drops
any ``bad_input.*`` counter grew in the window        WARN     window without bad inputs
overload: ``skipped_frames / pairs_in`` over the      WARN     the fraction falls to or below
window > ``overload_fraction`` (at least                       ``overload_fraction``
``min_frames`` pairs in the window)
====================================================  =======  ==============================

``skipped_frames`` counts synchronised pairs replaced in the node's one-slot mailbox before the
worker took them (inference slower than the input), ``pairs_in`` all pairs offered;
``output_stage_waits`` the frames whose hand-over to the output stage had to wait (publishing
slower than inference), ``outputs_dropped`` inferred frames not published because the node
stopped first (ros/worker.py).

The node's bookkeeping lives here too: :class:`NodeCounters` (the cumulative counters of
:data:`COUNTER_NAMES`, thread-safe), :class:`RateMeter` (input/output rates over a sliding window)
and :class:`LatencyWindow` (arrival-to-publish latency percentiles).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

__all__ = ["HealthConfig", "PipelineHealth", "LEVELS", "COUNTER_NAMES", "NodeCounters",
           "RateMeter", "LatencyWindow"]

#: diagnostic levels in increasing severity (names of diagnostic_msgs/DiagnosticStatus levels)
LEVELS = ("OK", "WARN", "ERROR")


@dataclass
class HealthConfig:
    """Thresholds of :class:`PipelineHealth`.

    Attributes:
        window_s: seconds a counter-based cause stays active after its last occurrence.
        overload_fraction: skipped / offered frames over the window above which overload is WARN.
        min_frames: pairs that must have been offered in the window to judge overload.
        input_stale_s: seconds without a cloud (after the first one) that raise WARN.
    Raises:
        ValueError (from :meth:`validate`): a non-positive window or stale time, a fraction
        outside [0, 1].
    """

    window_s: float = 5.0
    overload_fraction: float = 0.1
    min_frames: int = 5
    input_stale_s: float = 2.0

    def validate(self) -> "HealthConfig":
        if (self.window_s <= 0 or self.input_stale_s <= 0
                or not 0.0 <= self.overload_fraction <= 1.0):
            raise ValueError(f"bad diagnostics settings: window_s={self.window_s} "
                             f"overload_fraction={self.overload_fraction} "
                             f"input_stale_s={self.input_stale_s}")
        return self


class PipelineHealth:
    """Sliding-window verdict over cumulative counters (see module docstring).

    Not thread-safe: call from one thread (the node's diagnostics timer).

    Args:
        config: thresholds.
        counters: the counters at start (the first window's base).
        now: monotonic seconds at start.
    """

    def __init__(self, config: HealthConfig, counters: Mapping[str, int], now: float) -> None:
        self.config = config.validate()
        self._snaps: Deque[Tuple[float, Dict[str, int]]] = deque([(now, dict(counters))])

    def window_deltas(self, now: float, counters: Mapping[str, int]) -> Dict[str, int]:
        """Record ``counters`` at ``now`` and return how much each grew over the window.

        The window starts at the newest snapshot at least ``window_s`` old (or the oldest one
        kept).
        """
        self._snaps.append((now, dict(counters)))
        while len(self._snaps) >= 2 and self._snaps[1][0] <= now - self.config.window_s:
            self._snaps.popleft()
        base = self._snaps[0][1]
        return {k: int(v) - int(base.get(k, 0)) for k, v in counters.items()}

    def assess(self, now: float, counters: Mapping[str, int], cloud_idle_s: Optional[float],
               sync_diagnosis: Optional[str] = None,
               cloud_topic: str = "cloud",
               bad_input_details: Optional[Mapping[str, str]] = None) -> Tuple[str, List[str]]:
        """Return the level ("OK", "WARN" or "ERROR") and the active causes, most severe first.

        Args:
            now: monotonic seconds.
            counters: the node's cumulative counters (``pairs_in``, ``skipped_frames``,
                ``pillars_dropped``, ``errors.inference``, ``bad_input.<kind>``, ...).
            cloud_idle_s: seconds since the last cloud, None before the first.
            sync_diagnosis: :meth:`ApproxTimeSync.diagnose`'s text, or None.
            cloud_topic: resolved cloud topic name, for the message.
            bad_input_details: {bad-input kind: text} added to the message while that kind is an
                active cause (e.g. ``no_transform``: which frames are unconnected).
        """
        w = self.config.window_s
        d = self.window_deltas(now, counters)
        causes: List[Tuple[int, str]] = []
        if d.get("errors.inference", 0) > 0:
            causes.append((2, f"{d['errors.inference']} inference errors in the last {w:.0f} s"))
        if cloud_idle_s is not None and cloud_idle_s > self.config.input_stale_s:
            causes.append((1, f"no cloud on '{cloud_topic}' for {cloud_idle_s:.1f} s"))
        if sync_diagnosis:
            causes.append((1, sync_diagnosis))
        offered, skipped = d.get("pairs_in", 0), d.get("skipped_frames", 0)
        if offered >= self.config.min_frames and skipped > self.config.overload_fraction * offered:
            causes.append((1, f"overload: {skipped} of {offered} frames "
                              f"({100.0 * skipped / offered:.0f} %) skipped in the last {w:.0f} s "
                              f"(> {100.0 * self.config.overload_fraction:.0f} %): inference is "
                              "slower than the input"))
        if d.get("pillars_dropped", 0) > 0:
            causes.append((1, f"{d['pillars_dropped']} pillars over max_pillars dropped in the "
                              f"last {w:.0f} s"))
        bad = {k[len("bad_input."):]: v for k, v in sorted(d.items())
               if k.startswith("bad_input.") and v > 0}
        if bad:
            details = bad_input_details or {}
            kinds = ", ".join(f"{k} {v}" + (f" [{details[k]}]" if details.get(k) else "")
                              for k, v in bad.items())
            causes.append((1, f"{sum(bad.values())} bad inputs in the last {w:.0f} s ({kinds})"))
        causes.sort(key=lambda c: -c[0])
        level = LEVELS[causes[0][0]] if causes else "OK"
        return level, [text for _, text in causes]


#: the node's cumulative counters, all present from the start (published in /diagnostics);
#: ``bad_input.<kind>`` are the bad-input causes, ``errors.inference`` the ERROR cause
COUNTER_NAMES = (
    "pairs_in", "processed", "published", "skipped_frames", "lidar_only_frames",
    "pillars_dropped", "frames_with_pillars_dropped", "nonfinite_points",
    "bad_input.empty_cloud", "bad_input.nonfinite_cloud", "bad_input.cloud_malformed",
    "bad_input.image_malformed", "images_resized", "bad_input.missing_intensity",
    "bad_input.stamp_backwards", "bad_input.no_transform", "bad_input.cloud_too_large",
    "bad_input.image_too_large", "bad_input.empty_frame_id", "bad_input.cloud_out_of_range",
    "frames_transformed", "outputs_unsubscribed", "images_undistorted",
    "images_without_camera_info", "bad_input.camera_info_mismatch", "camera_unlike_nominal",
    "bad_input.camera_info_invalid", "images_camera_info_refused", "bad_input.tf_invalid",
    "bad_input.tf_reparented", "errors.inference", "output_stage_waits", "outputs_dropped",
)


class NodeCounters:
    """Cumulative event counters, safe to update from several threads.

    Args:
        names: counters present (at 0) from the start; :meth:`count` adds others on first use.
    """

    def __init__(self, names: Tuple[str, ...] = COUNTER_NAMES) -> None:
        self._values: Dict[str, int] = dict.fromkeys(names, 0)
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self._lock:
            self._values[key] = self._values.get(key, 0) + n

    def snapshot(self) -> Dict[str, int]:
        """Return a copy of every counter (name -> count) taken under the lock."""
        with self._lock:
            return dict(self._values)


class RateMeter:
    """Events per second over a sliding window of monotonic times (thread-safe).

    Args:
        window: seconds of events kept.
    """

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._t: Deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, t: Optional[float] = None) -> None:
        """Record one event at monotonic time ``t`` (s; now when None)."""
        with self._lock:
            self._t.append(time.monotonic() if t is None else t)

    def hz(self) -> float:
        """Return (events - 1) / (last - first) over the last ``window`` s; 0 with < 2 events."""
        now = time.monotonic()
        with self._lock:
            while self._t and now - self._t[0] > self.window:
                self._t.popleft()
            if len(self._t) < 2:
                return 0.0
            return (len(self._t) - 1) / max(self._t[-1] - self._t[0], 1e-6)


class LatencyWindow:
    """The most recent ``size`` latencies (ms) and their percentiles.

    Args:
        size: latencies kept.
    """

    def __init__(self, size: int = 200) -> None:
        self._ms: Deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        """Record one latency, milliseconds."""
        self._ms.append(float(ms))

    def percentiles(self) -> Tuple[float, float]:
        """Return (p50, p95) in ms of the kept latencies; (0.0, 0.0) before the first."""
        lat = np.array(self._ms, dtype=np.float64)
        if not lat.size:
            return 0.0, 0.0
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
