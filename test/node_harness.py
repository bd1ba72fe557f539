"""Test support: perception_node in a child process, driven over DDS from an in-process node.

Used by test/test_node_vehicle.py and test/test_node_faults.py. Import it only after
``pytest.importorskip("rclpy")``: it imports rclpy and the ROS message packages at module level.

:class:`NodeUnderTest` starts ``python -m bev_mtl_ros.ros.node --ros-args ...`` (stdout and stderr
merged into one text pipe), creates an injector node with a ``SingleThreadedExecutor`` on the
test's rclpy context, publishes clouds and images reliably on :data:`CLOUD_TOPIC` /
:data:`IMAGE_TOPIC`, collects what the node publishes, and on leaving its ``with`` block destroys
the injector and stops the node with SIGINT (killed if it does not exit within 20 s). The test then
asserts on ``proc.returncode`` and :meth:`NodeUnderTest.output`.

Environment: pass the ``ros_env`` and ``rclpy_context`` fixtures of test/conftest.py, so the child
and the injector share one isolated ROS_DOMAIN_ID.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

#: Topics the injector publishes clouds and images on (the node is pointed at them by remaps or
#: by its ``cloud_topic`` / ``image_topic`` parameters).
CLOUD_TOPIC = "/t/points"
IMAGE_TOPIC = "/t/image"


def node_command(
    node_name: str,
    params: Sequence[str] = (),
    remaps: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> List[str]:
    """Command line that runs ``bev_mtl_ros.ros.node`` under this interpreter.

    Args:
        node_name: the node's name (``-r __node:=node_name``).
        params: ``"name:=value"`` strings, each passed as ``-p``.
        remaps: ``"from:=to"`` strings, each passed as ``-r``.
        extra: further ROS arguments appended last (e.g. ``--params-file PATH``).
    Returns:
        list of str for ``subprocess``: ``[python, -m, bev_mtl_ros.ros.node, --ros-args, ...]``.
    """
    cmd = [sys.executable, "-m", "bev_mtl_ros.ros.node", "--ros-args"]
    cmd += ["-r", f"__node:={node_name}"]
    for r in remaps:
        cmd += ["-r", r]
    for p in params:
        cmd += ["-p", p]
    return cmd + list(extra)


def header(sec: int, frame: str) -> Header:
    """``std_msgs/Header`` stamped ``sec`` s + 0 ns in ``frame``."""
    h = Header()
    h.stamp.sec, h.stamp.nanosec, h.frame_id = sec, 0, frame
    return h


def reliable(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep-last ``depth`` QoS."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def latched(depth: int) -> QoSProfile:
    """Reliable, transient-local, keep-last ``depth`` QoS (/tf_static, LabelInfo)."""
    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


class NodeUnderTest:
    """perception_node in a child process plus an injector node in this one; a context manager.

    Args:
        cmd: the node's command line (:func:`node_command`).
        env: environment of the child (the ``ros_env`` fixture).
        context: initialised rclpy Context on the same domain (the ``rclpy_context`` fixture).
        tester_name: name of the injector node.
        depth: keep-last depth of :attr:`qos`, the reliable QoS of the input publishers and of
            :meth:`by_stamp` subscriptions.

    Attributes:
        proc: the ``subprocess.Popen`` of the node (stdout: text, stderr merged into it).
        node: the injector ``rclpy.node.Node``; ``executor`` spins it.
        pub_cloud, pub_image: reliable publishers of PointCloud2 on :data:`CLOUD_TOPIC` and Image
            on :data:`IMAGE_TOPIC`.
    """

    def __init__(
        self, cmd: Sequence[str], env: Mapping[str, str], context: Any, tester_name: str,
        depth: int = 10,
    ) -> None:
        self.proc = subprocess.Popen(
            list(cmd), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            self.node = rclpy.create_node(tester_name, context=context)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.qos = reliable(depth)
        self.pub_cloud = self.publisher(PointCloud2, CLOUD_TOPIC)
        self.pub_image = self.publisher(Image, IMAGE_TOPIC)

    def __enter__(self) -> "NodeUnderTest":
        return self

    def __exit__(self, *exc: object) -> None:
        self.node.destroy_node()
        self.stop()

    def publisher(self, msg_type: type, topic: str, qos: Optional[QoSProfile] = None) -> Publisher:
        """Return a publisher on ``topic`` (default QoS: :attr:`qos`)."""
        return self.node.create_publisher(msg_type, topic, qos or self.qos)

    def by_stamp(self, msg_type: type, topic: str) -> Dict[int, Any]:
        """Subscribe ``topic`` (:attr:`qos`); return a dict ``header.stamp.sec -> last message``.

        The dict is filled while the executor spins.
        """
        got: Dict[int, Any] = {}
        self.node.create_subscription(
            msg_type, topic, lambda m: got.__setitem__(m.header.stamp.sec, m), self.qos
        )
        return got

    def collect(self, msg_type: type, topic: str, qos: Any = 10) -> List[Any]:
        """Subscribe ``topic`` with ``qos`` (a QoSProfile or a depth).

        Returns the list the messages are appended to, in arrival order.
        """
        got: List[Any] = []
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def connected(self, *pubs: Publisher, publishes: str) -> bool:
        """Return True when ``pubs`` are all matched and ``publishes`` has a publisher.

        That is, each of ``pubs`` has a subscriber and some node publishes ``publishes``.
        """
        return all(p.get_subscription_count() for p in pubs) and bool(
            self.node.count_publishers(publishes)
        )

    def spin_until(self, pred: Callable[[], Any], timeout: float) -> bool:
        """Spin the injector (0.05 s steps) until ``pred()`` is truthy or ``timeout`` s pass.

        Returns:
            True when ``pred`` held, False on timeout.
        Raises:
            AssertionError: the node process exited meanwhile (message: its exit code and output).
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
            if pred():
                return True
            assert self.proc.poll() is None, (
                f"node died (rc {self.proc.returncode}):\n{self.proc.stdout.read()}"
            )
        return False

    def spin_for(self, seconds: float) -> None:
        """Spin the injector for ``seconds`` s (asserting that the node stays alive)."""
        self.spin_until(lambda: False, seconds)

    def send(self, cloud: Optional[Any] = None, image: Optional[Any] = None,
             gap: float = 0.1) -> None:
        """Publish ``image`` (if given), spin ``gap`` s, then publish ``cloud`` (if given)."""
        if image is not None:
            self.pub_image.publish(image)
            self.spin_for(gap)
        if cloud is not None:
            self.pub_cloud.publish(cloud)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> None:
        """Send ``sig`` to a running node and wait ``timeout`` s for it to exit, then kill it."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        """Return the node's remaining stdout + stderr.

        Blocks until the process closes its pipe.
        """
        return self.proc.stdout.read()
