"""ament_python build of bev_mtl_ros (works with colcon on a ROS 2 install and with plain pip)."""
import os
from glob import glob

from setuptools import find_packages, setup

package_name = "bev_mtl_ros"


def share(subdir, pattern="*"):
    files = [f for f in glob(os.path.join(subdir, pattern)) if os.path.isfile(f)]
    return (os.path.join("share", package_name, subdir), files)


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"bev_mtl_ros": ["data/a2d2/*.json", "data/a2d2/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        share("launch", "*.py"),
        share("config"),
        share("models"),
        share("models/pretrained"),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=False,
    maintainer="bev_mtl_ros developers",
    maintainer_email="bev-mtl-ros@example.com",
    description=("Multi-task BEV perception (CenterPoint 3D detection, drivable area, semantics) "
                 "for ROS 2"),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # both go through bev_mtl_ros.dds, which sets the Fast DDS large-data profile
            # (unless the user set FASTDDS_DEFAULT_PROFILES_FILE) before the real main runs
            "bev-mtl-ros = bev_mtl_ros.dds:cli_main",
            "perception_node = bev_mtl_ros.dds:perception_node_main",
        ],
    },
)
