"""The generator's lidar rig and clutter against real A2D2 (``a2d2-real-lidar.md``).

Real figures (one front-center frame of A2D2's ``camera_lidar_semantic_bboxes`` subset): 8,196
points; shares by lidar_id 0..4 (front_left, rear_right, front_right, front_center, rear_left)
= 2148, 648, 1922, 2789, 689; range percentiles 5/25/50/75/95 = 6.9/10.7/16.5/33.9/50.8 m;
reflectance percentiles 5/25/50/75/95 = 2/5/13/28/59.
"""

import json

import numpy as np
import pytest

from bev_mtl_ros.data.a2d2 import A2D2Dataset, load_clutter
from bev_mtl_ros.data.calibration import CAMS_LIDARS_PATH, load_calibration
from bev_mtl_ros.data.synth import generate
from bev_mtl_ros.data.synth_lidar import RIG_LIDARS, rig_poses
from bev_mtl_ros.data.synth_scene import CID, CLUTTER_CLASSES, SIZE_RANGES
from bev_mtl_ros.train.metrics import bev_distance_to_boxes

REAL_POINTS = 8196
REAL_COUNTS = np.array([2148, 648, 1922, 2789, 689])
REAL_RANGE_PCT = np.array([6.9, 10.7, 16.5, 33.9, 50.8])
REAL_REFL_PCT = np.array([2, 5, 13, 28, 59])
PCT = [5, 25, 50, 75, 95]


@pytest.fixture(scope="module")
def rig_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("rig")
    s = generate(
        str(out), scenes=6, frames=1, seed=11, width=320, height=202, return_ground_truth=True
    )
    return out, s


def _npz(s):
    return [dict(np.load(g["paths"]["lidar"])) for g in s["ground_truth"]]


