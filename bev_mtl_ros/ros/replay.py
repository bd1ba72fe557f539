"""Replay harness: play a rosbag2 through a separate perception node process, record outputs.

Three processes talk over DDS, as on a vehicle (each gets :func:`ros_environment`: the package's
Fast DDS defaults from :func:`bev_mtl_ros.dds.dds_environment`, an isolated ``ROS_DOMAIN_ID`` and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``):

1. ``bev-mtl-ros record`` - the node's outputs (:func:`output_topics`) and the input cloud;
2. the node (:func:`default_node_cmd`, ``--ros-args`` with remaps, params file, ``-p`` overrides);
3. ``bev-mtl-ros play BAG`` once :mod:`bev_mtl_ros.ros.graph_probe` saw the node subscribed and its
   detections matched by the recorder.

Used by ``bev-mtl-ros demo``, the benchmark's end-to-end stage, the soak test and the replay
regression test. No rclpy import here (the probe runs as its own process).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from bev_mtl_ros.data.bag_io import (bag_span_s, bag_topic_counts, bag_topic_types,
                                     decompressed_topic)
from bev_mtl_ros.dds import DomainClaim, add_venv_ament_prefix, dds_environment
from bev_mtl_ros.ros.params import input_remap_args

#: the node's name in every replay (output namespace ``/<NODE_NAME>``)
NODE_NAME = "perception_node"
#: input topics of a bag written by ``bev-mtl-ros a2d2-to-bag`` (camera ``front_center``; see
#: :func:`bev_mtl_ros.data.to_bag.topic_names`)
LIDAR_TOPIC = "/a2d2/lidar/points"
IMAGE_TOPIC = "/a2d2/camera/front_center/image_rect"
CAMERA_INFO_TOPIC = "/a2d2/camera/front_center/camera_info"
#: the raw (distorted) camera image of ``a2d2-to-bag --camera-image raw``, and the topic of the
#: camera PNGs of ``--camera-image png`` (CompressedImage, decoded by the player to
#: IMAGE_RAW_TOPIC)
IMAGE_RAW_TOPIC = "/a2d2/camera/front_center/image_raw"
IMAGE_COMPRESSED_TOPIC = IMAGE_RAW_TOPIC + "/compressed"


@dataclass(frozen=True)
class BagInputs:
    """The node's input topics for one bag (see :func:`bag_inputs`).

    Attributes:
        cloud: PointCloud2 topic.
        image: the Image topic the node subscribes to (published by the player).
        camera_info: CameraInfo topic.
        bag_image: the bag's image topic (== ``image`` unless the bag holds CompressedImages).
        decompress: the player must decode CompressedImages (``play --decompress-images``).
    """

    cloud: str
    image: str
    camera_info: str
    bag_image: str
    decompress: bool


def bag_inputs(bag: Path) -> BagInputs:
    """Return the input topics of a bag written by ``a2d2-to-bag`` (any ``--camera-image``).

    The first of :data:`IMAGE_TOPIC` / :data:`IMAGE_RAW_TOPIC` holding sensor_msgs/Image, else
    :data:`IMAGE_COMPRESSED_TOPIC` holding CompressedImage (replayed decoded on its
    :func:`~bev_mtl_ros.data.bag_io.decompressed_topic`), else :data:`IMAGE_TOPIC` (a bag without
    camera: the node runs lidar-only).
    """
    types = bag_topic_types(bag)
    for topic in (IMAGE_TOPIC, IMAGE_RAW_TOPIC):
        if types.get(topic) == "sensor_msgs/msg/Image":
            return BagInputs(LIDAR_TOPIC, topic, CAMERA_INFO_TOPIC, topic, False)
    if types.get(IMAGE_COMPRESSED_TOPIC) == "sensor_msgs/msg/CompressedImage":
        return BagInputs(LIDAR_TOPIC, decompressed_topic(IMAGE_COMPRESSED_TOPIC),
                         CAMERA_INFO_TOPIC, IMAGE_COMPRESSED_TOPIC, True)
    return BagInputs(LIDAR_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC, IMAGE_TOPIC, False)


def output_topics(node_name: str = NODE_NAME) -> Dict[str, str]:
    """Return the node's output topics -> message types (``~`` = ``/<node_name>``)."""
    ns = f"/{node_name}"
    return {
        f"{ns}/detections": "vision_msgs/msg/Detection3DArray",
        f"{ns}/markers": "visualization_msgs/msg/MarkerArray",
        f"{ns}/drivable_area": "sensor_msgs/msg/Image",
        f"{ns}/drivable_area/grid": "nav_msgs/msg/OccupancyGrid",
        f"{ns}/semantic": "sensor_msgs/msg/Image",
        f"{ns}/semantic/color": "sensor_msgs/msg/Image",
        f"{ns}/debug/processing_time_ms": "std_msgs/msg/Float64MultiArray",
        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    }


