#!/usr/bin/env bash
# Held-out estimate of the shipped recipe on real A2D2 frames: train exactly as
# scripts/make_default_model.sh does, but with one of the committed real frames left out of the
# training mix, then score the model on that frame alone. The shipped model trains on all four real
# frames, so its figures on them are not held-out; this is the figure that says how the recipe
# generalises to a real frame it has not seen (one frame: a rough estimate, not a benchmark).
#
# Usage: scripts/real_holdout.sh [HOLDOUT_STEM]     (about 60 min on 2 CPU cores)
#   HOLDOUT_STEM: recording id + frame of the held-out frame, e.g. 20180810142822_000006737
#   (default: the first frame of REAL_DATA, which has all eight coarse groups).
# Environment: REAL_DATA (default test/data/real_a2d2), WORK (default build/real_holdout),
#   SYNTH_FROM (a make_default_model.sh work dir whose synthetic splits are reused when complete,
#   default build/default_model); every make_default_model.sh override passes through.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
REAL_DATA="${REAL_DATA:-$ROOT/test/data/real_a2d2}"
WORK="${WORK:-$ROOT/build/real_holdout}"
SYNTH_FROM="${SYNTH_FROM:-$ROOT/build/default_model}"

cameras=("$REAL_DATA"/*_camera_frontcenter_*.png)
if [[ ! -e "${cameras[0]}" ]]; then
  echo "real_holdout: no *_camera_frontcenter_*.png in $REAL_DATA" >&2
  exit 1
fi
stem_of() { local b; b="$(basename "$1" .png)"; echo "${b%%_camera_*}_${b##*_}"; }
HOLDOUT="${1:-$(stem_of "${cameras[0]}")}"

rm -rf "$WORK/real_train" "$WORK/real_heldout"
mkdir -p "$WORK/real_train" "$WORK/real_heldout"
found=0
for cam in "${cameras[@]}"; do
  stem="$(stem_of "$cam")"
  label="${cam/_camera_frontcenter_/_label_frontcenter_}"
  dest="$WORK/real_train"
  if [[ "$stem" == "$HOLDOUT" ]]; then dest="$WORK/real_heldout"; found=1; fi
  ln -s "$cam" "$dest/" && ln -s "$label" "$dest/"
done
if [[ "$found" != 1 ]]; then
  echo "real_holdout: no frame $HOLDOUT in $REAL_DATA" >&2
  exit 1
fi

# Reuse finished synthetic splits (and their target cache) instead of synthesising them again.
for d in synth_train synth_val cache; do
  if [[ -e "$SYNTH_FROM/synth_train/.done" && -e "$SYNTH_FROM/$d" && ! -e "$WORK/$d" ]]; then
    ln -s "$SYNTH_FROM/$d" "$WORK/$d"
  fi
done

echo "real_holdout: training without $HOLDOUT ($(($(ls "$WORK/real_train" | wc -l) / 2)) real frames in the mix)"
WORK="$WORK" MODELS_DIR="$WORK/models" REAL_DATA="$WORK/real_train" SKIP_CHECK=1 \
  bash "$ROOT/scripts/make_default_model.sh"

echo "real_holdout: scoring the held-out frame $HOLDOUT"
"$PY" -m bev_mtl_ros.cli evaluate --data "$WORK/real_heldout" --model "$WORK/models/bev_mtl_default.onnx" \
    --backend onnxruntime --out "$WORK/eval_heldout" --render 1 --render-style prediction --no-progress
cat "$WORK/eval_heldout/summary.txt"
