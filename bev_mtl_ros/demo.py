"""``bev-mtl-ros demo``: replay the sample recording through the perception node and show it.

What runs (three separate processes talking over DDS, as on a vehicle; see
:mod:`bev_mtl_ros.ros.replay`):

1. ``bev-mtl-ros record`` - records the node's outputs and the input cloud (for end-to-end
   latency);
2. ``perception_node --ros-args --params-file config/perception.yaml -p use_sim_time:=true``;
3. ``bev-mtl-ros play SAMPLE_BAG --clock --rate R`` once the node and recorder are matched.

All three get :func:`bev_mtl_ros.dds.dds_environment` (the shared-memory large-data Fast DDS
profile) plus an isolated ``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``.

Then the recording is analysed (:func:`bev_mtl_ros.ros.recording.analyze_recording`): frames
in/out, frames skipped, duplicates, end-to-end latency (cloud received -> detections received,
both by the recorder) and the node's own per-stage latency (from ``~/debug/processing_time_ms``),
backend, detections per class, and metrics against the bag's ground truth
(:func:`bev_mtl_ros.train.evaluate.evaluate_bag`); printed and written to
``out/demo/summary.json``. A few frames are rendered (:mod:`bev_mtl_ros.viz`) to
``out/demo/frame_<k>_camera.png`` (image + semantic overlay + projected boxes) and
``frame_<k>_bev.png`` (points, drivable area, predicted and ground-truth boxes, bird's-eye view).

``--write-golden`` stores the outputs as the replay regression test's golden files
(``test/golden/``, :func:`bev_mtl_ros.ros.recording.write_golden`); the test compares new replays
to them within stated tolerances.
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
from bev_mtl_ros.ros.replay import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, LIDAR_TOPIC, NODE_NAME,
                                    ReplayConfig, ReplayError, ReplayRun, run_replay)
from bev_mtl_ros.train.evaluate import GT_BOXES_TOPIC, evaluate_bag, model_contract
from bev_mtl_ros.viz import render_bev, render_camera

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the committed sample recording replayed by ``make demo`` (rosbag2 directory, relative to the
#: repository root)
SAMPLE_BAG = "test/data/sample_a2d2"
#: other places the sample may be committed (a rosbag2 directory as written by a2d2-to-bag)
SAMPLE_BAG_ALTERNATIVES = ("test/data/sample_a2d2.mcap", "test/data/sample_a2d2.db3",
                           "test/data/sample")
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


def render_frames(input_bag: Path, frames: Sequence[FrameOutput], out_dir: Path, count: int = 3,
                  pc_range: Optional[Sequence[float]] = None,
                  classes: Sequence[str] = ()) -> List[str]:
    """Write ``frame_<k>_bev.png`` and ``frame_<k>_camera.png`` for ``count`` evenly spaced frames.

    The image paired with a cloud is the bag's image with the nearest header stamp; intrinsics from
    the bag's CameraInfo ``k``; ground-truth boxes from the bag. Returns the written paths.
    """
    import cv2

    if not frames:
        return []
    pc_range = pc_range or ModelContract().point_cloud_range
    sel = sorted({int(round(i)) for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))})
    wanted = {frames[i].stamp_ns for i in sel}
    data = read_topics(input_bag, [LIDAR_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC, GT_BOXES_TOPIC])
    clouds = {stamp_ns(m): m for _, m in data[LIDAR_TOPIC] if stamp_ns(m) in wanted}
    images = [(stamp_ns(m), m) for _, m in data[IMAGE_TOPIC]]
    K = (np.asarray(data[CAMERA_INFO_TOPIC][0][1].k, np.float64).reshape(3, 3)
         if data[CAMERA_INFO_TOPIC] else None)
    gt = {stamp_ns(m): detections_to_arrays(m)[0] for _, m in data[GT_BOXES_TOPIC]}
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
            _, m_img = min(images, key=lambda sm: abs(sm[0] - f.stamp_ns))
            cam = render_camera(image_to_array(m_img), K, f.boxes, f.labels, f.scores, f.semantic,
                                classes, gt_boxes=g)
            p = out_dir / f"frame_{k}_camera.png"
            cv2.imwrite(str(p), cam)
            written.append(str(p))
    return written


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``bev-mtl-ros demo``."""
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


def _input_bag(args: argparse.Namespace, out: Path) -> Path:
    """Return the bag to replay: ``--synthetic`` (written now), ``--bag`` or the sample."""
    bag = resolve_path(args.bag) if args.bag else find_sample_bag()
    if args.synthetic:
        bag = out / "synthetic"
        if bag.exists():
            shutil.rmtree(bag)
        out.mkdir(parents=True, exist_ok=True)
        make_synthetic_bag(bag, frames=args.synthetic)
    if not bag.exists():
        raise _Abort(f"sample recording {bag} not found (pass --bag PATH, create one with "
                     f"`bev-mtl-ros synth` + `bev-mtl-ros a2d2-to-bag`, or try `--synthetic 10`)",
                     2)
    return bag


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
               replay_facts: Dict[str, Any]
               ) -> Tuple[Dict[str, Any], List[FrameOutput]]:
    """Analyse the recording, score it against the ground truth and render frames.

    Returns (summary, frames); the summary is also written to ``OUT/summary.json``.
    """
    out = Path(args.out)
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
    summary["renderings"] = render_frames(bag, frames, out, args.frames_to_render,
                                          pc_range=contract.point_cloud_range,
                                          classes=contract.detection_classes)
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


def main(args: argparse.Namespace) -> int:
    """Run ``bev-mtl-ros demo``: 0 on success, 1 when the replay failed, 2 for missing inputs."""
    out = Path(args.out)
    try:
        bag = _input_bag(args, out)
        params = _params_file(args)
        node_params = _node_params(args)
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
            "node_params": node_params})
        print(_format_summary(summary))
        print(f"[demo] summary: {out / 'summary.json'}; renderings: "
              f"{', '.join(summary['renderings'])}")
        if args.write_golden:
            _store_golden(args, bag, model, summary, frames)
    except _Abort as e:
        print(f"demo: {e}", file=sys.stderr)
        return e.code
    return 0 if summary["frames_out"] > 0 else 1


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="bev-mtl-ros demo")
    add_arguments(_p)
    sys.exit(main(_p.parse_args()))
