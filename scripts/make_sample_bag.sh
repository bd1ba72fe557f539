#!/usr/bin/env bash
# Regenerate the committed sample recordings (used by `make demo` and the replay regression tests)
# from a fixed seed:
#   one synthetic A2D2-format scene (seed 3: shares no scene with the default model's training
#   split, seed 1, or its validation split, seed 2), 20 frames = 2 s at 10 Hz, 480x302 camera
#   (the training resolution), A2D2's five-VLP-16 lidar rig at the generator's defaults (~8-9k
#   points in the camera view, like a real A2D2 front-center frame), converted to zstd-compressed
#   mcap rosbag2 files:
#   test/data/sample_a2d2            all 20 frames, clouds in the camera view frame (the model's)
#   test/data/sample_a2d2_base_link  the first 5 frames, clouds in base_link (as a robot records
#                                    them) with the full /tf_static tree (the node's TF path)
# After regenerating, refresh the golden outputs: scripts/update_golden.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLI="${BEV_MTL_CLI:-$ROOT/.venv/bin/bev-mtl-ros}"
WORK="${WORK:-$ROOT/build/sample}"
rm -rf "$WORK" test/data/sample_a2d2 test/data/sample_a2d2_base_link
"$CLI" synth --out "$WORK" --scenes 1 --frames 20 --seed 3 --width 480 --height 302 --no-progress
"$CLI" a2d2-to-bag "$WORK" test/data/sample_a2d2 --storage mcap --compress --no-progress
"$CLI" a2d2-to-bag "$WORK" test/data/sample_a2d2_base_link --storage mcap --compress --no-progress \
    --cloud-frame base_link --max-frames 5
