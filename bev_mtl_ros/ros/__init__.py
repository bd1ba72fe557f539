"""The ROS 2 node and everything that touches rclpy messages. The only layer that imports rclpy."""
