"""bev_mtl_ros: multi-task BEV perception for ROS 2.

Tasks: CenterPoint detection, drivable area, semantics.

Layers (arrows point downward only):
    ros/      rclpy node, message conversions, synchronizer, bag player   (only layer importing
              rclpy)
    train/    training, evaluation                                       (uses model/, data/,
              runtime/)
    runtime/  pillarization, inference backends, ONNX export, decoding/NMS (uses model/)
    data/     A2D2 reader, synthetic A2D2-format generator, rosbag2 converter, labels
    model/    PyTorch modules, losses and the model contract
"""

__version__ = "0.1.0"