#: per-frame output topics that must carry exactly one message per processed cloud
PER_FRAME_SUFFIXES = ("detections", "markers", "drivable_area", "drivable_area/grid", "semantic",
                      "semantic/color")


class ReplayError(RuntimeError):
    """A replay step failed (message says which process / file and shows its log tail)."""


@dataclass
class ReplayConfig:
    """One replay of a bag through a separate node process.

    Attributes:
        bag: input rosbag2 (mcap/sqlite3).
        out_dir: where the recording (``out_dir/recording``), logs and stats go.
        params_file: node parameters file (``--ros-args --params-file``).
        rate: player rate factor.
        use_sim_time: run the node on the bag's ``/clock`` (the player publishes it).
        node_params: extra ``-p name:=value`` overrides for the node.
        domain_id: ROS_DOMAIN_ID (None = a free one in 1..101, see :class:`DomainClaim`).
        node_name: the node's name (output namespace).
        ready_timeout_s: wait this long for the node's subscriptions/publishers (model loading).
        drain_timeout_s: after playback, stop recording when no new detections arrived this long.
        node_cmd: command starting the node (default: the ``perception_node`` console script).
        record_inputs: also record the input cloud topic (for end-to-end latency).
        play_topics: topics the player replays (None = all in the bag).
        pace: closed-loop replay (player ``--pace-topic ~/detections``): the next cloud is
            published only after the node answered the previous one, so no frame is skipped
            whatever the machine's speed. Off for overload tests.
        loops: passes over the bag (> 1: player ``--loop --max-loops``; stamps jump back at each
            restart, which the node must handle).
    """

    bag: Path
    out_dir: Path
    params_file: Optional[Path] = None
    rate: float = 0.5
    use_sim_time: bool = True
    node_params: Dict[str, Any] = field(default_factory=dict)
    domain_id: Optional[int] = None
    node_name: str = NODE_NAME
    ready_timeout_s: float = 180.0
    drain_timeout_s: float = 15.0
    node_cmd: Optional[List[str]] = None
    record_inputs: bool = True
    play_topics: Optional[List[str]] = None
    pace: bool = False
    loops: int = 1


@dataclass
class ReplayRun:
    """Result of :func:`run_replay`: paths and process facts."""

    recording: Path
    player_stats: Dict[str, Any]
    node_log: Path
    lidar_frames_in_bag: int
    node_returncode: Optional[int]
    wall_s: float


def ros_environment(domain_id: int) -> Dict[str, str]:
    """Return the environment of a replay's child processes (node, player, recorder, probe).

    A copy of this process's environment with the package's DDS defaults
    (:func:`bev_mtl_ros.dds.dds_environment`), ``ROS_DOMAIN_ID=domain_id``, discovery limited to
    localhost (``ROS_LOCALHOST_ONLY`` removed), unbuffered Python output, and this interpreter's
    prefix on ``AMENT_PREFIX_PATH`` (:func:`bev_mtl_ros.dds.add_venv_ament_prefix`: after a
    sourced distribution) when it holds an ament index (the venv's message packages).
    """
    env = dds_environment()
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    add_venv_ament_prefix(env)
    return env


def _cli() -> List[str]:
    return [sys.executable, "-m", "bev_mtl_ros.cli"]


def default_node_cmd() -> List[str]:
    """Return the node's command: its console script next to this interpreter, else ``-m``.

    ``python -m bev_mtl_ros.ros.node`` when there is no ``perception_node`` script.
    """
    exe = Path(sys.executable).parent / "perception_node"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bev_mtl_ros.ros.node"]


