"""The perception node's workers: a one-slot mailbox of pairs, an inference stage, an output stage.

Subscription callbacks only :meth:`FrameWorker.offer` the pairs the synchronizer resolved. Two
threads then run the frames (issue 24, "a pipelined node"):

* the **inference stage** (thread ``perception_worker``) takes the newest pair from the mailbox
  and runs ``process`` on it (conversion, inference, the checks of the result); ``process``
  returns what the frame publishes (or None when the frame is skipped);
* the **output stage** (thread ``perception_outputs``, :class:`OutputStage`) runs ``publish`` on
  it: detections first, then the lazy outputs, the timings and the frame's counters.

So building and publishing the outputs of frame k overlaps with conversion and inference of
frame k+1. Between the stages is a one-slot hand-over: while the output stage still publishes
frame k and frame k+1 already waits in the hand-over, the inference stage waits before handing
over frame k+2 (back-pressure; counted in ``output_stage_waits``) instead of dropping a frame it
has inferred. Newer pairs meanwhile replace each other in the mailbox as without the pipeline. One
output thread and a FIFO hand-over keep the frames' order: every output of frame k is published
before any of frame k+1. With ``pipelined=False`` ``publish`` runs in the inference thread right
after ``process`` (one thread, as before issue 24).

Ownership: what ``process`` returns is handed over, not shared; the inference stage keeps no
reference to it and must not write into its arrays afterwards (the pipeline allocates every
result array per frame, test/test_worker.py checks that two frames share no memory).

Counting (``counters``): every pair offered is counted in ``pairs_in``, every pair replaced in the
mailbox in ``skipped_frames``, exactly: pairs_in = processed + skipped_frames + in the mailbox +
pairs without an image refused for a model without a lidar-only path. ``process`` counts
``processed`` and ``publish`` counts ``published``: processed = published + frames skipped by
``process`` + frames between the stages + frames whose publishing raised + ``outputs_dropped``
(frames inferred but not published because the node stopped before the output stage got to them,
or the context was already shut down). A frame that raises in either stage is counted in
``errors.inference`` and warned about (throttled, one warning per stage); neither thread dies of
it. While the mailbox is empty the inference stage polls the synchronizer every 20 ms, so clouds
whose camera timed out are resolved (lidar-only frames) without new input.

Stop (:meth:`FrameWorker.stop`): the inference stage finishes its frame in flight (a pair still in
the mailbox is dropped) and hands it over; the output stage publishes everything handed over and
ends; both joins together take at most ``timeout`` seconds, after which whatever is still waiting
is dropped (``outputs_dropped``) and the threads (daemons) are left behind.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional, Sequence

from bev_mtl_ros.ros.diagnostics import NodeCounters

__all__ = ["FrameWorker", "OutputStage"]


class OutputStage:
    """The output stage: a one-slot hand-over and the thread that publishes from it, in order.

    Args:
        publish: called with each handed-over item, in the order handed over (output thread).
        counters: the node's counters (``output_stage_waits``, ``outputs_dropped``,
            ``errors.inference``).
        context_ok: () -> bool, False once rclpy is shutting down (a failing publish is then
            dropped quietly, counted in ``outputs_dropped``).
        logger: rclpy logger; every: ``period -> logger keyword arguments`` (throttling).
    """

    def __init__(self, publish: Callable[[Any], None], counters: NodeCounters,
                 context_ok: Callable[[], bool], logger: Any,
                 every: Callable[[float], Dict[str, Any]]) -> None:
        self._publish = publish
        self._counters = counters
        self._context_ok = context_ok
        self._log = logger
        self._every = every
        self._cond = threading.Condition()
        self._slot: Optional[Any] = None
        self._busy = False       # an item is being published
        self._closing = False    # nothing more will be handed over: publish what is left, end
        self._abandoned = False  # stop timed out: drop what is left, refuse new items
        self._thread = threading.Thread(target=self._loop, name="perception_outputs",
                                        daemon=True)

    def start(self) -> None:
        """Start the output thread."""
        self._thread.start()

    def put(self, item: Any) -> bool:
        """Hand ``item`` over; wait while the previous one has not been taken yet.

        Returns:
            True when handed over, False when the stage was abandoned (item dropped, counted in
            ``outputs_dropped``).
        """
        with self._cond:
            if self._slot is not None and not self._abandoned:
                self._counters.count("output_stage_waits")
                while self._slot is not None and not self._abandoned:
                    self._cond.wait()
            if self._abandoned:
                self._counters.count("outputs_dropped")
                return False
            self._slot = item
            self._cond.notify_all()
        return True

    def frames(self) -> int:
        """Return the frames in this stage: waiting in the hand-over plus being published."""
        with self._cond:
            return int(self._slot is not None) + int(self._busy)

    def close(self, timeout: float) -> bool:
        """Publish what was handed over, then end the thread; wait at most ``timeout`` s.

        Returns:
            True when the thread ended in time; False when it did not (the item still waiting
            is dropped and counted in ``outputs_dropped``; the daemon thread is left behind).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.0, timeout))
        if not self._thread.is_alive():
            return True
        with self._cond:
            self._abandoned = True
            if self._slot is not None:
                self._slot = None
                self._counters.count("outputs_dropped")
            self._cond.notify_all()
        return False

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._closing:
                    self._cond.wait()
                if self._slot is None or self._abandoned:  # closing, everything published
                    return
                item, self._slot = self._slot, None
                self._busy = True
                self._cond.notify_all()  # the inference stage may hand over the next one
            try:
                self._publish(item)
            except Exception as e:  # never let the output thread die
                if not self._context_ok():  # rclpy shut down under it: drop it quietly
                    self._counters.count("outputs_dropped")
                else:
                    self._counters.count("errors.inference")
                    self._log.warning(
                        f"frame outputs failed: {type(e).__name__}: {e}\n"
                        f"{traceback.format_exc()}", **self._every(5.0))
            del item
            with self._cond:
                self._busy = False


