"""PyTorch modules of the multi-task network and its model contract. No ROS, no file formats."""
