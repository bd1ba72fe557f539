"""``bev-mtl-ros demo``: replay the bundled sample recording through the perception node and show
the result.

What runs (three separate processes talking over DDS, as on a vehicle):

1. ``bev-mtl-ros record`` — records the node's outputs and the input cloud (for end-to-end
   latency);
2. ``perception_node --ros-args --params-file config/perception.yaml -p use_sim_time:=true``;
3. ``bev-mtl-ros play SAMPLE_BAG --clock --rate R`` once the node and recorder are matched.

All three get :func:`bev_mtl_ros.dds.dds_environment` (the shared-memory large-data Fast DDS
profile) plus an isolated ``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``.

Then the recording is analysed (:func:`analyze_recording`): frames in/out, frames skipped,
duplicates, end-to-end latency (cloud received -> detections received, both by the recorder) and
the node's own per-stage latency (from ``~/debug/processing_time_ms`` / ``/diagnostics``), backend,
detections per class, metrics against the bag's ground truth (``train.evaluate``'s bag evaluation
when present); printed and written to ``out/demo/summary.json``. A few frames are rendered with
OpenCV to ``out/demo/frame_<k>_camera.png`` (image + semantic overlay + projected boxes) and
``frame_<k>_bev.png`` (points, drivable area, predicted and ground-truth boxes, bird's-eye view).

``--write-golden`` stores the outputs as the replay regression test's golden files
(``test/golden/``); the test compares new replays to them within stated tolerances.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.bag_io import (cloud_to_array, detections_to_arrays, image_to_array,
                                     read_topics, stamp_ns)
from bev_mtl_ros.data.synth_scan import make_synthetic_bag
from bev_mtl_ros.geometry import BOX_EDGES, box_corners_3d, normalize_yaw
from bev_mtl_ros.ros.replay import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, LIDAR_TOPIC, NODE_NAME,
                                    PER_FRAME_SUFFIXES, ReplayConfig, ReplayError,
                                    output_topics, run_replay)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the committed sample recording replayed by ``make demo`` (rosbag2 directory, relative to the
#: repository root)
SAMPLE_BAG = "test/data/sample_a2d2"
#: other places the sample may be committed (a rosbag2 directory as written by a2d2-to-bag)
SAMPLE_BAG_ALTERNATIVES = ("test/data/sample_a2d2.mcap", "test/data/sample_a2d2.db3",
                           "test/data/sample")


def find_sample_bag() -> Path:
    """The committed sample recording: :data:`SAMPLE_BAG` or the first existing alternative
    (:data:`SAMPLE_BAG_ALTERNATIVES`), relative to the repository root; SAMPLE_BAG when none
    exists."""
    for rel in (SAMPLE_BAG,) + SAMPLE_BAG_ALTERNATIVES:
        if (REPO_ROOT / rel).exists():
            return REPO_ROOT / rel
    return REPO_ROOT / SAMPLE_BAG


#: node parameters used by the demo and by launch/perception.launch.py
DEFAULT_PARAMS = "config/perception.yaml"
DEFAULT_MODEL = "models/bev_mtl_default.onnx"
DEFAULT_OUT = "out/demo"
GOLDEN_DIR = "test/golden"

GT_BOXES_TOPIC = "/a2d2/ground_truth/boxes"
GT_SEMANTIC_TOPIC = "/a2d2/ground_truth/semantic"


def resolve_path(p: str | os.PathLike) -> Path:
    """A path as given if it exists, else relative to the repository root (so the demo works from
    any working directory)."""
    q = Path(p)
    if q.exists() or q.is_absolute():
        return q
    return REPO_ROOT / q


# ====================================================================== analysis
@dataclass
class FrameOutput:
    """The node's outputs for one lidar frame (keyed by the cloud's header stamp)."""

    stamp_ns: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: List[str]
    drivable: Optional[np.ndarray] = None      # (grid_h, grid_w) bool, row = iy, col = ix
    semantic: Optional[np.ndarray] = None      # (H, W) uint8 class ids
    latency_ms: Optional[float] = None         # cloud received -> detections received


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {}
    return {"n": int(v.size), "p50": round(float(np.percentile(v, 50)), 2),
            "p95": round(float(np.percentile(v, 95)), 2),
            "max": round(float(v.max()), 2), "mean": round(float(v.mean()), 2)}


def _diagnostic_values(diag_msgs: Sequence[Any],
                       node_name: str) -> Tuple[Dict[str, List[float]], Dict[str, str]]:
    """Collect numeric key/values of the node's DiagnosticStatus entries: (key -> values over
    time, key -> last raw value)."""
    series: Dict[str, List[float]] = {}
    last: Dict[str, str] = {}
    for msg in diag_msgs:
        for st in msg.status:
            if node_name not in st.name and node_name not in getattr(st, "hardware_id", ""):
                continue
            for kv in st.values:
                last[kv.key] = kv.value
                try:
                    series.setdefault(kv.key, []).append(float(kv.value))
                except ValueError:
                    pass
    return series, last


def analyze_recording(input_bag: Path, recording: Path, node_name: str = NODE_NAME,
                      player_stats: Optional[Dict[str, Any]] = None
                      ) -> Tuple[Dict[str, Any], List[FrameOutput]]:
    """Match the node's recorded outputs to the input bag's lidar frames and summarise.

    Returns:
        (summary dict, frame outputs sorted by stamp). Summary keys: frames_in (clouds published by
        the player, else in the bag), frames_out (distinct cloud stamps answered on ~/detections),
        frames_skipped, per_topic {topic: {messages, distinct_stamps, duplicates,
        unknown_stamps, missing}}, latency_ms {end_to_end, node_total, stages...}, backend,
        detections_per_class, diagnostics (last values).
    """
    ns = f"/{node_name}"
    outs = output_topics(node_name)
    inp = read_topics(input_bag, [LIDAR_TOPIC, IMAGE_TOPIC])
    in_stamps = [stamp_ns(m) for _, m in inp[LIDAR_TOPIC]]
    in_set = set(in_stamps)
    img_set = {stamp_ns(m) for _, m in inp[IMAGE_TOPIC]}
    del inp
    rec = read_topics(recording, list(outs) + [LIDAR_TOPIC])
    frames_in = int((player_stats or {}).get("published", {}).get(LIDAR_TOPIC, len(in_stamps)))
    loops = int((player_stats or {}).get("loops", 1) or 1)

    per_topic: Dict[str, Any] = {}
    for suffix in PER_FRAME_SUFFIXES:
        topic = f"{ns}/{suffix}"
        stamps = [stamp_ns(m) for _, m in rec.get(topic, [])]
        distinct = set(stamps) - {None}
        # semantic outputs carry the camera image's header, the others the cloud's
        ref = img_set if suffix.startswith("semantic") else in_set
        per_topic[topic] = {"messages": len(stamps), "distinct_stamps": len(distinct),
                            "duplicates": len(stamps) - len(distinct),
                            "unknown_stamps": len(distinct - ref),
                            "missing": len(ref - distinct)}
    # end-to-end latency: recorder receive time of the cloud vs of its detections
    cloud_recv: Dict[int, int] = {}
    for t, m in rec.get(LIDAR_TOPIC, []):
        cloud_recv.setdefault(stamp_ns(m), t)
    frames: Dict[int, FrameOutput] = {}
    for t, m in rec.get(f"{ns}/detections", []):
        s = stamp_ns(m)
        if s in frames:
            continue
        boxes, scores, labels = detections_to_arrays(m)
        lat = (t - cloud_recv[s]) / 1e6 if s in cloud_recv else None
        frames[s] = FrameOutput(s, boxes, scores, labels, latency_ms=lat)
    for t, m in rec.get(f"{ns}/drivable_area", []):
        s = stamp_ns(m)
        if s in frames and frames[s].drivable is None:
            frames[s].drivable = image_to_array(m) > 127
    frame_stamps = np.array(sorted(frames), dtype=np.int64)
    for t, m in rec.get(f"{ns}/semantic", []):
        s = stamp_ns(m)
        # image stamp != cloud stamp: nearest frame within 50 ms
        if s not in frames and frame_stamps.size:
            j = int(np.argmin(np.abs(frame_stamps - s)))
            s = int(frame_stamps[j]) if abs(int(frame_stamps[j]) - s) <= 50_000_000 else s
        if s in frames and frames[s].semantic is None:
            frames[s].semantic = image_to_array(m)
    frame_list = [frames[s] for s in sorted(frames)]

    stages: Dict[str, List[float]] = {}
    for _, m in rec.get(f"{ns}/debug/processing_time_ms", []):
        data = np.atleast_1d(np.asarray(m.data, np.float64))
        dims = getattr(getattr(m, "layout", None), "dim", None)
        names = dims[0].label.split(",") if dims else ["total"]
        for name, v in zip(names, data):
            stages.setdefault(f"node_{name.strip()}", []).append(float(v))
    diag_series, diag_last = _diagnostic_values([m for _, m in rec.get("/diagnostics", [])],
                                                node_name)
    latency: Dict[str, Any] = {"end_to_end": _percentiles([f.latency_ms for f in frame_list])}
    latency.update({k: _percentiles(v) for k, v in stages.items()})
    per_class: Dict[str, int] = {}
    for f in frame_list:
        for lab in f.labels:
            per_class[lab] = per_class.get(lab, 0) + 1
    frames_out = len(frames)
    skipped_keys = [k for k in diag_last if "skip" in k.lower() or "dropped_frames" in k.lower()]
    summary = {
        "input_bag": str(input_bag), "recording": str(recording),
        "frames_in": frames_in, "frames_in_bag": len(in_stamps), "loops": loops,
        "frames_out": frames_out,
        "frames_skipped": frames_in - per_topic[f"{ns}/detections"]["messages"],
        "node_reported_skipped": {k: diag_last[k] for k in skipped_keys},
        "per_topic": per_topic, "latency_ms": latency,
        "backend": next((diag_last[k] for k in ("backend", "Backend", "inference_backend")
                         if k in diag_last), None),
        "detections_per_class": dict(sorted(per_class.items())),
        "detections_total": int(sum(per_class.values())),
        "diagnostics_last": diag_last,
        "player": player_stats or {},
    }
    return summary, frame_list


def model_contract(model_path: Optional[str | os.PathLike]):
    """The ModelContract stored in a model file (.onnx metadata or .pt checkpoint); the default
    contract when the path is None/missing."""
    from bev_mtl_ros.model.contract import ModelContract
    if not model_path or not Path(model_path).exists():
        return ModelContract()
    if str(model_path).endswith(".onnx"):
        from bev_mtl_ros.runtime.export import read_onnx_contract
        return read_onnx_contract(str(model_path))
    from bev_mtl_ros.runtime.checkpoint import load_checkpoint
    return load_checkpoint(str(model_path))[1]


def evaluate_against_ground_truth(input_bag: Path, recording: Path,
                                  node_name: str = NODE_NAME,
                                  model_path: Optional[str | os.PathLike] = None
                                  ) -> Dict[str, Any]:
    """Metrics of the recorded outputs against the input bag's ground truth (boxes, semantic),
    matched by header stamp: :func:`bev_mtl_ros.train.evaluate.evaluate_bag` on the node's
    ``~/detections`` and ``~/semantic`` topics, as JSON-compatible data (NaN stays NaN).
    ``model_path`` supplies the contract (classes, ranges).

    Raises:
        ValueError when the input bag has no ground-truth boxes (from ``evaluate_bag``).
    """
    from bev_mtl_ros.train.evaluate import evaluate_bag

    result = evaluate_bag(str(recording), model_contract(model_path), gt_bag=str(input_bag),
                          detections_topic=f"/{node_name}/detections",
                          semantic_topic=f"/{node_name}/semantic")
    result = {k: v for k, v in result.items() if not str(k).startswith("_")}
    return json.loads(json.dumps(result, default=lambda o: o.tolist()
                                 if isinstance(o, (np.ndarray, np.generic)) else str(o)))


# ====================================================================== rendering (OpenCV)
_CLASS_COLOURS_BGR = [(0, 200, 255), (255, 120, 0), (60, 60, 255), (0, 220, 0), (255, 0, 255),
                      (255, 255, 0)]


def _class_colour(label: str, classes: Sequence[str]) -> Tuple[int, int, int]:
    i = list(classes).index(label) if label in classes else len(classes)
    return _CLASS_COLOURS_BGR[i % len(_CLASS_COLOURS_BGR)]


def render_camera(image_rgb: np.ndarray, K: np.ndarray, boxes: np.ndarray, labels: Sequence[str],
                  scores: np.ndarray, semantic: Optional[np.ndarray] = None,
                  classes: Sequence[str] = (),
                  alpha: float = 0.45, gt_boxes: Optional[np.ndarray] = None) -> np.ndarray:
    """Camera image with semantic overlay and projected 3D boxes; returns a BGR uint8 image.

    Boxes are in the camera *view* frame (x forward, y left, z up); projection with the
    undistorted intrinsics ``K`` (3x3): col = cx - fx*y/x, row = cy - fy*z/x (A2D2 convention).
    Edges with a corner behind the camera (x <= 0.1 m) are not drawn."""
    import cv2

    from bev_mtl_ros.data.calibration import project_view_points
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    if semantic is not None:
        from bev_mtl_ros.data.classes import ids_to_rgb
        sem = semantic
        if sem.shape[:2] != bgr.shape[:2]:
            sem = cv2.resize(sem, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
        overlay = cv2.cvtColor(ids_to_rgb(sem), cv2.COLOR_RGB2BGR)
        bgr = cv2.addWeighted(bgr, 1.0 - alpha, overlay, alpha, 0.0)
    lw = max(1, bgr.shape[1] // 640)

    def draw(b, colour, text):
        corners = box_corners_3d(np.reshape(b, (1, 7)))[0]
        row, col, ok = project_view_points(corners, K, min_depth=0.1)
        if not ok.all():
            return
        pts = np.stack([col, row], 1)
        for i, j in BOX_EDGES:
            p1 = tuple(int(round(v)) for v in pts[i])
            p2 = tuple(int(round(v)) for v in pts[j])
            cv2.line(bgr, p1, p2, colour, lw, cv2.LINE_AA)
        if text:
            top = pts[4:].min(0)
            cv2.putText(bgr, text, (int(top[0]), max(12, int(top[1]) - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * lw, colour, lw, cv2.LINE_AA)

    if gt_boxes is not None:
        for b in gt_boxes:
            draw(b, (255, 255, 255), "")
    for b, lab, sc in zip(boxes, labels, scores):
        draw(b, _class_colour(lab, classes), f"{lab} {sc:.2f}")
    return bgr


def render_bev(points: Optional[np.ndarray], pc_range: Sequence[float], boxes: np.ndarray,
               labels: Sequence[str],
               drivable: Optional[np.ndarray] = None, gt_boxes: Optional[np.ndarray] = None,
               classes: Sequence[str] = (), px_per_m: float = 8.0) -> np.ndarray:
    """Bird's-eye view (BGR uint8): +x (forward) up, +y (left) to the left, ``px_per_m`` pixels per
    metre over ``pc_range`` = (x0, y0, z0, x1, y1, z1). ``drivable`` (grid_h, grid_w) bool with
    row = iy (y), col = ix (x) over the same range is tinted green; points are grey by height,
    predicted boxes coloured by class, ground-truth boxes white."""
    import cv2
    x0, y0, z0, x1, y1, z1 = [float(v) for v in pc_range]
    W = int(round((y1 - y0) * px_per_m))
    H = int(round((x1 - x0) * px_per_m))
    img = np.zeros((H, W, 3), np.uint8)

    def to_px(x, y):
        return (y1 - np.asarray(y)) * px_per_m, (x1 - np.asarray(x)) * px_per_m  # (u, v)

    if drivable is not None and drivable.size:
        # image[v, u] = mask[iy, ix] with ix flipped along v and iy flipped along u
        m = np.ascontiguousarray(drivable[::-1, ::-1].T).astype(np.uint8)
        m = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
        img[m] = (0, 90, 0)
    if points is not None and len(points):
        u, v = to_px(points[:, 0], points[:, 1])
        ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        z = np.clip((points[ok, 2] - z0) / max(z1 - z0, 1e-6), 0, 1)
        g = (80 + 175 * z).astype(np.uint8)
        img[v[ok].astype(int), u[ok].astype(int)] = np.stack([g, g, g], 1)
    # range rings every 10 m
    for r in range(10, int(x1) + 1, 10):
        cv2.circle(img, (int(round(y1 * px_per_m)), int(round(x1 * px_per_m))), int(r * px_per_m),
                   (60, 60, 60), 1)

    def draw(b, colour, thick):
        c = box_corners_3d(np.reshape(b, (1, 7)))[0, :4]
        u, v = to_px(c[:, 0], c[:, 1])
        poly = np.stack([u, v], 1).round().astype(np.int32)
        cv2.polylines(img, [poly], True, colour, thick, cv2.LINE_AA)
        front = ((poly[0] + poly[3]) / 2).astype(int)
        centre = poly.mean(0).astype(int)
        cv2.line(img, tuple(int(v) for v in centre), tuple(int(v) for v in front), colour, thick,
                 cv2.LINE_AA)

    if gt_boxes is not None:
        for b in gt_boxes:
            draw(b, (255, 255, 255), 1)
    for b, lab in zip(boxes, labels):
        draw(b, _class_colour(lab, classes), 2)
    return img


def _gt_boxes_by_stamp(bag: Path) -> Dict[int, np.ndarray]:
    try:
        msgs = read_topics(bag, [GT_BOXES_TOPIC])[GT_BOXES_TOPIC]
    except Exception:
        return {}
    return {stamp_ns(m): detections_to_arrays(m)[0] for _, m in msgs}


def render_frames(input_bag: Path, frames: Sequence[FrameOutput], out_dir: Path, count: int = 3,
                  pc_range: Optional[Sequence[float]] = None,
                  classes: Sequence[str] = ()) -> List[str]:
    """Write ``frame_<k>_camera.png`` and ``frame_<k>_bev.png`` for ``count`` evenly spaced frames.

    The image paired with a cloud is the bag's image with the nearest header stamp; intrinsics from
    the bag's CameraInfo ``k``. Returns the written paths."""
    import cv2

    from bev_mtl_ros.model.contract import ModelContract
    if not frames:
        return []
    pc_range = pc_range or ModelContract().point_cloud_range
    sel = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))})
    wanted = {frames[i].stamp_ns for i in sel}
    data = read_topics(input_bag, [LIDAR_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC])
    clouds = {stamp_ns(m): m for _, m in data[LIDAR_TOPIC] if stamp_ns(m) in wanted}
    images = [(stamp_ns(m), m) for _, m in data[IMAGE_TOPIC]]
    K = (np.asarray(data[CAMERA_INFO_TOPIC][0][1].k, np.float64).reshape(3, 3)
         if data[CAMERA_INFO_TOPIC] else None)
    gt = _gt_boxes_by_stamp(input_bag)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(sel):
        f = frames[i]
        pts = cloud_to_array(clouds[f.stamp_ns]) if f.stamp_ns in clouds else None
        g = gt.get(f.stamp_ns)
        bev = render_bev(pts, pc_range, f.boxes, f.labels, f.drivable, g, classes)
        cv2.putText(bev, f"stamp {f.stamp_ns / 1e9:.2f} s  {len(f.scores)} detections (GT white)",
                    (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        p = out_dir / f"frame_{k}_bev.png"
        cv2.imwrite(str(p), bev)
        written.append(str(p))
        if images and K is not None:
            s_img, m_img = min(images, key=lambda sm: abs(sm[0] - f.stamp_ns))
            cam = render_camera(image_to_array(m_img), K, f.boxes, f.labels, f.scores, f.semantic,
                                classes, gt_boxes=g)
            p = out_dir / f"frame_{k}_camera.png"
            cv2.imwrite(str(p), cam)
            written.append(str(p))
    return written


# ====================================================================== golden outputs
#: tolerances of the replay regression test (documented in test/golden/README.md)
GOLDEN_TOLERANCES = {"center_m": 0.05, "size_m": 0.05, "yaw_rad": 0.03, "score": 0.02,
                     "drivable_agreement": 0.995, "semantic_agreement": 0.99,
                     "near_threshold_score": 0.05, "near_threshold_fraction": 0.05}
SEMANTIC_GOLDEN_STRIDE = 4


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, or of a bag directory's files in name order."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        with open(q, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_golden(frames: Sequence[FrameOutput], path: Path, meta: Dict[str, Any]) -> None:
    """Store frame outputs as golden files: ``<path>.npz`` (arrays) + ``<path>.json`` (meta).

    Semantic masks are kept every ``SEMANTIC_GOLDEN_STRIDE``-th pixel; drivable masks
    bit-packed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: Dict[str, np.ndarray] = {"stamps": np.array([f.stamp_ns for f in frames], np.int64),
                                     "counts": np.array([len(f.scores) for f in frames], np.int64)}
    arrays["boxes"] = (np.concatenate([f.boxes for f in frames], 0) if frames
                       else np.zeros((0, 7), np.float32))
    arrays["scores"] = np.concatenate([f.scores
                                       for f in frames], 0) if frames else np.zeros(0, np.float32)
    labels = [lab for f in frames for lab in f.labels]
    arrays["labels"] = np.array(labels, dtype="U32")
    if frames and all(f.drivable is not None for f in frames):
        arrays["drivable_shape"] = np.array(frames[0].drivable.shape, np.int64)
        arrays["drivable"] = np.stack([np.packbits(f.drivable.ravel()) for f in frames])
    if frames and all(f.semantic is not None for f in frames):
        arrays["semantic"] = np.stack([f.semantic[::SEMANTIC_GOLDEN_STRIDE,
                                                  ::SEMANTIC_GOLDEN_STRIDE]
                                       for f in frames])
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    meta = dict(meta, tolerances=GOLDEN_TOLERANCES, semantic_stride=SEMANTIC_GOLDEN_STRIDE,
                frames=len(frames))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_golden(path: Path) -> Tuple[List[FrameOutput], Dict[str, Any]]:
    """Read golden files written by :func:`write_golden` (semantic stays subsampled)."""
    meta = json.loads(path.with_suffix(".json").read_text())
    z = np.load(path.with_suffix(".npz"))
    frames = []
    off = 0
    for i, (s, n) in enumerate(zip(z["stamps"], z["counts"])):
        n = int(n)
        drv = None
        if "drivable" in z:
            shape = tuple(int(v) for v in z["drivable_shape"])
            drv = (np.unpackbits(z["drivable"][i])[: shape[0] * shape[1]]
                   .reshape(shape).astype(bool))
        sem = z["semantic"][i] if "semantic" in z else None
        frames.append(FrameOutput(int(s), z["boxes"][off:off + n], z["scores"][off:off + n],
                                  [str(x) for x in z["labels"][off:off + n]], drv, sem))
        off += n
    return frames, meta


def compare_outputs(actual: Sequence[FrameOutput], golden: Sequence[FrameOutput],
                    tol: Optional[Dict[str, float]] = None) -> List[str]:
    """Differences between replay outputs and golden outputs beyond the tolerances (empty = match).

    Per frame (matched by stamp): boxes are paired greedily by class and nearest centre; a pair
    must agree within ``center_m``, ``size_m``, ``yaw_rad`` (wrapped to [-pi, pi)) and ``score``;
    an unpaired box is accepted only if its score is within ``near_threshold_score`` of the lowest
    score seen (it sits at the score threshold, where tiny numeric differences flip it), and at
    most max(2, ``near_threshold_fraction`` x boxes) such boxes per frame. Masks: fraction of equal
    cells >= ``drivable_agreement`` / ``semantic_agreement``."""
    tol = dict(GOLDEN_TOLERANCES, **(tol or {}))
    problems: List[str] = []
    a_by = {f.stamp_ns: f for f in actual}
    g_by = {f.stamp_ns: f for f in golden}
    if set(a_by) != set(g_by):
        problems.append(f"frame stamps differ: missing {sorted(set(g_by) - set(a_by))[:5]}, "
                        f"extra {sorted(set(a_by) - set(g_by))[:5]}")
    all_scores = np.concatenate([f.scores for f in list(actual) + list(golden)]
                                + [np.zeros(0, np.float32)])
    floor = float(all_scores.min()) if all_scores.size else 0.0
    for s in sorted(set(a_by) & set(g_by)):
        a, g = a_by[s], g_by[s]
        used = np.zeros(len(a.scores), bool)
        forgiven = 0
        for j in np.argsort(-g.scores):
            cand = [i for i in range(len(a.scores)) if not used[i] and a.labels[i] == g.labels[j]]
            if not cand:
                if g.scores[j] > floor + tol["near_threshold_score"]:
                    problems.append(f"{s}: golden {g.labels[j]} box {g.boxes[j][:3].round(2)} "
                                    f"(score {g.scores[j]:.3f}) not detected")
                else:
                    forgiven += 1
                continue
            d = [float(np.linalg.norm(a.boxes[i][:3] - g.boxes[j][:3])) for i in cand]
            i = cand[int(np.argmin(d))]
            if min(d) > tol["center_m"]:
                if g.scores[j] > floor + tol["near_threshold_score"]:
                    problems.append(f"{s}: {g.labels[j]} centre off by {min(d):.3f} m (> "
                                    f"{tol['center_m']})")
                else:
                    forgiven += 1
                continue
            used[i] = True
            ds = float(np.abs(a.boxes[i][3:6] - g.boxes[j][3:6]).max())
            dyaw = abs(float(normalize_yaw(float(a.boxes[i][6] - g.boxes[j][6]))))
            dsc = abs(float(a.scores[i] - g.scores[j]))
            if ds > tol["size_m"]:
                problems.append(f"{s}: {g.labels[j]} size off by {ds:.3f} m")
            if dyaw > tol["yaw_rad"]:
                problems.append(f"{s}: {g.labels[j]} yaw off by {dyaw:.3f} rad")
            if dsc > tol["score"]:
                problems.append(f"{s}: {g.labels[j]} score off by {dsc:.3f}")
        for i in np.nonzero(~used)[0]:
            if a.scores[i] > floor + tol["near_threshold_score"]:
                problems.append(f"{s}: extra {a.labels[i]} box {a.boxes[i][:3].round(2)} (score "
                                f"{a.scores[i]:.3f})")
            else:
                forgiven += 1
        allowed = max(2, int(tol["near_threshold_fraction"] * max(len(a.scores), len(g.scores))))
        if forgiven > allowed:
            problems.append(f"{s}: {forgiven} unpaired boxes near the score threshold (> "
                            f"{allowed} allowed): centre {tol['center_m']} m not met")
        if a.drivable is not None and g.drivable is not None:
            if a.drivable.shape != g.drivable.shape:
                problems.append(f"{s}: drivable shape {a.drivable.shape} != golden "
                                f"{g.drivable.shape}")
            else:
                agree = float((a.drivable == g.drivable).mean())
                if agree < tol["drivable_agreement"]:
                    problems.append(f"{s}: drivable agreement {agree:.4f} < "
                                    f"{tol['drivable_agreement']}")
        if a.semantic is not None and g.semantic is not None:
            sa = a.semantic
            if sa.shape != g.semantic.shape:
                sa = sa[::SEMANTIC_GOLDEN_STRIDE, ::SEMANTIC_GOLDEN_STRIDE]
            if sa.shape != g.semantic.shape:
                problems.append(f"{s}: semantic shape {sa.shape} != golden {g.semantic.shape}")
            else:
                agree = float((sa == g.semantic).mean())
                if agree < tol["semantic_agreement"]:
                    problems.append(f"{s}: semantic agreement {agree:.4f} < "
                                    f"{tol['semantic_agreement']}")
    return problems


def golden_path_for(bag: Path) -> Path:
    """Golden file stem for a bag: ``test/golden/<bag stem>`` (``.npz`` + ``.json``)."""
    stem = Path(bag).name
    for suf in (".mcap", ".db3"):
        stem = stem[: -len(suf)] if stem.endswith(suf) else stem
    return REPO_ROOT / GOLDEN_DIR / stem


# ====================================================================== CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bev-mtl-ros demo``."""
    parser.add_argument("--bag", default=None, help=f"input recording (default {SAMPLE_BAG})")
    parser.add_argument("--params-file", default=DEFAULT_PARAMS,
                        help=f"node parameters (default {DEFAULT_PARAMS})")
    parser.add_argument("--model", default=None, help="override the node's model_path parameter")
    parser.add_argument("--backend", default=None, help="override the node's backend parameter")
    parser.add_argument("--rate", type=float, default=0.5,
                        help="replay rate (default 0.5: a CPU keeps up)")
    parser.add_argument("--no-pace", action="store_true",
                        help="open loop: do not wait for the node's answer before the next cloud "
                             "(frames are skipped when the node is slower than the replay)")
    parser.add_argument("--synthetic", type=int, default=0, metavar="FRAMES",
                        help="replay a synthetic bag of this many frames (written to "
                             "OUT/synthetic) instead of --bag")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--frames-to-render", type=int, default=3, help="frames rendered to PNG")
    parser.add_argument("--no-sim-time", action="store_true",
                        help="run the node on wall time (no /clock)")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID (default: a free one in 1..101)")
    parser.add_argument("--param", "-p", nargs="+", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter overrides")
    parser.add_argument("--write-golden", action="store_true",
                        help="store the outputs as the regression test's golden files in "
                             f"{GOLDEN_DIR}/")
    parser.add_argument("--ready-timeout", type=float, default=180.0,
                        help="seconds to wait for the node")


def _format_summary(s: Dict[str, Any]) -> str:
    lines = [f"frames in {s['frames_in']}  out {s['frames_out']}  skipped {s['frames_skipped']}  "
             f"backend {s.get('backend')}"]
    for k, v in s["latency_ms"].items():
        if v:
            lines.append(f"  latency {k:<28} p50 {v['p50']:8.1f} ms  p95 {v['p95']:8.1f} ms  max "
                         f"{v['max']:8.1f} ms")
    lines.append("  detections per class: "
                 + (", ".join(f"{k} {v}" for k, v in s["detections_per_class"].items()) or "none"))
    bad = {t: p for t, p in s["per_topic"].items() if p["duplicates"] or p["unknown_stamps"]}
    if bad:
        lines.append(f"  topics with duplicate/unknown stamps: {bad}")
    if s.get("metrics"):
        lines.append("  metrics vs ground truth: " + _format_metrics(s["metrics"]))
    return "\n".join(lines)


def _format_metrics(m: Dict[str, Any]) -> str:
    """One line: mAP per matching criterion, drivable IoU, semantic mIoU (from evaluate_bag's
    report)."""
    if "error" in m:
        return f"n/a ({m['error']})"
    parts = []
    for crit, v in ((m.get("detection") or {}).get("map") or {}).items():
        parts.append(f"mAP {crit} {v:.3f}" if isinstance(v, (int, float)) else f"mAP {crit} {v}")
    d = (m.get("drivable") or {}).get("iou")
    if d is not None:
        parts.append(f"drivable IoU {d:.3f}")
    sm = (m.get("semantic") or {}).get("miou")
    if sm is not None:
        parts.append(f"semantic mIoU {sm:.3f}")
    return ", ".join(parts) or json.dumps(m)[:300]


def main(args: argparse.Namespace) -> int:
    """``bev-mtl-ros demo``: 0 on success, 1 when the replay failed, 2 when inputs are missing."""
    bag = resolve_path(args.bag) if args.bag else find_sample_bag()
    params = resolve_path(args.params_file)
    out = Path(args.out)
    if args.synthetic:
        bag = out / "synthetic"
        if bag.exists():
            shutil.rmtree(bag)
        out.mkdir(parents=True, exist_ok=True)
        make_synthetic_bag(bag, frames=args.synthetic)
    if not bag.exists():
        print(f"demo: sample recording {bag} not found (pass --bag PATH, create one with "
              f"`bev-mtl-ros synth` + `bev-mtl-ros a2d2-to-bag`, or try `--synthetic 10`)",
              file=sys.stderr)
        return 2
    if not params.exists():
        if args.params_file != DEFAULT_PARAMS:
            print(f"demo: node parameters {params} not found (--params-file)", file=sys.stderr)
            return 2
        print(f"[demo] {params} not found: running the node with its built-in defaults",
              file=sys.stderr)
        params = None
    node_params: Dict[str, Any] = {}
    if args.model:
        node_params["model_path"] = str(resolve_path(args.model).resolve())
    if args.backend:
        node_params["backend"] = args.backend
    for p in args.param:
        if ":=" not in p:
            print(f"demo: bad --param {p!r} (NAME:=VALUE)", file=sys.stderr)
            return 2
        k, v = p.split(":=", 1)
        node_params[k] = v
    cfg = ReplayConfig(bag=bag, out_dir=out, params_file=params, rate=args.rate,
                       use_sim_time=not args.no_sim_time,
                       node_params=node_params, domain_id=args.domain_id,
                       ready_timeout_s=args.ready_timeout, pace=not args.no_pace)
    try:
        run = run_replay(cfg)
    except ReplayError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    summary, frames = analyze_recording(bag, run.recording, player_stats=run.player_stats)
    summary["replay"] = {"rate": args.rate, "wall_s": round(run.wall_s, 1),
                         "node_returncode": run.node_returncode,
                         "params_file": str(params), "node_params": node_params}
    model_for_contract = node_params.get("model_path") or str(resolve_path(DEFAULT_MODEL))
    try:
        summary["metrics"] = evaluate_against_ground_truth(bag, run.recording,
                                                           model_path=model_for_contract)
    # metrics are informative here; the regression test checks them strictly
    except Exception as e:
        summary["metrics"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        contract = model_contract(model_for_contract)
    except Exception:   # unreadable model: the node already reported it; render with the defaults
        from bev_mtl_ros.model.contract import ModelContract
        contract = ModelContract()
    summary["renderings"] = render_frames(bag, frames, out, args.frames_to_render,
                                          pc_range=contract.point_cloud_range,
                                          classes=contract.detection_classes)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(_format_summary(summary))
    print(f"[demo] summary: {out / 'summary.json'}; renderings: "
          f"{', '.join(summary['renderings'])}")
    if args.write_golden:
        det = summary["per_topic"][f"/{NODE_NAME}/detections"]
        if det["missing"] or det["duplicates"] or summary["frames_skipped"]:
            print("demo: not writing golden outputs: the replay lost or duplicated frames "
                  f"({det}); use a lower --rate", file=sys.stderr)
            return 1
        gp = golden_path_for(bag)
        model = node_params.get("model_path") or str(resolve_path(DEFAULT_MODEL))
        meta = {"bag": os.path.relpath(bag, REPO_ROOT), "bag_sha256": file_sha256(bag),
                "model": os.path.relpath(model, REPO_ROOT) if os.path.isabs(model) else model,
                "model_sha256": file_sha256(Path(model)) if Path(model).exists() else None,
                "backend": summary.get("backend"), "params_file": str(args.params_file),
                "command": "scripts/update_golden.sh"}
        write_golden(frames, gp, meta)
        print(f"[demo] golden outputs written: {gp}.npz / {gp}.json")
    return 0 if summary["frames_out"] > 0 else 1


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros demo")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
