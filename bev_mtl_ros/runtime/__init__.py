"""Everything between numpy arrays and results: pillarization, backends, export, decoding, NMS.

No ROS.
"""
