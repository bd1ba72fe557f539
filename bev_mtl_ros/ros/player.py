"""Replay a rosbag2 file (mcap or sqlite3) over DDS with its recorded timing.

No ``ros2`` CLI needed.

``bev-mtl-ros play BAG [--rate R] [--clock] [--loop] [--topics T ...]`` reads the bag with the pure
Python ``rosbags`` library and publishes each message's serialized CDR bytes unchanged with
``Publisher.publish(bytes)`` (rclpy accepts serialized messages; rosbags' CDR equals rclpy's except
for padding bytes). The message class each publisher needs comes from the installed interface
package (``<pkg>.msg.<Type>`` imported by name); a topic whose type is not installed is skipped
with a warning and counted in :attr:`PlaybackStats.skipped_topics`.

Timing: message ``k`` with bag time ``t_k`` (ns, the bag's receive time) is published at wall time
``T0 + (t_k - t_0) / rate``. With ``--clock`` a ``/clock`` (rosgraph_msgs/Clock) publisher sends
the current bag time at ``--clock-hz`` (100 Hz default) and before every message, so nodes run with
``use_sim_time:=true`` see the bag's time base. With ``--loop`` playback restarts at the bag's
first message after the last one: stamps and ``/clock`` then jump backwards (that is what a
replaying node must handle).

Compressed images: with ``--decompress-images`` every ``sensor_msgs/CompressedImage`` topic is
decoded (OpenCV, :func:`bev_mtl_ros.data.bag_io.decompress_image_cdr`) and published as an rgb8
``sensor_msgs/Image`` with the same header, on the topic without its ``/compressed`` suffix
(:func:`bev_mtl_ros.data.bag_io.decompressed_topic`, image_transport's naming:
``.../image_raw/compressed`` -> ``.../image_raw``; ``--remap`` of the bag topic overrides it).
So a bag that stores the camera's PNG/JPEG bytes feeds a node that subscribes to plain Images.
A message that cannot be decoded is not published: it is counted in
:attr:`PlaybackStats.decode_errors` and warned about (throttled).

QoS: ``/tf_static``, and any topic whose recorded offered QoS profiles are all transient local, get
a reliable transient-local publisher with a history deep enough for all its messages (late joiners
receive them); every other topic a reliable keep-last(``--qos-depth``) volatile publisher, which
also matches best-effort (sensor-data) subscriptions.

Python API (used in-process by tests)::

    player = BagPlayer(node, "sample.mcap", rate=0.5, clock=True)
    player.wait_for_subscribers(1, ["/a2d2/lidar/points"], timeout=10.0)
    stats = player.play()            # blocking; or player.start() / player.join() / player.stop()
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader

from bev_mtl_ros.data.bag_io import decompress_image_cdr, decompressed_topic
from bev_mtl_ros.data.codec_base import ConversionError
from bev_mtl_ros.ros.playback import (AnswerPacer, BagClock, PlaybackStats, PlayerError,
                                      import_message_class)

#: Topics always published transient local (latched), whatever the bag's metadata says.
LATCHED_TOPICS = ("/tf_static",)
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"


def _qos_is_transient_local(profiles: Sequence[Any]) -> bool:
    """Return True when every recorded offered QoS profile (rosbags ``Qos``) is transient local."""
    if not profiles:
        return False
    return all(getattr(getattr(p, "durability", None), "name", "") == "TRANSIENT_LOCAL"
               for p in profiles)


def _publisher_qos(connection: Any, count: int, qos_depth: int) -> QoSProfile:
    """Return the QoS of the publisher that replays bag ``connection`` (``count`` messages).

    Latched topics (:data:`LATCHED_TOPICS`, or all recorded offered profiles transient local):
    reliable transient local with a history of every message (at most 1000); else reliable
    volatile keep-last ``qos_depth``.
    """
    profiles = list(getattr(connection.ext, "offered_qos_profiles", []) or [])
    if connection.topic in LATCHED_TOPICS or _qos_is_transient_local(profiles):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, min(count, 1000)),
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, int(qos_depth)),
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class BagPlayer:
    """Publishes a rosbag2 file's messages over DDS from an rclpy node with the recorded timing.

    Args:
        node: the rclpy ``Node`` that owns the publishers (not spun by the player; publishing
            from the player's thread is safe).
        bag_path: rosbag2 directory or a single ``.mcap``/``.db3`` file (rosbags reads both).
        rate: playback speed factor (> 0); 2.0 plays twice as fast as recorded.
        clock: publish ``/clock`` (rosgraph_msgs/Clock) with the bag time.
        loop: restart at the beginning after the last message, until :meth:`stop`.
        topics: replay only these topics (None = all).
        clock_hz: ``/clock`` rate in wall-clock Hz when ``clock`` is set.
        qos_depth: history depth of the volatile publishers.
        remap: {bag topic: published topic}.
        start_paused: begin paused; :meth:`resume` starts the playback.
        max_loops: with ``loop``, stop after this many passes (None = endless).
        pace_input: closed-loop pacing (for CI replays that must not overload a slow machine):
            before publishing message k on this bag topic, wait until ``pace_topic`` has delivered
            k answers (the node's output for each earlier input), at most ``pace_timeout`` s each.
            Bag time (and ``/clock``) stands still while waiting, like a pause.
        pace_topic: output topic counted for pacing, ``"/topic"`` or ``"/topic:pkg/msg/Type"``
            (the type is looked up in the ROS graph when omitted). The caller must spin ``node``
            (the CLI does) so the answers are counted.
        pace_timeout: seconds to wait for one answer before publishing anyway (counted in
            ``stats.pace_timeouts``).
        decompress_images: publish CompressedImage topics as rgb8 Images (see the module
            docstring).
    Raises:
        PlayerError: bag missing/unreadable, or none of the requested topics playable.
    """

    #: messages read (and compressed images decoded) ahead of the one being published
    DECODE_AHEAD = 8

    def __init__(self, node, bag_path, rate: float = 1.0, clock: bool = False, loop: bool = False,
                 topics: Optional[Iterable[str]] = None, clock_hz: float = 100.0,
                 qos_depth: int = 10,
                 remap: Optional[Dict[str, str]] = None, start_paused: bool = False,
                 max_loops: Optional[int] = None, pace_input: Optional[str] = None,
                 pace_topic: Optional[str] = None, pace_timeout: float = 30.0,
                 decompress_images: bool = False):
        if not rate or rate <= 0:
            raise PlayerError(f"rate must be > 0, got {rate}")
        self.node = node
        self.bag_path = Path(bag_path)
        self.rate = float(rate)
        self.clock = bool(clock)
        self.loop = bool(loop)
        self.clock_hz = float(clock_hz)
        self.max_loops = max_loops
        self.remap = dict(remap or {})
        self.decompress_images = bool(decompress_images)
        self._decode_ids: set = set()   # connection ids whose CompressedImages are decoded
        self._typestore = None           # rosbags typestore of the decoder (made when needed)
        self.stats = PlaybackStats()
        self._stop = threading.Event()
        self._running = threading.Event()
        if not start_paused:
            self._running.set()
        self._thread: Optional[threading.Thread] = None
        self._logger = node.get_logger()
        self._open_bag()
        self._create_publishers(topics, qos_depth)
        self._init_pacing(pace_input, pace_topic, pace_timeout)
        self._clock = BagClock(node, self.rate, self.clock, self.clock_hz, self.stats,
                               self._stop, self._running)

    # ------------------------------------------------------------------ set-up steps
    def _open_bag(self) -> None:
        """Open the bag reader (``self._reader``, ``start_ns``, ``end_ns``).

        Raises:
            PlayerError: the bag is missing or unreadable.
        """
        if not self.bag_path.exists():
            raise PlayerError(f"bag not found: {self.bag_path}")
        try:
            self._reader = Reader(self.bag_path)
            self._reader.open()
        except Exception as e:  # rosbags raises several error types for unreadable files
            raise PlayerError(f"cannot open bag {self.bag_path}: {e}") from e
        self.start_ns = int(self._reader.start_time)
        self.end_ns = int(self._reader.end_time)
        self.stats.bag_span_s = max(0, self.end_ns - self.start_ns) * 1e-9

    def _create_publishers(self, topics: Optional[Iterable[str]], qos_depth: int) -> None:
        """One publisher per played (remapped) topic; unplayable topics go to ``skipped_topics``.

        Sets ``self._publishers`` / ``self._topic_of`` (connection id -> publisher / bag topic),
        ``self._connections``, :attr:`published_topics` and :attr:`message_counts`.
        Raises:
            PlayerError: nothing playable (the reader is closed).
        """
        wanted = None if topics is None else set(topics)
        self._publishers: Dict[int, Any] = {}   # connection id -> publisher
        self._topic_of: Dict[int, str] = {}
        by_topic: Dict[str, Any] = {}
        counts: Dict[str, int] = defaultdict(int)
        for c in self._reader.connections:
            counts[c.topic] += c.msgcount
        for c in self._reader.connections:
            reason = self._skip_reason(c, wanted)
            if reason:
                self.stats.skipped_topics[c.topic] = reason
                continue
            decode = self.decompress_images and c.msgtype == COMPRESSED_IMAGE
            out_topic = self.remap.get(c.topic, decompressed_topic(c.topic) if decode
                                       else c.topic)
            msgtype = IMAGE if decode else c.msgtype
            if decode:
                self._decode_ids.add(c.id)
            if out_topic not in by_topic:
                try:
                    cls = import_message_class(msgtype)
                except ImportError as e:
                    self.stats.skipped_topics[c.topic] = f"type {c.msgtype} not installed: {e}"
                    self._logger.warning(f"skipping {c.topic}: message type {c.msgtype} is not "
                                         f"installed ({e})")
                    continue
                qos = _publisher_qos(c, counts[c.topic], qos_depth)
                by_topic[out_topic] = self.node.create_publisher(cls, out_topic, qos)
            self._publishers[c.id] = by_topic[out_topic]
            self._topic_of[c.id] = c.topic
        if wanted is not None:
            for t in wanted - set(counts):
                self.stats.skipped_topics[t] = "not in the bag"
                self._logger.warning(f"requested topic {t} is not in {self.bag_path}")
        if not self._publishers:
            self._reader.close()
            raise PlayerError(f"nothing to play in {self.bag_path}: "
                              f"{self.stats.skipped_topics or 'no messages'}")
        self._connections = [c for c in self._reader.connections if c.id in self._publishers]
        self.published_topics: Dict[str, str] = {
            self._out_topic(c): IMAGE if c.id in self._decode_ids else c.msgtype
            for c in self._connections}
        self.message_counts: Dict[str, int] = {c.topic: counts[c.topic] for c in self._connections}
        if self._decode_ids:
            from rosbags.typesys import Stores, get_typestore
            self._typestore = get_typestore(Stores.ROS2_KILTED)

    def _out_topic(self, connection: Any) -> str:
        """Return the topic a bag connection is published on (remap, decompressed images)."""
        if connection.id in self._decode_ids:
            return self.remap.get(connection.topic, decompressed_topic(connection.topic))
        return self.remap.get(connection.topic, connection.topic)

    def _skip_reason(self, connection: Any, wanted: Optional[set]) -> str:
        """Return why a bag connection is not replayed ("" = it is).

        Not selected, or /clock replaced by the player's own.
        """
        if wanted is not None and connection.topic not in wanted:
            return "not selected (--topics)"
        if connection.topic == "/clock" and self.clock:
            return "replaced by the player's own /clock"
        return ""

    def _init_pacing(self, pace_input: Optional[str], pace_topic: Optional[str],
                     pace_timeout: float) -> None:
        """Closed-loop pacing set-up (``self._pacer``; None without pacing).

        Raises:
            PlayerError: only one of ``pace_input`` / ``pace_topic`` given, or ``pace_input`` is
            not a played topic.
        """
        self.pace_input = pace_input
        self.pace_timeout = float(pace_timeout)
        if (pace_input is None) != (pace_topic is None):
            raise PlayerError("pacing needs both pace_input and pace_topic")
        if pace_input is not None and pace_input not in self.message_counts:
            raise PlayerError(f"pace_input {pace_input} is not a played topic of {self.bag_path}")
        self._pacer = (None if pace_topic is None else
                       AnswerPacer(self.node, pace_topic, self.pace_timeout, self.stats,
                                   self._stop))

    # ------------------------------------------------------------------ control
    def wait_for_subscribers(self, count: int, topics: Optional[Sequence[str]] = None,
                             timeout: float = 30.0, settle_s: float = 0.5) -> bool:
        """Block until each topic has at least ``count`` matched subscriptions.

        Args:
            count: subscriptions required per topic (0 returns at once).
            topics: published topic names to check, each optionally ``"topic=N"`` to require N
                subscriptions on that topic instead of ``count``; default: the bag's PointCloud2
                topics, else all.
            timeout: seconds to wait at most.
            settle_s: extra wait after the graph shows the subscriptions, so DDS endpoint matching
                completes before the first (volatile) message.
        Returns:
            True when satisfied, False on timeout (a warning names the unsatisfied topics).
        """
        if count <= 0:
            return True
        if not topics:
            topics = [t for t, ty in self.published_topics.items()
                      if ty.endswith("PointCloud2")] or \
                list(self.published_topics)
        need: Dict[str, int] = {}
        for spec in topics:
            t, sep, n = spec.partition("=")
            need[t] = int(n) if sep else int(count)
        topics = list(need)
        pubs = {}
        for c in self._connections:
            pubs[self._out_topic(c)] = self._publishers[c.id]
        missing = [t for t in topics if t not in pubs]
        if missing:
            self._logger.warning(f"--wait-for-subscribers: topics not played: {missing}")
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            short = [t for t in topics if t in pubs and pubs[t].get_subscription_count() < need[t]]
            if not short:
                time.sleep(settle_s)
                return True
            if time.monotonic() > deadline:
                self._logger.warning(f"timed out after {timeout:.1f} s waiting for {count} "
                                     f"subscriber(s) on {short}")
                return False
            time.sleep(0.05)
        return False

    def pause(self) -> None:
        """Pause playback (bag time stops; resumes where it stopped)."""
        self._running.clear()

    def resume(self) -> None:
        """Resume a paused playback."""
        self._running.set()

    def toggle_pause(self) -> None:
        """Pause if running, else resume."""
        (self.pause if self._running.is_set() else self.resume)()

    def stop(self) -> None:
        """Ask the playback to end after the current message (thread-safe)."""
        self._stop.set()
        self._running.set()

    def start(self) -> threading.Thread:
        """Run :meth:`play` in a daemon thread and return it."""
        self._thread = threading.Thread(target=self.play, name="bag_player", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: Optional[float] = None) -> PlaybackStats:
        """Wait for the thread started by :meth:`start`; returns the statistics."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.stats

    @property
    def finished(self) -> bool:
        """True once playback ended (or was stopped)."""
        return self._thread is not None and not self._thread.is_alive()

    # ------------------------------------------------------------------ playback
    def play(self) -> PlaybackStats:
        """Publish the bag (blocking). Returns :attr:`stats`; safe to call from any thread.

        Loops with ``loop=True`` until :meth:`stop` (or ``max_loops``). Publishes ``/clock`` with
        each message's bag time just before the message when ``clock`` is set.
        """
        t_start = time.monotonic()
        if self._pacer is not None:
            self._pacer.subscribe()
        paced = 0  # inputs on pace_input published so far (all loops)
        try:
            while not self._stop.is_set():
                self._clock.restart(self.start_ns)
                messages = self._decoded_ahead(
                    self._reader.messages(connections=self._connections))
                for conn, ts, pending in messages:
                    if not self._clock.wait_until(ts):
                        break
                    if self._pacer is not None and conn.topic == self.pace_input:
                        if paced:
                            self._clock.hold(self._pacer.wait_for(paced))  # bag time stood still
                        paced += 1
                    data = self._decoded(conn.topic, pending)
                    if data is None:  # not decodable (counted, warned)
                        continue
                    self._clock.publish(ts)
                    self._publishers[conn.id].publish(data)
                    self.stats.published[self._topic_of[conn.id]] += 1
                    if isinstance(pending, Future):
                        self.stats.images_decompressed += 1
                else:
                    messages.close()
                    self.stats.loops += 1
                    if not self.loop or (self.max_loops is not None
                                         and self.stats.loops >= self.max_loops):
                        break
                    self._logger.info(f"loop {self.stats.loops} done; restarting "
                                      f"{self.bag_path.name}")
                    continue
                messages.close()  # stopped mid-pass: end the decoder thread
                break
        finally:
            self.stats.wall_s = time.monotonic() - t_start
        return self.stats

    def _decoded_ahead(self, messages: Iterable[Any]) -> Iterator[Tuple[Any, int, Any]]:
        """Yield (connection, bag time ns, data) with compressed images decoded ahead of time.

        ``data`` is the CDR bytes to publish, or for a CompressedImage that is decoded a Future of
        the Image's CDR (:func:`decompress_image_cdr`; it raises what that raises). A decoder
        thread works :attr:`DECODE_AHEAD` messages ahead of the one being published, so an image's
        decoding (tens of ms for a 1920x1208 PNG; OpenCV releases the GIL) overlaps the wait for
        its publish time instead of delaying it. Closing the generator cancels what is queued and
        waits for the decode under way.
        """
        if not self._decode_ids:
            for conn, ts, raw in messages:
                yield conn, ts, bytes(raw)
            return
        queue: Deque[Tuple[Any, int, Any]] = deque()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bag_image_decoder")
        try:
            for conn, ts, raw in messages:
                data: Any = bytes(raw)
                if conn.id in self._decode_ids:
                    data = pool.submit(decompress_image_cdr, self._typestore, data)
                queue.append((conn, ts, data))
                if len(queue) > self.DECODE_AHEAD:
                    yield queue.popleft()
            while queue:
                yield queue.popleft()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _decoded(self, topic: str, pending: Any) -> Optional[bytes]:
        """Return the bytes to publish: ``pending`` itself, or its decoded Image CDR.

        A CompressedImage whose data cannot be decoded gives None, counted in
        ``stats.decode_errors`` and warned about (throttled).
        """
        if not isinstance(pending, Future):
            return pending
        try:
            return pending.result()
        except (ConversionError, ValueError, KeyError) as e:
            self.stats.decode_errors += 1
            self._logger.warning(f"{topic}: compressed image not decodable, not published "
                                 f"({self.stats.decode_errors} so far): {e}",
                                 throttle_duration_sec=5.0)
            return None

    def close(self) -> None:
        """Stop playback and release the bag reader and the publishers."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        try:
            self._reader.close()
        except Exception:
            pass
        if self._pacer is not None and self._pacer.subscription is not None:
            try:
                self.node.destroy_subscription(self._pacer.subscription)
            except Exception:
                pass
        clock_pub = self._clock.publisher
        for pub in set(self._publishers.values()) | ({clock_pub} if clock_pub else set()):
            try:
                self.node.destroy_publisher(pub)
            except Exception:
                pass


# ---------------------------------------------------------------------- CLI
def _first_cloud_topic(bag) -> Optional[str]:
    with Reader(bag) as r:
        return next((c.topic for c in r.connections if c.msgtype.endswith("PointCloud2")), None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bev-mtl-ros play``."""
    parser.add_argument("bag", help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--rate", "-r", type=float, default=1.0,
                        help="playback speed factor (default 1.0)")
    parser.add_argument("--clock", action="store_true",
                        help="publish /clock with the bag time (for use_sim_time)")
    parser.add_argument("--clock-hz", type=float, default=100.0,
                        help="/clock rate in Hz (default 100)")
    parser.add_argument("--loop", "-l", action="store_true",
                        help="restart at the beginning after the end")
    parser.add_argument("--max-loops", type=int, default=None,
                        help="with --loop: stop after this many passes")
    parser.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                        help="replay only these topics")
    parser.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO",
                        help="rename topics on publish")
    parser.add_argument("--qos-depth", type=int, default=10,
                        help="history depth of volatile publishers")
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help="before playing, wait until N subscriptions match each --wait-topics "
                             "topic")
    parser.add_argument("--wait-topics", nargs="+", default=None, metavar="TOPIC[=N]",
                        help="topics checked by --wait-for-subscribers (default: the bag's "
                             "PointCloud2 topics); TOPIC=N requires N subscriptions on that topic")
    parser.add_argument("--wait-timeout", type=float, default=60.0,
                        help="seconds to wait for subscribers")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to sleep before playing")
    parser.add_argument("--start-paused", action="store_true",
                        help="start paused; SIGUSR1 toggles pause/resume")
    parser.add_argument("--pace-topic", default=None, metavar="TOPIC[:TYPE]",
                        help="closed loop: before each --pace-input message wait for one more "
                             "message on this (output) topic than before (a slow node is never "
                             "overloaded)")
    parser.add_argument("--pace-input", default=None, metavar="TOPIC",
                        help="bag topic paced by --pace-topic (default: the bag's first "
                             "PointCloud2 topic)")
    parser.add_argument("--pace-timeout", type=float, default=30.0,
                        help="seconds to wait per answer")
    parser.add_argument("--decompress-images", action="store_true",
                        help="publish sensor_msgs/CompressedImage topics as rgb8 "
                             "sensor_msgs/Image on the topic without '/compressed' (decoded "
                             "with OpenCV)")
    parser.add_argument("--node-name", default="bag_player", help="name of the player's ROS node")
    parser.add_argument("--stats-json", default=None,
                        help="write playback statistics as JSON here")


