"""Parameters of ``perception_node`` and its start-up checks, without ROS.

Everything here is plain Python (numpy at most; no rclpy, no message packages), so that tools
which only need the node's parameters - the benchmark's post-processing
(:func:`bev_mtl_ros.bench._postprocess_config`), the evaluator tests, the replay regression, the
demo's and benchmark's command lines (:func:`input_remap_args`) - stay ROS-free.
:mod:`bev_mtl_ros.ros.node` declares these parameters on the node and calls the checks.

Contents: :data:`NODE_PARAMETERS` (name -> default, description), :data:`PARAMETER_RANGES`,
:data:`CONTRACT_PARAM_FIELDS` (``contract.<field>`` parameters), :data:`INPUT_NAMES` and
:func:`input_remap_args`, :class:`StartupError`, :func:`find_default_model`,
:func:`resolve_model_path`, :func:`check_parameter_choices`, :func:`check_contract_overrides`,
:func:`make_postprocess_config`.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    from bev_mtl_ros.runtime.postprocess import PostProcessConfig

__all__ = ["NODE_PARAMETERS", "PARAMETER_RANGES", "CONTRACT_PARAM_FIELDS", "INPUT_NAMES",
           "input_remap_args", "StartupError", "EXIT_STARTUP_ERROR", "find_default_model",
           "resolve_model_path", "check_parameter_choices", "check_contract_overrides",
           "make_postprocess_config", "default_postprocess_config", "parse_class_thresholds"]

PACKAGE = "bev_mtl_ros"
DEFAULT_MODEL_NAME = "bev_mtl_default.onnx"
#: exit code for start-up failures (model missing/corrupt, contract mismatch, bad parameters)
EXIT_STARTUP_ERROR = 2


class StartupError(RuntimeError):
    """The node cannot start: the message says which parameter/file and why."""


def find_default_model(name: str = DEFAULT_MODEL_NAME) -> Tuple[Optional[str], List[str]]:
    """Locate the packaged model.

    Looks in the source tree ``models/`` (editable installs), the ament share directory,
    ``<sys.prefix>/share/bev_mtl_ros/models``. Returns (path or None, places looked).
    """
    cands = [Path(__file__).resolve().parents[2] / "models" / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        cands.append(Path(get_package_share_directory(PACKAGE)) / "models" / name)
    except Exception:
        pass
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        cands.append(Path(prefix) / "share" / PACKAGE / "models" / name)
    for c in cands:
        if c.is_file():
            return str(c), [str(p) for p in cands]
    return None, [str(p) for p in cands]


def _same(a: Any, b: Any) -> bool:
    """Compare a parameter value with a contract value.

    Numbers with relative tolerance 1e-6, sequences element-wise.
    """
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


#: node parameters: name -> (default, description). ``contract.<field>`` parameters come on top.
NODE_PARAMETERS: Dict[str, Tuple[Any, str]] = {
    "model_path": ("", "ONNX (.onnx) or PyTorch (.pt) model file; empty = the packaged "
                       "models/bev_mtl_default.onnx (share dir or source tree)"),
    "backend": ("auto", "auto | onnxruntime | pytorch (auto: onnxruntime, else PyTorch)"),
    "device": ("cpu", "cpu | cuda | cuda:N"),
    "fp16": (False, "half precision on GPU (TensorRT/CUDA providers)"),
    "trt_cache_dir": ("", "TensorRT engine cache directory (empty = no TensorRT cache)"),
    "onnx_intra_op_threads": (0, "onnxruntime intra-op threads on the CPU; 0 = onnxruntime's "
                                 "choice (one per physical core)"),
    "onnx_spin_us": (100, "microseconds onnxruntime's CPU threads busy-wait for the network's "
                          "next parallel section (stopping at the end of each inference); 0 = "
                          "never spin (slower inference, threads woken per section); -1 = "
                          "onnxruntime's default (unbounded, also between inferences)"),
    "cloud_topic": ("", "override of the input cloud topic; empty = ~/input/pointcloud (remap "
                        "it, as the launch file does)"),
    "image_topic": ("", "override of the input image topic; empty = ~/input/image (remap it)"),
    "camera_info_topic": ("", "override of the camera's CameraInfo topic; empty = "
                              "~/input/camera_info (remap it)"),
    "input_qos": ("sensor_data", "input QoS: sensor_data (best effort) | reliable | "
                                 "system_default"),
    "input_queue_depth": (5, "history depth of the input subscriptions"),
    "sync_slop": (0.05, "max |image stamp - cloud stamp| for a pair, seconds"),
    "sync_queue_size": (10, "pending clouds / queued images in the synchronizer"),
    "camera_timeout": (0.2, "seconds a cloud waits for its image before running lidar-only (if "
                            "the model supports it)"),
    "intensity_field": ("intensity", "PointCloud2 field read as intensity (empty = none, zeros)"),
    "intensity_scale": (1.0, "multiplier from the message's intensity to the model's raw "
                             "convention (A2D2 reflectance 0..255; a 0..1 driver needs 255.0)"),
    "score_threshold": (0.40, "minimum detection score"),
    # empty by default: the shipped model's calibration (Car 0.50) cuts real false positives in
    # cross-validation but truncates the sample recording's Car AP below the card's acceptance
    # threshold (models/README.md, "Per-class score thresholds")
    "class_score_thresholds": ("",
                               "per-class minimum detection scores overriding score_threshold, "
                               "'Class:value,...' (class names of the model's contract; "
                               "classes not named and an empty value use score_threshold; "
                               "bev-mtl-ros calibrate-thresholds prints one for a model)"),
    "nms": ("circle", "circle (CenterPoint circle NMS) | rotated_iou (BEV rotated IoU NMS) | "
                      "none"),
    "publish_semantic_color": (True, "publish ~/semantic/color (rgb8 overlay)"),
    "pipeline_outputs": (True, "build and publish the outputs of a frame in a second thread "
                               "while the next frame is converted and inferred (frames stay in "
                               "order); false = one thread does both, one frame at a time"),
    "target_frame": ("", "frame every cloud is transformed into (TF, at the cloud's stamp) "
                         "before inference; the outputs' frame_id. Empty = the model contract's "
                         "frame_id (A2D2: cam_front_center)"),
    "tf_timeout": (0.1, "seconds a frame waits for its cloud -> target_frame transform, then it "
                        "is skipped; less when a newer frame is waiting, and once per unconnected "
                        "frame name (until the TF tree changes), not once per cloud"),
    "input_stale_warn_s": (2.0, "diagnostics WARN when no cloud arrived for this many seconds "
                                "(after the first one)"),
    "max_cloud_points": (1_000_000, "clouds with more points (width x height) are refused "
                         "before conversion, counted (bad_input.cloud_too_large) and warned; "
                         "0 = no limit"),
    "max_image_pixels": (12_582_912, "images with more pixels (width x height; default "
                         "4096 x 3072) are refused before conversion (bad_input.image_too_large; "
                         "the cloud runs lidar-only); 0 = no limit"),
    "diagnostics_window_s": (5.0, "a diagnostics cause (bad input, dropped pillars, inference "
                             "error, zero stamp, overload) clears once it has not recurred for "
                             "this many seconds"),
    "overload_warn_fraction": (0.1, "diagnostics WARN when more than this fraction of the "
                               "synchronised frames in diagnostics_window_s was skipped because "
                               "inference is slower than the input"),
}

#: remappable input names (Autoware's convention; launch/perception.launch.py remaps them from its
#: arguments); a non-empty ``<key>_topic`` parameter overrides the name
INPUT_NAMES: Dict[str, str] = {"cloud": "~/input/pointcloud", "image": "~/input/image",
                               "camera_info": "~/input/camera_info"}


def input_remap_args(cloud: str, image: str, camera_info: str) -> List[str]:
    """Return the ``--ros-args`` remapping rules that connect the node's inputs to topics.

    ``["-r", "~/input/pointcloud:=<cloud>", ...]`` for the input names of :data:`INPUT_NAMES`:
    what the launch file does with its arguments, for command lines built in Python (demo,
    bench, tests).
    """
    out: List[str] = []
    for key, topic in (("cloud", cloud), ("image", image), ("camera_info", camera_info)):
        out += ["-r", f"{INPUT_NAMES[key]}:={topic}"]
    return out


#: value ranges of numeric parameters, (min, max) inclusive, checked by rclpy (a value outside
#: refuses to start / to set, naming the range)
PARAMETER_RANGES: Dict[str, Tuple[float, float]] = {
    "input_queue_depth": (1, 100), "sync_slop": (0.0, 1.0), "sync_queue_size": (1, 100),
    "camera_timeout": (0.0, 10.0), "intensity_scale": (0.0, 1.0e4), "score_threshold": (0.0, 1.0),
    "tf_timeout": (0.0, 10.0), "input_stale_warn_s": (0.1, 3600.0),
}

#: contract fields that can be pinned by ``contract.<name>`` parameters
CONTRACT_PARAM_FIELDS = (
    "point_cloud_range", "pillar_size", "max_pillars", "max_points_per_pillar", "point_features",
    "intensity_scale", "image_size", "image_mean", "image_std", "detection_classes",
    "semantic_classes",
    "bev_stride", "lidar_only_supported", "version",
)


def check_contract_overrides(overrides: Dict[str, Any], contract: Any, model_path: str) -> None:
    """Compare set ``contract.*`` parameters with the model file's contract.

    Args:
        overrides: {field: value} of parameters that were set (None/empty = unset, skipped).
        contract: the model's ModelContract.
        model_path: for the message.
    Raises:
        StartupError naming every mismatching parameter with both values.
    """
    bad = []
    for name, value in overrides.items():
        if value is None or (isinstance(value, (list, tuple, str)) and len(value) == 0):
            continue
        model_value = getattr(contract, name)
        if not _same(value, model_value):
            mv = list(model_value) if isinstance(model_value, tuple) else model_value
            pv = list(value) if isinstance(value, (tuple, np.ndarray)) else value
            bad.append(f"parameter 'contract.{name}' = {pv} but the model file has {mv}")
    if bad:
        raise StartupError(f"model contract mismatch with {model_path}: " + "; ".join(bad)
                           + " (remove the parameter or use a model trained with that contract)")


def resolve_model_path(model_path: str) -> str:
    """Return the absolute path of the model file named by parameter ``model_path``.

    ``~`` is expanded; empty = the packaged model (:func:`find_default_model`).

    Raises:
        StartupError: the packaged model is not found (naming the places looked in), or the file
        does not exist.
    """
    if not model_path:
        found, looked = find_default_model()
        if found is None:
            raise StartupError("parameter 'model_path' is empty and the packaged model "
                               f"{DEFAULT_MODEL_NAME} was not found; looked in: "
                               f"{', '.join(looked)}")
        model_path = found
    model_path = os.path.abspath(os.path.expanduser(model_path))
    if not os.path.isfile(model_path):
        raise StartupError(f"model file not found: {model_path} (parameter 'model_path')")
    return model_path


def check_parameter_choices(params: Mapping[str, Any]) -> None:
    """Check the string parameters with a fixed set of values.

    ``backend`` (auto | onnxruntime | pytorch), ``device`` (cpu | cuda | cuda:N), ``nms``
    (circle | rotated_iou | none), ``onnx_intra_op_threads`` (>= 0), ``onnx_spin_us``
    (>= -1).

    Args:
        params: the node's parameter values by name (:data:`NODE_PARAMETERS` keys).
    Raises:
        StartupError naming the first parameter with a value outside its set.
    """
    if params["backend"] not in ("auto", "onnxruntime", "pytorch"):
        raise StartupError(f"parameter 'backend' = '{params['backend']}' is not auto, onnxruntime "
                           "or pytorch")
    device = params["device"]
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise StartupError(f"parameter 'device' = '{device}' is not cpu, cuda or cuda:N")
    if int(params["onnx_intra_op_threads"]) < 0:
        raise StartupError(f"parameter 'onnx_intra_op_threads' = "
                           f"{params['onnx_intra_op_threads']} is negative")
    if int(params["onnx_spin_us"]) < -1:
        raise StartupError(f"parameter 'onnx_spin_us' = {params['onnx_spin_us']} is below -1")
    if params["nms"] not in ("circle", "rotated_iou", "none"):
        raise StartupError(f"parameter 'nms' = '{params['nms']}' is not circle, rotated_iou or "
                           "none")


def parse_class_thresholds(text: str, classes: Sequence[str]) -> Dict[str, float]:
    """Parse parameter ``class_score_thresholds``: ``"Class:value,Class:value"``.

    Args:
        text: comma-separated ``name:value`` pairs (spaces ignored); empty = none.
        classes: the model contract's detection class names.
    Returns:
        {class name: threshold in [0, 1]} for the classes named.
    Raises:
        StartupError naming the entry: no ``:``, a class not in ``classes``, a class twice, a
        value that is not a number in [0, 1].
    """
    out: Dict[str, float] = {}
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        name, sep, value = (x.strip() for x in item.partition(":"))
        if not sep:
            raise StartupError(f"parameter 'class_score_thresholds': entry '{item}' is not "
                               "Class:value")
        if name not in classes:
            raise StartupError(f"parameter 'class_score_thresholds': class '{name}' is not one "
                               f"of the model's detection classes {list(classes)}")
        if name in out:
            raise StartupError(f"parameter 'class_score_thresholds': class '{name}' twice")
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if not 0.0 <= v <= 1.0:
            raise StartupError(f"parameter 'class_score_thresholds': '{item}' is not a score "
                               "in [0, 1]")
        out[name] = v
    return out


def make_postprocess_config(score_threshold: float, nms: str, classes: Sequence[str] = (),
                            class_thresholds: str = "") -> "PostProcessConfig":
    """Build the pipeline's post-processing configuration from the node's parameters.

    Args:
        score_threshold: parameter ``score_threshold``, minimum detection score (0..1, all
            classes).
        nms: parameter ``nms``: "circle" (CenterPoint circle NMS) | "rotated_iou" (BEV rotated
            IoU NMS) | "none".
        classes: the model contract's detection classes.
        class_thresholds: parameter ``class_score_thresholds``
            (:func:`parse_class_thresholds`); the classes it names take their own threshold,
            the others ``score_threshold``.
    Returns:
        :class:`~bev_mtl_ros.runtime.postprocess.PostProcessConfig` (imported here, with the
        runtime, so that importing this module stays light).
    Raises:
        StartupError for a malformed ``class_thresholds``; ValueError (from PostProcessConfig)
        for an unknown ``nms``.
    """
    from bev_mtl_ros.runtime.postprocess import PostProcessConfig

    per_class = parse_class_thresholds(class_thresholds, classes)
    threshold: Any = float(score_threshold)
    if per_class:
        threshold = {c: per_class.get(c, float(score_threshold)) for c in classes}
    return PostProcessConfig(score_threshold=threshold, nms=str(nms))


def default_postprocess_config(classes: Sequence[str]) -> "PostProcessConfig":
    """Return the node's post-processing at its parameter defaults (config/perception.yaml).

    ``score_threshold``, ``nms`` and ``class_score_thresholds`` as :data:`NODE_PARAMETERS`
    declares them, for a model detecting ``classes`` (:func:`make_postprocess_config`).
    """
    return make_postprocess_config(NODE_PARAMETERS["score_threshold"][0],
                                   NODE_PARAMETERS["nms"][0], classes,
                                   NODE_PARAMETERS["class_score_thresholds"][0])
