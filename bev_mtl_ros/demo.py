"""``bev-mtl-ros demo``: replay the committed recordings through the perception node and show them.

Two recordings by default, one after the other (``--bag`` picks others):

* :data:`SAMPLE_BAG` - the synthetic sample (20 frames of one generated scene, 480x302 camera,
  rectified images): what the model was trained on, with complete ground truth (boxes for every
  object), so its metrics are meaningful;
* :data:`REAL_BAG` - ten real A2D2 front-center frames of nine drives (1920x1208 camera PNGs as
  recorded, decoded by the player, undistorted by the node through the raw CameraInfo; clouds in
  ``base_link`` brought into the model frame by the node's TF): the node on real input, every
  frame rendered.

What runs for each (three separate processes talking over DDS, as on a vehicle; see
:mod:`bev_mtl_ros.ros.replay`):

1. ``bev-mtl-ros record`` - records the node's outputs and the input cloud (for end-to-end
   latency);
2. ``perception_node --ros-args --params-file config/perception.yaml -p use_sim_time:=true``;
3. ``bev-mtl-ros play BAG --clock --rate R`` once the node and recorder are matched
   (``--decompress-images`` for a bag of CompressedImages).

All three get :func:`bev_mtl_ros.dds.dds_environment` (the shared-memory large-data Fast DDS
profile) plus an isolated ``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``.

Then the recording is analysed (:func:`bev_mtl_ros.ros.recording.analyze_recording`): frames
in/out, frames skipped, duplicates, end-to-end latency (cloud received -> detections received,
both by the recorder) and the node's own per-stage latency (from ``~/debug/processing_time_ms``),
backend, detections per class, and metrics against the bag's ground truth
(:func:`bev_mtl_ros.train.evaluate.evaluate_bag`); printed and written to
``out/demo/<bag>/summary.json`` (``out/demo/summary.json`` lists every bag's). Frames are rendered
(:mod:`bev_mtl_ros.viz`) to ``out/demo/<bag>/frame_<k>_camera.png`` (undistorted image + semantic
overlay + projected boxes) and ``frame_<k>_bev.png`` (points in the model frame, drivable area,
predicted and ground-truth boxes, bird's-eye view): three of the sample, all of the real
recording.

``--write-golden`` stores each bag's outputs as the replay regression test's golden files
(``test/golden/<bag>.{npz,json}``, :func:`bev_mtl_ros.ros.recording.write_golden`); the test
compares new replays to them within stated tolerances.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.bag_io import (cloud_to_array, detections_to_arrays, image_to_array,
                                     read_topics, stamp_ns)
from bev_mtl_ros.data.synth_scan import make_synthetic_bag
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.ros.recording import FrameOutput, analyze_recording, file_sha256, write_golden
from bev_mtl_ros.ros.camera import ImageRectifier
from bev_mtl_ros.ros.replay import (CAMERA_INFO_TOPIC, LIDAR_TOPIC, NODE_NAME, ReplayConfig,
                                    ReplayError, ReplayRun, bag_inputs, run_replay)
from bev_mtl_ros.ros.tf import TransformBuffer, TransformError, transform_points
from bev_mtl_ros.train.evaluate import GT_BOXES_TOPIC, evaluate_bag, model_contract
from bev_mtl_ros.viz import render_bev, render_camera

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the committed sample recording replayed by ``make demo`` (rosbag2 directory, relative to the
#: repository root)
SAMPLE_BAG = "test/data/sample_a2d2"
#: other places the sample may be committed (a rosbag2 directory as written by a2d2-to-bag)
SAMPLE_BAG_ALTERNATIVES = ("test/data/sample_a2d2.mcap", "test/data/sample_a2d2.db3",
                           "test/data/sample")
#: the committed real recording (ten A2D2 frames; test/data/real_a2d2_bag/README.md), replayed
#: after the sample; every frame of it is rendered
REAL_BAG = "test/data/real_a2d2_bag"
#: frames rendered of a bag other than the real recording
DEFAULT_RENDER = 3
#: node parameters used by the demo and by launch/perception.launch.py
DEFAULT_PARAMS = "config/perception.yaml"
DEFAULT_MODEL = "models/bev_mtl_default.onnx"
DEFAULT_OUT = "out/demo"
GOLDEN_DIR = "test/golden"


class _Abort(Exception):
    """A demo step cannot go on: the message (for stderr) and the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def find_sample_bag() -> Path:
    """Return the committed sample recording (absolute path).

    :data:`SAMPLE_BAG` or the first existing alternative (:data:`SAMPLE_BAG_ALTERNATIVES`),
    relative to the repository root; SAMPLE_BAG when none exists.
    """
    for rel in (SAMPLE_BAG,) + SAMPLE_BAG_ALTERNATIVES:
        if (REPO_ROOT / rel).exists():
            return REPO_ROOT / rel
    return REPO_ROOT / SAMPLE_BAG


