"""Cross-process smoke test: two processes exchange perception-sized messages over Fast DDS.

One child process publishes, per round, a vision_msgs/Detection3DArray, a 1920x1208 rgb8
sensor_msgs/Image and a 120k-point sensor_msgs/PointCloud2; another child process subscribes.
Both print a content digest (SHA-256 over every field, recursively) of each message; all must
arrive and be identical. The processes run on a random ROS_DOMAIN_ID with localhost-only
discovery and the package's Fast DDS large-data profile (``ros_env`` fixture, test/conftest.py).

A second test streams images + clouds at 10 Hz with sensor-data QoS (best effort), where the
profile matters most.

This file is also the children's program: ``python test_cross_process.py ROLE ARGS``.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROUNDS = 3
IMAGE_W, IMAGE_H = 1920, 1208
CLOUD_POINTS = 120_000
#: topic prefix; each test run gets its own (``XPROC_TOPIC_PREFIX`` in the children's environment),
#: so even a ROS_DOMAIN_ID collision with another test run on this host cannot mix messages
PREFIX = os.environ.get("XPROC_TOPIC_PREFIX", "/xproc")
TOPICS = {"detections": f"{PREFIX}/detections", "image": f"{PREFIX}/image",
          "cloud": f"{PREFIX}/points"}
CHILD_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------------
# message construction and digests (used by the children)
# --------------------------------------------------------------------------------------------
def message_digest(msg) -> str:
    """SHA-256 over every field of a ROS message, recursing into nested messages and sequences.

    Padding bytes are never read (unlike a digest of the serialized CDR), so equal content
    gives equal digests in publisher and subscriber.
    """
    h = hashlib.sha256()

    def feed(value) -> None:
        if hasattr(value, "get_fields_and_field_types"):
            h.update(type(value).__name__.encode())
            for name in value.get_fields_and_field_types():
                h.update(name.encode())
                feed(getattr(value, name))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            h.update(bytes(value))
        elif isinstance(value, array.array):
            h.update(value.typecode.encode())
            h.update(value.tobytes())
        elif isinstance(value, np.ndarray):
            h.update(str(value.dtype).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (list, tuple)):
            h.update(b"[%d]" % len(value))
            for item in value:
                feed(item)
        else:
            h.update(repr(value).encode())

    feed(msg)
    return h.hexdigest()


def make_messages(round_index: int):
    """Build one round's deterministic Detection3DArray, Image and PointCloud2.

    Image: 1920x1208 rgb8; PointCloud2: 120k points.
    """
    from geometry_msgs.msg import Quaternion
    from sensor_msgs.msg import Image, PointCloud2, PointField
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

    rng = np.random.default_rng(1000 + round_index)
    header = Header(frame_id="cam_front_center")
    header.stamp.sec = 1_600_000_000 + round_index
    header.stamp.nanosec = 123_456_789

    dets = Detection3DArray(header=header)
    for k in range(5 + round_index):
        det = Detection3D(header=header, id=f"track_{k}")
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = ("Car", "Pedestrian", "Bicycle")[k % 3]
        hyp.hypothesis.score = float(rng.uniform(0.3, 1.0))
        x, y, z, yaw = (float(v) for v in rng.uniform(-40, 40, 4))
        hyp.pose.pose.position.x, hyp.pose.pose.position.y, hyp.pose.pose.position.z = x, y, z
        det.results.append(hyp)
        (det.bbox.center.position.x, det.bbox.center.position.y,
         det.bbox.center.position.z) = (x, y, z)
        det.bbox.center.orientation = Quaternion(z=float(np.sin(yaw / 2)),
                                                 w=float(np.cos(yaw / 2)))
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = (float(v)
                                                             for v in rng.uniform(0.5, 5.0, 3))
        dets.detections.append(det)

    pixels = rng.integers(0, 256, size=(IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    image = Image(header=header, height=IMAGE_H, width=IMAGE_W, encoding="rgb8", is_bigendian=0,
                  step=IMAGE_W * 3)
    image.data = array.array("B", pixels.tobytes())

    points = rng.standard_normal((CLOUD_POINTS, 4)).astype(np.float32) * 20.0
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    fields.append(PointField(name="intensity", offset=12, datatype=PointField.FLOAT32, count=1))
    cloud = PointCloud2(header=header, height=1, width=CLOUD_POINTS, fields=fields,
                        is_bigendian=False,
                        point_step=16, row_step=16 * CLOUD_POINTS, is_dense=True)
    cloud.data = array.array("B", points.tobytes())
    return {"detections": dets, "image": image, "cloud": cloud}


def _message_types():
    from sensor_msgs.msg import Image, PointCloud2
    from vision_msgs.msg import Detection3DArray

    return {"detections": Detection3DArray, "image": Image, "cloud": PointCloud2}


def _qos(rounds: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=rounds,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def run_publisher(rounds: int) -> int:
    """Child: wait for the subscriber, publish ``rounds`` rounds, wait for the acknowledgement.

    Prints the digests.
    """
    import rclpy
    from rclpy.duration import Duration

    rclpy.init()
    node = rclpy.create_node("xproc_publisher")
    pubs = {k: node.create_publisher(t, TOPICS[k], _qos(rounds))
            for k, t in _message_types().items()}
    deadline = time.monotonic() + CHILD_TIMEOUT_S / 2
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() > deadline:
            print("publisher: no subscriber matched", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(0.2)  # let the subscriber's readers finish matching the other way
    sent = []
    for r in range(rounds):
        msgs = make_messages(r)
        for key, msg in msgs.items():
            pubs[key].publish(msg)
            sent.append([key, message_digest(msg)])
    for key, pub in pubs.items():
        if not pub.wait_for_all_acked(Duration(seconds=CHILD_TIMEOUT_S / 2)):
            print(f"publisher: {key} not acknowledged", file=sys.stderr)
            return 3
    print(json.dumps({"role": "pub", "sent": sent,
                      "profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")}))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_subscriber(rounds: int) -> int:
    """Child: receive ``rounds`` messages per topic and print their digests."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node("xproc_subscriber")
    received = []

    def callback(key):
        def on_message(msg):
            received.append([key, message_digest(msg)])

        return on_message

    subs = [node.create_subscription(t, TOPICS[k], callback(k), _qos(rounds))
            for k, t in _message_types().items()]
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    want = rounds * len(subs)
    while len(received) < want and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"role": "sub", "received": received,
                      "profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")}))
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(received) == want else 4


