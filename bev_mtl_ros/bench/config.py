"""Benchmark settings: where the repository and the default model are, the scenarios, the options.

Input sizes: A2D2 front-center (20k points, 1920x1208 image), a 360-degree 64-beam scan (120k
points), and a scaling series 10k -> 200k points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

__all__ = ["REPO_ROOT", "DEFAULT_MODEL", "DEFAULT_SPCONV_PATH", "SCENARIOS", "SCALING_POINTS",
           "BenchConfig"]

#: the source checkout (bev_mtl_ros/bench/ is two levels below it)
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL = "models/bev_mtl_default.onnx"
#: where ``pip install --target build/bench-spconv spconv`` puts the optional reference
DEFAULT_SPCONV_PATH = "build/bench-spconv"

#: name -> (points, image (width, height), field of view of the synthetic scan)
SCENARIOS: Dict[str, Tuple[int, Tuple[int, int], str]] = {
    "a2d2_front_center": (20_000, (1920, 1208), "front"),
    "lidar360_64beam": (120_000, (1920, 1208), "360"),
}
SCALING_POINTS = (10_000, 25_000, 50_000, 100_000, 200_000)


@dataclass
class BenchConfig:
    """Options of one benchmark run (see ``add_arguments``)."""

    device: str = "cpu"
    frames: int = 20
    warmup: int = 3
    model: Optional[str] = None
    scenarios: Tuple[str, ...] = tuple(SCENARIOS)
    points: Optional[int] = None
    image: Optional[Tuple[int, int]] = None
    scaling: bool = True
    dds: bool = True
    reference: bool = True
    spconv_path: Optional[str] = DEFAULT_SPCONV_PATH
    backends: Optional[Tuple[str, ...]] = None
    threads: Optional[int] = None
    #: open-loop replay with every output subscribed (``rate_replay``), quiet and one core busy
    rate: bool = True
    rate_hz: float = 10.0
    rate_seconds: float = 60.0
    #: extra ``name:=value`` parameters of the node in the end-to-end and 10 Hz runs
    node_params: Tuple[str, ...] = ()
    #: onnxruntime's profiler over the scenario's frame, per network module (CPU, ONNX models)
    network_profile: bool = True
    #: the node's camera as a raw one (distorted image + CameraInfo of A2D2's lens) in the
    #: end-to-end and 10 Hz runs
    raw_camera: bool = False