def main(args: argparse.Namespace) -> int:
    """Run ``bev-mtl-ros play``.

    Returns 0 on success, 2 on a bag error, 3 when subscribers never came.
    """
    import json

    remap = {}
    for r in args.remap:
        if ":=" not in r:
            print(f"play: bad --remap {r!r} (expected FROM:=TO)", file=sys.stderr)
            return 2
        a, b = r.split(":=", 1)
        remap[a] = b
    rclpy.init(args=None, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node(args.node_name)
    log = node.get_logger()
    rc = 0
    player = None
    try:
        pace_input = args.pace_input
        if args.pace_topic and not pace_input:
            pace_input = _first_cloud_topic(args.bag)
        player = BagPlayer(node, args.bag, rate=args.rate, clock=args.clock, loop=args.loop,
                           topics=args.topics, clock_hz=args.clock_hz, qos_depth=args.qos_depth,
                           remap=remap, start_paused=args.start_paused, max_loops=args.max_loops,
                           pace_input=pace_input if args.pace_topic else None,
                           pace_topic=args.pace_topic, pace_timeout=args.pace_timeout,
                           decompress_images=args.decompress_images)

        def _on_signal(signum, frame):  # stop cleanly on Ctrl-C / SIGTERM
            player.stop()
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, lambda s, f: player.toggle_pause())

        counts = ", ".join(f"{t} ({n})" for t, n in sorted(player.message_counts.items()))
        log.info(f"playing {args.bag} at rate {args.rate}: {counts}")
        if args.wait_for_subscribers > 0:
            if not player.wait_for_subscribers(args.wait_for_subscribers, args.wait_topics,
                                               args.wait_timeout):
                rc = 3
        if args.delay > 0:
            time.sleep(args.delay)
        if rc == 0:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            th = player.start()
            while th.is_alive():
                executor.spin_once(timeout_sec=0.05)   # delivers pacing answers
            executor.remove_node(node)
            stats = player.stats
            log.info(f"done: {dict(stats.published)} in {stats.wall_s:.2f} s, loops "
                     f"{stats.loops}, max lag {stats.max_lag_ms:.1f} ms")
            if args.stats_json:
                Path(args.stats_json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.stats_json).write_text(json.dumps(player.stats.to_dict(), indent=2))
            # give reliable/transient-local readers time to fetch the last samples before leaving
            time.sleep(0.3)
    except PlayerError as e:
        print(f"play: {e}", file=sys.stderr)
        rc = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return rc


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros play")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
