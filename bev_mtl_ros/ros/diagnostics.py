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
worker took them (inference slower than the input), ``pairs_in`` all pairs offered.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Tuple

__all__ = ["HealthConfig", "PipelineHealth", "LEVELS"]

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
    """Sliding-window verdict over cumulative counters (see module docstring). Not thread-safe:
    call from one thread (the node's diagnostics timer).

    Args:
        config: thresholds.
        counters: the counters at start (the first window's base).
        now: monotonic seconds at start.
    """

    def __init__(self, config: HealthConfig, counters: Mapping[str, int], now: float) -> None:
        self.config = config.validate()
        self._snaps: Deque[Tuple[float, Dict[str, int]]] = deque([(now, dict(counters))])

    def window_deltas(self, now: float, counters: Mapping[str, int]) -> Dict[str, int]:
        """Record ``counters`` at ``now`` and return how much each grew over the window: since the
        newest snapshot at least ``window_s`` old (or the oldest one kept)."""
        self._snaps.append((now, dict(counters)))
        while len(self._snaps) >= 2 and self._snaps[1][0] <= now - self.config.window_s:
            self._snaps.popleft()
        base = self._snaps[0][1]
        return {k: int(v) - int(base.get(k, 0)) for k, v in counters.items()}

    def assess(self, now: float, counters: Mapping[str, int], cloud_idle_s: Optional[float],
               sync_diagnosis: Optional[str] = None,
               cloud_topic: str = "cloud",
               bad_input_details: Optional[Mapping[str, str]] = None) -> Tuple[str, List[str]]:
        """The level ("OK", "WARN" or "ERROR") and the active causes, most severe first.

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
