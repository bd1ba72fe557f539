"""Record ROS 2 topics to a rosbag2 file (mcap or sqlite3); no ``ros2`` CLI needed.

``bev-mtl-ros record OUT --topics T1 T2[:pkg/msg/Type] ... [--storage mcap] [--duration S]
[--max-messages N]`` subscribes with rclpy *raw* subscriptions (the callback receives the
serialized CDR bytes, nothing is deserialized) and writes the bytes with the ``rosbags`` library.
Each message's bag timestamp is its **receive time** (wall clock ns, or the node clock with
``--use-sim-time``); the message's own ``header.stamp`` is inside the bytes and unchanged.

Types: a topic given as ``/topic:pkg/msg/Type`` is subscribed at once; a bare ``/topic`` is
subscribed when discovery first shows a publisher (like ``ros2 bag record``). The bag's message
definitions (needed by mcap readers such as Foxglove) come from ``data.bag_io.make_typestore()``
(which knows vision_msgs) when available, else rosbags' ROS 2 Kilted store, extended on demand from
the installed ``share/<pkg>/msg/*.msg`` files.

QoS: the subscription adapts to the publishers found (as ``ros2 bag record`` does): reliable unless
some publisher is best effort; transient local when every publisher is (so ``/tf_static`` and
``label_info`` are caught even if published before the recorder started). The publishers' offered
QoS is written into the bag's metadata.

Stops cleanly on SIGINT/SIGTERM, ``--duration``, ``--max-messages``, ``--expect TOPIC=N`` (each
listed topic reached N messages) or ``--idle-timeout`` (no message for S seconds after the first);
the bag is always closed (index/metadata flushed).

Python API::

    rec = BagRecorder(node, "out/run1", ["/perception_node/detections"], storage="mcap")
    ...spin node...
    rec.close()
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bev_mtl_ros.data.bag_io import MessageTypeError, ensure_type, make_record_typestore


class RecorderError(RuntimeError):
    """Raised for an unusable output path or storage (the message names it).

    An unknown message type raises :class:`bev_mtl_ros.data.bag_io.MessageTypeError`.
    """


def _to_bag_qos(profile) -> Any:
    """Convert an rclpy QoSProfile to a rosbags ``Qos`` (bag metadata offered_qos_profiles)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                    QosTime)

    def dur(d):
        ns = int(d.nanoseconds)
        if ns <= 0 or ns >= 2**63 - 1:
            return (QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF) if ns >= 2**63 - 1
                    else QosTime(sec=0, nsec=0))
        return QosTime(sec=ns // 1_000_000_000, nsec=ns % 1_000_000_000)

    def enum(cls, value, default):
        try:
            return cls(int(value))
        except (ValueError, TypeError):
            return default

    return Qos(history=enum(QosHistory, profile.history, QosHistory.UNKNOWN),
               depth=int(profile.depth),
               reliability=enum(QosReliability, profile.reliability, QosReliability.UNKNOWN),
               durability=enum(QosDurability, profile.durability, QosDurability.UNKNOWN),
               deadline=dur(profile.deadline), lifespan=dur(profile.lifespan),
               liveliness=enum(QosLiveliness, profile.liveliness, QosLiveliness.UNKNOWN),
               liveliness_lease_duration=dur(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions))


def parse_topic_spec(spec: str) -> Tuple[str, Optional[str]]:
    """Split a topic spec: ``"/topic"`` -> ("/topic", None).

    ``"/topic:pkg/msg/Type"`` -> ("/topic", "pkg/msg/Type").
    """
    if ":" in spec:
        topic, msgtype = spec.split(":", 1)
        if msgtype.count("/") == 1:
            p, n = msgtype.split("/")
            msgtype = f"{p}/msg/{n}"
        return topic, msgtype
    return spec, None


class BagRecorder:
    """Subscribes to topics with raw (serialized) subscriptions and writes a rosbag2 file.

    Args:
        node: the rclpy node to create subscriptions on; the caller spins it (callbacks must not
            run concurrently: use a single-threaded executor or the default ``rclpy.spin``).
        out_path: output bag directory (must not exist; rosbag2 layout: ``<out>/<out>_0.mcap`` +
            ``metadata.yaml``).
        topics: topic specs, ``"/t"`` or ``"/t:pkg/msg/Type"``.
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
        use_node_clock: timestamps from the node clock (sim time when ``use_sim_time``), else wall
            clock ``time.time_ns()``.
        discovery_period_s: how often unresolved topics are looked up in the ROS graph.
    Raises:
        RecorderError: output exists, or unknown storage.
    """

    def __init__(self, node, out_path, topics: Sequence[str], storage: str = "mcap",
                 use_node_clock: bool = False, discovery_period_s: float = 0.2):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.node = node
        self.out_path = Path(out_path)
        if self.out_path.exists():
            raise RecorderError(f"output bag already exists: {self.out_path}")
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise RecorderError(f"unknown storage {storage!r} (mcap or sqlite3)")
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.typestore = make_record_typestore()
        self._writer = Writer(self.out_path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._lock = threading.Lock()
        self._closed = False
        self.use_node_clock = use_node_clock
        self.counts: Dict[str, int] = defaultdict(int)
        self.first_receive_ns: Optional[int] = None
        self.last_receive_monotonic: Optional[float] = None
        self.last_receive_by_topic: Dict[str, float] = {}
        self.pending: Dict[str, Optional[str]] = {}
        self._subs: Dict[str, Any] = {}
        self._conns: Dict[str, Any] = {}
        self.errors: List[str] = []
        self._log = node.get_logger()
        for spec in topics:
            t, ty = parse_topic_spec(spec)
            self.pending[node.resolve_topic_name(t) if hasattr(node, "resolve_topic_name")
                         else t] = ty
        self._resolve()
        self._timer = (node.create_timer(discovery_period_s, self._resolve) if self.pending
                       else None)

    # ------------------------------------------------------------------ discovery
    def _resolve(self) -> None:
        if not self.pending:
            if self._timer is not None:
                self._timer.cancel()
            return
        graph = dict(self.node.get_topic_names_and_types())
        for topic, msgtype in list(self.pending.items()):
            if msgtype is None:
                types = graph.get(topic)
                if not types:
                    continue
                if len(types) > 1:
                    self._log.warning(f"{topic} has several types {types}; recording {types[0]}")
                msgtype = types[0]
            try:
                self._subscribe(topic, msgtype)
            except (RecorderError, MessageTypeError, ImportError) as e:
                self.errors.append(str(e))
                self._log.error(f"cannot record {topic}: {e}")
            del self.pending[topic]

    def _subscribe(self, topic: str, msgtype: str) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        from bev_mtl_ros.ros.playback import import_message_class

        cls = import_message_class(msgtype)
        ensure_type(self.typestore, msgtype)
        infos = self.node.get_publishers_info_by_topic(topic)
        offered = [i.qos_profile for i in infos]
        reliability = ReliabilityPolicy.RELIABLE
        durability = DurabilityPolicy.VOLATILE
        if offered:
            if any(q.reliability == ReliabilityPolicy.BEST_EFFORT for q in offered):
                reliability = ReliabilityPolicy.BEST_EFFORT
            if all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered):
                durability = DurabilityPolicy.TRANSIENT_LOCAL
        elif topic.endswith(("/tf_static", "/label_info")):
            durability = DurabilityPolicy.TRANSIENT_LOCAL
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=reliability,
                         durability=durability)
        bag_qos = [_to_bag_qos(q) for q in offered] or [_to_bag_qos(qos)]
        with self._lock:
            self._conns[topic] = self._writer.add_connection(topic, msgtype,
                                                             typestore=self.typestore,
                                                             offered_qos_profiles=bag_qos)
        self._subs[topic] = self.node.create_subscription(
            cls, topic, lambda data, _t=topic: self._on_message(_t, data), qos, raw=True)
        self._log.info(f"recording {topic} [{msgtype}] ({reliability.name.lower()}, "
                       f"{durability.name.lower()})")

    # ------------------------------------------------------------------ writing
    def _now_ns(self) -> int:
        if self.use_node_clock:
            return int(self.node.get_clock().now().nanoseconds)
        return time.time_ns()

    def _on_message(self, topic: str, data: bytes) -> None:
        ts = self._now_ns()
        with self._lock:
            if self._closed:
                return
            self._writer.write(self._conns[topic], ts, bytes(data))
            self.counts[topic] += 1
            if self.first_receive_ns is None:
                self.first_receive_ns = ts
            self.last_receive_monotonic = time.monotonic()
            self.last_receive_by_topic[topic] = self.last_receive_monotonic

    @property
    def total(self) -> int:
        """Messages written so far, all topics."""
        return sum(self.counts.values())

    def close(self) -> Dict[str, int]:
        """Stop recording and close the bag (writes the mcap summary/metadata). Idempotent.

        Returns: topic -> messages written.
        """
        with self._lock:
            if self._closed:
                return dict(self.counts)
            self._closed = True
        for sub in self._subs.values():
            try:
                self.node.destroy_subscription(sub)
            except Exception:
                pass
        if self._timer is not None:
            self._timer.cancel()
        self._writer.close()
        return dict(self.counts)


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bev-mtl-ros record``."""
    parser.add_argument("out", help="output bag directory (must not exist)")
    parser.add_argument("--topics", nargs="+", required=True, metavar="TOPIC[:TYPE]",
                        help="topics to record; append :pkg/msg/Type to subscribe before "
                             "discovery")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after S seconds (wall clock)")
    parser.add_argument("--max-messages", type=int, default=None,
                        help="stop after N messages in total")
    parser.add_argument("--expect", nargs="+", default=[], metavar="TOPIC=N",
                        help="stop once every listed topic has N messages")
    parser.add_argument("--linger", type=float, default=0.0,
                        help="after --expect counts are reached, keep recording this many seconds "
                             "(other topics of the last frame)")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop when no message arrived for S seconds (after the first one); "
                             "with --expect only the expected topics count")
    parser.add_argument("--use-sim-time", action="store_true",
                        help="timestamp with the node clock under use_sim_time (else wall clock)")
    parser.add_argument("--node-name", default="bag_recorder")
    parser.add_argument("--ready-file", default=None,
                        help="create this file once every topic given with a type is subscribed "
                             "(for scripts)")


def main(args: argparse.Namespace) -> int:
    """Run ``bev-mtl-ros record``.

    Returns 0 on success, 2 on bad arguments/output path, 1 when a topic could not be recorded.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    expect: Dict[str, int] = {}
    for e in args.expect:
        if "=" not in e:
            print(f"record: bad --expect {e!r} (expected TOPIC=N)", file=sys.stderr)
            return 2
        t, n = e.rsplit("=", 1)
        expect[t] = int(n)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    overrides = [Parameter("use_sim_time", Parameter.Type.BOOL, True)] if args.use_sim_time else []
    node = rclpy.create_node(args.node_name, parameter_overrides=overrides)
    log = node.get_logger()
    try:
        rec = BagRecorder(node, args.out, args.topics, storage=args.storage,
                          use_node_clock=args.use_sim_time)
    except RecorderError as e:
        print(f"record: {e}", file=sys.stderr)
        node.destroy_node()
        rclpy.shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    t0 = time.monotonic()
    ready_written = False
    reached: Optional[float] = None
    reason = "signal"
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
            if args.ready_file and not ready_written and not any(v is not None
                                                                 for v in rec.pending.values()):
                Path(args.ready_file).parent.mkdir(parents=True, exist_ok=True)
                Path(args.ready_file).write_text("ready\n")
                ready_written = True
            if args.duration is not None and time.monotonic() - t0 >= args.duration:
                reason = "duration"
                break
            if args.max_messages is not None and rec.total >= args.max_messages:
                reason = "max-messages"
                break
            if expect and all(rec.counts.get(t, 0) >= n for t, n in expect.items()):
                if reached is None:
                    reached = time.monotonic()
                if time.monotonic() - reached >= args.linger:
                    reason = "expected counts reached"
                    break
            last = (max((rec.last_receive_by_topic[t] for t in expect
                         if t in rec.last_receive_by_topic),
                        default=None) if expect else rec.last_receive_monotonic)
            if (args.idle_timeout is not None and last is not None
                    and time.monotonic() - last >= args.idle_timeout):
                reason = "idle timeout"
                break
    finally:
        counts = rec.close()
        log.info(f"stopped ({reason}); wrote {args.out}: {counts}")
        if rec.pending:
            log.warning(f"never saw a publisher for: {sorted(rec.pending)}")
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 1 if rec.errors else 0


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros record")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
