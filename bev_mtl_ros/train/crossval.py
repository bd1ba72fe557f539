"""``bev-mtl-ros crossval``: leave-one-drive-out cross-validation on real A2D2 frames.

The project's one real-data measure. A folder of real A2D2 frames (flat, A2D2 file names
``<drive>_<modality>_<camera>_<frame>.<ext>``, e.g. ``test/data/real_a2d2``) is split by *drive*
(the 14-digit recording stamp that starts every file name), not by frame: two frames of one drive
share streets, light and weather, so a frame-level split would score a model on a drive it was
trained on. For each drive (one fold):

1. ``OUT/fold_<drive>/train_real/`` and ``OUT/fold_<drive>/heldout/`` are filled with symbolic
   links to the other drives' files and to the held-out drive's files;
2. a model is trained with the config (``--config``) on the synthetic split (``--synth``) mixed
   with the training drives' real frames (:func:`bev_mtl_ros.train.train.build_train_set`),
   optionally starting from ``--init-from`` (a model trained without any real frame, so that
   nothing of the held-out drive leaks in);
3. the trained model is scored on the held-out drive with ``bev-mtl-ros evaluate``'s
   :func:`~bev_mtl_ros.train.evaluate.evaluate_dataset`, fused and lidar-only
   (``camera_input="both"``);
4. per-class score thresholds are calibrated on the fold's *training* drives
   (:mod:`bev_mtl_ros.train.thresholds`) and the held-out drive's detection measure is scored
   again at them (:data:`CALIBRATED_METRICS`, suffix ``_calibrated``);
5. the fold's metrics (:data:`REAL_METRICS`) are written to ``fold_<drive>/result.json``.

The summary gives, per metric, the mean and the sample standard deviation over the folds where
the metric is defined (a drive without people has no human+bike IoU; a drive without ``label3D``
boxes no recall), and the number of such folds. A fold whose ``result.json`` exists is not run
again (``--rerun`` forces it), so an interrupted run continues where it stopped;
``--rescore`` scores the finished folds' models again without training (steps 3-5).

Usage::

    bev-mtl-ros crossval --real test/data/real_a2d2 --synth build/synth_train \
        --config config/crossval_short.yaml --out build/crossval [--init-from BASE.pt] \
        [--folds 20180810142822,20181107132300] [--device cpu]
    bev-mtl-ros crossval --compare lite0=build/cv_lite0 espnet=build/cv_espnet   # table only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

LOG = logging.getLogger("bev_mtl_ros.crossval")

#: A2D2 file name: drive stamp (14 digits), modality, camera, frame number
DRIVE_FILE_RE = re.compile(r"^(\d{14})_(camera|lidar|label3D|label)_[a-z]+_\d+\.(png|npz|json)$")

#: the real metrics of one fold: name -> path of keys in the ``evaluate_dataset`` report.
#: ``semantic*`` metrics come from every held-out frame with a label; ``drivable_bev_iou`` from
#: frames with lidar (the observed BEV ground truth of the lidar points' labels,
#: ``data/drivable.py::observed_drivable_labels``); detection recall and false positives at 2 m
#: from frames with ``label3D`` boxes, the clutter and unlabelled-vehicle counts (by the label
#: classes of the points inside each detection) from frames with lidar.
REAL_METRICS: Dict[str, Tuple[str, ...]] = {
    "coarse_miou": ("semantic_coarse", "miou"),
    "miou_38": ("semantic", "miou"),
    "pixel_accuracy": ("semantic_coarse", "pixel_accuracy"),
    "iou_human_bike": ("semantic_coarse", "per_class_iou", "human+bike"),
    "iou_object_sign_pole": ("semantic_coarse", "per_class_iou", "object/sign/pole"),
    "iou_other_flat": ("semantic_coarse", "per_class_iou", "other flat"),
    "iou_vehicle": ("semantic_coarse", "per_class_iou", "vehicle"),
    "iou_building": ("semantic_coarse", "per_class_iou", "building"),
    "drivable_bev_iou": ("drivable", "iou_observed"),
    "drivable_bev_iou_training_label": ("drivable", "iou"),
    "det_recall_2m": ("detection_at_2m", "recall"),
    "det_false_positives_per_frame": ("detection_at_2m", "false_positives_per_frame"),
    "det_clutter_per_frame": ("detection_point_labels", "clutter_false_positives_per_frame"),
    "det_unlabelled_vehicle_per_frame": ("detection_point_labels",
                                         "unlabelled_vehicle_per_frame"),
}
#: the detection metrics scored again at the fold's calibrated per-class thresholds (suffix
#: ``_calibrated``; :func:`calibrated_metrics`): name -> key of ``thresholds.score_records``
CALIBRATED_METRICS: Dict[str, str] = {
    "det_recall_2m": "recall",
    "det_false_positives_per_frame": "false_positives_per_frame",
    "det_clutter_per_frame": "clutter_per_frame",
}
#: the metrics taken from the lidar-only evaluation too (suffix ``_lidar_only``)
LIDAR_ONLY_METRICS: Tuple[str, ...] = ("det_recall_2m", "det_false_positives_per_frame",
                                       "det_clutter_per_frame", "drivable_bev_iou")


# ------------------------------------------------------------------------------- folds
def drive_files(root: str) -> Dict[str, List[str]]:
    """Group the A2D2 files of a flat folder by drive.

    Args:
        root: folder holding A2D2 files named ``<drive>_<modality>_<camera>_<frame>.<ext>``
            (other files, such as a README, are ignored).
    Returns:
        {drive stamp: sorted absolute file paths}, drives in sorted order.
    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no A2D2 file.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: not a folder of real A2D2 frames")
    out: Dict[str, List[str]] = {}
    for name in sorted(os.listdir(root)):
        m = DRIVE_FILE_RE.match(name)
        if m:
            out.setdefault(m.group(1), []).append(os.path.abspath(os.path.join(root, name)))
    if not out:
        raise FileNotFoundError(f"{root}: no A2D2 file (<drive>_<modality>_<camera>_<frame>.*)")
    return dict(sorted(out.items()))