STREAM_FRAMES = 20
STREAM_HZ = 10.0
STREAM_TOPICS = {"image": f"{PREFIX}/stream/image", "cloud": f"{PREFIX}/stream/points"}
STREAM_DONE_TOPIC = f"{PREFIX}/stream/done"  # reliable end-of-stream marker


def run_stream_publisher(frames: int, hz: float) -> int:
    """Child: publish ``frames`` image + cloud pairs at ``hz`` with sensor-data QoS (best effort).

    frame_id carries the frame number and the stamp the wall-clock publish time (ns), so the
    subscriber can count frames and measure latency (same host, same clock).
    """
    import rclpy
    from rclpy.qos import qos_profile_sensor_data

    rclpy.init()
    node = rclpy.create_node("xproc_stream_publisher")
    types = _message_types()
    pubs = {k: node.create_publisher(types[k], topic, qos_profile_sensor_data)
            for k, topic in STREAM_TOPICS.items()}
    from rclpy.duration import Duration
    from std_msgs.msg import UInt32

    done = node.create_publisher(UInt32, STREAM_DONE_TOPIC, _qos(1))
    deadline = time.monotonic() + CHILD_TIMEOUT_S / 2
    while any(p.get_subscription_count() == 0 for p in (*pubs.values(), done)):
        if time.monotonic() > deadline:
            print("stream publisher: no subscriber matched", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(0.3)
    pool = [make_messages(i) for i in range(3)]  # distinct content, reused cyclically
    t0 = time.monotonic()
    for i in range(frames):
        msgs = pool[i % len(pool)]
        sec, nsec = divmod(time.time_ns(), 1_000_000_000)
        for key, pub in pubs.items():
            msg = msgs[key]
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
            msg.header.frame_id = f"frame_{i}"
            pub.publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) / hz - time.monotonic()))
    done.publish(UInt32(data=frames))
    done.wait_for_all_acked(Duration(seconds=10))  # returns at once if the subscriber already left
    time.sleep(0.5)  # keep the writers alive while the last samples are delivered
    print(json.dumps({"role": "stream-pub", "frames": frames}))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_stream_subscriber(frames: int) -> int:
    """Child: receive the best-effort stream until complete or shortly after the end marker.

    Prints counts/latency.
    """
    import rclpy
    from rclpy.qos import qos_profile_sensor_data

    rclpy.init()
    node = rclpy.create_node("xproc_stream_subscriber")
    types = _message_types()
    latency_ms = {k: {} for k in STREAM_TOPICS}
    sizes = {k: set() for k in STREAM_TOPICS}

    def callback(key):
        def on_message(msg):
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            latency_ms[key][msg.header.frame_id] = (time.time_ns() - stamp_ns) / 1e6
            sizes[key].add(len(msg.data))

        return on_message

    for k, topic in STREAM_TOPICS.items():
        node.create_subscription(types[k], topic, callback(k), qos_profile_sensor_data)
    from std_msgs.msg import UInt32

    deadline = time.monotonic() + CHILD_TIMEOUT_S

    def on_done(_msg):
        nonlocal deadline  # the publisher has finished: wait a moment for samples still in flight
        deadline = min(deadline, time.monotonic() + 1.5)

    node.create_subscription(UInt32, STREAM_DONE_TOPIC, on_done, _qos(1))
    while (time.monotonic() < deadline
           and sum(len(v) for v in latency_ms.values()) < frames * len(STREAM_TOPICS)):
        rclpy.spin_once(node, timeout_sec=0.1)
    summary = {k: {"received": len(v), "mean_ms": float(np.mean(list(v.values()))) if v else None,
                   "max_ms": max(v.values()) if v else None, "sizes": sorted(sizes[k])}
               for k, v in latency_ms.items()}
    print(json.dumps({"role": "stream-sub", "topics": summary}))
    node.destroy_node()
    rclpy.shutdown()
    return 0


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------
def _last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON result line in child output:\n{text[-2000:]}")


