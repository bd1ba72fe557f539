"""Bag player and recorder: round trips over DDS between separate processes.

Also timing, loop, /clock, latched QoS, unknown types.

Every test runs on its own ROS_DOMAIN_ID with discovery limited to localhost (conftest fixtures
``ros_env`` / ``rclpy_context``), so parallel test runs do not see each other's topics.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,  # noqa: E402
                                QosReliability, QosTime)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402

from bev_mtl_ros.data.bag_io import ensure_type  # noqa: E402
from bev_mtl_ros.ros.player import BagPlayer, PlayerError, import_message_class  # noqa: E402
from bev_mtl_ros.ros.recorder import parse_topic_spec  # noqa: E402

T0 = 1_700_000_000_000_000_000  # bag start, ns
N_CLOUDS, N_IMAGES = 10, 5
CLOUD_PERIOD_NS = 100_000_000


def _cli():
    return [sys.executable, "-m", "bev_mtl_ros.cli"]


def _stamp(ns):
    from rosbags.typesys.stores.ros2_kilted import builtin_interfaces__msg__Time as Time
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_bag(path: Path, storage=StoragePlugin.SQLITE3, extra_type: bool = False) -> dict:
    """Small bag: 10 PointCloud2 at 10 Hz, 5 rgb8 Images at 5 Hz, one transient-local String.

    Returns {topic: [(bag_ns, cdr_bytes), ...]}.
    """
    ts = get_typestore(Stores.ROS2_KILTED)
    M = ts.types
    Header, PC, PF, Img, S = (M["std_msgs/msg/Header"], M["sensor_msgs/msg/PointCloud2"],
                              M["sensor_msgs/msg/PointField"], M["sensor_msgs/msg/Image"],
                              M["std_msgs/msg/String"])
    rng = np.random.default_rng(0)
    w = Writer(path, version=9, storage_plugin=storage)
    w.open()
    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                  QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    c_pts = w.add_connection("/pts", "sensor_msgs/msg/PointCloud2", typestore=ts)
    c_img = w.add_connection("/img", "sensor_msgs/msg/Image", typestore=ts)
    c_lat = w.add_connection("/latched", "std_msgs/msg/String", typestore=ts,
                             offered_qos_profiles=[latched])
    out = {"/pts": [], "/img": [], "/latched": []}
    if extra_type:
        ts.register(get_types_from_msg("int32 a\n", "nonexistent_pkg_xyz/msg/Foo"))
        c_foo = w.add_connection("/foo", "nonexistent_pkg_xyz/msg/Foo", typestore=ts)
        raw = ts.serialize_cdr(ts.types["nonexistent_pkg_xyz/msg/Foo"](a=3),
                               "nonexistent_pkg_xyz/msg/Foo")
        w.write(c_foo, T0, raw)
    raw = bytes(ts.serialize_cdr(S(data="latched hello"), "std_msgs/msg/String"))
    w.write(c_lat, T0, raw)
    out["/latched"].append((T0, raw))
    fields = [PF(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")] + \
        [PF(name="intensity", offset=12, datatype=7, count=1)]
    for k in range(N_CLOUDS):
        st = T0 + k * CLOUD_PERIOD_NS
        n = 500 + 37 * k
        pts = rng.normal(size=(n, 4)).astype(np.float32)
        msg = PC(header=Header(stamp=_stamp(st), frame_id="cam_front_center"), height=1, width=n,
                 fields=fields,
                 is_bigendian=False, point_step=16, row_step=16 * n,
                 data=pts.view(np.uint8).ravel(), is_dense=True)
        raw = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))
        w.write(c_pts, st + 3_000_000, raw)
        out["/pts"].append((st + 3_000_000, raw))
        if k % 2 == 0:
            img = rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
            im = Img(header=Header(stamp=_stamp(st + 1_000_000),
                                   frame_id="cam_front_center_optical"), height=24,
                     width=32, encoding="rgb8", is_bigendian=0, step=96, data=img.ravel())
            raw = bytes(ts.serialize_cdr(im, "sensor_msgs/msg/Image"))
            w.write(c_img, st + 4_000_000, raw)
            out["/img"].append((st + 4_000_000, raw))
    w.close()
    return out


def read_bag(path: Path) -> dict:
    """{topic: [(bag_ns, cdr_bytes, msgtype, connection)]} in bag order."""
    out: dict = {}
    with Reader(path) as r:
        for c, t, raw in r.messages():
            out.setdefault(c.topic, []).append((t, bytes(raw), c.msgtype, c))
    return out


def _fields_equal(ts, a: bytes, b: bytes, msgtype: str) -> bool:
    ma, mb = ts.deserialize_cdr(a, msgtype), ts.deserialize_cdr(b, msgtype)
    return _deep_eq(ma, mb)


def _deep_eq(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(_deep_eq(getattr(a, f), getattr(b, f))
                                          for f in a.__dataclass_fields__)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_deep_eq(x, y) for x, y in zip(a, b))
    return a == b


def test_round_trip_player_to_recorder_separate_processes(tmp_path, ros_env):
    """sqlite3 bag -> player process -> DDS -> recorder process -> mcap bag.

    Every message arrives once, field-equal (header stamps included), in order, with the recorded
    spacing / rate.
    """
    src = tmp_path / "src"
    expected = make_bag(src, StoragePlugin.SQLITE3)
    out = tmp_path / "rec"
    ready = tmp_path / "ready"
    env = ros_env
    rate = 2.0
    rec = subprocess.Popen(_cli()
                           + ["record", str(out), "--topics", "/pts:sensor_msgs/msg/PointCloud2",
                              "/img:sensor_msgs/msg/Image", "/latched",
                              "--expect", f"/pts={N_CLOUDS}", f"/img={N_IMAGES}", "/latched=1",
                              "--duration", "40", "--ready-file", str(ready)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and rec.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), "recorder never became ready"
        play = subprocess.run(_cli() + ["play", str(src), "--rate", str(rate),
                                        "--wait-for-subscribers", "1",
                                        "--wait-topics", "/pts", "/img", "--wait-timeout", "20"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert play.returncode == 0, play.stdout + play.stderr
        rec_out, _ = rec.communicate(timeout=45)
    finally:
        if rec.poll() is None:
            rec.terminate()
            rec.wait(10)
    assert rec.returncode == 0, rec_out
    assert "expected counts reached" in rec_out, rec_out

    got = read_bag(out)
    ts = get_typestore(Stores.ROS2_KILTED)
    for topic, msgs in expected.items():
        assert topic in got, f"{topic} not recorded: {sorted(got)}"
        assert len(got[topic]) == len(msgs), topic
        msgtype = got[topic][0][2]
        for (_, raw_in), (_, raw_out, _, _) in zip(msgs, got[topic]):
            assert _fields_equal(ts, raw_in, raw_out,
                                 msgtype), (f"{topic}: message changed in transit")
    stamps = [ts.deserialize_cdr(r, "sensor_msgs/msg/PointCloud2").header.stamp
              for _, r, _, _ in got["/pts"]]
    assert [s.sec * 10**9 + s.nanosec for s in stamps] == [T0 + k * CLOUD_PERIOD_NS
                                                           for k in range(N_CLOUDS)]
    # receive times follow the recorded spacing divided by the rate (100 ms / 2 = 50 ms)
    recv = np.array([t for t, _, _, _ in got["/pts"]], dtype=np.int64)
    gaps_ms = np.diff(recv) / 1e6
    assert 30.0 < float(np.median(gaps_ms)) < 80.0, gaps_ms
    span_s = (recv[-1] - recv[0]) / 1e9
    assert 0.3 < span_s < 1.2, span_s
    # the mcap carries message definitions and the latched topic's transient-local QoS
    c_lat = got["/latched"][0][3]
    assert "string data" in c_lat.msgdef.data
    assert got["/pts"][0][3].msgdef.data.strip(), "no message definition written"
    assert any(q.durability == QosDurability.TRANSIENT_LOCAL
               for q in c_lat.ext.offered_qos_profiles)


def test_in_process_loop_clock_and_latched(tmp_path, rclpy_context):
    """The BagPlayer API: two loops, /clock and a transient-local message.

    Two loops give every cloud twice, stamps jump back once, /clock follows the bag time
    (monotonic within a pass, inside the bag's span) and a late subscriber still gets the
    transient-local message.
    """
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    src = tmp_path / "src"
    make_bag(src, StoragePlugin.MCAP)
    pnode = rclpy.create_node("player_under_test", context=rclpy_context)
    snode = rclpy.create_node("listener", context=rclpy_context)
    stamps, clocks = [], []
    snode.create_subscription(PointCloud2, "/pts",
                              lambda m: stamps.append(m.header.stamp.sec * 10**9
                                                      + m.header.stamp.nanosec),
                              QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    snode.create_subscription(Clock, "/clock",
                              lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec),
                              QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(snode)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.02)
                                            for _ in iter(stop.is_set, True)],
                            daemon=True)
    spin.start()
    player = BagPlayer(pnode, src, rate=4.0, clock=True, loop=True, max_loops=2, clock_hz=50.0)
    try:
        assert player.wait_for_subscribers(1, ["/pts"], timeout=15.0)
        stats = player.play()
        latched = []
        snode.create_subscription(String, "/latched", lambda m: latched.append(m.data),
                                  QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                             durability=DurabilityPolicy.TRANSIENT_LOCAL))
        deadline = time.monotonic() + 5
        while (len(stamps) < 2 * N_CLOUDS or not latched) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        spin.join(5)
        player.close()
    assert stats.loops == 2
    assert stats.published["/pts"] == 2 * N_CLOUDS
    one_pass = [T0 + k * CLOUD_PERIOD_NS for k in range(N_CLOUDS)]
    assert stamps == one_pass + one_pass
    assert latched == ["latched hello"]
    c = np.array(clocks, dtype=np.int64)
    assert len(c) >= 2 * N_CLOUDS
    assert c.min() >= player.start_ns and c.max() <= player.end_ns
    assert int((np.diff(c) < 0).sum()) == 1, "clock must jump back exactly once (at the loop)"


def test_unknown_type_skipped_and_errors(tmp_path, rclpy_context):
    """A topic whose type is not installed is skipped with a reason, the rest plays.

    A missing bag and a bad rate raise PlayerError naming the problem.
    """
    src = tmp_path / "src"
    make_bag(src, StoragePlugin.MCAP, extra_type=True)
    node = rclpy.create_node("p2", context=rclpy_context)
    player = BagPlayer(node, src, rate=50.0, topics=["/pts", "/foo", "/missing"])
    try:
        assert "not installed" in player.stats.skipped_topics["/foo"]
        assert player.stats.skipped_topics["/missing"] == "not in the bag"
        assert "not selected" in player.stats.skipped_topics["/img"]
        stats = player.play()
        assert dict(stats.published) == {"/pts": N_CLOUDS}
    finally:
        player.close()
    remapped = BagPlayer(node, src, topics=["/pts"], remap={"/pts": "/renamed/points"})
    try:
        assert remapped.published_topics == {"/renamed/points": "sensor_msgs/msg/PointCloud2"}
        assert node.count_publishers("/renamed/points") == 1
    finally:
        remapped.close()
    with pytest.raises(PlayerError, match="not found"):
        BagPlayer(node, tmp_path / "nope.mcap")
    with pytest.raises(PlayerError, match="rate"):
        BagPlayer(node, src, rate=0.0)
    with pytest.raises(PlayerError, match="nothing to play"):
        BagPlayer(node, src, topics=["/foo"])


def test_message_class_and_type_helpers():
    from sensor_msgs.msg import PointCloud2
    assert import_message_class("sensor_msgs/msg/PointCloud2") is PointCloud2
    assert import_message_class("sensor_msgs/PointCloud2") is PointCloud2
    with pytest.raises(ImportError):
        import_message_class("sensor_msgs/msg/NoSuchType")
    assert parse_topic_spec("/a/b:vision_msgs/Detection3DArray") == (
        "/a/b", "vision_msgs/msg/Detection3DArray")
    assert parse_topic_spec("/a/b") == ("/a/b", None)


def test_ensure_type_from_installed_msg_files():
    """Types missing from the rosbags store (vision_msgs) are registered from share/<pkg>/msg."""
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into this environment")
    ts = get_typestore(Stores.ROS2_KILTED)
    assert "vision_msgs/msg/Detection3DArray" not in ts.fielddefs
    ensure_type(ts, "vision_msgs/msg/Detection3DArray")
    assert "vision_msgs/msg/ObjectHypothesisWithPose" in ts.fielddefs
    text, _ = ts.generate_msgdef("vision_msgs/msg/Detection3DArray")
    assert "Detection3D[] detections" in text or "detections" in text


def test_closed_loop_pacing_never_outruns_a_slow_consumer(tmp_path, rclpy_context):
    """With pacing, cloud k+1 is published only after the consumer answered cloud k.

    Even at rate 50: a consumer needing 80 ms per cloud sees every cloud, and publishes are
    >= 80 ms apart.
    """
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    src = tmp_path / "src"
    make_bag(src, StoragePlugin.MCAP)
    pnode = rclpy.create_node("paced_player", context=rclpy_context)
    cnode = rclpy.create_node("slow_consumer", context=rclpy_context)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    ans = cnode.create_publisher(String, "/answers", qos)
    seen = []

    def on_cloud(m):
        seen.append((time.monotonic(), m.header.stamp.nanosec))
        time.sleep(0.08)
        ans.publish(String(data="done"))
    cnode.create_subscription(PointCloud2, "/pts", on_cloud, qos)
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(cnode)
    ex.add_node(pnode)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.02)
                                            for _ in iter(stop.is_set, True)],
                            daemon=True)
    spin.start()
    player = BagPlayer(pnode, src, rate=50.0, topics=["/pts"], pace_input="/pts",
                       pace_topic="/answers:std_msgs/msg/String", pace_timeout=5.0)
    try:
        assert player.wait_for_subscribers(1, ["/pts"], timeout=15.0)
        stats = player.play()
        deadline = time.monotonic() + 5
        while len(seen) < N_CLOUDS and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        spin.join(5)
        player.close()
    assert stats.pace_timeouts == 0
    assert len(seen) == N_CLOUDS
    gaps = np.diff([t for t, _ in seen])
    assert gaps.min() >= 0.075, gaps           # unpaced at rate 50 they would be 2 ms apart
    with pytest.raises(PlayerError, match="pace"):
        BagPlayer(pnode, src, pace_input="/pts")


def test_recorder_sigterm_flushes_a_readable_bag(tmp_path, ros_env):
    """SIGTERM in the middle of a recording: the recorder exits 0 and leaves a complete bag.

    The bag holds every message received so far (mcap summary written, metadata present).
    """
    import signal as _signal
    src = tmp_path / "src"
    make_bag(src, StoragePlugin.MCAP)
    out = tmp_path / "rec"
    ready = tmp_path / "ready"
    rec = subprocess.Popen(_cli()
                           + ["record", str(out), "--topics", "/pts:sensor_msgs/msg/PointCloud2",
                              "--storage", "sqlite3", "--ready-file", str(ready)],
                           env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and rec.poll() is None:
            time.sleep(0.05)
        play = subprocess.run(_cli() + ["play", str(src), "--rate", "5", "--topics", "/pts",
                                        "--wait-for-subscribers", "1", "--wait-timeout", "20"],
                              env=ros_env, capture_output=True, text=True, timeout=60)
        assert play.returncode == 0, play.stderr
        time.sleep(1.0)
        rec.send_signal(_signal.SIGTERM)
        log, _ = rec.communicate(timeout=20)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, log
    assert "stopped (signal)" in log, log
    got = read_bag(out)
    assert len(got["/pts"]) == N_CLOUDS
    assert (out / "metadata.yaml").exists()


def test_start_paused_then_resume(tmp_path, rclpy_context):
    """start_paused: nothing is published until resume().

    The bag time does not run while paused (the whole bag still takes its recorded span / rate
    after resuming).
    """
    src = tmp_path / "src"
    make_bag(src, StoragePlugin.MCAP)
    node = rclpy.create_node("paused_player", context=rclpy_context)
    player = BagPlayer(node, src, rate=4.0, topics=["/pts"], start_paused=True)
    try:
        t0 = time.monotonic()
        player.start()
        time.sleep(0.4)
        assert player.stats.published.get("/pts", 0) == 0
        player.resume()
        stats = player.join(10.0)
        wall = time.monotonic() - t0
    finally:
        player.close()
    assert stats.published["/pts"] == N_CLOUDS
    span = (N_CLOUDS - 1) * CLOUD_PERIOD_NS / 1e9 / 4.0  # 0.225 s of bag time at rate 4
    assert wall >= 0.4 + span - 0.05, wall


def _image_listener(rclpy_context, name: str, callback):
    """Subscribe ``callback`` to /cam/image_raw (reliable) on a node spun in a thread.

    Returns a function that stops the spinning (and waits for it).
    """
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    node = rclpy.create_node(name, context=rclpy_context)
    node.create_subscription(Image, "/cam/image_raw", callback,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(node)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.01)
                                            for _ in iter(stop.is_set, True)], daemon=True)
    spin.start()

    def stop_spinning() -> None:
        stop.set()
        spin.join(5)
    return stop_spinning


def test_compressed_images_published_as_decoded_images(tmp_path, rclpy_context):
    """``decompress_images``: a CompressedImage topic is published as rgb8 Images.

    On the topic without ``/compressed``, header kept, pixels = the decoded file (PNG: exactly the
    array that was encoded; JPEG: what OpenCV decodes); an undecodable message is counted, not
    published, and playback goes on.
    """
    import cv2

    from bev_mtl_ros.data.bag_io import image_to_array, make_compressed_image

    ts = get_typestore(Stores.ROS2_KILTED)
    rng = np.random.default_rng(5)
    rgb = [rng.integers(0, 255, size=(30, 40, 3), dtype=np.uint8) for _ in range(3)]
    payloads = [cv2.imencode(".png", cv2.cvtColor(rgb[0], cv2.COLOR_RGB2BGR))[1].tobytes(),
                b"\x89PNG but truncated",
                cv2.imencode(".png", cv2.cvtColor(rgb[2], cv2.COLOR_RGB2BGR))[1].tobytes()]
    src = tmp_path / "src"
    w = Writer(src, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    conn = w.add_connection("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                            typestore=ts)
    for k, data in enumerate(payloads):
        msg = make_compressed_image(ts, data, T0 + k * CLOUD_PERIOD_NS, "cam_optical", "png")
        w.write(conn, T0 + k * CLOUD_PERIOD_NS,
                bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage")))
    w.close()

    pnode = rclpy.create_node("decoding_player", context=rclpy_context)
    got = []
    stop_listener = _image_listener(rclpy_context, "image_listener", got.append)
    player = BagPlayer(pnode, src, rate=4.0, decompress_images=True)
    try:
        assert player.published_topics == {"/cam/image_raw": "sensor_msgs/msg/Image"}
        assert player.wait_for_subscribers(1, ["/cam/image_raw"], timeout=15.0)
        stats = player.play()
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_listener()
        player.close()
    assert (stats.images_decompressed, stats.decode_errors) == (2, 1)
    assert stats.published["/cam/image_raw/compressed"] == 2
    assert [(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec) for m in got] == \
        [T0, T0 + 2 * CLOUD_PERIOD_NS]
    for m, want in zip(got, (rgb[0], rgb[2])):
        assert (m.encoding, m.header.frame_id, m.width, m.height) == ("rgb8", "cam_optical", 40,
                                                                      30)
        assert np.array_equal(image_to_array(m), want)
    # JPEG through the same decoder: what OpenCV decodes from the bytes (lossy, so not the input)
    jpg = cv2.imencode(".jpg", rgb[1])[1].tobytes()
    dec = image_to_array(make_compressed_image(ts, jpg, T0, "c", "jpeg"))
    assert np.array_equal(dec, cv2.cvtColor(cv2.imdecode(np.frombuffer(jpg, np.uint8),
                                                         cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def _png_bag(path: Path, n: int, period_ns: int) -> None:
    """Write a bag of ``n`` CompressedImage PNGs (30x40) on /cam/image_raw/compressed."""
    import cv2

    from bev_mtl_ros.data.bag_io import make_compressed_image
    ts = get_typestore(Stores.ROS2_KILTED)
    png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    conn = w.add_connection("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                            typestore=ts)
    for k in range(n):
        msg = make_compressed_image(ts, png, T0 + k * period_ns, "cam_optical", "png")
        w.write(conn, T0 + k * period_ns,
                bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage")))
    w.close()


def test_images_are_decoded_ahead_of_their_publish_time(tmp_path, rclpy_context, monkeypatch):
    """The player decodes image k+1 while it waits to publish image k, and stops cleanly.

    A decoder that takes 0.1 s per image, images 0.3 s apart: image k+1's decoding starts before
    image k has even reached the subscriber (decoding on the publish thread would start it 0.3 s
    after image k was published). Image 0 waits for its own decoding, so the comparison starts at
    image 1. With a 0.5 s decoder, stopping at 0.6 s (image 1 being decoded, 2-4 queued) returns
    once that decode ends and leaves no decoder thread behind.
    """
    import bev_mtl_ros.ros.player as player_mod

    real_decode = player_mod.decompress_image_cdr
    decode_started = []
    decode_s = [0.1]

    def slow_decode(typestore, raw):
        decode_started.append(time.monotonic())
        time.sleep(decode_s[0])
        return real_decode(typestore, raw)

    monkeypatch.setattr(player_mod, "decompress_image_cdr", slow_decode)
    src = tmp_path / "src"
    _png_bag(src, 5, 300_000_000)
    pnode = rclpy.create_node("ahead_player", context=rclpy_context)
    received = []
    stop_listener = _image_listener(rclpy_context, "ahead_listener",
                                    lambda m: received.append(time.monotonic()))
    player = BagPlayer(pnode, src, rate=1.0, decompress_images=True)
    try:
        assert player.wait_for_subscribers(1, ["/cam/image_raw"], timeout=15.0)
        stats = player.play()
        deadline = time.monotonic() + 5
        while len(received) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (stats.images_decompressed, stats.decode_errors, len(received)) == (5, 0, 5)
        for k in range(1, 4):
            assert decode_started[k + 1] < received[k], (k, decode_started, received)
        player.close()
        decode_s[0] = 0.5
        player = BagPlayer(pnode, src, rate=1.0, decompress_images=True)
        player.start()
        time.sleep(0.6)
        t0 = time.monotonic()
        player.stop()
        stats = player.join(timeout=5.0)
        assert time.monotonic() - t0 < 1.0 and player.finished
        assert 1 <= stats.images_decompressed <= 2  # image 1 may still go out after its decode
        assert not [t for t in threading.enumerate() if t.name.startswith("bag_image_decoder")]
    finally:
        stop_listener()
        player.close()