class FrameWorker:
    """One-slot mailbox, inference thread and output stage (see module docstring).

    Args:
        process: called with each pair taken from the mailbox (inference thread); returns the
            item to publish, or None when the frame is skipped.
        poll: the synchronizer's ``poll`` (pairs resolved by time alone).
        counters: the node's counters (``pairs_in``, ``skipped_frames``, ``errors.inference``,
            ``output_stage_waits``, ``outputs_dropped``).
        lidar_only_supported: False = pairs without an image are not put in the mailbox.
        context_ok: () -> bool, False once rclpy is shutting down (errors are then dropped
            quietly and the workers end).
        logger: rclpy logger; every: ``period -> logger keyword arguments`` (throttling).
        publish: called with each item ``process`` returned, in order (output thread, or the
            inference thread when not ``pipelined``).
        pipelined: True = a separate output stage (the node's ``pipeline_outputs``).
    """

    def __init__(self, process: Callable[[Any], Optional[Any]],
                 poll: Callable[[], Sequence[Any]], counters: NodeCounters,
                 lidar_only_supported: bool, context_ok: Callable[[], bool], logger: Any,
                 every: Callable[[float], Dict[str, Any]], publish: Callable[[Any], None],
                 pipelined: bool = True) -> None:
        self._process = process
        self._publish = publish
        self._poll = poll
        self._counters = counters
        self._lidar_only = bool(lidar_only_supported)
        self._context_ok = context_ok
        self._log = logger
        self._every = every
        self._cond = threading.Condition()
        self._slot: Optional[Any] = None
        self._stop = False
        self._inferring = False  # a frame is in the inference stage (until handed over)
        self._thread = threading.Thread(target=self._loop, name="perception_worker", daemon=True)
        #: the output stage, None when not pipelined
        self.outputs: Optional[OutputStage] = (
            OutputStage(publish, counters, context_ok, logger, every) if pipelined else None)

    def start(self) -> None:
        """Start the worker threads."""
        if self.outputs is not None:
            self.outputs.start()
        self._thread.start()

    def offer(self, pairs: Sequence[Any]) -> None:
        """Put synchronised pairs in the mailbox (the newest wins; replaced ones are counted)."""
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
        """Return True while a pair waits in the mailbox (the frame in flight should not wait)."""
        return self._slot is not None

    def in_flight(self) -> Dict[str, int]:
        """Return the frames in each place now: ``mailbox``, ``inference``, ``outputs``.

        ``outputs``: waiting in the hand-over or being published (0 when not pipelined: the
        frame being published is counted in ``inference``).
        """
        with self._cond:
            waiting, inferring = int(self._slot is not None), int(self._inferring)
        return {"mailbox": waiting, "inference": inferring,
                "outputs": self.outputs.frames() if self.outputs is not None else 0}

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop both stages after the frames in flight; wait at most ``timeout`` s in all.

        The inference stage finishes its frame and hands it over (a pair left in the mailbox is
        dropped), then the output stage publishes what it holds and ends.

        Returns:
            True when both threads ended in time.
        """
        end = time.monotonic() + timeout
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        inference_done = not self._thread.is_alive()
        outputs_done = (self.outputs is None
                        or self.outputs.close(end - time.monotonic()))
        return inference_done and outputs_done

    def _hand_over(self, item: Any) -> None:
        """Publish ``item`` through the output stage, or here when not pipelined."""
        if self.outputs is not None:
            self.outputs.put(item)
            return
        try:
            self._publish(item)
        except Exception as e:
            if self._stop or not self._context_ok():
                self._counters.count("outputs_dropped")
                return
            self._counters.count("errors.inference")
            self._log.warning(
                f"frame outputs failed: {type(e).__name__}: {e}\n{traceback.format_exc()}",
                **self._every(5.0))

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._slot is None and not self._stop:
                    self._cond.wait(timeout=0.02)
                if self._stop:
                    return
                pair, self._slot = self._slot, None
                self._inferring = pair is not None
            if pair is None:
                late = self._poll()
                if late:
                    self.offer(late)
                continue
            try:
                item = self._process(pair)
                del pair
                if item is not None:
                    self._hand_over(item)
                    del item  # handed over: this stage keeps no reference
            except Exception as e:  # never let the worker die
                if self._stop or not self._context_ok():  # shutting down: drop it quietly
                    return
                self._counters.count("errors.inference")
                self._log.warning(
                    f"frame failed: {type(e).__name__}: {e}\n{traceback.format_exc()}",
                    **self._every(5.0))
            finally:
                with self._cond:
                    self._inferring = False