def resolve_path(p: str | os.PathLike) -> Path:
    """Return a path as given if it exists (or is absolute), else relative to the repository root.

    So the demo works from any working directory.
    """
    q = Path(p)
    if q.exists() or q.is_absolute():
        return q
    return REPO_ROOT / q


def golden_path_for(bag: Path) -> Path:
    """Return the golden file stem of a bag: ``test/golden/<bag stem>`` (``.npz`` + ``.json``)."""
    stem = Path(bag).name
    for suf in (".mcap", ".db3"):
        stem = stem[: -len(suf)] if stem.endswith(suf) else stem
    return REPO_ROOT / GOLDEN_DIR / stem


def _contract(model_path: Optional[str | os.PathLike]) -> ModelContract:
    """Return the model file's contract; the default contract when the path is None/missing."""
    if not model_path or not Path(model_path).exists():
        return ModelContract()
    return model_contract(str(model_path))


def evaluate_against_ground_truth(input_bag: Path, recording: Path,
                                  node_name: str = NODE_NAME,
                                  model_path: Optional[str | os.PathLike] = None
                                  ) -> Dict[str, Any]:
    """Return the metrics of the recorded outputs against the input bag's ground truth.

    :func:`bev_mtl_ros.train.evaluate.evaluate_bag` on the node's ``~/detections`` and
    ``~/semantic`` topics, matched by header stamp, as JSON-compatible data (NaN stays NaN).
    ``model_path`` supplies the contract (classes, ranges; the default contract when missing).

    Raises:
        ValueError when the input bag has no ground-truth boxes (from ``evaluate_bag``).
    """
    result = evaluate_bag(str(recording), _contract(model_path), gt_bag=str(input_bag),
                          detections_topic=f"/{node_name}/detections",
                          semantic_topic=f"/{node_name}/semantic")
    result = {k: v for k, v in result.items() if not str(k).startswith("_")}
    return json.loads(json.dumps(result, default=lambda o: o.tolist()
                                 if isinstance(o, (np.ndarray, np.generic)) else str(o)))


def _cloud_in_frame(msg, target: str, tf: TransformBuffer) -> Optional[np.ndarray]:
    """Return a cloud's (N, 3) float32 points in frame ``target`` via the bag's ``/tf_static``.

    None (the BEV is drawn without points) when TF has no transform between the two frames.
    """
    pts = cloud_to_array(msg)
    source = str(msg.header.frame_id)
    if source == target:
        return pts
    try:
        T = tf.lookup(target, source)
    except TransformError as e:
        print(f"[demo] cloud not drawn: no transform {source} -> {target} ({e})", file=sys.stderr)
        return None
    return transform_points(pts, T).astype(np.float32)