def _run_children(children, env, tmp_path):
    """Start ``children`` ({name: argv tail}) in order as separate processes and wait.

    Returns {name: JSON result}.
    """
    env = dict(env, XPROC_TOPIC_PREFIX=f"/xproc_{os.getpid()}_{time.time_ns() % 1_000_000_007}")
    logs = {name: open(tmp_path / f"{name}.log", "w+") for name in children}
    procs = {}
    try:
        for name, args in children.items():
            procs[name] = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args],
                                           env=env,
                                           cwd=str(tmp_path), stdout=logs[name],
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for proc in reversed(list(procs.values())):
            proc.wait(timeout=CHILD_TIMEOUT_S + 30)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = {}
    for name, fh in logs.items():
        fh.seek(0)
        outputs[name] = fh.read()
        fh.close()
    for name, proc in procs.items():
        assert proc.returncode == 0, (f"{name} exited with "
                                      f"{proc.returncode}:\n{outputs[name][-3000:]}")
    return {name: _last_json_line(text) for name, text in outputs.items()}


def test_large_messages_cross_process(ros_env, tmp_path):
    """Detection3DArray + 1920x1208 Image + 120k-point cloud arrive intact in another process."""
    from bev_mtl_ros.dds import default_fastdds_profile

    t0 = time.monotonic()
    # subscriber first, so the publisher's match wait is short
    results = _run_children({"sub": ["sub", str(ROUNDS)], "pub": ["pub", str(ROUNDS)]}, ros_env,
                            tmp_path)
    pub, sub = results["pub"], results["sub"]

    assert len(pub["sent"]) == 3 * ROUNDS
    assert sorted(map(tuple, sub["received"])) == sorted(map(tuple, pub["sent"]))
    # per topic, the order of arrival equals the order of sending (reliable, keep-last depth =
    # ROUNDS)
    for key in TOPICS:
        assert [d for k, d in sub["received"]
                if k == key] == [d for k, d in pub["sent"] if k == key]
    # the digests really differ between rounds (a constant digest would make the check vacuous)
    assert len({d for _, d in pub["sent"]}) == 3 * ROUNDS
    # both children ran with the package's large-data profile
    assert pub["profile"] == sub["profile"] == default_fastdds_profile()
    print(f"cross-process exchange of {ROUNDS} rounds took {time.monotonic() - t0:.1f} s")


