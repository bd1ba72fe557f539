"""Tiny models for the tests that start the node.

One small contract and a random network exported to ONNX (no parity check: the tests time or
count the node's outputs, they do not score them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

#: contract of the tests' tiny node models: 40.96 m x 40.96 m at 0.32 m pillars (128 x 128), a
#: 256 x 160 camera input
SMALL_NODE_CONTRACT = dict(point_cloud_range=(0.0, -20.48, -3.0, 40.96, 20.48, 3.0),
                           pillar_size=(0.32, 0.32), max_pillars=2000, max_points_per_pillar=16,
                           image_size=(256, 160))


def export_tiny_onnx(path: Union[str, Path], seed: int = 0) -> str:
    """Export ``BevMultiTaskNet.tiny`` with :data:`SMALL_NODE_CONTRACT` to ``path`` (.onnx).

    The weights are initialised after ``torch.manual_seed(seed)``. Returns the path as a string.
    """
    import torch

    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.model.network import BevMultiTaskNet
    from bev_mtl_ros.runtime.export import export_onnx

    torch.manual_seed(seed)
    contract = ModelContract(**SMALL_NODE_CONTRACT).validate()
    export_onnx(BevMultiTaskNet.tiny(contract).eval(), contract, str(path), verify=False)
    return str(path)
