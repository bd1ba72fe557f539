"""DDS middleware settings shared by every bev_mtl_ros process that starts ROS 2 nodes.

Camera images (1920x1208 rgb8, 7 MB) and lidar clouds (up to 200k points, ~5 MB) are far larger
than Fast DDS's default UDP fragment size; with the default transports best-effort subscribers
lose most samples. The package therefore ships a Fast DDS XML profile
(``config/fastdds_large_data.xml``: shared-memory transport with a 64 MiB segment + UDPv4,
builtin transports off) and makes it the default for every node it starts, through Fast DDS's
standard environment variable ``FASTDDS_DEFAULT_PROFILES_FILE``. A value the user has already
set always wins, so a site-wide profile (or another RMW) keeps working.

No ROS imports here: the module is usable before ``rclpy.init()`` and from launch files.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, MutableMapping, Optional

PACKAGE_NAME = "bev_mtl_ros"
#: file name of the shipped profile inside ``config/`` (source tree) or
#: ``share/bev_mtl_ros/config/``
PROFILE_FILE_NAME = "fastdds_large_data.xml"
#: environment variable read by Fast DDS when it creates the first participant of a process
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
#: ROS 2 variable that selects the middleware implementation
RMW_ENV = "RMW_IMPLEMENTATION"
DEFAULT_RMW = "rmw_fastrtps_cpp"


def _candidate_profile_paths() -> List[Path]:
    """Places the shipped profile can live, most specific first."""
    candidates: List[Path] = []
    # 1. Source tree / editable install: <repo>/config next to the bev_mtl_ros package directory.
    candidates.append(Path(__file__).resolve().parent.parent / "config" / PROFILE_FILE_NAME)
    # 2. colcon / ament install: share directory registered in the ament index.
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE_NAME)) / "config"
                          / PROFILE_FILE_NAME)
    except Exception:  # ament_index missing or package not registered: fall through
        pass
    # 3. Plain (non-editable) pip install: setup.py's data_files land under <prefix>/share.
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        candidates.append(Path(prefix) / "share" / PACKAGE_NAME / "config" / PROFILE_FILE_NAME)
    return candidates


def default_fastdds_profile() -> str:
    """Absolute path of the Fast DDS large-data profile shipped with bev_mtl_ros.

    Looks in the source tree (also covers editable pip installs), then in the ament share
    directory (colcon install, found through ``ament_index_python``), then in
    ``<sys.prefix>/share/bev_mtl_ros/config`` (plain pip install).

    Returns:
        str: path to ``fastdds_large_data.xml``.
    Raises:
        FileNotFoundError: the profile is in none of these places (the message lists them).
    """
    candidates = _candidate_profile_paths()
    for path in candidates:
        if path.is_file():
            return str(path)
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"Fast DDS profile {PROFILE_FILE_NAME} of {PACKAGE_NAME} not found; "
                            f"looked in: {tried}")


def dds_environment(base_env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for a process that runs ROS 2 nodes with the package's DDS defaults.

    Args:
        base_env: environment to start from; ``os.environ`` when None. Not modified.
    Returns:
        A new dict equal to ``base_env`` plus, only where unset or empty:
        ``FASTDDS_DEFAULT_PROFILES_FILE`` = :func:`default_fastdds_profile` and
        ``RMW_IMPLEMENTATION`` = ``rmw_fastrtps_cpp``. If the profile cannot be found the
        variable is left unset (Fast DDS then uses its builtin transports) rather than failing.
    """
    env: Dict[str, str] = dict(os.environ if base_env is None else base_env)
    if not env.get(PROFILE_ENV):
        try:
            env[PROFILE_ENV] = default_fastdds_profile()
        except FileNotFoundError:
            pass
    if not env.get(RMW_ENV):
        env[RMW_ENV] = DEFAULT_RMW
    return env


def apply_dds_environment(environ: Optional[MutableMapping[str, str]] = None) -> Dict[str, str]:
    """Apply :func:`dds_environment` to this process's environment (call before ``rclpy.init``).

    Fast DDS reads ``FASTDDS_DEFAULT_PROFILES_FILE`` once, when the process creates its first
    participant, so this must run before the first ``rclpy.init()``/``create_node``.

    Args:
        environ: mapping to update in place; ``os.environ`` when None.
    Returns:
        dict of the variables that were added (empty if the user had set both).
    """
    target = os.environ if environ is None else environ
    wanted = dds_environment(target)
    added = {k: v for k, v in wanted.items() if target.get(k) != v}
    target.update(added)
    return added