def test_best_effort_camera_and_lidar_stream_with_profile(ros_env, tmp_path):
    """10 Hz 1920x1208 images + 120k-point clouds with sensor-data QoS (best effort) all arrive.

    Measured on the development machine with 30 frames: with the package's profile 30/30 images
    and 30/30 clouds (mean latency 39/48 ms); with Fast DDS's default transports 0/30 images and
    4/30 clouds. The bound below leaves room for a busy CI machine.
    """
    t0 = time.monotonic()
    results = _run_children({"sub": ["stream-sub", str(STREAM_FRAMES)],
                             "pub": ["stream-pub", str(STREAM_FRAMES),
                                     str(STREAM_HZ)]}, ros_env, tmp_path)
    topics = results["sub"]["topics"]
    print(f"best-effort stream ({time.monotonic() - t0:.1f} s): {json.dumps(topics)}")
    assert topics["image"]["sizes"] in ([], [IMAGE_W * IMAGE_H * 3])
    assert topics["cloud"]["sizes"] in ([], [CLOUD_POINTS * 16])
    for key in STREAM_TOPICS:
        assert topics[key]["received"] >= 0.9 * STREAM_FRAMES, (key, topics[key])


def test_message_digest_sees_content_changes():
    """The digest used above changes when one pixel, one point or one score changes."""
    msgs = make_messages(0)
    before = {k: message_digest(m) for k, m in msgs.items()}
    assert before == {k: message_digest(m) for k, m in make_messages(0).items()}
    msgs["image"].data[12345] ^= 1
    msgs["cloud"].data[-1] ^= 0x80
    msgs["detections"].detections[2].results[0].hypothesis.score += 1e-9
    after = {k: message_digest(m) for k, m in msgs.items()}
    assert all(before[k] != after[k] for k in before)


# ---------------------------------------------------------------------------- DDS profile / env
def test_profile_has_large_shm_segment_and_no_builtin_transports():
    """The shipped profile: SHM segment holds an rgb8 1920x1208 image + a 200k-point cloud.

    UDPv4 too.
    """
    from bev_mtl_ros.dds import default_fastdds_profile

    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(default_fastdds_profile()).getroot()
    descriptors = {d.findtext("d:transport_id", namespaces=ns): d
                   for d in root.iter("{http://www.eprosima.com}transport_descriptor")}
    types = {tid: d.findtext("d:type", namespaces=ns) for tid, d in descriptors.items()}
    assert sorted(types.values()) == ["SHM", "UDPv4"]
    shm = next(d for d in descriptors.values() if d.findtext("d:type", namespaces=ns) == "SHM")
    segment = int(shm.findtext("d:segment_size", namespaces=ns))
    image_bytes = 1920 * 1208 * 3
    cloud_bytes = 200_000 * 24  # x, y, z, intensity, t float32 + lidar_id uint8, padded
    assert segment >= 2 * (image_bytes + cloud_bytes)
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"
    used = [t.text for t in participant.findall(".//d:userTransports/d:transport_id", ns)]
    assert sorted(used) == sorted(descriptors)


