"""Leave-one-drive-out cross-validation (bev_mtl_ros/train/crossval.py): folds, metrics, summary."""

import math
import os

import pytest

from bev_mtl_ros.train.crossval import (REAL_METRICS, drive_files, fold_metrics, format_table,
                                        make_fold_dirs, summarise)

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
             "semantic": {"miou": 0.2}, "drivable": {"iou": 0.8},
             "detection": {"real": {"recall": 0.75, "false_positives_per_frame": 1.5}}}
    lidar = {"drivable": {"iou": 0.78},
             "detection": {"real": {"recall": 0.5, "false_positives_per_frame": 1.0}}}
    m = fold_metrics(fused, lidar)
    assert m["coarse_miou"] == 0.5 and m["miou_38"] == 0.2 and m["iou_vehicle"] == 0.7
    assert math.isnan(m["iou_human_bike"]) and math.isnan(m["iou_other_flat"])
    assert m["det_recall_2m"] == 0.75 and m["det_recall_2m_lidar_only"] == 0.5
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
