"""perception_node's pipelined outputs over DDS (issue 24 item 2), in a separate process.

Every output subscribed and full-resolution (1920 x 1208) images, so building the outputs of a
frame (semantic mask, colour overlay) takes longer than the tiny model's inference and the two
stages overlap. The order of outputs is read from the publisher's DDS source timestamps, which the
writer takes when ``publish`` is called: every output of frame k must be written before any of
frame k+1, and detections before the other outputs of their frame. In-process tests of the two
stages (gated, deterministic): test/test_worker.py.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy wheels not installed")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into the venv (see msgs/)")

from node_harness import (  # noqa: E402
    CLOUD_TOPIC, IMAGE_TOPIC, NodeUnderTest, header, node_command)

from support_models import export_tiny_onnx  # noqa: E402

NODE = "pipe_node"
W, H = 1920, 1208


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """Export a tiny random network with the small contract to ONNX."""
    return export_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", seed=2)


def _cmd(model, *params):
    return node_command(NODE, (f"model_path:={model}", "backend:=onnxruntime",
                               "input_qos:=reliable", f"cloud_topic:={CLOUD_TOPIC}",
                               f"image_topic:={IMAGE_TOPIC}") + params)


def _inputs(w=W, h=H):
    """Return (cloud message builder sec -> PointCloud2, one w x h rgb8 Image message)."""
    from bev_mtl_ros.ros.conversions import cloud_to_msg, image_to_msg

    rng = np.random.default_rng(5)
    n = 3000
    cols = {"x": rng.uniform(1, 40, n), "y": rng.uniform(-20, 20, n),
            "z": rng.uniform(-2, 1, n), "intensity": rng.uniform(0, 255, n)}
    cols = {k: v.astype(np.float32) for k, v in cols.items()}
    image = image_to_msg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "rgb8",
                         header(0, "cam_front_center_optical"))
    return (lambda sec: cloud_to_msg(cols, header(sec, "cam_front_center"))), image


def _subscribe_all(h, got):
    """Subscribe every output; append (frame stamp s, topic, DDS source timestamp ns) to got."""
    from nav_msgs.msg import OccupancyGrid
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection3DArray
    from visualization_msgs.msg import MarkerArray

    def on(topic, stamp_of):
        def cb(msg, info):
            got.append((stamp_of(msg), topic, info["source_timestamp"]))
        return cb

    by_header = lambda m: m.header.stamp.sec  # noqa: E731
    for topic, typ, stamp_of in (
            ("detections", Detection3DArray, by_header),
            ("markers", MarkerArray, lambda m: m.markers[0].header.stamp.sec),
            ("drivable_area", Image, by_header), ("drivable_area/grid", OccupancyGrid, by_header),
            ("semantic", Image, by_header), ("semantic/color", Image, by_header)):
        h.node.create_subscription(typ, f"/{NODE}/{topic}", on(topic, stamp_of), h.qos)


def _drain(h, got, quiet=0.5, limit=10.0):
    """Spin the injector until no output arrived for ``quiet`` s (at most ``limit`` s)."""
    end, n, t_last = time.monotonic() + limit, len(got), time.monotonic()
    while time.monotonic() < end and time.monotonic() - t_last < quiet:
        h.executor.spin_once(timeout_sec=0.02)
        if len(got) != n:
            n, t_last = len(got), time.monotonic()


def _send_fast(h, cloud, image, sec):
    """Publish frame ``sec``; take in what arrived (each spin_once runs one callback)."""
    image.header.stamp.sec = sec
    h.pub_image.publish(image)
    h.pub_cloud.publish(cloud(sec))
    h.executor.spin_once(timeout_sec=0.02)
    for _ in range(6):
        h.executor.spin_once(timeout_sec=0.0)


def _values(diags):
    return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}


@pytest.mark.parametrize("pipelined", ["true", "false"])
def test_outputs_in_frame_order_detections_first_and_counters(ros_env, rclpy_context,
                                                              tiny_onnx, pipelined):
    from diagnostic_msgs.msg import DiagnosticArray

    cloud, image = _inputs()
    cmd = _cmd(tiny_onnx, "score_threshold:=0.0", f"pipeline_outputs:={pipelined}")
    with NodeUnderTest(cmd, ros_env, rclpy_context, "order_tester", 20) as h:
        got = []
        _subscribe_all(h, got)
        diags = h.collect(DiagnosticArray, "/diagnostics")
        assert h.spin_until(lambda: h.connected(h.pub_cloud, h.pub_image,
                                                publishes=f"/{NODE}/semantic/color"), 90)
        h.spin_for(0.5)

        def frame(sec, gap=0.05):
            image.header.stamp.sec = sec
            h.send(cloud(sec), image, gap=gap)
            h.spin_for(gap)

        warm = 0  # warm-up frames until every lazy output is built (subscriptions matched)
        while warm < 10 and len({t for s, t, _ in got if s == warm}) < 6:
            warm += 1
            frame(warm)
            h.spin_until(lambda: len({t for s, t, _ in got if s == warm}) == 6, 10)
        assert len({t for s, t, _ in got if s == warm}) == 6, got
        # then 3 s of frames faster than the node answers them (~50 Hz): a frame is converted
        # and inferred while the previous one is published
        sec, end = warm, time.monotonic() + 3.0
        while time.monotonic() < end:
            sec += 1
            _send_fast(h, cloud, image, sec)
        last = sec

        def settled():  # the newest frame published and counted; nothing left in the mailbox
            v = _values(diags)
            return (len({t for s, t, _ in got if s == last}) == 6 and v
                    and int(v["pairs_in"]) == int(v["published"]) + int(v["skipped_frames"]))

        # (bursts overflow the node's keep-last input queues: not every frame becomes a pair)
        assert h.spin_until(settled, 30), {k: v for k, v in _values(diags).items()
                                           if "frames" in k or "pairs" in k
                                           or k in ("processed", "published")}
        v = _values(diags)
        assert v["processed"] == v["published"] and v["outputs_dropped"] == "0"
        assert v["errors.inference"] == "0"
        assert h.proc.poll() is None
    out = h.output()
    assert h.proc.returncode == 0, out
    assert ("; outputs pipelined" if pipelined == "true"
            else "; outputs in the inference thread") in out, out
    frames = defaultdict(dict)
    for sec, topic, ts in got:
        assert topic not in frames[sec], f"frame {sec}: two {topic}"
        frames[sec][topic] = ts
    assert len(frames) == int(v["published"]) and last in frames  # the newest is never lost
    order = sorted(frames, key=lambda s: frames[s]["detections"])
    assert order == sorted(frames)  # frames published in stamp order
    for sec in order:
        if sec >= warm:
            assert len(frames[sec]) == 6, (sec, sorted(frames[sec]))
        det = frames[sec]["detections"]
        assert all(det < ts for t, ts in frames[sec].items() if t != "detections"), sec
    for a, b in zip(order, order[1:]):  # all of frame a written before any of frame b
        assert max(frames[a].values()) < min(frames[b].values()), (a, b)


def test_sigint_with_frames_in_both_stages(ros_env, rclpy_context, tiny_onnx):
    """SIGINT while frames come faster than the node answers: exit 0 within 10 s, in order.

    The signal is sent when a frame's detections have arrived and its colour overlay has not:
    the output stage is building that frame while the inference stage holds the next one (the
    node logs what was in flight; the gated in-process version, with frames certainly in both
    stages, is test/test_worker.py).
    """
    import signal

    cloud, image = _inputs()
    with NodeUnderTest(_cmd(tiny_onnx), ros_env, rclpy_context, "stop_tester", 20) as h:
        got = []
        _subscribe_all(h, got)
        assert h.spin_until(lambda: h.connected(h.pub_cloud, h.pub_image,
                                                publishes=f"/{NODE}/semantic/color"), 90)
        h.spin_for(0.5)
        sec, t_signal, end = 1, None, time.monotonic() + 120
        while h.proc.poll() is None and time.monotonic() < end:
            _send_fast(h, cloud, image, sec)
            sec += 1
            colour = {s for s, t, _ in got if t == "semantic/color"}
            if t_signal is None and len(colour) >= 5 and got[-1][1] == "detections" and (
                    got[-1][0] not in colour):  # frame k's overlay is being built
                h.proc.send_signal(signal.SIGINT)
                t_signal = time.monotonic()
            if t_signal is not None and time.monotonic() - t_signal > 20:
                break
        assert t_signal is not None, "the node did not answer 5 frames"
        out, _ = h.proc.communicate(timeout=20)
        t_exit = time.monotonic() - t_signal
        _drain(h, got)  # take in what the node wrote before it exited
    assert h.proc.returncode == 0, out
    assert "Traceback" not in out and "RCLError" not in out and "did not end" not in out, out
    assert "in flight at the signal" in out, out
    assert t_exit < 10.0, t_exit
    dets = [(ts, s) for s, t, ts in got if t == "detections"]
    stamps = [s for _, s in sorted(dets)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # the frame the output stage held at the signal was finished: every frame has all outputs
    frames = defaultdict(set)
    for s, t, _ in got:
        frames[s].add(t)
    full = [s for s in stamps if len(frames[s]) == 6]
    assert full, frames
    # (frames before the first full one were published before every subscription was matched)
    short = {s: sorted(frames[s]) for s in stamps if s > full[0] and len(frames[s]) < 6}
    assert not short, short
