"""Leave-one-drive-out cross-validation (train/crossval.py): folds, metrics, summary."""

import json
import math
import os

import pytest

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.train.crossval import (REAL_METRICS, compare_table, drive_files, fold_metrics,
                                        format_table, load_results, make_fold_dirs, summarise)

REAL = os.path.join(os.path.dirname(__file__), "data", "real_a2d2")


def test_drive_files_groups_the_real_frames_by_drive():
    files = drive_files(REAL)
    # eleven frames from nine drives (not ten as ../shared/a2d2/README.md says): two drives
    # hold two frames each; one frame has no lidar
    assert len(files) == 9
    assert sorted(files)[0] == "20180810142822"
    assert len(files["20180810142822"]) == 9      # 2 x (png, json, label, npz) + 1 label3D
    assert len(files["20181107133258"]) == 2      # camera PNG + label only
    assert all(os.path.isabs(p) for ps in files.values() for p in ps)
    assert not any(p.endswith("README.md") for ps in files.values() for p in ps)
    assert sum(len(ps) for ps in files.values()) == 47


def test_drive_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        drive_files(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no A2D2 file"):
        drive_files(str(tmp_path))


def test_fold_dirs_hold_out_exactly_one_drive(tmp_path):
    files = drive_files(REAL)
    train_dir, test_dir = make_fold_dirs(files, "20181108091945", str(tmp_path / "fold"))
    held = sorted(os.listdir(test_dir))
    trained = sorted(os.listdir(train_dir))
    assert held == sorted(os.path.basename(p) for p in files["20181108091945"])
    assert all(n.startswith("20181108091945_") for n in held)
    assert not any(n.startswith("20181108091945_") for n in trained)
    assert len(held) + len(trained) == 47
    assert os.path.realpath(os.path.join(test_dir, held[0])) == files["20181108091945"][0]
    # made again: the folders are rebuilt, not appended to
    make_fold_dirs(files, "20181108091945", str(tmp_path / "fold"))
    assert sorted(os.listdir(test_dir)) == held
    with pytest.raises(KeyError, match="not in the real folder"):
        make_fold_dirs(files, "19990101000000", str(tmp_path / "fold"))


def test_fold_metrics_reads_the_report_and_marks_undefined_as_nan():
    fused = {"semantic_coarse": {"miou": 0.5, "pixel_accuracy": 0.9,
                                 "per_class_iou": {"human+bike": None, "vehicle": 0.7}},
             "semantic": {"miou": 0.2}, "drivable": {"iou": 0.6, "iou_observed": 0.8},
             "detection_at_2m": {"recall": 0.75, "false_positives_per_frame": 1.5}}
    lidar = {"drivable": {"iou_observed": 0.78},
             "detection_at_2m": {"recall": 0.5, "false_positives_per_frame": 1.0}}
    m = fold_metrics(fused, lidar)
    assert m["coarse_miou"] == 0.5 and m["miou_38"] == 0.2 and m["iou_vehicle"] == 0.7
    assert math.isnan(m["iou_human_bike"]) and math.isnan(m["iou_other_flat"])
    assert m["det_recall_2m"] == 0.75 and m["det_recall_2m_lidar_only"] == 0.5
    assert m["drivable_bev_iou"] == 0.8 and m["drivable_bev_iou_training_label"] == 0.6
    assert m["drivable_bev_iou_lidar_only"] == 0.78
    assert math.isnan(m["det_clutter_per_frame_lidar_only"])
    assert set(fold_metrics(fused)) == set(REAL_METRICS)


def test_summarise_mean_and_sample_std_over_defined_folds():
    s = summarise({"a": {"x": 0.2, "y": float("nan")}, "b": {"x": 0.4, "y": 0.5},
                   "c": {"x": 0.6}})
    assert s["x"]["mean"] == pytest.approx(0.4)
    assert s["x"]["std"] == pytest.approx(0.2)   # sample std of 0.2, 0.4, 0.6
    assert s["x"]["n"] == 3
    assert s["y"]["mean"] == 0.5 and math.isnan(s["y"]["std"]) and s["y"]["n"] == 1
    table = format_table(s, 3)
    assert "3 folds" in table and "0.400 ±  0.200  3" in table


def test_one_fold_end_to_end_trains_scores_and_continues(tmp_path):
    """A tiny network, two synthetic frames and one held-out real drive: a full fold runs.

    The fold trains on the synthetic frames plus the eight other drives' real frames, scores the
    held-out drive (one real frame with lidar, no label3D) fused and lidar-only, writes
    result.json and summary.json, and a second call keeps the fold instead of training again.
    """
    from bev_mtl_ros.data.synth import generate
    from bev_mtl_ros.model.network import TINY_WIDTHS
    from bev_mtl_ros.train import train as T
    from bev_mtl_ros.train.crossval import run_crossval

    synth = tmp_path / "synth"
    generate(str(synth), scenes=1, frames=2, seed=5, width=240, height=151)
    cfg = T.merge_config(T.DEFAULT_CONFIG, {
        "model": dict(TINY_WIDTHS, pretrained=False), "batch_size": 2, "epochs": 1,
        "num_workers": 0, "threads": 1, "real_data": {"repeats": 1},
        "bn_recalibration_batches": 0, "augment": {"enabled": False}})
    out = tmp_path / "cv"
    drive = "20181204170238"
    res = run_crossval(REAL, str(synth), cfg, str(out), folds=[drive])
    fold = res["folds"][drive]
    assert fold["steps"] == 6            # 2 synthetic + 10 real training frames, batch 2
    m = fold["metrics"]
    assert 0.0 <= m["coarse_miou"] <= 1.0 and 0.0 <= m["pixel_accuracy"] <= 1.0
    assert 0.0 <= m["drivable_bev_iou"] <= 1.0 and 0.0 <= m["drivable_bev_iou_lidar_only"] <= 1.0
    assert math.isnan(m["det_recall_2m"])    # this drive has no label3D boxes: not scored
    assert m["det_clutter_per_frame"] >= 0.0
    assert res["summary"]["coarse_miou"]["n"] == 1
    assert (out / f"fold_{drive}" / "result.json").is_file()
    assert (out / "summary.json").is_file()
    # per-class thresholds calibrated on the eight training drives, one per class, on the grid
    from bev_mtl_ros.train.thresholds import THRESHOLD_GRID
    assert list(fold["class_thresholds"]) == list(ModelContract().detection_classes)
    assert all(t in THRESHOLD_GRID for t in fold["class_thresholds"].values())
    assert fold["calibration"]["gain"] >= fold["calibration"]["base_gain"]
    assert m["det_clutter_per_frame_calibrated"] >= 0.0
    cal_records = json.loads((out / f"fold_{drive}" / "calibration_records.json").read_text())
    assert sorted({r["key"].split("/")[0] for r in cal_records}) == sorted(
        d for d in drive_files(REAL) if d != drive and d != "20181107133258")   # PNG only
    assert m["det_clutter_per_frame_calibrated_lidar_only"] >= 0.0
    assert math.isnan(m["det_recall_2m_calibrated"])
    again = run_crossval(REAL, str(synth), cfg, str(out), folds=[drive])
    assert again["folds"][drive]["train_s"] == fold["train_s"]   # kept, not trained again
    # scored again without training: the same model gives the same figures
    rescored = run_crossval(REAL, str(synth), cfg, str(out), folds=[drive], rescore=True)
    r = rescored["folds"][drive]
    assert r["train_s"] == fold["train_s"] and r["eval_s"] != fold["eval_s"]
    assert r["class_thresholds"] == fold["class_thresholds"]
    assert {k: v for k, v in r["metrics"].items() if not math.isnan(v)} == \
        {k: v for k, v in m.items() if not math.isnan(v)}


def test_compare_table_uses_the_common_folds_only(tmp_path):
    import json
    arms = {"a": {"d1": 0.2, "d2": 0.4, "d3": 0.9}, "b": {"d1": 0.3, "d2": 0.7}}
    for run, folds in arms.items():
        for drive, v in folds.items():
            (tmp_path / run / f"fold_{drive}").mkdir(parents=True)
            (tmp_path / run / f"fold_{drive}" / "result.json").write_text(
                json.dumps({"drive": drive, "metrics": {"coarse_miou": v, "miou_38": None}}))
    runs = {"a": load_results(str(tmp_path / "a")), "b": load_results(str(tmp_path / "b"))}
    assert sorted(runs["a"]) == ["d1", "d2", "d3"]
    table = compare_table(runs)
    assert table.startswith("2 common folds: d1, d2")
    assert "| coarse_miou | 0.300 ± 0.141 (2) | 0.500 ± 0.283 (2) |" in table   # d3 left out
    assert "| miou_38 | n/a | n/a |" in table
    with pytest.raises(FileNotFoundError):
        load_results(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no held-out drive in common"):
        compare_table({"a": {"d1": {}}, "b": {"d2": {}}})