def test_rig_poses_from_calibration():
    cal = load_calibration(CAMS_LIDARS_PATH)
    rig = rig_poses(cal, "front_center")
    assert [p.name for p in rig] == list(RIG_LIDARS) and [p.lidar_id for p in rig] == [
        0,
        1,
        2,
        3,
        4,
    ]
    for p in rig:
        T = cal.transform("lidar_" + p.name, "front_center")
        np.testing.assert_allclose(p.origin, T[:3, 3], atol=1e-12)      # its own ray origin
        np.testing.assert_allclose(p.rot.T @ p.rot, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(
            p.rot[:, 2], T[:3, 2] / np.linalg.norm(T[:3, 2]), atol=1e-12
        )  # spin axis
    # front lidars ~0.18 m above the camera, rear ones ~2.1 m behind it
    assert all(abs(p.origin[2] - 0.18) < 0.05 for p in rig)
    assert rig[1].origin[0] < -2.0 and rig[4].origin[0] < -2.0 and abs(rig[3].origin[0]) < 0.05


def test_points_per_frame_and_lidar_shares(rig_data):
    _, s = rig_data
    zs = _npz(s)
    n = np.array([len(z["points"]) for z in zs])
    # tolerance: mean within 30 % of the real frame, every frame within 50 %
    assert abs(n.mean() / REAL_POINTS - 1) < 0.30, n
    assert np.all(np.abs(n / REAL_POINTS - 1) < 0.50), n
    counts = sum(np.bincount(z["lidar_id"].astype(int), minlength=5) for z in zs)
    share = counts / counts.sum()
    real = REAL_COUNTS / REAL_COUNTS.sum()
    # every scanner contributes; shares within 0.06 (absolute) of the real frame's
    assert np.all(counts > 0) and len(counts) == 5
    np.testing.assert_allclose(share, real, atol=0.06)
    for z in zs:
        assert z["lidar_id"].dtype == np.float64 and set(np.unique(z["lidar_id"])) == {
            0.0,
            1.0,
            2.0,
            3.0,
            4.0,
        }
        assert np.ptp(z["timestamp"]) <= 100_000     # a 10 Hz sweep


def test_range_and_reflectance_percentiles(rig_data):
    _, s = rig_data
    zs = _npz(s)
    rng = np.concatenate([z["distance"] for z in zs])
    refl = np.concatenate([z["reflectance"] for z in zs])
    got_r = np.percentile(rng, PCT)
    got_f = np.percentile(refl, PCT)
    # tolerance: each range percentile within 35 % (scene content differs from the one real
    # frame), each reflectance percentile within 3 counts or 35 %
    assert np.all(np.abs(got_r / REAL_RANGE_PCT - 1) < 0.35), got_r
    assert np.all(np.abs(got_f - REAL_REFL_PCT) <= np.maximum(3, 0.35 * REAL_REFL_PCT)), got_f
    assert rng.max() <= 100.5 and rng.max() > 60        # VLP-16: ~100 m
    assert refl.dtype == np.int64 and refl.min() >= 0 and refl.max() <= 255


def test_ground_is_not_flat(rig_data):
    _, s = rig_data
    z = np.concatenate([np.load(g["paths"]["lidar"])["points"][:, 2] for g in s["ground_truth"]])
    lo = z[z < -1.5]
    # cambered road + kerbs: ground returns spread over more than 10 cm around -1.78 m
    assert np.percentile(lo, 95) - np.percentile(lo, 5) > 0.10


def test_clutter_in_labels_and_as_hard_negatives(rig_data):
    out, s = rig_data
    seen = set()
    n_clutter = 0
    kinds = set()
    for g in s["ground_truth"]:
        from bev_mtl_ros.data.a2d2 import load_label3d
        lab = load_label3d(g["paths"]["label3D"])
        cb, ck = load_clutter(g["paths"]["clutter"])
        n_clutter += len(cb)
        kinds |= set(ck)
        # no 3D box for clutter: label3D holds road users only, and no clutter centre lies in one
        assert set(lab.classes) <= set(SIZE_RANGES)
        if len(lab.boxes) and len(cb):
            assert np.all(bev_distance_to_boxes(cb[:, :2], lab.boxes) > 0)
    ds = A2D2Dataset(str(out))
    for i in range(len(ds)):
        seen |= set(np.unique(ds.load_frame(i, load_image=False).semantic).tolist())
    assert n_clutter >= 6 * 5
    assert {"Tree", "Pole", "TrafficSign"} <= kinds and kinds <= set(CLUTTER_CLASSES)
    must = ["Nature object", "Poles", "Traffic sign", "Curbstone", "Sidewalk", "Buildings"]
    assert {CID[c] for c in must} <= seen
    extra = [
        "Traffic signal",
        "Grid structure",
        "Sidebars",
        "Obstacles / trash",
        "Traffic guide obj.",
        "Bicycle",
    ]
    assert len({CID[c] for c in extra} & seen) >= 2


def test_clutter_sidecar_round_trip_through_reader(rig_data):
    out, s = rig_data
    ds = A2D2Dataset(str(out))
    g = s["ground_truth"][0]
    f = [ds.load_frame(i, load_image=False, load_label=False) for i in range(len(ds))
         if ds.frames[i].paths["label3D"] == g["paths"]["label3D"]][0]
    with open(g["paths"]["clutter"]) as fh:
        raw = json.load(fh)
    assert f.clutter_boxes.dtype == np.float32 and f.clutter_boxes.shape == (len(raw["boxes"]), 7)
    assert f.clutter_classes == [b["class"] for b in raw["boxes"]]
    np.testing.assert_allclose(
        f.clutter_boxes, np.array([b["box"] for b in raw["boxes"]]), atol=1e-5
    )
    assert all(b["semantic_class"] == CLUTTER_CLASSES[b["class"]] for b in raw["boxes"])
    # standing clutter is on the (cambered) ground: bottom within 0.6 m of -1.78 m; all ahead
    standing = np.isin(
        f.clutter_classes, ["Tree", "Bush", "Hedge", "Pole", "Fence", "Bollard", "TrashBin"]
    )
    assert standing.sum() >= 3
    bottom = f.clutter_boxes[standing, 2] - f.clutter_boxes[standing, 5] / 2
    assert np.all(np.abs(bottom + 1.78) < 0.6) and np.all(f.clutter_boxes[:, 0] > 0)


def test_reader_without_clutter_sidecar_gives_empty(rig_data, tmp_path):
    import shutil
    out, s = rig_data
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    for p in dst.rglob("*_clutter.json"):
        p.unlink()
    f = A2D2Dataset(str(dst)).load_frame(0, load_image=False, load_label=False)
    assert f.clutter_boxes.shape == (0, 7) and f.clutter_classes == []