def test_dds_environment_defaults_and_user_override(tmp_path):
    """Defaults are added only where unset; a user's profile and RMW are kept.

    The input is not modified.
    """
    from bev_mtl_ros.dds import apply_dds_environment, dds_environment, default_fastdds_profile

    base = {"PATH": "/usr/bin"}
    env = dds_environment(base)
    assert base == {"PATH": "/usr/bin"}
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == default_fastdds_profile()
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    user = {"FASTDDS_DEFAULT_PROFILES_FILE": str(mine), "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert dds_environment(user) == user
    empty = {"FASTDDS_DEFAULT_PROFILES_FILE": ""}
    assert dds_environment(empty)["FASTDDS_DEFAULT_PROFILES_FILE"] == default_fastdds_profile()
    target = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    added = apply_dds_environment(target)
    assert added == {"FASTDDS_DEFAULT_PROFILES_FILE": default_fastdds_profile()}
    assert target["FASTDDS_DEFAULT_PROFILES_FILE"] == default_fastdds_profile()


def test_profile_found_in_installed_share_dir(tmp_path, monkeypatch):
    """Without the source tree, the profile is found through the ament index.

    That is the colcon install layout.
    """
    import bev_mtl_ros.dds as dds

    share = tmp_path / "share"
    (share / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (share / "ament_index" / "resource_index" / "packages" / "bev_mtl_ros").write_text("")
    (share / "bev_mtl_ros" / "config").mkdir(parents=True)
    installed = share / "bev_mtl_ros" / "config" / dds.PROFILE_FILE_NAME
    installed.write_text("<dds/>")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    monkeypatch.setattr(dds, "__file__",
                        str(tmp_path / "site-packages" / "bev_mtl_ros" / "dds.py"))
    monkeypatch.setattr(dds.sys, "prefix", str(tmp_path / "nowhere"))
    monkeypatch.setattr(dds.sys, "base_prefix", str(tmp_path / "nowhere"))
    assert dds.default_fastdds_profile() == str(installed)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="fastdds_large_data.xml"):
        dds.default_fastdds_profile()


def test_launch_environment_actions_use_dds_environment(monkeypatch, tmp_path):
    """Launch files get SetEnvironmentVariable actions carrying dds_environment()'s values."""
    import types

    import bev_mtl_ros.dds as dds

    class FakeSetEnvironmentVariable:
        def __init__(self, name, value):
            self.name, self.value = name, value

    fake_launch = types.ModuleType("launch")
    fake_actions = types.ModuleType("launch.actions")
    fake_actions.SetEnvironmentVariable = FakeSetEnvironmentVariable
    fake_launch.actions = fake_actions
    monkeypatch.setitem(sys.modules, "launch", fake_launch)
    monkeypatch.setitem(sys.modules, "launch.actions", fake_actions)
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_cyclonedds_cpp")
    actions = {a.name: a.value for a in dds.launch_environment_actions()}
    assert actions == {"FASTDDS_DEFAULT_PROFILES_FILE": dds.default_fastdds_profile(),
                       "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}


def test_console_scripts_apply_dds_profile_before_main(monkeypatch):
    """`bev-mtl-ros` runs with the profile set (unless the user set one) when cli.main starts."""
    import bev_mtl_ros.cli as cli
    import bev_mtl_ros.dds as dds

    seen = {}

    def fake_main():
        seen.update({k: os.environ.get(k)
                     for k in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")})
        return 7

    monkeypatch.setattr(cli, "main", fake_main)
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("RMW_IMPLEMENTATION", raising=False)
    assert dds.cli_main() == 7
    assert seen == {"FASTDDS_DEFAULT_PROFILES_FILE": dds.default_fastdds_profile(),
                    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/my_profile.xml")
    dds.cli_main()
    assert seen["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/my_profile.xml"
    setup_py = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    assert "bev-mtl-ros = bev_mtl_ros.dds:cli_main" in setup_py
    assert "perception_node = bev_mtl_ros.dds:perception_node_main" in setup_py


def test_add_venv_ament_prefix(monkeypatch, tmp_path):
    """The venv prefix is appended to AMENT_PREFIX_PATH once, only if it has an ament index."""
    import bev_mtl_ros.dds as dds

    (tmp_path / "venv" / "share" / "ament_index").mkdir(parents=True)
    monkeypatch.setattr(dds.sys, "prefix", str(tmp_path / "venv"))
    env = {"AMENT_PREFIX_PATH": "/opt/ros/jazzy"}
    assert dds.add_venv_ament_prefix(env) is True
    assert env["AMENT_PREFIX_PATH"] == os.pathsep.join(["/opt/ros/jazzy", str(tmp_path / "venv")])
    assert dds.add_venv_ament_prefix(env) is False
    empty = {}
    assert (dds.add_venv_ament_prefix(empty)
            and empty["AMENT_PREFIX_PATH"] == str(tmp_path / "venv"))
    monkeypatch.setattr(dds.sys, "prefix", str(tmp_path / "plain"))
    assert dds.add_venv_ament_prefix({}) is False


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "pub":
        sys.exit(run_publisher(int(sys.argv[2])))
    if role == "sub":
        sys.exit(run_subscriber(int(sys.argv[2])))
    if role == "stream-pub":
        sys.exit(run_stream_publisher(int(sys.argv[2]), float(sys.argv[3])))
    if role == "stream-sub":
        sys.exit(run_stream_subscriber(int(sys.argv[2])))
    sys.exit(f"unknown role {role!r}")
