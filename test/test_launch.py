"""``launch_testing`` test of ``launch/perception.launch.py``.

The launch file starts the node, which comes up, publishes its ``/diagnostics`` status and answers
a cloud on ``~/detections``, and exits cleanly at shutdown.

``launch``/``launch_testing`` come with a ROS 2 distribution (not on PyPI), so this module is
skipped where they are not importable; the skip reason is printed. Without them the same scenario
(the node process started directly with the parameters file the launch file uses) is covered by
``test_replay_regression.py`` (its paced replay runs the node with ``launch_params_file()``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

try:
    import launch  # noqa: F401
    import launch_testing  # noqa: F401
    import launch_testing.actions
    import launch_testing.asserts
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
except ImportError as _e:  # pragma: no cover - depends on the installation
    _REASON = (f"launch_testing not importable ({_e}); it ships with a ROS 2 distribution "
               "(ros-<distro>-launch-testing), not on PyPI")
    print(f"[test_launch] skipped: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "perception.launch.py"
NODE = "perception_node"


def _model_for_test() -> str:
    default = REPO / "models" / "bev_mtl_default.onnx"
    if default.exists():
        return str(default)
    from bev_mtl_ros.bench import export_random_model
    out = Path(tempfile.mkdtemp(prefix="launch_test_")) / "tiny.onnx"
    export_random_model(out, tiny=True)
    return str(out)


@pytest.mark.launch_test
def generate_test_description():
    assert LAUNCH_FILE.exists(), f"{LAUNCH_FILE} missing"
    from bev_mtl_ros.dds import dds_environment
    os.environ.update(dds_environment())
    args = {}
    text = LAUNCH_FILE.read_text()
    for name in ("model", "model_path"):  # the launch argument naming the model file
        if f'DeclareLaunchArgument("{name}"' in text or f"DeclareLaunchArgument('{name}'" in text:
            args[name] = _model_for_test()
            break
    include = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
                                       launch_arguments=list(args.items()))
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestNodeComesUp(unittest.TestCase):
    """While the launch is running."""

    def test_diagnostics_and_one_answer(self):
        import numpy as np
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from vision_msgs.msg import Detection3DArray

        from bev_mtl_ros.ros.conversions import cloud_to_msg

        rclpy.init()
        node = rclpy.create_node("launch_test_probe")
        try:
            statuses, answers = [], []
            node.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: statuses.extend(s.name for s in m.status), 10)
            qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(Detection3DArray, f"/{NODE}/detections", answers.append, qos)
            pub = node.create_publisher(type(cloud_to_msg({"x": np.zeros(1, np.float32)})),
                                        "/a2d2/lidar/points", qos)
            deadline = time.monotonic() + 90.0
            while time.monotonic() < deadline and not any(NODE in s for s in statuses):
                rclpy.spin_once(node, timeout_sec=0.1)
            self.assertTrue(any(NODE in s for s in statuses),
                            f"no /diagnostics from {NODE}: {statuses[:5]}")
            rng = np.random.default_rng(0)
            pts = rng.uniform([1, -20, -1.5, 0], [60, 20, 1.0, 255], (5000, 4)).astype(np.float32)
            msg = cloud_to_msg({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2],
                                "intensity": pts[:, 3]})
            msg.header.frame_id = "cam_front_center"
            msg.header.stamp.sec = 1234
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline and not answers:
                pub.publish(msg)
                t_end = time.monotonic() + 2.0
                while time.monotonic() < t_end and not answers:
                    rclpy.spin_once(node, timeout_sec=0.05)
            self.assertTrue(answers, "no ~/detections answer to a published cloud")
            self.assertEqual(answers[0].header.stamp.sec, 1234)
            self.assertEqual(answers[0].header.frame_id, "cam_front_center")
        finally:
            node.destroy_node()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After the launch was shut down."""

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
