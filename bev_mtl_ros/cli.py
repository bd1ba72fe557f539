"""``bev-mtl-ros``: the package's command line, a thin dispatcher over the layers.

Each sub-command lives in the module that owns its job; that module provides
``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``main(args: argparse.Namespace) -> int``. Modules are imported only when their sub-command runs,
so ``bev-mtl-ros synth`` never imports rclpy and ``bev-mtl-ros play`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Tuple

#: sub-command -> (module, one-line help)
COMMANDS: Dict[str, Tuple[str, str]] = {
    "synth": ("bev_mtl_ros.data.synth",
              "generate synthetic frames in A2D2's own directory layout and formats"),
    "a2d2-to-bag": ("bev_mtl_ros.data.to_bag",
                    "convert an A2D2(-format) directory to a rosbag2 file (mcap or sqlite3)"),
    "train": ("bev_mtl_ros.train.train", "train the multi-task network on A2D2-format data"),
    "evaluate": ("bev_mtl_ros.train.evaluate",
                 "evaluate a model on A2D2-format data or a recorded output bag"),
    "crossval": ("bev_mtl_ros.train.crossval",
                 "leave-one-drive-out cross-validation on real A2D2 frames (train + score per "
                 "fold)"),
    "calibrate-thresholds": ("bev_mtl_ros.train.thresholds",
                             "per-class detection score thresholds calibrated on labelled real "
                             "frames (the node's class_score_thresholds)"),
    "colour-stats": ("bev_mtl_ros.data.colour_stats",
                     "a camera's colour statistics and the contract normalisation that maps them "
                     "onto Cityscapes'"),
    "export": ("bev_mtl_ros.runtime.export",
               "export a checkpoint to ONNX (with its contract) and verify parity"),
    "play": ("bev_mtl_ros.ros.player",
             "replay a rosbag2 file over DDS with recorded timing (no ros2 CLI needed)"),
    "record": ("bev_mtl_ros.ros.recorder", "record topics to a rosbag2 file (no ros2 CLI needed)"),
    "bench": ("bev_mtl_ros.bench",
              "per-stage latency benchmark: backends, pillarization, end-to-end over DDS"),
    "demo": ("bev_mtl_ros.demo",
             "replay the bundled sample through the node and summarise/render the result"),
    "soak": ("bev_mtl_ros.soak",
             "run the node for minutes under a steady load: frames in/out, latency, RSS"),
}


def build_parser(argv_command: Optional[str] = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only the selected sub-command's module is imported."""
    parser = argparse.ArgumentParser(prog="bev-mtl-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == argv_command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``bev-mtl-ros`` console script. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
