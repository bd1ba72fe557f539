#!/usr/bin/env bash
# Regenerate the replay regression test's golden outputs (test/golden/<bag>.npz + .json):
# replays each committed recording through the perception node (separate process, over DDS, paced,
# at a rate the CPU keeps up with) with the default model and stores every frame's outputs:
#   test/data/sample_a2d2     -> test/golden/sample_a2d2.{npz,json}     (synthetic sample)
#   test/data/real_a2d2_bag   -> test/golden/real_a2d2_bag.{npz,json}   (ten real A2D2 frames)
#   scripts/update_golden.sh                                # both bags + default model
#   scripts/update_golden.sh --bag B --model M --rate 0.25  # one bag (repeat --bag for more)
# Review the change (git diff --stat test/golden) and commit it together with the model change
# that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
# camera_timeout 5 s, as the replay regression test sets it: on a loaded machine the default 0.2 s
# could run a frame lidar-only before its image arrived and bake that into the golden.
exec "$VENV/bin/python" -m bev_mtl_ros.cli demo --write-golden --out out/golden_run --rate 0.25 \
    --param camera_timeout:=5.0 "$@"