def launch_environment_actions() -> list:
    """``launch`` actions giving every node of a launch description the package's DDS defaults.

    Use at the top of a launch file's ``LaunchDescription([...])``. Values the user has set in the
    environment are kept (they are re-set to themselves). Needs the ``launch`` package (ROS 2).

    Returns:
        list of ``launch.actions.SetEnvironmentVariable`` for ``FASTDDS_DEFAULT_PROFILES_FILE``
        (if the profile was found) and ``RMW_IMPLEMENTATION``.
    """
    from launch.actions import SetEnvironmentVariable

    env = dds_environment()
    return [SetEnvironmentVariable(name, env[name]) for name in (PROFILE_ENV, RMW_ENV)
            if env.get(name)]


# ------------------------------------------------------------------------------------------------
# console-script entry points (setup.py): apply the DDS defaults, then run the real main, so every
# process started as `bev-mtl-ros ...` or `perception_node` (also from `ros2 run`/`ros2 launch`)
# and all its children use the large-data profile unless the user chose otherwise.
# ------------------------------------------------------------------------------------------------
def add_venv_ament_prefix(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Make ``ament_index_python`` look-ups work in a venv holding the ROS 2 wheels.

    The PyPI wheels and scripts/setup_env.sh register packages (rclpy, the messages,
    bev_mtl_ros itself) in ``<venv>/share/ament_index``, but nothing sets ``AMENT_PREFIX_PATH``
    as ``source setup.bash`` would. This appends ``sys.prefix`` to it (sets it if unset) when that
    prefix has an ament index and is not listed yet; a sourced distribution stays first.

    Returns:
        True if the variable was changed.
    """
    target = os.environ if environ is None else environ
    prefix = sys.prefix
    if not (Path(prefix) / "share" / "ament_index").is_dir():
        return False
    parts = [p for p in target.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if prefix in parts:
        return False
    target["AMENT_PREFIX_PATH"] = os.pathsep.join(parts + [prefix])
    return True


def cli_main() -> int:
    """Entry point of ``bev-mtl-ros``.

    DDS defaults and venv ament prefix, then ``bev_mtl_ros.cli.main``.
    """
    apply_dds_environment()
    add_venv_ament_prefix()
    from bev_mtl_ros.cli import main

    return main()


def perception_node_main() -> int:
    """Entry point of ``perception_node``.

    DDS defaults and venv ament prefix, then ``bev_mtl_ros.ros.node.main``. SIGINT/SIGTERM
    only set a flag from here on (:mod:`bev_mtl_ros.ros.stop_signals`), before the node's
    imports (rclpy, torch): a signal at any moment of start-up exits 0 without a traceback.
    """
    from bev_mtl_ros.ros import stop_signals

    stop_signals.install()
    apply_dds_environment()
    add_venv_ament_prefix()
    from bev_mtl_ros.ros.node import main

    return main()


#: a process holding an exclusive flock on ``<tmp>/bev_mtl_ros_domains/<id>.lock`` owns ROS domain
#: <id> on this machine (tests, demos and benchmarks all claim domains this way)
DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "bev_mtl_ros_domains"


class DomainClaim:
    """A ROS_DOMAIN_ID in 1..101 held exclusively by this process until :meth:`release`.

    Held by an ``fcntl`` lock on a file in the temp directory, so concurrent replays on one
    machine (parallel test runs, demos) never share a DDS domain. Other programs can take part by
    locking ``<tmp>/bev_mtl_ros_domains/<id>.lock`` the same way.
    """

    def __init__(self, preferred: Optional[int] = None):
        import fcntl
        import random
        d = DOMAIN_LOCK_DIR
        d.mkdir(parents=True, exist_ok=True)
        ids = list(range(1, 102))
        random.SystemRandom().shuffle(ids)
        if preferred is not None:
            ids = [int(preferred)]
        self.domain_id: Optional[int] = None
        self._fh = None
        for i in ids:
            fh = open(d / f"{i}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self.domain_id, self._fh = i, fh
            break
        if self.domain_id is None:   # all held (or the preferred one): use it anyway
            self.domain_id = ids[0]

    @property
    def locked(self) -> bool:
        """True when this process holds the id's lock (False: every id was taken, used anyway)."""
        return self._fh is not None

    def release(self) -> None:
        """Give the domain id back (closing the file drops the lock)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
