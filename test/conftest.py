"""Shared pytest fixtures for bev_mtl_ros.

ROS isolation: several test runs (and other developers' nodes) can share one machine, so every
test that starts ROS 2 participants gets its own ``ROS_DOMAIN_ID`` (claimed with a lock file, so
concurrent runs never get the same one) and discovery limited
to this host (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), plus the package's Fast DDS
large-data profile (``bev_mtl_ros.dds``).

Fixtures:
    ros_env        dict: environment for child processes (``subprocess.Popen(..., env=ros_env)``).
    ros_domain_id  int: the domain id in ``ros_env``, held exclusively on this machine for the test
                   (bev_mtl_ros.dds.DomainClaim).
    rclpy_context  an initialised ``rclpy.context.Context`` on ``ros_domain_id`` for in-process
                   nodes (``rclpy.create_node(name, context=rclpy_context)``); shut down
                   afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # tests run from a plain checkout too
    sys.path.insert(0, str(REPO_ROOT))

from bev_mtl_ros.dds import DomainClaim, add_venv_ament_prefix, dds_environment  # noqa: E402

# in-process ament_index look-ups (get_package_share_directory) find the venv's packages, as the
# console scripts do (bev_mtl_ros.dds.cli_main)
add_venv_ament_prefix()


def _ament_prefix_path(env: Dict[str, str]) -> str:
    """Return AMENT_PREFIX_PATH with this interpreter's prefix first when it holds an ament index.

    That is, in a venv with ROS wheels.
    """
    parts = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if (Path(sys.prefix) / "share" / "ament_index").is_dir() and sys.prefix not in parts:
        parts.insert(0, sys.prefix)
    return os.pathsep.join(parts)


@pytest.fixture
def ros_domain_id() -> Iterator[int]:
    """Yield a ROS_DOMAIN_ID held exclusively by this test for its duration.

    The claim is a :class:`bev_mtl_ros.dds.DomainClaim`.
    """
    claim = DomainClaim()
    try:
        yield claim.domain_id
    finally:
        claim.release()


@pytest.fixture
def ros_env(ros_domain_id: int) -> Dict[str, str]:
    """Environment dict for ROS 2 child processes, isolated from anything else on the machine.

    Contents: ``os.environ`` + ``ROS_DOMAIN_ID`` (random, per test) +
    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` + the Fast DDS profile and RMW from
    :func:`bev_mtl_ros.dds.dds_environment` (a user-set profile is kept) + ``AMENT_PREFIX_PATH``
    naming the venv prefix (for ``ament_index`` look-ups) + ``PYTHONUNBUFFERED=1``.
    """
    env = dds_environment(os.environ)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the discovery range
    env.pop("ROS_STATIC_PEERS", None)
    env["ROS_DOMAIN_ID"] = str(ros_domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["AMENT_PREFIX_PATH"] = _ament_prefix_path(env)
    env["PYTHONUNBUFFERED"] = "1"
    pythonpath = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in pythonpath:
        pythonpath.insert(0, str(REPO_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return env


@pytest.fixture
def rclpy_context(ros_env: Dict[str, str], ros_domain_id: int,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Yield an rclpy Context on this test's isolated domain, for nodes in the test process."""
    for key in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION",
                "ROS_AUTOMATIC_DISCOVERY_RANGE", "AMENT_PREFIX_PATH"):
        monkeypatch.setenv(key, ros_env[key])
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id))
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