def _param_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_param_value(x) for x in v) + "]"
    return str(v)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def _stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> Optional[int]:
    """SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0)):
        try:
            proc.send_signal(sig)
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    return proc.wait(5.0)


def _wait_graph(env: Dict[str, str], node_name: str, input_topics: Sequence[str], det_topic: str,
                procs: Dict[str, subprocess.Popen], logs: Dict[str, Path], timeout: float) -> None:
    """Wait until the node is subscribed to its inputs and its detections are matched.

    Checked from a helper process on the same domain (:mod:`bev_mtl_ros.ros.graph_probe`, run
    with ``env``): the node named ``node_name`` itself subscribes to every input topic (other
    subscribers, such as the recorder, do not count) and its detections publisher is matched by
    the recorder. Raises ReplayError when it times out or a process of ``procs`` exits first
    (message with the tail of that process's log in ``logs``).
    """
    probe = subprocess.Popen(
        [sys.executable, "-m", "bev_mtl_ros.ros.graph_probe", "--node", node_name,
         "--inputs", *input_topics, "--detections", det_topic, "--timeout", str(timeout)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    while probe.poll() is None:
        for name, p in procs.items():
            if p.poll() is not None:
                probe.kill()
                probe.wait()
                raise ReplayError(f"{name} exited (code {p.returncode}) before the replay "
                                  f"started; log {logs[name]}:\n{_tail(logs[name])}")
        if time.monotonic() - t0 > timeout + 30:
            probe.kill()
        time.sleep(0.1)
    if probe.returncode != 0:
        raise ReplayError(f"node not ready after {timeout:.0f} s (no subscription on "
                          f"{list(input_topics)} or no matched {det_topic}); node log "
                          f"{logs['node']}:\n{_tail(logs['node'])}")


def _recorder_cmd(cfg: ReplayConfig, recording: Path, n_frames: int, ready: Path) -> List[str]:
    """Return the recorder's command: the node's outputs (and the input cloud).

    It stops once every frame's detections arrived (``--expect``) or none came for
    ``drain_timeout_s``.
    """
    topics = [f"{t}:{ty}" for t, ty in output_topics(cfg.node_name).items()]
    if cfg.record_inputs:
        topics.append(f"{LIDAR_TOPIC}:sensor_msgs/msg/PointCloud2")
    return _cli() + ["record", str(recording), "--topics", *topics, "--expect",
                     f"/{cfg.node_name}/detections={n_frames * max(1, cfg.loops)}",
                     "--linger", "2.0", "--idle-timeout", str(cfg.drain_timeout_s),
                     "--ready-file", str(ready)]


def _node_cmd(cfg: ReplayConfig, inputs: BagInputs) -> List[str]:
    """Return the node's command: name, input remaps, params file, ``-p`` overrides."""
    cmd = (list(cfg.node_cmd or default_node_cmd())
           + ["--ros-args", "-r", f"__node:={cfg.node_name}"]
           + input_remap_args(inputs.cloud, inputs.image, inputs.camera_info))
    if cfg.params_file is not None:
        cmd += ["--params-file", str(cfg.params_file)]
    params = dict(cfg.node_params)
    params.setdefault("use_sim_time", bool(cfg.use_sim_time))
    for k, v in params.items():
        cmd += ["-p", f"{k}:={_param_value(v)}"]
    return cmd


def _player_cmd(cfg: ReplayConfig, stats_json: Path, inputs: BagInputs) -> List[str]:
    """Return the player's command.

    ``--clock``, topics, loops and pacing from ``cfg``; ``--decompress-images`` for a bag of
    CompressedImages (``inputs.decompress``).
    """
    # the node's subscription and (when inputs are recorded) the recorder's must both be matched
    # by the player's publisher before the first cloud goes out
    n_subs = 2 if cfg.record_inputs else 1
    cmd = _cli() + ["play", str(Path(cfg.bag)), "--rate", str(cfg.rate),
                    "--wait-for-subscribers", "1",
                    "--wait-topics", f"{inputs.cloud}={n_subs}", f"{inputs.image}=1",
                    "--wait-timeout", "60", "--stats-json", str(stats_json)]
    if inputs.decompress:
        cmd.append("--decompress-images")
    if cfg.use_sim_time:
        cmd.append("--clock")
    if cfg.play_topics:
        cmd += ["--topics", *cfg.play_topics]
    if cfg.loops > 1:
        cmd += ["--loop", "--max-loops", str(int(cfg.loops))]
    if cfg.pace:
        cmd += ["--pace-topic", f"/{cfg.node_name}/detections:vision_msgs/msg/Detection3DArray",
                "--pace-input", inputs.cloud]
    return cmd


def _lidar_frames(bag: Path) -> int:
    """Return the number of clouds on :data:`LIDAR_TOPIC` of the bag.

    Raises:
        ReplayError when the bag is missing or has no cloud.
    """
    if not bag.exists():
        raise ReplayError(f"input bag not found: {bag}")
    counts = bag_topic_counts(bag)
    n_frames = counts.get(LIDAR_TOPIC, 0)
    if n_frames == 0:
        raise ReplayError(f"{bag} has no messages on {LIDAR_TOPIC} (topics: {sorted(counts)})")
    return n_frames


def _play(cfg: ReplayConfig, env: Dict[str, str], stats_json: Path, log_file,
          log_path: Path, inputs: BagInputs) -> Dict[str, Any]:
    """Run the player to the end; return its statistics (``--stats-json``; {} when none).

    Raises:
        ReplayError when the player fails (message with its log tail).
    """
    timeout = max(120.0, 3.0 * max(1, cfg.loops) * bag_span_s(Path(cfg.bag)) / cfg.rate + 60.0)
    player = subprocess.run(_player_cmd(cfg, stats_json, inputs), env=env, stdout=log_file,
                            stderr=subprocess.STDOUT, timeout=timeout)
    if player.returncode != 0:
        raise ReplayError(f"player failed (code {player.returncode}); log "
                          f"{log_path}:\n{_tail(log_path)}")
    return json.loads(stats_json.read_text()) if stats_json.exists() else {}


def run_replay(cfg: ReplayConfig, log=print) -> ReplayRun:
    """Replay ``cfg.bag`` through a separate node process and record its outputs.

    Starts recorder, node, then player (which waits for the node's lidar subscription); stops the
    recorder when detections for every lidar frame arrived or none came for ``drain_timeout_s``;
    then stops the node with SIGINT. Logs go to ``cfg.out_dir/{node,player,recorder}.log``.

    Returns:
        ReplayRun (recording path = ``cfg.out_dir/recording``).
    Raises:
        ReplayError: bag missing, a process failed, or the node never became ready.
    """
    bag = Path(cfg.bag)
    n_frames = _lidar_frames(bag)
    inputs = bag_inputs(bag)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recording = out / "recording"
    if recording.exists():
        shutil.rmtree(recording)
    claim = DomainClaim(cfg.domain_id)
    env = ros_environment(claim.domain_id)
    logs = {k: out / f"{k}.log" for k in ("recorder", "node", "player")}
    ready = out / ".recorder_ready"
    ready.unlink(missing_ok=True)
    files = {k: open(v, "w") for k, v in logs.items()}
    procs: Dict[str, subprocess.Popen] = {}
    t_start = time.monotonic()
    node_rc = None
    try:
        procs["recorder"] = subprocess.Popen(_recorder_cmd(cfg, recording, n_frames, ready),
                                             env=env, stdout=files["recorder"],
                                             stderr=subprocess.STDOUT)
        node_cmd = _node_cmd(cfg, inputs)
        log(f"[demo] domain {claim.domain_id}; node: {' '.join(node_cmd)}")
        procs["node"] = subprocess.Popen(node_cmd, env=env, stdout=files["node"],
                                         stderr=subprocess.STDOUT)
        _wait_graph(env, cfg.node_name, [inputs.cloud, inputs.image],
                    f"/{cfg.node_name}/detections", procs, logs, cfg.ready_timeout_s)
        log(f"[demo] node ready after {time.monotonic() - t_start:.1f} s; playing {bag} at rate "
            f"{cfg.rate}")
        player_stats = _play(cfg, env, out / "player_stats.json", files["player"], logs["player"],
                             inputs)
        try:
            procs["recorder"].wait(cfg.drain_timeout_s + 120.0)
        except subprocess.TimeoutExpired:
            log("[demo] recorder still running after the drain timeout; stopping it")
        _stop_process(procs["recorder"])
        node_rc = _stop_process(procs["node"])
    finally:
        for p in procs.values():
            _stop_process(p)
        for f in files.values():
            f.close()
        claim.release()
    if not (recording / "metadata.yaml").exists() and not list(recording.glob("*.mcap")):
        raise ReplayError("no recording written; recorder log "
                          f"{logs['recorder']}:\n{_tail(logs['recorder'])}")
    return ReplayRun(recording=recording, player_stats=player_stats, node_log=logs["node"],
                     lidar_frames_in_bag=n_frames, node_returncode=node_rc,
                     wall_s=time.monotonic() - t_start)