def _link_files(paths: Sequence[str], folder: str) -> None:
    """(Re)create ``folder`` holding a symbolic link to each of ``paths``."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    for p in paths:
        os.symlink(p, os.path.join(folder, os.path.basename(p)))


def make_fold_dirs(files: Dict[str, List[str]], held_out: str,
                   fold_dir: str) -> Tuple[Optional[str], str]:
    """Create the fold's training and held-out folders of symbolic links.

    Returns (train_real folder, or None when no other drive exists; held-out folder).
    Raises KeyError when ``held_out`` is not one of ``files``' drives.
    """
    if held_out not in files:
        raise KeyError(f"drive {held_out!r} is not in the real folder (drives: {sorted(files)})")
    train_paths = [p for d, ps in files.items() if d != held_out for p in ps]
    test_dir = os.path.join(fold_dir, "heldout")
    _link_files(files[held_out], test_dir)
    if not train_paths:
        return None, test_dir
    train_dir = os.path.join(fold_dir, "train_real")
    _link_files(train_paths, train_dir)
    return train_dir, test_dir


# ------------------------------------------------------------------------------- metrics
def _lookup(report: Dict[str, Any], path: Sequence[str]) -> float:
    """Return the float at ``path`` in a report dict; NaN when absent or null (undefined)."""
    v: Any = report
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return float("nan")
        v = v[k]
    return float("nan") if v is None else float(v)


def fold_metrics(fused: Dict[str, Any],
                 lidar_only: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """Flatten one fold's evaluate reports into {metric: value} (:data:`REAL_METRICS`).

    Metrics that are undefined on the fold (no such pixels, no boxes) are NaN. With
    ``lidar_only`` (the report of the same model run with ``camera_valid`` = 0), the
    :data:`LIDAR_ONLY_METRICS` are added with the suffix ``_lidar_only``.
    """
    out = {name: _lookup(fused, path) for name, path in REAL_METRICS.items()}
    if lidar_only is not None:
        for name in LIDAR_ONLY_METRICS:
            out[name + "_lidar_only"] = _lookup(lidar_only, REAL_METRICS[name])
    return out


def calibrated_metrics(report: Dict[str, Any], thresholds: Sequence[float]) -> Dict[str, float]:
    """Score the held-out detection measure at the fold's calibrated per-class thresholds.

    Args:
        report: the held-out ``evaluate_dataset(..., camera_input="both", keep_records=True)``
            report (fused, ``lidar_only`` nested).
        thresholds: (K,) per-class score thresholds (chosen by :func:`score_fold`).
    Returns:
        {metric + "_calibrated" and metric + "_calibrated_lidar_only": value} for
        :data:`CALIBRATED_METRICS` (NaN where undefined: no boxes, no label image).
    """
    from bev_mtl_ros.train.thresholds import records_of, score_records
    out: Dict[str, float] = {}
    for run, suffix in (("fused", "_calibrated"), ("lidar_only", "_calibrated_lidar_only")):
        s = score_records(records_of(report, runs=[run]), thresholds)
        out.update({name + suffix: float(s[key]) for name, key in CALIBRATED_METRICS.items()})
    return out


def summarise(per_fold: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """Mean and sample standard deviation (ddof 1) of every metric over the folds defining it.

    Args:
        per_fold: {drive: {metric: value, NaN = undefined}}.
    Returns:
        {metric: {"mean", "std", "n"}}; std is NaN with fewer than two folds, mean NaN with none.
    """
    names: List[str] = []
    for m in per_fold.values():
        names += [k for k in m if k not in names]
    out: Dict[str, Dict[str, float]] = {}
    for name in names:
        v = np.array([m.get(name, float("nan")) for m in per_fold.values()], np.float64)
        v = v[np.isfinite(v)]
        out[name] = {"mean": float(v.mean()) if len(v) else float("nan"),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                     "n": int(len(v))}
    return out


def format_table(summary: Dict[str, Dict[str, float]], num_folds: int) -> str:
    """Plain-text table of a :func:`summarise` result: metric, mean ± std, folds defined."""
    lines = [f"leave-one-drive-out cross-validation: {num_folds} folds",
             f"{'metric':<40} {'mean':>8}   {'std':>6}  folds"]
    for name, s in summary.items():
        mean = "n/a" if math.isnan(s["mean"]) else f"{s['mean']:.3f}"
        std = "" if math.isnan(s["std"]) else f"{s['std']:.3f}"
        lines.append(f"{name:<40} {mean:>8} ± {std:>6}  {s['n']}")
    return "\n".join(lines) + "\n"


def load_results(out_dir: str) -> Dict[str, Dict[str, float]]:
    """Read the fold metrics of a cross-validation folder: {drive: {metric: value}}.

    Raises FileNotFoundError when ``out_dir`` holds no ``fold_*/result.json``.
    """
    out: Dict[str, Dict[str, float]] = {}
    if os.path.isdir(out_dir):
        for name in sorted(os.listdir(out_dir)):
            path = os.path.join(out_dir, name, "result.json")
            if name.startswith("fold_") and os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    r = json.load(f)
                out[r["drive"]] = r["metrics"]
    if not out:
        raise FileNotFoundError(f"{out_dir}: no fold_*/result.json (not a crossval output)")
    return out


def compare_table(runs: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """Markdown table comparing cross-validation runs on the folds they all hold.

    Args:
        runs: {run name: {drive: {metric: value}}} (:func:`load_results` of each folder).
    Returns:
        one row per metric, one column per run with "mean ± std (folds)" over the common
        drives, preceded by a line naming them. Raises ValueError when no drive is common.
    """
    common = sorted(set.intersection(*(set(r) for r in runs.values())))
    if not common:
        raise ValueError("the runs have no held-out drive in common")
    summaries = {name: summarise({d: r[d] for d in common}) for name, r in runs.items()}
    metrics: List[str] = []
    for s in summaries.values():
        metrics += [m for m in s if m not in metrics]
    lines = [f"{len(common)} common folds: {', '.join(common)}", "",
             "| metric | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for m in metrics:
        cells = []
        for name in runs:
            v = summaries[name].get(m, {"mean": float("nan"), "std": float("nan"), "n": 0})
            if math.isnan(v["mean"]):
                cells.append("n/a")
            else:
                std = "" if math.isnan(v["std"]) else f" ± {v['std']:.3f}"
                cells.append(f"{v['mean']:.3f}{std} ({v['n']})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- one fold
def run_fold(drive: str, files: Dict[str, List[str]], cfg: Dict[str, Any], synth_dir: str,
             out_dir: str, device: str = "cpu", backend: str = "pytorch",
             progress: bool = False) -> Dict[str, Any]:
    """Train on everything but ``drive`` and score ``drive``; write and return the fold result.

    Args:
        drive: the held-out drive stamp.
        files: :func:`drive_files` of the real folder.
        cfg: resolved training config (:func:`bev_mtl_ros.train.config.load_config`).
        synth_dir: A2D2-format synthetic training split (lidar, boxes, camera, labels).
        out_dir: the cross-validation's output folder; the fold works in ``fold_<drive>/``.
        device: torch device of training; backend: inference backend of the evaluation.
    Returns:
        {"drive", "train_s", "steps", "heldout_frames"} and :func:`score_fold`'s keys
        ("metrics", "class_thresholds", "calibration", "eval_s"); also written to
        ``fold_<drive>/result.json``.
    Raises:
        FileNotFoundError: a folder holds no usable frame; ConfigError: a bad config.
    """
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.config import contract_from_config
    from bev_mtl_ros.train.train import build_train_set, train

    fold_dir = os.path.join(out_dir, f"fold_{drive}")
    train_real, heldout = make_fold_dirs(files, drive, fold_dir)
    contract = contract_from_config(cfg)
    aug = AugmentConfig.from_dict(cfg.get("augment"))
    synth, train_set = build_train_set(synth_dir, cfg, contract, aug,
                                       cache_dir=os.path.join(out_dir, "synth_cache"),
                                       real_data=train_real)
    synth.warm_cache(progress=progress)
    run_dir = os.path.join(fold_dir, "run")
    t0 = time.perf_counter()
    res = train(cfg, train_set, run_dir, device=device, progress=progress)
    train_s = time.perf_counter() - t0
    result = {"drive": drive, "train_s": train_s, "steps": int(res["steps"])}
    result.update(score_fold(fold_dir, train_real, heldout, backend, progress))
    result["heldout_frames"] = len(files[drive])
    with open(os.path.join(fold_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    return result


def score_fold(fold_dir: str, train_real: Optional[str], heldout: str, backend: str = "pytorch",
               progress: bool = False) -> Dict[str, Any]:
    """Score a fold's trained model (``fold_dir/run/model.pt``) on its held-out drive.

    1. Per-class score thresholds are calibrated on the fold's *training* drives (the real
       frames of ``train_real``, fused and lidar-only runs pooled;
       :func:`bev_mtl_ros.train.thresholds.calibrate_class_thresholds` from the node's
       threshold): nothing of the held-out drive is used. Their detection records are kept in
       ``fold_dir/calibration_records.json`` (other objectives can be tried without the
       network).
    2. The held-out drive is evaluated fused and lidar-only (report and renderings in
       ``fold_dir/eval``, with its detection records), at the node's threshold
       (:func:`fold_metrics`) and at the calibrated thresholds (:func:`calibrated_metrics`).

    Args:
        fold_dir: the fold's folder; train_real: its training drives' folder (None: no other
            drive, the thresholds stay the node's); heldout: its held-out folder.
        backend: inference backend of the evaluations; progress: tqdm bars.
    Returns:
        {"metrics", "class_thresholds" ({class: threshold}), "calibration" (objective and
        measure on the training drives at the node's threshold and at the calibrated ones),
        "eval_s"}.
    Raises:
        FileNotFoundError: no trained model in the fold.
    """
    from bev_mtl_ros.train.evaluate import (NODE_SCORE_THRESHOLD, evaluate_dataset,
                                            model_contract)
    from bev_mtl_ros.train.thresholds import calibrate_class_thresholds, records_of

    model = os.path.join(fold_dir, "run", "model.pt")
    if not os.path.isfile(model):
        raise FileNotFoundError(f"{model}: the fold has no trained model")
    t0 = time.perf_counter()
    # at one threshold for every class, whatever the node's class_score_thresholds: thresholds
    # calibrated on every real frame would have seen the held-out drive
    rep = evaluate_dataset(heldout, model, os.path.join(fold_dir, "eval"), backend=backend,
                           progress=progress, num_render=2, camera_input="both",
                           keep_records=True, operating_threshold=NODE_SCORE_THRESHOLD)
    classes = list(model_contract(model).detection_classes)
    calibration: Dict[str, Any] = {"thresholds": [NODE_SCORE_THRESHOLD] * len(classes)}
    if train_real is not None:
        cal = evaluate_dataset(train_real, model, None, backend=backend, progress=progress,
                               num_render=0, camera_input="both", keep_records=True,
                               operating_threshold=NODE_SCORE_THRESHOLD)
        records = records_of(cal)
        calibration = calibrate_class_thresholds(records, len(classes), NODE_SCORE_THRESHOLD)
        with open(os.path.join(fold_dir, "calibration_records.json"), "w",
                  encoding="utf-8") as f:
            json.dump(records, f)
    metrics = fold_metrics(rep, rep["lidar_only"])
    metrics.update(calibrated_metrics(rep, calibration["thresholds"]))
    return {"metrics": metrics,
            "class_thresholds": dict(zip(classes, calibration["thresholds"])),
            "calibration": {k: v for k, v in calibration.items() if k != "thresholds"},
            "eval_s": time.perf_counter() - t0}


def run_crossval(real_dir: str, synth_dir: str, cfg: Dict[str, Any], out_dir: str,
                 folds: Optional[Sequence[str]] = None, device: str = "cpu",
                 backend: str = "pytorch", rerun: bool = False,
                 progress: bool = False, rescore: bool = False) -> Dict[str, Any]:
    """Run (or continue) the leave-one-drive-out cross-validation; write ``summary.json``.

    Args:
        real_dir: flat folder of real A2D2 frames (:func:`drive_files`).
        synth_dir, cfg, device, backend: see :func:`run_fold`.
        out_dir: output folder (created).
        folds: the drives to hold out (default: every drive).
        rerun: run folds again even when their ``result.json`` exists.
        rescore: train nothing: score every finished fold's model again
            (:func:`score_fold`, e.g. after an evaluator change), keeping its training
            figures; folds without a model are trained as usual.
    Returns:
        {"folds": {drive: fold result}, "summary": :func:`summarise` of the fold metrics,
        "config": cfg}.
    Raises:
        FileNotFoundError, KeyError (unknown drive in ``folds``), ConfigError.
    """
    files = drive_files(real_dir)
    drives = list(files) if not folds else list(folds)
    unknown = [d for d in drives if d not in files]
    if unknown:
        raise KeyError(f"unknown drive(s) {unknown}; the real folder holds {sorted(files)}")
    os.makedirs(out_dir, exist_ok=True)
    results: Dict[str, Any] = {}
    for i, drive in enumerate(drives):
        path = os.path.join(out_dir, f"fold_{drive}", "result.json")
        if os.path.isfile(path) and not rerun:
            with open(path, encoding="utf-8") as f:
                results[drive] = json.load(f)
            if rescore:
                LOG.info("fold %d/%d (%s): scoring the trained model again", i + 1,
                         len(drives), drive)
                train_real, heldout = make_fold_dirs(files, drive, os.path.dirname(path))
                results[drive].update(score_fold(os.path.dirname(path), train_real, heldout,
                                                 backend, progress))
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(results[drive], f, indent=1, allow_nan=True)
            else:
                LOG.info("fold %d/%d (%s): kept the earlier result", i + 1, len(drives), drive)
            continue
        LOG.info("fold %d/%d: holding out drive %s (%d files)", i + 1, len(drives), drive,
                 len(files[drive]))
        results[drive] = run_fold(drive, files, cfg, synth_dir, out_dir, device, backend,
                                  progress)
        LOG.info("fold %s: %s", drive, json.dumps(
            {k: round(v, 3) for k, v in results[drive]["metrics"].items()
             if not math.isnan(v)}))
    summary = summarise({d: r["metrics"] for d, r in results.items()})
    out = {"folds": results, "summary": summary, "config": cfg}
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, allow_nan=True)
    return out


# ------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros crossval``."""
    parser.add_argument("--real", default="test/data/real_a2d2",
                        help="flat folder of real A2D2 frames (default test/data/real_a2d2)")
    parser.add_argument("--synth",
                        help="synthetic A2D2-format training split (bev-mtl-ros synth)")
    parser.add_argument("--config",
                        help="training config of every fold (e.g. config/crossval_short.yaml)")
    parser.add_argument("--out", help="output folder (folds, summary.json)")
    parser.add_argument("--compare", nargs="+", metavar="NAME=DIR",
                        help="train nothing: print a markdown table comparing finished "
                             "crossval folders on their common folds")
    parser.add_argument("--init-from", default=None, metavar="MODEL_PT",
                        help="start every fold from this model (trained without real frames)")
    parser.add_argument("--folds", default=None,
                        help="comma-separated drives to hold out (default: all)")
    parser.add_argument("--device", default="cpu", help="training device (cpu, cuda, auto)")
    parser.add_argument("--backend", default="pytorch",
                        help="evaluation backend (pytorch or onnxruntime; default pytorch)")
    parser.add_argument("--rerun", action="store_true",
                        help="run folds again even when their result.json exists")
    parser.add_argument("--rescore", action="store_true",
                        help="train nothing: score the finished folds' models again (per-class "
                             "threshold calibration on the training drives included)")
    parser.add_argument("--progress", action="store_true", help="tqdm progress bars")


def main(args: argparse.Namespace) -> int:
    """Run the cross-validation and print its table; 0 on success, 2 on bad arguments/data."""
    from bev_mtl_ros.train.config import ConfigError, load_config
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.compare:
        try:
            runs = {}
            for item in args.compare:
                name, _, folder = item.rpartition("=")
                runs[name or folder] = load_results(folder)
            print(compare_table(runs), end="")
        except (FileNotFoundError, ValueError) as e:
            LOG.error("%s", e)
            return 2
        return 0
    if not (args.synth and args.config and args.out):
        LOG.error("--synth, --config and --out are needed to run folds (or --compare)")
        return 2
    try:
        cfg = load_config(args.config)
        if args.init_from:
            cfg["init_from"] = args.init_from
        folds = [d.strip() for d in args.folds.split(",") if d.strip()] if args.folds else None
        out = run_crossval(args.real, args.synth, cfg, args.out, folds=folds, device=args.device,
                           backend=args.backend, rerun=args.rerun, progress=args.progress,
                           rescore=args.rescore)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as e:
        LOG.error("%s", e)
        return 2
    print(format_table(out["summary"], len(out["folds"])), end="")
    print(f"summary written to {os.path.join(args.out, 'summary.json')}")
    return 0
