"""Wait until a node is wired into the ROS graph: a small rclpy program run as its own process.

``python -m bev_mtl_ros.ros.graph_probe --node NAME --inputs T1 [T2 ...] --detections TOPIC
--timeout S`` exits 0 (printing ``ready``) once the node named ``NAME`` itself subscribes to every
input topic (other subscribers, such as a recorder, do not count) and ``TOPIC`` has at least one
publisher and one subscriber; exits 1 after ``S`` seconds otherwise. The replay harness
(:mod:`bev_mtl_ros.ros.replay`) starts it on the replay's domain, with the same environment as
the node.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional, Sequence


def graph_ready(ros_node, node_name: str, input_topics: Sequence[str], det_topic: str) -> bool:
    """Return True when the node's input and detection topics are connected.

    That is: ``node_name`` subscribes to every topic of ``input_topics`` and ``det_topic`` has a
    publisher and a subscriber, as seen by ``ros_node`` (an ``rclpy.node.Node``).
    """
    def node_subscribed(t: str) -> bool:
        return any(i.node_name == node_name for i in ros_node.get_subscriptions_info_by_topic(t))

    return (all(node_subscribed(t) for t in input_topics)
            and ros_node.count_publishers(det_topic) >= 1
            and ros_node.count_subscribers(det_topic) >= 1)


def wait_for_graph(node_name: str, input_topics: Sequence[str], det_topic: str,
                   timeout_s: float, poll_s: float = 0.1) -> bool:
    """Poll the graph until :func:`graph_ready` or ``timeout_s`` seconds passed.

    Uses its own rclpy context and node ``demo_graph_probe``; returns whether it became ready.
    """
    import rclpy

    rclpy.init()
    try:
        n = rclpy.create_node("demo_graph_probe")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if graph_ready(n, node_name, input_topics, det_topic):
                return True
            time.sleep(poll_s)
        return False
    finally:
        rclpy.try_shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    """Command line (see the module docstring): 0 = ready, 1 = timed out."""
    p = argparse.ArgumentParser(prog="python -m bev_mtl_ros.ros.graph_probe")
    p.add_argument("--node", required=True, help="name of the node that must subscribe")
    p.add_argument("--inputs", nargs="+", required=True, help="topics it must subscribe to")
    p.add_argument("--detections", required=True,
                   help="topic that needs a publisher and a subscriber")
    p.add_argument("--timeout", type=float, required=True, help="seconds")
    a = p.parse_args(argv)
    if wait_for_graph(a.node, a.inputs, a.detections, a.timeout):
        print("ready", flush=True)
        return 0
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
