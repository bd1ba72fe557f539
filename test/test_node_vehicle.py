"""perception_node as on a vehicle (separate process, over DDS; issue 11).

TF, clouds in a frame other than target_frame:
* no transform: the frame is skipped (no output), counted in ``bad_input.no_transform`` and
  named in /diagnostics (``tf.unconnected``, WARN), the node keeps running;
* after /tf_static connects the frames: the cloud is transformed into target_frame (the outputs
  carry target_frame and the cloud's stamp) and the outputs equal those of the same points sent
  already in target_frame (boxes within 1e-4 m / rad, drivable masks identical).

Shutdown: SIGINT / SIGTERM while frames are in flight -> exit code 0, no traceback.

Camera: a distorted image with its CameraInfo is undistorted (counted), a rectified one used as
it is, images before any CameraInfo are counted; a camera unlike the model's nominal one is
warned about once, naming both.

Lazy outputs: with only ~/detections subscribed, the optional outputs are not built (counted in
``outputs_unsubscribed``); a late subscriber to ~/semantic gets it from the next frame on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy wheels not installed")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into the venv (see msgs/)")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built into the venv (see msgs/)")

from node_harness import (  # noqa: E402
    CLOUD_TOPIC,
    IMAGE_TOPIC,
    NodeUnderTest,
    header,
    latched,
    node_command,
)

from support_models import export_tiny_onnx  # noqa: E402

NODE = "tf_node"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return export_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", seed=1)


def _node_cmd(model_path, *params, remaps=()):
    """Return the command of the node named NODE on the tiny model.

    Inputs remapped to the harness topics (reliable).
    """
    return node_command(
        NODE,
        params=(f"model_path:={model_path}", "input_qos:=reliable", "backend:=onnxruntime")
        + params,
        remaps=(f"~/input/pointcloud:={CLOUD_TOPIC}", f"~/input/image:={IMAGE_TOPIC}") + remaps,
    )


def _random_columns(rng, n):
    """Draw n points uniform in x 1..40 m, y -20..20 m, z -2..1 m, intensity 0..255 (float32)."""
    return {
        "x": rng.uniform(1, 40, n).astype(np.float32),
        "y": rng.uniform(-20, 20, n).astype(np.float32),
        "z": rng.uniform(-2, 1, n).astype(np.float32),
        "intensity": rng.uniform(0, 255, n).astype(np.float32),
    }


def _transform(parent, child, t, q):
    from geometry_msgs.msg import TransformStamped

    ts = TransformStamped()
    ts.header = header(0, parent)
    ts.child_frame_id = child
    ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = map(
        float, t
    )
    r = ts.transform.rotation
    r.x, r.y, r.z, r.w = map(float, q)
    return ts


def test_missing_transform_skips_then_tf_static_connects(ros_env, rclpy_context, tiny_onnx):
    from diagnostic_msgs.msg import DiagnosticArray
    from scipy.spatial.transform import Rotation
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray

    from bev_mtl_ros.ros.conversions import cloud_to_msg, image_to_msg
    from bev_mtl_ros.ros.tf import RigidTransform, transform_points

    cmd = _node_cmd(tiny_onnx, "score_threshold:=0.05", "tf_timeout:=0.3")
    with NodeUnderTest(cmd, ros_env, rclpy_context, "tf_tester") as h:
        pub_tf = h.publisher(TFMessage, "/tf_static", latched(10))
        dets = h.by_stamp(Detection3DArray, f"/{NODE}/detections")
        masks = h.by_stamp(Image, f"/{NODE}/drivable_area")
        diags = h.collect(DiagnosticArray, "/diagnostics")

        rng = np.random.default_rng(5)
        n = 3000
        p_cam = np.stack(
            [
                rng.uniform(2, 38, n),
                rng.uniform(-18, 18, n),
                rng.uniform(-2, 1, n),
                rng.uniform(0, 255, n),
            ],
            1,
        ).astype(np.float32)
        image = rng.integers(0, 256, (160, 256, 3), dtype=np.uint8)
        # base_link -> cam_front_center and base_link -> velodyne (arbitrary, non-trivial
        # rotations)
        T_b_cam = RigidTransform(
            Rotation.from_euler("zyx", [3.0, -1.0, 0.5], degrees=True), np.array([1.7, 0.0, 1.2])
        )
        T_b_vel = RigidTransform(
            Rotation.from_euler("zyx", [-90.0, 2.0, 0.0], degrees=True), np.array([0.9, 0.1, 1.9])
        )
        p_vel = transform_points(p_cam.astype(np.float64), T_b_vel.inverse().compose(T_b_cam))

        def cloud(sec, pts, frame):
            cols = {
                "x": pts[:, 0].astype(np.float64),
                "y": pts[:, 1].astype(np.float64),
                "z": pts[:, 2].astype(np.float64),
                "intensity": pts[:, 3].astype(np.float32),
            }
            return cloud_to_msg(cols, header(sec, frame))

        def frame(sec, msg):
            h.send(msg, image_to_msg(image, "rgb8", header(sec, "cam_front_center_optical")))

        def last_values():
            return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}

        assert h.spin_until(
            lambda: h.connected(h.pub_cloud, h.pub_image, publishes=f"/{NODE}/detections"), 90
        ), "node did not come up"
        h.spin_for(0.5)
        # 1. velodyne cloud, no TF at all: skipped, counted, named
        # (frame 11 only once 10 was tried: sent at once, 11 may replace 10 in the node's
        # one-slot mailbox on a loaded machine, newest frame first, and 10 is never looked up)
        frame(10, cloud(10, p_vel, "velodyne"))
        assert h.spin_until(
            lambda: last_values().get("bad_input.no_transform") == "1", 30
        ), last_values()
        frame(11, cloud(11, p_cam, "cam_front_center"))  # same points, already in target_frame
        assert h.spin_until(
            lambda: 11 in dets and 11 in masks, 30
        ), "no output for the target-frame cloud"
        assert 10 not in dets
        vals = last_values()
        assert "'velodyne' -> 'cam_front_center'" in vals["tf.unconnected"]
        assert "unknown to TF" in vals["tf.unconnected"], vals["tf.unconnected"]
        assert vals["tf.target_frame"] == "cam_front_center" and vals["tf.mode"]
        assert any(
            st.level == st.WARN and "no_transform" in st.message and "velodyne" in st.message
            for a in diags
            for st in a.status
        )
        # 2. /tf_static connects velodyne and cam_front_center through base_link
        tf = TFMessage()
        tf.transforms = [
            _transform("base_link", c, T.translation, T.rotation.as_quat())
            for c, T in (("cam_front_center", T_b_cam), ("velodyne", T_b_vel))
        ]
        pub_tf.publish(tf)
        h.spin_for(0.3)
        frame(12, cloud(12, p_vel, "/velodyne"))
        assert h.spin_until(
            lambda: 12 in dets and 12 in masks, 30
        ), "transformed cloud not answered"
        assert (
            dets[12].header.frame_id == "cam_front_center"
            and masks[12].header.frame_id == "cam_front_center"
        )
        assert h.spin_until(
            lambda: last_values().get("frames_transformed") == "1", 10
        ), last_values()
        # 3. equal outputs: transformed cloud vs the same points sent in target_frame
        a, b = dets[11].detections, dets[12].detections
        assert len(a) > 0 and len(a) == len(b)
        for da, db in zip(a, b):
            pa, pb = da.bbox.center.position, db.bbox.center.position
            assert abs(pa.x - pb.x) < 1e-4 and abs(pa.y - pb.y) < 1e-4 and abs(pa.z - pb.z) < 1e-4
            assert abs(da.bbox.center.orientation.z - db.bbox.center.orientation.z) < 1e-4
            assert da.results[0].hypothesis.class_id == db.results[0].hypothesis.class_id
        assert bytes(masks[11].data) == bytes(masks[12].data)
    out = h.output()
    assert h.proc.returncode == 0, out
    assert "TF: " in out and "target_frame 'cam_front_center'" in out, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_with_frames_in_flight_exits_cleanly(ros_env, rclpy_context, tiny_onnx, sig):
    """Frames are sent faster than the node answers; the signal arrives while one is processed."""
    from vision_msgs.msg import Detection3DArray

    from bev_mtl_ros.ros.conversions import cloud_to_msg, image_to_msg

    with NodeUnderTest(_node_cmd(tiny_onnx), ros_env, rclpy_context, "shutdown_tester") as h:
        answered = h.collect(Detection3DArray, f"/{NODE}/detections", h.qos)
        rng = np.random.default_rng(0)
        cols = _random_columns(rng, 20000)
        image = rng.integers(0, 256, (160, 256, 3), dtype=np.uint8)
        end = time.monotonic() + 90
        assert h.spin_until(
            lambda: h.connected(h.pub_cloud, publishes=f"/{NODE}/detections"), 90
        ), "node did not come up"
        sec, t_signal = 1, None
        while True:
            h.pub_image.publish(
                image_to_msg(image, "rgb8", header(sec, "cam_front_center_optical"))
            )
            h.pub_cloud.publish(cloud_to_msg(cols, header(sec, "cam_front_center")))
            sec += 1
            h.executor.spin_once(timeout_sec=0.01)  # ~ 100 Hz input: always a frame in flight
            if t_signal is None and len(answered) >= 3:
                h.proc.send_signal(sig)
                t_signal = time.monotonic()
            if t_signal is not None and (
                h.proc.poll() is not None or time.monotonic() - t_signal > 20
            ):
                break
            assert time.monotonic() < end + 60, "no answers from the node"
        out, _ = h.proc.communicate(timeout=20)
    assert h.proc.returncode == 0, out
    assert (
        "Traceback" not in out and "RCLError" not in out and "context is invalid" not in out
    ), out


def test_lazy_outputs_only_with_subscribers(ros_env, rclpy_context, tiny_onnx):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection3DArray

    from bev_mtl_ros.ros.conversions import cloud_to_msg, image_to_msg

    with NodeUnderTest(_node_cmd(tiny_onnx), ros_env, rclpy_context, "lazy_tester") as h:
        dets = h.by_stamp(Detection3DArray, f"/{NODE}/detections")
        diags = h.collect(DiagnosticArray, "/diagnostics")
        rng = np.random.default_rng(2)
        cols = _random_columns(rng, 2000)
        image = rng.integers(0, 256, (160, 256, 3), dtype=np.uint8)

        def frame(sec):
            h.send(
                cloud_to_msg(cols, header(sec, "cam_front_center")),
                image_to_msg(image, "rgb8", header(sec, "cam_front_center_optical")),
            )
            assert h.spin_until(lambda: sec in dets, 30), f"no detections for frame {sec}"

        def counter(name):
            return (
                int(next((kv.value for kv in diags[-1].status[0].values if kv.key == name), -1))
                if diags
                else -1
            )

        assert h.spin_until(
            lambda: h.connected(h.pub_cloud, publishes=f"/{NODE}/detections"), 90
        ), "node did not come up"
        h.spin_for(0.5)
        frame(1)
        frame(2)
        # markers, drivable_area, drivable_area/grid, semantic, semantic/color, debug timing:
        # 6 per frame
        assert h.spin_until(lambda: counter("outputs_unsubscribed") == 12, 10), counter(
            "outputs_unsubscribed"
        )
        sems = h.by_stamp(Image, f"/{NODE}/semantic")
        assert h.spin_until(lambda: h.node.count_publishers(f"/{NODE}/semantic") >= 1, 10)
        h.spin_for(0.5)
        frame(3)
        assert h.spin_until(lambda: 3 in sems, 10)
        assert (sems[3].width, sems[3].height) == (256, 160)
        assert h.spin_until(lambda: counter("outputs_unsubscribed") == 17, 10), counter(
            "outputs_unsubscribed"
        )
    assert h.proc.returncode == 0


def test_params_file_keyed_for_any_node_name_and_ranges_enforced(ros_env, tiny_onnx, tmp_path):
    """A "/**" parameters file applies under any node name.

    A value outside its descriptor range stops the node at start-up naming the parameter (exit
    code 2).
    """
    extra = tmp_path / "p.yaml"
    extra.write_text("/**:\n  ros__parameters:\n    score_threshold: 1.5\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        sys.executable,
        "-m",
        "bev_mtl_ros.ros.node",
        "--ros-args",
        "-r",
        "__node:=some_other_name",
        "--params-file",
        os.path.join(repo, "config", "perception.yaml"),
        "--params-file",
        str(extra),
        "-p",
        f"model_path:={tiny_onnx}",
    ]
    proc = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "parameter 'score_threshold'" in out and "Traceback" not in out, out


def test_class_score_thresholds_naming_an_unknown_class_stop_the_node(ros_env, tiny_onnx):
    """A per-class threshold for a class the model does not detect stops the node (exit 2)."""
    cmd = [sys.executable, "-m", "bev_mtl_ros.ros.node", "--ros-args", "-p",
           f"model_path:={tiny_onnx}", "-p", "class_score_thresholds:=Car:0.5,Bus:0.5"]
    proc = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "class_score_thresholds" in out and "'Bus'" in out and "Traceback" not in out, out


def test_camera_info_undistorts_and_warns_once_about_another_camera(
    ros_env, rclpy_context, tiny_onnx
):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection3DArray

    from bev_mtl_ros.data.calibration import distort_image, load_calibration
    from bev_mtl_ros.ros.conversions import cloud_to_msg, image_to_msg

    cmd = _node_cmd(tiny_onnx, remaps=("~/input/camera_info:=/t/camera_info",))
    with NodeUnderTest(cmd, ros_env, rclpy_context, "camera_tester") as h:
        pub_k = h.publisher(CameraInfo, "/t/camera_info")
        dets = h.by_stamp(Detection3DArray, f"/{NODE}/detections")
        sems = h.by_stamp(Image, f"/{NODE}/semantic")
        diags = h.collect(DiagnosticArray, "/diagnostics")
        cols = _random_columns(np.random.default_rng(3), 2000)
        cam = (
            load_calibration().cameras["front_center"].scaled((256, 161))
        )  # the model's field of view
        yy, xx = np.mgrid[0:161, 0:256]
        rect = np.stack([(xx * 255) // 256, (yy * 255) // 161, 128 + 0 * xx], -1).astype(np.uint8)
        raw = distort_image(rect, cam)

        def info(K, D, P3):
            m = CameraInfo()
            m.header = header(0, "cam_front_center_optical")
            m.width, m.height, m.distortion_model = 256, 161, "plumb_bob"
            m.k, m.d = [float(v) for v in np.asarray(K).reshape(9)], [float(v) for v in D]
            m.r = [float(v) for v in np.eye(3).reshape(9)]
            P = np.zeros((3, 4))
            P[:, :3] = P3
            m.p = [float(v) for v in P.reshape(12)]
            return m

        def frame(sec, image, camera_info=None):
            if camera_info is not None:
                pub_k.publish(camera_info)
            h.send(
                cloud_to_msg(cols, header(sec, "cam_front_center")),
                image_to_msg(image, "rgb8", header(sec, "cam_front_center_optical")),
                gap=0.15,
            )
            assert h.spin_until(
                lambda: sec in dets and sec in sems, 30
            ), f"no output for frame {sec}"

        def counters():
            return {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}

        assert h.spin_until(
            lambda: h.connected(h.pub_cloud, pub_k, publishes=f"/{NODE}/semantic"), 90
        ), "node did not come up"
        h.spin_for(0.5)
        frame(1, rect)  # no CameraInfo yet
        frame(2, raw, info(cam.cam_matrix_original, cam.distortion, cam.cam_matrix))  # image_raw
        frame(3, rect, info(cam.cam_matrix, np.zeros(5), cam.cam_matrix))  # image_rect
        want = {
            "images_without_camera_info": "1",
            "images_undistorted": "1",
            "camera_unlike_nominal": "0",
        }
        assert h.spin_until(
            lambda: all(counters().get(k) == v for k, v in want.items()), 10
        ), counters()
        assert (sems[2].width, sems[2].height) == (256, 161)
        # a 90 deg camera: warned once (not per frame), naming both cameras
        wide = np.array([[128.0, 0, 128], [0, 128.0, 80.5], [0, 0, 1]])
        frame(4, rect, info(wide, np.zeros(5), wide))
        frame(5, rect, info(wide, np.zeros(5), wide))
        assert h.spin_until(
            lambda: counters().get("camera_unlike_nominal") == "1", 10
        ), counters()
    out = h.output()
    assert h.proc.returncode == 0, out
    assert out.count("nominal camera") == 1 and "fx 128.0" in out and "1687.3" in out, out
