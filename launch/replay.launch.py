"""Replay a rosbag2 file into perception_node with simulated time.

    ros2 launch bev_mtl_ros replay.launch.py bag:=/path/to/bag [player:=bev_mtl_ros|ros2bag]
        [rate:=1.0] [loop:=false] [rviz:=false] [model:=...] [backend:=...] [device:=...]
        [params_file:=...] [decompress_images:=false]

The real recording (``test/data/real_a2d2_bag``: camera PNGs as ``CompressedImage``, raw images
with their CameraInfo) plays with ``decompress_images:=true
image_topic:=/a2d2/camera/front_center/image_raw``: the bev_mtl_ros player then publishes each
``.../compressed`` topic as an rgb8 ``Image`` without the suffix (``bev-mtl-ros play
--decompress-images``).

The bag is played with ``/clock`` (``bev-mtl-ros play BAG --clock``, which needs no ros2 CLI,
or ``ros2 bag play BAG --clock`` with ``player:=ros2bag``) and the node runs with
``use_sim_time:=true`` (perception.launch.py is included). The player waits until the node
subscribes to the cloud topic (bev_mtl_ros player only), so no frame is lost at start.
``FASTDDS_DEFAULT_PROFILES_FILE`` is set to the package's profile only if unset.
"""

import os

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription,
                            OpaqueFunction, SetEnvironmentVariable)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def _dds_actions():
    if os.environ.get(PROFILE_ENV):
        return []
    try:
        from bev_mtl_ros.dds import default_fastdds_profile

        return [SetEnvironmentVariable(PROFILE_ENV, default_fastdds_profile())]
    except Exception:
        return []


def _true(text):
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def _player(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    bag, rate, loop = get("bag"), get("rate"), _true(get("loop"))
    if not bag:
        raise RuntimeError("replay.launch.py: argument bag:=<rosbag2 directory or file> is "
                           "required")
    if get("player") == "ros2bag":
        cmd = (["ros2", "bag", "play", bag, "--clock", "--rate", rate]
               + (["--loop"] if loop else []))
    else:
        # wait (up to 300 s: model loading, TensorRT engine build) for the node's cloud
        # subscription
        cmd = ["bev-mtl-ros", "play", bag, "--clock", "--rate", rate, "--wait-for-subscribers",
               "1", "--wait-timeout", "300"]
        cmd += ["--wait-topics", get("cloud_topic")]
        cmd += ["--loop"] if loop else []
        cmd += ["--decompress-images"] if _true(get("decompress_images")) else []
    return [ExecuteProcess(cmd=cmd, output="screen", name="bag_player")]


def generate_launch_description():
    here = os.path.dirname(os.path.abspath(__file__))
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 directory or .mcap/.db3 file"),
        DeclareLaunchArgument("player", default_value="bev_mtl_ros",
                              description="bev_mtl_ros | ros2bag"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("loop", default_value="false",
                              description="restart the bag at its end"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument("decompress_images", default_value="false",
                              description="publish CompressedImage topics as Image (bev_mtl_ros "
                                          "player; the real recording needs it)"),
        DeclareLaunchArgument("model", default_value="",
                              description="model file; empty = params file's"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | onnxruntime | pytorch"),
        DeclareLaunchArgument("device", default_value="", description="cpu | cuda"),
        DeclareLaunchArgument("cloud_topic", default_value="/a2d2/lidar/points",
                              description="the bag's cloud topic"),
        DeclareLaunchArgument("image_topic", default_value="/a2d2/camera/front_center/image_rect",
                              description="the bag's image topic"),
        DeclareLaunchArgument("camera_info_topic",
                              default_value="/a2d2/camera/front_center/camera_info",
                              description="the bag's CameraInfo topic"),
    ]
    forwarded = {k: LaunchConfiguration(k)
                 for k in ("rviz", "model", "backend", "device", "cloud_topic",
                           "image_topic", "camera_info_topic")}
    forwarded["use_sim_time"] = "true"
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(here, "perception.launch.py")),
        launch_arguments=list(forwarded.items()))
    return LaunchDescription(args + _dds_actions()
                             + [perception, OpaqueFunction(function=_player)])
