"""Analysis of a replay's recording: the node's outputs per frame, counts and latencies.

A replay (:func:`bev_mtl_ros.ros.replay.run_replay`) records the node's outputs and the input
clouds over DDS; :func:`analyze_recording` matches them to the input bag's lidar frames (by
header stamp) and summarises them: frames in/out, skipped and duplicated frames per output topic,
end-to-end latency (cloud received -> detections received, both by the recorder), the node's own
per-stage latency (``~/debug/processing_time_ms``), its last diagnostics, detections per class.
The per-frame outputs come back as :class:`FrameOutput` (decoded with
:mod:`bev_mtl_ros.data.bag_io`).

Golden files (the replay regression test's reference outputs, written by ``bev-mtl-ros demo
--write-golden``) store a list of :class:`FrameOutput`: :func:`write_golden`, :func:`load_golden`,
with the comparison tolerances :data:`GOLDEN_TOLERANCES` stored next to them.

ROS-free (reads bags with ``rosbags``), like the replay harness.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from bev_mtl_ros.data.bag_io import detections_to_arrays, image_to_array, read_topics, stamp_ns
from bev_mtl_ros.ros.replay import (LIDAR_TOPIC, NODE_NAME, PER_FRAME_SUFFIXES, bag_inputs,
                                    output_topics)

#: a semantic mask is paired with the lidar frame whose stamp is nearest within this (ns): its
#: header carries the camera image's stamp, the other outputs the cloud's
SEMANTIC_PAIRING_NS = 50_000_000

Recording = Dict[str, List[Tuple[int, Any]]]


@dataclass
class FrameOutput:
    """The node's outputs for one lidar frame (keyed by the cloud's header stamp).

    Attributes:
        stamp_ns: the cloud's header stamp, ns.
        boxes: (N, 7) float32 [x, y, z, l, w, h, yaw] in the detections' frame (m, rad).
        scores: (N,) float32.
        labels: N class names.
        drivable: (grid_h, grid_w) bool, row = iy, col = ix; None when not recorded.
        semantic: (H, W) uint8 class ids; None when not recorded.
        latency_ms: cloud received -> detections received by the recorder; None when the
            cloud was not recorded.
    """

    stamp_ns: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: List[str]
    drivable: Optional[np.ndarray] = None
    semantic: Optional[np.ndarray] = None
    latency_ms: Optional[float] = None


def _percentiles(values: Sequence[Optional[float]]) -> Dict[str, float]:
    """Return {n, p50, p95, max, mean} (rounded to 0.01) of the finite values; {} when none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {}
    return {"n": int(v.size), "p50": round(float(np.percentile(v, 50)), 2),
            "p95": round(float(np.percentile(v, 95)), 2),
            "max": round(float(v.max()), 2), "mean": round(float(v.mean()), 2)}


def _diagnostic_values(diag_msgs: Sequence[Any],
                       node_name: str) -> Tuple[Dict[str, List[float]], Dict[str, str]]:
    """Collect the key/values of the node's DiagnosticStatus entries.

    Returns:
        (key -> numeric values over time, key -> last raw value).
    """
    series: Dict[str, List[float]] = {}
    last: Dict[str, str] = {}
    for msg in diag_msgs:
        for st in msg.status:
            if node_name not in st.name and node_name not in st.hardware_id:
                continue
            for kv in st.values:
                last[kv.key] = kv.value
                try:
                    series.setdefault(kv.key, []).append(float(kv.value))
                except ValueError:
                    pass
    return series, last


def _topic_counts(rec: Recording, ns: str, cloud_stamps: Set[int],
                  image_stamps: Set[int]) -> Dict[str, Dict[str, int]]:
    """Per per-frame output topic: messages, distinct stamps, duplicates, unknown, missing.

    Semantic outputs carry the camera image's header, the others the cloud's.
    """
    per_topic: Dict[str, Dict[str, int]] = {}
    for suffix in PER_FRAME_SUFFIXES:
        topic = f"{ns}/{suffix}"
        stamps = [stamp_ns(m) for _, m in rec.get(topic, [])]
        distinct = set(stamps) - {None}
        ref = image_stamps if suffix.startswith("semantic") else cloud_stamps
        per_topic[topic] = {"messages": len(stamps), "distinct_stamps": len(distinct),
                            "duplicates": len(stamps) - len(distinct),
                            "unknown_stamps": len(distinct - ref),
                            "missing": len(ref - distinct)}
    return per_topic


def _frame_outputs(rec: Recording, ns: str) -> List[FrameOutput]:
    """Decode the first detections, drivable mask and semantic mask of every answered frame.

    Frames are keyed by the detections' stamp; the end-to-end latency is the recorder's receive
    time of the detections minus that of the cloud. Returns the frames sorted by stamp.
    """
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
    for _, m in rec.get(f"{ns}/drivable_area", []):
        s = stamp_ns(m)
        if s in frames and frames[s].drivable is None:
            frames[s].drivable = image_to_array(m) > 127
    frame_stamps = np.array(sorted(frames), dtype=np.int64)
    for _, m in rec.get(f"{ns}/semantic", []):
        s = stamp_ns(m)
        if s not in frames and frame_stamps.size:
            j = int(np.argmin(np.abs(frame_stamps - s)))
            s = int(frame_stamps[j]) if abs(int(frame_stamps[j]) - s) <= SEMANTIC_PAIRING_NS else s
        if s in frames and frames[s].semantic is None:
            frames[s].semantic = image_to_array(m)
    return [frames[s] for s in sorted(frames)]


