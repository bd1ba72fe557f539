"""The perception node's worker: a one-slot mailbox of synchronised pairs and its thread.

Subscription callbacks only :meth:`FrameWorker.offer` the pairs the synchronizer resolved; the
worker thread takes the newest pair and runs the node's processing (conversion, inference,
publishing) on it. When processing is slower than the input only the newest pair is kept: every
pair replaced in the slot is counted in ``skipped_frames``, every pair offered in ``pairs_in``
(exactly: pairs_in = processed + skipped_frames + in slot + lidar-only pairs refused by a model
without a lidar-only path). While the slot is empty the worker polls the synchronizer every
20 ms, so clouds whose camera timed out are resolved (lidar-only frames) without new input.
A frame that raises is counted in ``errors.inference`` and warned about (throttled); the worker
never dies of it.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

from bev_mtl_ros.ros.diagnostics import NodeCounters

__all__ = ["FrameWorker"]


class FrameWorker:
    """One-slot mailbox and worker thread (see module docstring).

    Args:
        process: called with each pair taken from the slot (in the worker thread).
        poll: the synchronizer's ``poll`` (pairs resolved by time alone).
        counters: the node's counters (``pairs_in``, ``skipped_frames``, ``errors.inference``).
        lidar_only_supported: False = pairs without an image are not put in the slot.
        context_ok: () -> bool, False once rclpy is shutting down (errors are then dropped
            quietly and the worker ends).
        logger: rclpy logger; every: ``period -> logger keyword arguments`` (throttling).
    """

    def __init__(self, process: Callable[[Any], None], poll: Callable[[], Sequence[Any]],
                 counters: NodeCounters, lidar_only_supported: bool,
                 context_ok: Callable[[], bool], logger: Any,
                 every: Callable[[float], Dict[str, Any]]) -> None:
        self._process = process
        self._poll = poll
        self._counters = counters
        self._lidar_only = bool(lidar_only_supported)
        self._context_ok = context_ok
        self._log = logger
        self._every = every
        self._cond = threading.Condition()
        self._slot: Optional[Any] = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="perception_worker", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def offer(self, pairs: Sequence[Any]) -> None:
        """Put synchronised pairs in the slot (the newest wins; replaced ones are counted)."""
        if not pairs:
            return
        with self._cond:
            for pair in pairs:
                self._counters.count("pairs_in")
                if pair.image is None and not self._lidar_only:
                    continue  # dropped by the synchronizer's policy (counted in sync stats)
                if self._slot is not None:
                    self._counters.count("skipped_frames")
                self._slot = pair
            self._cond.notify()

    def has_pending(self) -> bool:
        """Return True while a pair waits in the slot (the frame in flight should not wait)."""
        return self._slot is not None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after the frame in flight (a pair left in the slot is dropped)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._slot is None and not self._stop:
                    self._cond.wait(timeout=0.02)
                if self._stop:
                    return
                pair, self._slot = self._slot, None
            if pair is None:
                late = self._poll()
                if late:
                    self.offer(late)
                continue
            try:
                self._process(pair)
            except Exception as e:  # never let the worker die
                if self._stop or not self._context_ok():  # shutting down: drop it quietly
                    return
                self._counters.count("errors.inference")
                self._log.warning(
                    f"frame failed: {type(e).__name__}: {e}\n{traceback.format_exc()}",
                    **self._every(5.0))
