"""``python -m bev_mtl_ros.bench``: the same as ``bev-mtl-ros bench``."""

import argparse
import sys

from bev_mtl_ros.bench.command import add_arguments, main

if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros bench")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