def _stage_latencies(rec: Recording, ns: str) -> Dict[str, List[float]]:
    """Return ``node_<stage>`` -> ms per frame from ``~/debug/processing_time_ms``.

    The stage names are the comma-separated label of the array's first layout dimension
    (``total`` when it has none).
    """
    stages: Dict[str, List[float]] = {}
    for _, m in rec.get(f"{ns}/debug/processing_time_ms", []):
        data = np.atleast_1d(np.asarray(m.data, np.float64))
        dims = m.layout.dim
        names = dims[0].label.split(",") if dims else ["total"]
        for name, v in zip(names, data):
            stages.setdefault(f"node_{name.strip()}", []).append(float(v))
    return stages


def analyze_recording(input_bag: Path, recording: Path, node_name: str = NODE_NAME,
                      player_stats: Optional[Dict[str, Any]] = None
                      ) -> Tuple[Dict[str, Any], List[FrameOutput]]:
    """Match the node's recorded outputs to the input bag's lidar frames and summarise.

    Args:
        input_bag: the replayed rosbag2.
        recording: the replay's recording (outputs of :func:`output_topics` and the input cloud).
        node_name: the node's name (output namespace).
        player_stats: the player's ``--stats-json`` (clouds published, loops), when known.
    Returns:
        (summary dict, frame outputs sorted by stamp). Summary keys: frames_in (clouds published by
        the player, else in the bag), frames_out (distinct cloud stamps answered on ~/detections),
        frames_skipped, per_topic {topic: {messages, distinct_stamps, duplicates,
        unknown_stamps, missing}}, latency_ms {end_to_end, node_<stage>...: {n, p50, p95, max,
        mean}}, backend, detections_per_class, diagnostics_last (last values).
    """
    ns = f"/{node_name}"
    image_topic = bag_inputs(Path(input_bag)).bag_image
    inp = read_topics(input_bag, [LIDAR_TOPIC, image_topic])
    in_stamps = [stamp_ns(m) for _, m in inp[LIDAR_TOPIC]]
    img_stamps = {stamp_ns(m) for _, m in inp[image_topic]}
    del inp
    rec = read_topics(recording, list(output_topics(node_name)) + [LIDAR_TOPIC])
    frames_in = int((player_stats or {}).get("published", {}).get(LIDAR_TOPIC, len(in_stamps)))
    per_topic = _topic_counts(rec, ns, set(in_stamps), img_stamps)
    frames = _frame_outputs(rec, ns)
    _, diag_last = _diagnostic_values([m for _, m in rec.get("/diagnostics", [])], node_name)
    latency: Dict[str, Any] = {"end_to_end": _percentiles([f.latency_ms for f in frames])}
    latency.update({k: _percentiles(v) for k, v in _stage_latencies(rec, ns).items()})
    per_class: Dict[str, int] = {}
    for f in frames:
        for lab in f.labels:
            per_class[lab] = per_class.get(lab, 0) + 1
    summary = {
        "input_bag": str(input_bag), "recording": str(recording),
        "frames_in": frames_in, "frames_in_bag": len(in_stamps),
        "loops": int((player_stats or {}).get("loops", 1) or 1),
        "frames_out": len(frames),
        "frames_skipped": frames_in - per_topic[f"{ns}/detections"]["messages"],
        "node_reported_skipped": {k: diag_last[k] for k in ("skipped_frames",) if k in diag_last},
        "per_topic": per_topic, "latency_ms": latency,
        "backend": diag_last.get("backend"),
        "detections_per_class": dict(sorted(per_class.items())),
        "detections_total": int(sum(per_class.values())),
        "diagnostics_last": diag_last,
        "player": player_stats or {},
    }
    return summary, frames


# ---------------------------------------------------------------------------------------- golden
#: tolerances of the replay regression test's comparison with the golden outputs (documented in
#: test/golden/README.md); stored in the golden files' metadata
GOLDEN_TOLERANCES = {"center_m": 0.05, "size_m": 0.05, "yaw_rad": 0.03, "score": 0.02,
                     "drivable_agreement": 0.995, "semantic_agreement": 0.99,
                     "near_threshold_score": 0.05, "near_threshold_fraction": 0.05}
#: golden semantic masks keep every SEMANTIC_GOLDEN_STRIDE-th pixel in both directions
SEMANTIC_GOLDEN_STRIDE = 4


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file, or of a bag directory's files in name order.

    A directory's documentation (``*.md``, e.g. a committed bag's README) is not part of it, so
    editing a README does not invalidate the golden outputs made from the bag.
    """
    h = hashlib.sha256()
    p = Path(path)
    files = (sorted(q for q in p.rglob("*") if q.is_file() and q.suffix != ".md") if p.is_dir()
             else [p])
    for q in files:
        with open(q, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_golden(frames: Sequence[FrameOutput], path: Path, meta: Dict[str, Any]) -> None:
    """Store frame outputs as golden files: ``<path>.npz`` (arrays) + ``<path>.json`` (meta).

    Semantic masks are kept every :data:`SEMANTIC_GOLDEN_STRIDE`-th pixel; drivable masks are
    bit-packed. The metadata gets the tolerances, the stride and the frame count added.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: Dict[str, np.ndarray] = {"stamps": np.array([f.stamp_ns for f in frames], np.int64),
                                     "counts": np.array([len(f.scores) for f in frames], np.int64)}
    arrays["boxes"] = (np.concatenate([f.boxes for f in frames], 0) if frames
                       else np.zeros((0, 7), np.float32))
    arrays["scores"] = (np.concatenate([f.scores for f in frames], 0) if frames
                        else np.zeros(0, np.float32))
    arrays["labels"] = np.array([lab for f in frames for lab in f.labels], dtype="U32")
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
    """Read golden files written by :func:`write_golden`: (frames, meta).

    Semantic masks stay subsampled (:data:`SEMANTIC_GOLDEN_STRIDE`).
    """
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