def render_frames(input_bag: Path, frames: Sequence[FrameOutput], out_dir: Path,
                  count: Optional[int] = 3, pc_range: Optional[Sequence[float]] = None,
                  classes: Sequence[str] = (), frame_id: str = ModelContract().frame_id
                  ) -> List[str]:
    """Write ``frame_<k>_bev.png`` and ``frame_<k>_camera.png`` for ``count`` evenly spaced frames.

    ``count`` None renders every frame. The image paired with a cloud is the bag's image (Image or
    CompressedImage, :func:`~bev_mtl_ros.ros.replay.bag_inputs`) with the nearest header stamp,
    undistorted through the bag's CameraInfo as the node does it
    (:class:`~bev_mtl_ros.ros.camera.ImageRectifier`: K, D -> P) and drawn with the resulting
    intrinsics; clouds are brought into the detections' frame ``frame_id`` (the model's) with the
    bag's ``/tf_static``; ground-truth boxes from the bag. Returns the written paths.
    """
    import cv2

    if not frames:
        return []
    pc_range = pc_range or ModelContract().point_cloud_range
    count = len(frames) if count is None else count
    sel = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))})
    wanted = {frames[i].stamp_ns for i in sel}
    image_topic = bag_inputs(Path(input_bag)).bag_image
    data = read_topics(input_bag, [LIDAR_TOPIC, image_topic, CAMERA_INFO_TOPIC, GT_BOXES_TOPIC,
                                   "/tf_static"])
    tf = TransformBuffer()
    for _, m in data["/tf_static"]:
        tf.add_message(m, static=True)
    clouds = {stamp_ns(m): m for _, m in data[LIDAR_TOPIC] if stamp_ns(m) in wanted}
    images = [(stamp_ns(m), m) for _, m in data[image_topic] if stamp_ns(m) in wanted]
    rectifier = ImageRectifier()
    if data[CAMERA_INFO_TOPIC]:
        rectifier.update(data[CAMERA_INFO_TOPIC][0][1])
    gt = {stamp_ns(m): detections_to_arrays(m)[0] for _, m in data[GT_BOXES_TOPIC]}
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(sel):
        f = frames[i]
        pts = _cloud_in_frame(clouds[f.stamp_ns], frame_id, tf) if f.stamp_ns in clouds else None
        g = gt.get(f.stamp_ns)
        bev = render_bev(pts, pc_range, f.boxes, f.labels, f.drivable, g, classes)
        cv2.putText(bev, f"stamp {f.stamp_ns / 1e9:.2f} s  {len(f.scores)} detections (GT white)",
                    (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        p = out_dir / f"frame_{k}_bev.png"
        cv2.imwrite(str(p), bev)
        written.append(str(p))
        if images and rectifier.info is not None:
            _, m_img = min(images, key=lambda sm: abs(sm[0] - f.stamp_ns))
            rect = rectifier.rectify(image_to_array(m_img))
            cam = render_camera(rect.image, rect.camera_matrix, f.boxes, f.labels, f.scores,
                                f.semantic, classes, gt_boxes=g)
            p = out_dir / f"frame_{k}_camera.png"
            cv2.imwrite(str(p), cam)
            written.append(str(p))
    return written


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``bev-mtl-ros demo``."""
    parser.add_argument("--bag", action="append", default=None,
                        help=f"input recording; repeat for several (default: {SAMPLE_BAG}, then "
                             f"{REAL_BAG})")
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
                             "OUT/synthetic.bag) instead of --bag")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--frames-to-render", type=int, default=None,
                        help=f"frames rendered to PNG per bag (default {DEFAULT_RENDER}; every "
                             f"frame of {REAL_BAG})")
    parser.add_argument("--no-sim-time", action="store_true",
                        help="run the node on wall time (no /clock)")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID (default: a free one in 1..101)")
    parser.add_argument("--param", "-p", action="extend", nargs="+", default=[],
                        metavar="NAME:=VALUE",
                        help="extra node parameter overrides (several after one --param, or "
                             "--param repeated)")
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
    """Return one line: mAP per criterion, drivable IoU, semantic mIoU (from evaluate_bag)."""
    if "error" in m:
        return f"n/a ({m['error']})"
    parts = []
    for crit, v in ((m.get("detection") or {}).get("map") or {}).items():
        parts.append(f"mAP {crit} {v:.3f}" if isinstance(v, (int, float)) else f"mAP {crit} {v}")
    d = (m.get("drivable") or {}).get("iou")
    if d is not None:
        parts.append(f"drivable IoU {d:.3f}" if math.isfinite(d)
                     else "drivable IoU n/a (no BEV drivable ground truth in the recording)")
    sm = (m.get("semantic") or {}).get("miou")
    if sm is not None:
        parts.append(f"semantic mIoU {sm:.3f}")
    return ", ".join(parts) or json.dumps(m)[:300]


def _input_bags(args: argparse.Namespace, out: Path) -> List[Path]:
    """Return the bags to replay.

    ``--synthetic`` (written now), the ``--bag`` ones, or the sample and the real recording.

    Raises:
        _Abort (exit 2) naming a bag that does not exist.
    """
    if args.synthetic:
        bag = out / "synthetic.bag"
        if bag.exists():
            shutil.rmtree(bag)
        out.mkdir(parents=True, exist_ok=True)
        make_synthetic_bag(bag, frames=args.synthetic)
        return [bag]
    bags = ([resolve_path(b) for b in args.bag] if args.bag
            else [find_sample_bag(), resolve_path(REAL_BAG)])
    for bag in bags:
        if not bag.exists():
            raise _Abort(f"recording {bag} not found (pass --bag PATH, create one with "
                         "`bev-mtl-ros synth` + `bev-mtl-ros a2d2-to-bag`, or try "
                         "`--synthetic 10`)", 2)
    return bags


def bag_name(bag: Path) -> str:
    """Return a bag's name without ``.mcap`` / ``.db3`` / ``.bag`` (its output folder's name)."""
    name = Path(bag).name
    for suf in (".mcap", ".db3", ".bag"):
        name = name[: -len(suf)] if name.endswith(suf) else name
    return name


def is_real_recording(bag: Path) -> bool:
    """Return True for the committed real recording (:data:`REAL_BAG`)."""
    return Path(bag).resolve() == resolve_path(REAL_BAG).resolve()


def _params_file(args: argparse.Namespace) -> Optional[Path]:
    """Return the node's parameters file; None (built-in defaults) when the default one is gone."""
    params = resolve_path(args.params_file)
    if params.exists():
        return params
    if args.params_file != DEFAULT_PARAMS:
        raise _Abort(f"node parameters {params} not found (--params-file)", 2)
    print(f"[demo] {params} not found: running the node with its built-in defaults",
          file=sys.stderr)
    return None


def _node_params(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the node parameter overrides of ``--model``, ``--backend`` and ``--param``."""
    node_params: Dict[str, Any] = {}
    if args.model:
        node_params["model_path"] = str(resolve_path(args.model).resolve())
    if args.backend:
        node_params["backend"] = args.backend
    for p in args.param:
        if ":=" not in p:
            raise _Abort(f"bad --param {p!r} (NAME:=VALUE)", 2)
        k, v = p.split(":=", 1)
        node_params[k] = v
    return node_params


def _summarise(args: argparse.Namespace, bag: Path, run: ReplayRun, model: str,
               replay_facts: Dict[str, Any], out: Path
               ) -> Tuple[Dict[str, Any], List[FrameOutput]]:
    """Analyse the recording, score it against the ground truth and render frames into ``out``.

    Returns (summary, frames); the summary is also written to ``out/summary.json``.
    """
    summary, frames = analyze_recording(bag, run.recording, player_stats=run.player_stats)
    summary["replay"] = replay_facts
    try:
        summary["metrics"] = evaluate_against_ground_truth(bag, run.recording, model_path=model)
    # metrics are informative here; the regression test checks them strictly
    except Exception as e:
        summary["metrics"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        contract = _contract(model)
    except Exception:   # unreadable model: the node already reported it; render with the defaults
        contract = ModelContract()
    count = args.frames_to_render
    if count is None:
        count = None if is_real_recording(bag) else DEFAULT_RENDER
    summary["renderings"] = render_frames(bag, frames, out, count,
                                          pc_range=contract.point_cloud_range,
                                          classes=contract.detection_classes,
                                          frame_id=contract.frame_id)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary, frames


def _store_golden(args: argparse.Namespace, bag: Path, model: str, summary: Dict[str, Any],
                  frames: Sequence[FrameOutput]) -> None:
    """Write the golden files of a clean replay (none lost, duplicated or skipped)."""
    det = summary["per_topic"][f"/{NODE_NAME}/detections"]
    if det["missing"] or det["duplicates"] or summary["frames_skipped"]:
        raise _Abort("not writing golden outputs: the replay lost or duplicated frames "
                     f"({det}); use a lower --rate", 1)
    gp = golden_path_for(bag)
    meta = {"bag": os.path.relpath(bag, REPO_ROOT), "bag_sha256": file_sha256(bag),
            "model": os.path.relpath(model, REPO_ROOT) if os.path.isabs(model) else model,
            "model_sha256": file_sha256(Path(model)) if Path(model).exists() else None,
            "backend": summary.get("backend"), "params_file": str(args.params_file),
            "command": "scripts/update_golden.sh"}
    write_golden(frames, gp, meta)
    print(f"[demo] golden outputs written: {gp}.npz / {gp}.json")


def _replay_one(args: argparse.Namespace, bag: Path, out: Path, params: Optional[Path],
                node_params: Dict[str, Any]) -> Dict[str, Any]:
    """Replay one bag into ``out``, summarise, render and (``--write-golden``) store goldens.

    Returns the summary. Raises _Abort (exit 1) when the replay failed.
    """
    cfg = ReplayConfig(bag=bag, out_dir=out, params_file=params, rate=args.rate,
                       use_sim_time=not args.no_sim_time,
                       node_params=node_params, domain_id=args.domain_id,
                       ready_timeout_s=args.ready_timeout, pace=not args.no_pace)
    try:
        run = run_replay(cfg)
    except ReplayError as e:
        raise _Abort(str(e), 1) from None
    model = node_params.get("model_path") or str(resolve_path(DEFAULT_MODEL))
    summary, frames = _summarise(args, bag, run, model, {
        "rate": args.rate, "wall_s": round(run.wall_s, 1),
        "node_returncode": run.node_returncode, "params_file": str(params),
        "node_params": node_params}, out)
    print(f"[demo] {bag}:")
    print(_format_summary(summary))
    print(f"[demo] summary: {out / 'summary.json'}; {len(summary['renderings'])} renderings in "
          f"{out}")
    if args.write_golden:
        _store_golden(args, bag, model, summary, frames)
    return summary


def main(args: argparse.Namespace) -> int:
    """Run ``bev-mtl-ros demo`` on each bag.

    Returns 0 on success, 1 when a replay failed or answered no frame, 2 for missing inputs.
    """
    out = Path(args.out)
    summaries: Dict[str, Any] = {}
    try:
        bags = _input_bags(args, out)
        params = _params_file(args)
        node_params = _node_params(args)
        for bag in bags:
            s = _replay_one(args, bag, out / bag_name(bag), params, node_params)
            summaries[os.path.relpath(bag, REPO_ROOT)] = {
                "summary": str(out / bag_name(bag) / "summary.json"),
                "frames_in": s["frames_in"], "frames_out": s["frames_out"],
                "frames_skipped": s["frames_skipped"],
                "detections_total": s["detections_total"], "metrics": s.get("metrics")}
    except _Abort as e:
        print(f"demo: {e}", file=sys.stderr)
        return e.code
    (out / "summary.json").write_text(json.dumps(summaries, indent=2, default=str) + "\n")
    print(f"[demo] all bags: {out / 'summary.json'}")
    return 0 if all(v["frames_out"] > 0 for v in summaries.values()) else 1


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros demo")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
