"""A2D2 files, the synthetic A2D2-format generator, rosbag2 conversion and labels.

No ROS node code.
"""
