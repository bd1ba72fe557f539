"""Start perception_node (and optionally RViz) with the package's parameters and DDS profile.

    ros2 launch bev_mtl_ros perception.launch.py [params_file:=...] [model:=models/x.onnx]
        [backend:=auto|onnxruntime|pytorch] [device:=cpu|cuda] [use_sim_time:=false]
        [cloud_topic:=/a2d2/lidar/points] [image_topic:=/a2d2/camera/front_center/image_rect]
        [camera_info_topic:=/a2d2/camera/front_center/camera_info] [target_frame:=] [rviz:=false]

The node's inputs are the remappable names ``~/input/pointcloud``, ``~/input/image`` and
``~/input/camera_info`` (Autoware's convention); this file remaps them to ``cloud_topic``,
``image_topic`` and ``camera_info_topic``. Other arguments left empty keep the value from
``params_file`` (default ``config/perception.yaml``, keyed ``/**`` so any node name works);
``model`` empty = the yaml's ``model_path`` (empty there = the packaged
models/bev_mtl_default.onnx). ``FASTDDS_DEFAULT_PROFILES_FILE`` is set to the package's large-data
profile (``bev_mtl_ros.dds.default_fastdds_profile()``) only when the user has not set it.
Works with the launch / launch_ros APIs of Humble, Jazzy and later.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def _share_dir():
    """share/bev_mtl_ros when installed, the repository root when run from the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory("bev_mtl_ros")
    except Exception:
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dds_actions():
    """Return SetEnvironmentVariable for the Fast DDS profile, only if the user did not set one."""
    if os.environ.get(PROFILE_ENV):
        return []
    try:
        from bev_mtl_ros.dds import default_fastdds_profile

        return [SetEnvironmentVariable(PROFILE_ENV, default_fastdds_profile())]
    except Exception:  # package not importable or profile missing: Fast DDS defaults
        return []


def _true(text):
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def _node(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {"use_sim_time": _true(get("use_sim_time"))}
    for arg, param in (("model", "model_path"), ("backend", "backend"), ("device", "device"),
                       ("target_frame", "target_frame")):
        value = get(arg)
        if value:
            overrides[param] = value
    params = [get("params_file"), overrides] if get("params_file") else [overrides]
    remaps = [("~/input/pointcloud", get("cloud_topic")), ("~/input/image", get("image_topic")),
              ("~/input/camera_info", get("camera_info_topic"))]
    return [Node(package="bev_mtl_ros", executable="perception_node", name="perception_node",
                 parameters=params, remappings=remaps, output="screen", emulate_tty=True)]


def generate_launch_description():
    share = _share_dir()
    args = [
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "perception.yaml"),
                              description="node parameter file"),
        DeclareLaunchArgument("model", default_value="",
                              description="model file (.onnx/.pt); empty = params_file's"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | onnxruntime | pytorch; empty = params_file's"),
        DeclareLaunchArgument("device", default_value="",
                              description="cpu | cuda; empty = params_file's"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag replay)"),
        DeclareLaunchArgument("cloud_topic", default_value="/a2d2/lidar/points",
                              description="PointCloud2 topic (remapped to ~/input/pointcloud)"),
        DeclareLaunchArgument("image_topic", default_value="/a2d2/camera/front_center/image_rect",
                              description="input Image topic (remapped to ~/input/image)"),
        DeclareLaunchArgument("camera_info_topic",
                              default_value="/a2d2/camera/front_center/camera_info",
                              description="CameraInfo topic (remapped to ~/input/camera_info)"),
        DeclareLaunchArgument("target_frame", default_value="",
                              description="frame clouds are transformed into; empty = "
                                          "params_file's (the model's frame)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start rviz2 with config/perception.rviz"),
        DeclareLaunchArgument("rviz_config",
                              default_value=os.path.join(share, "config", "perception.rviz"),
                              description="RViz configuration"),
    ]
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                arguments=["-d", LaunchConfiguration("rviz_config")],
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(args + _dds_actions() + [OpaqueFunction(function=_node), rviz])
