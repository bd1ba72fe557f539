"""Building blocks of the bag player (:mod:`bev_mtl_ros.ros.player`).

Errors, statistics, message classes by type name, the recorded timing and closed-loop pacing.

* :class:`PlayerError`, :class:`PlaybackStats` (counters of one playback) and
  :func:`import_message_class` (the rclpy class of ``pkg/msg/Type``, also used by the recorder).

* :class:`BagClock` - message ``k`` with bag time ``t_k`` (ns) is due at wall time
  ``T0 + (t_k - t_0) / rate`` (monotonic clock); a pause, and a wait for the node's answers,
  shift ``T0`` so bag time stands still meanwhile. With ``clock`` it publishes ``/clock``
  (rosgraph_msgs/Clock) with the current bag time at ``clock_hz`` while waiting and on request
  (the player sends one just before each message).
* :class:`AnswerPacer` - before input ``k`` of the paced bag topic, wait until the node's output
  topic has delivered ``k`` answers (at most ``timeout`` s each), so a slow machine is never
  overloaded (CI replays).

Both update the player's :class:`PlaybackStats` (passed in).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

__all__ = ["PlayerError", "PlaybackStats", "import_message_class", "BagClock", "AnswerPacer"]


class PlayerError(RuntimeError):
    """Raised when a bag cannot be opened or holds nothing playable (message names the file)."""


@dataclass
class PlaybackStats:
    """Counters of one :meth:`BagPlayer.play` call.

    Attributes:
        published: topic -> messages published (all loops together).
        loops: completed passes over the bag.
        clock_messages: ``/clock`` messages published.
        skipped_topics: topic -> reason, for topics not replayed (type not installed, filtered
        out). wall_s: wall-clock seconds the playback took.
        bag_span_s: bag time covered by one pass, seconds.
        max_lag_ms: largest delay of a publish behind its scheduled wall time, ms (the player's own
            timing error; large values mean the machine could not keep up with the rate).
        pace_timeouts: inputs published without the awaited answer (closed-loop pacing only).
        pace_wait_s: total seconds spent waiting for answers (closed-loop pacing only).
        images_decompressed: CompressedImage messages published as Image
            (``--decompress-images``).
        decode_errors: CompressedImage messages not published because their data could not be
            decoded (each one warned about).
    """

    published: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    loops: int = 0
    clock_messages: int = 0
    skipped_topics: Dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    bag_span_s: float = 0.0
    max_lag_ms: float = 0.0
    pace_timeouts: int = 0
    pace_wait_s: float = 0.0
    images_decompressed: int = 0
    decode_errors: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "published": dict(self.published), "loops": self.loops,
            "clock_messages": self.clock_messages,
            "skipped_topics": dict(self.skipped_topics), "wall_s": round(self.wall_s, 3),
            "bag_span_s": round(self.bag_span_s, 3), "max_lag_ms": round(self.max_lag_ms, 2),
            "pace_timeouts": self.pace_timeouts, "pace_wait_s": round(self.pace_wait_s, 3),
            "images_decompressed": self.images_decompressed, "decode_errors": self.decode_errors,
        }


def import_message_class(msgtype: str):
    """Return the rclpy message class for a ROS 2 type name.

    Args:
        msgtype: ``"pkg/msg/Type"`` (rosbag2 spelling) or ``"pkg/Type"``.
    Returns:
        The generated Python class (e.g. ``sensor_msgs.msg.PointCloud2``).
    Raises:
        ImportError: the interface package is not installed or lacks the type.
    """
    try:  # the official helper, when a ROS 2 distribution provides it
        from rosidl_runtime_py.utilities import get_message  # type: ignore
        return get_message(msgtype)
    except ImportError:
        pass
    except (AttributeError, ValueError) as e:
        raise ImportError(f"message type {msgtype!r} not found: {e}") from e
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ImportError(f"malformed message type name {msgtype!r} (expected pkg/msg/Type)")
    pkg, kind, name = parts
    module = importlib.import_module(f"{pkg}.{kind}")
    try:
        return getattr(module, name)
    except AttributeError as e:
        raise ImportError(f"package {pkg!r} has no {kind} type {name!r}") from e


class BagClock:
    """Schedule of bag time on the wall clock, and the ``/clock`` publisher.

    Args:
        node: owner of the ``/clock`` publisher.
        rate: playback speed factor (> 0).
        publish_clock: publish ``/clock`` (else :meth:`publish` does nothing).
        clock_hz: ``/clock`` rate while waiting, wall-clock Hz (<= 0: only on request).
        stats: the player's PlaybackStats (``clock_messages``, ``max_lag_ms`` are updated).
        stop: set when playback must end; running: cleared while paused.
    """

    def __init__(self, node: Node, rate: float, publish_clock: bool, clock_hz: float,
                 stats: Any, stop: threading.Event, running: threading.Event) -> None:
        self.rate = float(rate)
        self.clock_hz = float(clock_hz)
        self._stats = stats
        self._stop = stop
        self._running = running
        self._anchor = [time.monotonic(), 0]  # [wall t0 (s), bag t0 (ns)]
        self.publisher = (node.create_publisher(
            Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
            if publish_clock else None)

    def restart(self, bag_ns: int) -> None:
        """Start a pass: bag time ``bag_ns`` is now (publishes it on /clock)."""
        self._anchor = [time.monotonic(), int(bag_ns)]
        self.publish(bag_ns)

    def hold(self, seconds: float) -> None:
        """Let bag time stand still for ``seconds`` that just passed (a wait, a pause)."""
        self._anchor[0] += seconds

    def publish(self, bag_ns: int) -> None:
        """Publish bag time ``bag_ns`` (ns) on /clock (when enabled)."""
        if self.publisher is None:
            return
        self.publisher.publish(Clock(clock=Time(sec=int(bag_ns // 1_000_000_000),
                                                nanosec=int(bag_ns % 1_000_000_000))))
        self._stats.clock_messages += 1

    def wait_until(self, bag_ns: int) -> bool:
        """Sleep until the wall time of bag time ``bag_ns``, publishing /clock meanwhile.

        A pause (``running`` cleared) shifts the schedule. Records the lateness in
        ``stats.max_lag_ms``. Returns False when stopped.
        """
        period = (1.0 / self.clock_hz if self.publisher is not None and self.clock_hz > 0
                  else None)
        next_tick = time.monotonic()
        anchor = self._anchor
        while True:
            if self._stop.is_set():
                return False
            if not self._running.is_set():
                paused_at = time.monotonic()
                self._running.wait()
                self.hold(time.monotonic() - paused_at)
                continue
            now = time.monotonic()
            target = anchor[0] + (bag_ns - anchor[1]) * 1e-9 / self.rate
            if period is not None and now >= next_tick:
                cur = anchor[1] + int((now - anchor[0]) * self.rate * 1e9)
                self.publish(min(cur, bag_ns))
                next_tick = now + period
            if now >= target:
                self._stats.max_lag_ms = max(self._stats.max_lag_ms, (now - target) * 1e3)
                return True
            wake = target if period is None else min(target, next_tick)
            time.sleep(max(0.0, min(wake - now, 0.05)))


class AnswerPacer:
    """Closed-loop pacing: count the node's answers and wait for them before each input.

    Args:
        node: owner of the answer subscription (the caller must spin it).
        spec: answer topic, ``"/topic"`` or ``"/topic:pkg/msg/Type"`` (the type is looked up in
            the ROS graph when omitted).
        timeout: seconds to wait for one answer before publishing anyway.
        stats: the player's PlaybackStats (``pace_timeouts``, ``pace_wait_s`` are updated).
        stop: set when playback must end (waits return early).
    """

    def __init__(self, node: Node, spec: str, timeout: float, stats: Any,
                 stop: threading.Event) -> None:
        self.node = node
        self.spec = spec
        self.timeout = float(timeout)
        self._stats = stats
        self._stop = stop
        self._log = node.get_logger()
        self.subscription: Optional[Any] = None
        self._answers = 0
        self._cv = threading.Condition()

    def subscribe(self, timeout: float = 30.0) -> None:
        """Subscribe (raw, reliable) to the answer topic once; resolves its type from the graph.

        Raises:
            PlayerError: the topic did not appear in the graph within ``timeout`` s.
        """
        if self.subscription is not None:
            return
        topic, _, msgtype = self.spec.partition(":")
        deadline = time.monotonic() + timeout
        while not msgtype:
            types = dict(self.node.get_topic_names_and_types()).get(topic)
            if types:
                msgtype = types[0]
                break
            if time.monotonic() > deadline or self._stop.is_set():
                raise PlayerError(f"pace topic {topic} never appeared in the ROS graph (give its "
                                  f"type as {topic}:pkg/msg/Type)")
            time.sleep(0.05)
        cls = import_message_class(msgtype)
        self.subscription = self.node.create_subscription(
            cls, topic, self._on_answer,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE), raw=True)

    def _on_answer(self, _data: Any) -> None:
        with self._cv:
            self._answers += 1
            self._cv.notify_all()

    def wait_for(self, needed: int) -> float:
        """Wait until ``needed`` answers arrived (at most ``timeout`` s); return the s waited.

        A timeout is counted in ``stats.pace_timeouts`` and warned about; the caller publishes
        the next input anyway.
        """
        t0 = time.monotonic()
        with self._cv:
            ok = self._cv.wait_for(lambda: self._answers >= needed or self._stop.is_set(),
                                   timeout=self.timeout)
        if not ok:
            self._stats.pace_timeouts += 1
            self._log.warning(f"pacing: no answer on {self.spec} for input {needed} "
                              f"within {self.timeout:.1f} s; publishing the next input anyway")
        waited = time.monotonic() - t0
        self._stats.pace_wait_s += waited
        return waited
