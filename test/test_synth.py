"""Tests of the synthetic A2D2-format generator (bev_mtl_ros.data.synth*).

Layout, formats, determinism, geometric consistency of lidar/labels/boxes, motion, and the reader
round trip.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from bev_mtl_ros.data.a2d2 import CORNER_SIGNS, A2D2Dataset, axis_angle_to_matrix, load_label3d
from bev_mtl_ros.data.calibration import load_calibration, undistort_image
from bev_mtl_ros.data.classes import ClassMap, rgb_label_to_ids
from bev_mtl_ros.data.synth import SUBSET, generate
from bev_mtl_ros.data.synth_build import build_scene
from bev_mtl_ros.data.synth_frame import synthesize_frame
from bev_mtl_ros.data.synth_scene import CID, GROUND_Z, SIZE_RANGES
from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES

W, H = 320, 201
SEED = 3
FRAMES = 3
NPZ_DTYPES = {"points": np.float64, "reflectance": np.int64, "timestamp": np.int64,
              "row": np.float64,
              "col": np.float64, "depth": np.float64, "distance": np.float64,
              "azimuth": np.float64, "lidar_id": np.float64}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth"))
    s = generate(out, scenes=1, frames=FRAMES, seed=SEED, width=W, height=H,
                 return_ground_truth=True)
    return out, s


def _files(root):
    got = []
    for d, _, fs in os.walk(root):
        for f in fs:
            got.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(got)


def test_layout_and_names(data):
    out, s = data
    assert s["frames"] == FRAMES and len(s["scenes"]) == 1
    scene = s["scenes"][0]
    assert re.fullmatch(r"\d{8}_\d{6}", scene)
    compact = scene.replace("_", "")
    files = [f for f in _files(out) if f != "cams_lidars.json"]
    assert len(files) == 6 * FRAMES        # + the clutter sidecar next to label3D
    pat = re.compile(
        rf"{SUBSET}/{scene}/(camera|lidar|label|label3D)/cam_front_center/"
        rf"{compact}_(camera|lidar|label|label3D)_frontcenter_(\d{{9}})(_clutter)?"
        r"\.(png|json|npz)$"
    )
    frames = {}
    for f in files:
        m = pat.fullmatch(f)
        assert m, f
        assert m.group(1) == m.group(2), f
        ext = ({"camera": ("png", "json"), "lidar": ("npz",), "label": ("png",),
                "label3D": ("json",)}[m.group(1)])
        assert m.group(5) in ext, f
        assert m.group(4) is None or m.group(1) == "label3D", f
        frames.setdefault(m.group(3), []).append(f)
    nums = sorted(int(k) for k in frames)
    assert nums == list(range(nums[0], nums[0] + FRAMES))
    assert all(len(v) == 6 for v in frames.values())


def test_calibration_copy_scaled(data):
    out, _ = data
    with open(os.path.join(out, "cams_lidars.json")) as f:
        cfg = json.load(f)
    fc = cfg["cameras"]["front_center"]
    assert fc["Resolution"] == [W, H]
    orig = load_calibration().camera("front_center")
    K = np.array(fc["CamMatrix"])
    assert K[0, 0] == pytest.approx(orig.cam_matrix[0, 0] * W / 1920)
    assert K[1, 1] == pytest.approx(orig.cam_matrix[1, 1] * H / 1208)
    assert fc["Distortion"] == [list(orig.distortion)]
    assert fc["Lens"] == "Telecam" and "view" in fc and "lidars" in cfg and "vehicle" in cfg


def test_npz_keys_dtypes_and_values(data):
    out, s = data
    cal = load_calibration(os.path.join(out, "cams_lidars.json")).camera("front_center")
    K = cal.cam_matrix
    for gt in s["ground_truth"]:
        z = np.load(gt["paths"]["lidar"])
        assert set(z.files) == set(NPZ_DTYPES)
        n = z["points"].shape[0]
        assert z["points"].shape == (n, 3) and n > 3000
        for k, dt in NPZ_DTYPES.items():
            assert z[k].dtype == dt, k
            if k != "points":
                assert z[k].shape == (n,), k
        p = z["points"]
        np.testing.assert_array_equal(z["depth"], p[:, 0])
        np.testing.assert_allclose(z["distance"], np.linalg.norm(p, axis=1), rtol=1e-12)
        np.testing.assert_allclose(z["azimuth"], np.arctan2(p[:, 1], p[:, 0]), rtol=1e-12)
        assert z["reflectance"].min() >= 0 and z["reflectance"].max() <= 255
        assert set(np.unique(z["lidar_id"])) == {0.0, 1.0, 2.0, 3.0, 4.0}  # A2D2's five-lidar rig
        # row/col = A2D2 projection with the written CamMatrix
        col = K[0, 2] - K[0, 0] * p[:, 1] / p[:, 0]
        row = K[1, 2] - K[1, 1] * p[:, 2] / p[:, 0]
        assert np.abs(col - z["col"]).max() < 0.5 and np.abs(row - z["row"]).max() < 0.5
        assert (z["col"].min() >= 0 and z["col"].max() <= W - 1 and z["row"].min() >= 0
                and z["row"].max() <= H - 1)
        # per-point times within the +-50 ms revolution around the camera time
        with open(gt["paths"]["camera_json"]) as f:
            side = json.load(f)
        assert (set(side) == {"cam_name", "cam_tstamp", "lidar_ids"}
                and side["lidar_ids"]["3"] == "front_center")
        dt_us = z["timestamp"] - side["cam_tstamp"]
        assert np.abs(dt_us).max() <= 50_000 and np.ptp(dt_us) > 1000
        assert p[:, 0].max() < 101.0


def test_frame_times_10hz(data):
    _, s = data
    ts = []
    for gt in s["ground_truth"]:
        with open(gt["paths"]["camera_json"]) as f:
            ts.append(json.load(f)["cam_tstamp"])
    assert np.all(np.diff(ts) == 100_000)
    assert ts[0] > 1_500_000_000 * 10**6   # TAI µs in 2018+


def test_determinism(data, tmp_path):
    out, _ = data
    a = str(tmp_path / "a")
    b = str(tmp_path / "b")
    generate(a, scenes=1, frames=FRAMES, seed=SEED, width=W, height=H)
    generate(b, scenes=1, frames=1, seed=SEED + 1, width=W, height=H)
    fa = _files(a)
    assert fa == _files(out)
    for f in fa:
        with open(os.path.join(a, f), "rb") as x, open(os.path.join(out, f), "rb") as y:
            assert x.read() == y.read(), f
    fb = [f for f in _files(b) if f.endswith(".npz")]
    za, zb = np.load(os.path.join(a, [f for f in fa
                                      if f.endswith(".npz")][0])), np.load(os.path.join(b, fb[0]))
    assert (za["points"].shape != zb["points"].shape
            or not np.array_equal(za["points"], zb["points"]))


def test_label_colours_in_class_list(data):
    _, s = data
    cm = ClassMap()
    for gt in s["ground_truth"]:
        import cv2
        lab = cv2.imread(gt["paths"]["label"], cv2.IMREAD_COLOR)[..., ::-1]
        # raises on unknown colours
        ids = cm.rgb_to_ids(lab, path=gt["paths"]["label"], strict=True)
        present = {A2D2_SEMANTIC_CLASSES[i] for i in np.unique(ids)}
        assert {"Sky", "RD normal street", "Car"} <= present
        img = cv2.imread(gt["paths"]["camera"], cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (H, W, 3)
        assert img.std() > 20   # shaded, textured content


def _scene_frame(f):
    cal = load_calibration().camera("front_center").scaled((W, H))
    return synthesize_frame(build_scene(SEED, 0, FRAMES,
                                        hfov=np.arctan2(cal.cam_matrix[0, 2],
                                                        cal.cam_matrix[0, 0])),
                            f, cal), cal


def test_lidar_points_on_surfaces(data):
    _, s = data
    fr, _ = _scene_frame(1)
    z = np.load(s["ground_truth"][1]["paths"]["lidar"])
    np.testing.assert_array_equal(fr.lidar["points"], z["points"])        # same frame as written
    pts = fr.lidar["points"]
    ground = np.isin(fr.point_cls,
                     [CID["RD normal street"], CID["Solid line"], CID["Dashed line"]])
    assert ground.sum() > 1000
    road = build_scene(SEED, 0, FRAMES).road
    # the ground is cambered: its height follows Road.ground_offset (ego moves along x only)
    assert np.abs(pts[ground, 2] - GROUND_Z - road.ground_offset(pts[ground, 1])).max() < 0.1
    # every point hitting a road user lies inside its ground-truth box (+ ~4 sigma of the VLP-16
    # range noise, 3 cm)
    hit = fr.point_obj >= 0
    assert hit.sum() > 100
    b = fr.boxes[fr.point_obj[hit]]
    rel = pts[hit] - b[:, :3]
    c, s_ = np.cos(b[:, 6]), np.sin(b[:, 6])
    lx, ly = c * rel[:, 0] + s_ * rel[:, 1], -s_ * rel[:, 0] + c * rel[:, 1]
    tol = 0.13
    assert np.all(np.abs(lx) <= b[:, 3] / 2 + tol)
    assert np.all(np.abs(ly) <= b[:, 4] / 2 + tol)
    assert np.all(np.abs(rel[:, 2]) <= b[:, 5] / 2 + tol)
    # bright lane markings
    refl = fr.lidar["reflectance"]
    marks = np.isin(fr.point_cls, [CID["Solid line"], CID["Dashed line"]])
    road = fr.point_cls == CID["RD normal street"]
    assert marks.sum() > 50
    assert refl[marks].mean() > 4 * refl[road].mean()      # real A2D2 reflectance is low (0..~60)
    # lidar and label agree: the label pixel under a point is the class of the surface it hit
    # (except at occlusion edges: the lidar sits 0.18 m above the camera)
    r, c = np.round(fr.lidar["row"]).astype(int), np.round(fr.lidar["col"]).astype(int)
    assert (fr.label[r, c] == fr.point_cls).mean() > 0.95


def test_label3d_boxes_consistent(data):
    _, s = data
    road = build_scene(SEED, 0, FRAMES).road
    for gt in s["ground_truth"]:
        with open(gt["paths"]["label3D"]) as f:
            raw = json.load(f)
        assert list(raw) == [f"box_{i}" for i in range(len(raw))] and len(raw) >= 3
        keys = {"id", "class", "center", "size", "axis", "rot_angle", "3d_points", "2d_bbox",
                "truncation", "occlusion", "alpha"}
        for b in raw.values():
            assert set(b) == keys
            assert b["axis"] in ([0.0, 0.0, 1.0], [0.0, 0.0, -1.0]) and b["rot_angle"] >= 0
            R = axis_angle_to_matrix(b["axis"], b["rot_angle"])
            corners = (CORNER_SIGNS * np.array(b["size"]) / 2) @ R.T + np.array(b["center"])
            np.testing.assert_allclose(np.array(b["3d_points"]), corners, atol=1e-9)
            x0, y0, x1, y1 = b["2d_bbox"]
            assert 0 <= x0 <= x1 <= W - 1 and 0 <= y0 <= y1 <= H - 1
            assert 0 <= b["truncation"] <= 1 and 0 <= b["occlusion"] <= 1
            lo = np.array([r[0] for r in SIZE_RANGES[b["class"]]])
            hi = np.array([r[1] for r in SIZE_RANGES[b["class"]]])
            assert np.all(np.array(b["size"]) >= lo) and np.all(np.array(b["size"]) <= hi)
            # box stands on the (cambered) ground or on the sidewalk, <= 0.15 m higher
            bottom = b["center"][2] - b["size"][2] / 2 - float(road.ground_offset(b["center"][1]))
            assert GROUND_Z - 1e-9 <= bottom <= GROUND_Z + 0.16
        # the reader parses it with the same yaw
        lab = load_label3d(gt["paths"]["label3D"])
        ids = [gt["ids"].index(i) for i in lab.ids]
        np.testing.assert_allclose(lab.boxes[:, 6], gt["boxes"][ids, 6], atol=1e-5)
        np.testing.assert_allclose(lab.boxes[:, :6], gt["boxes"][ids, :6], atol=1e-4)


def test_objects_move_with_constant_velocity(data):
    _, s = data
    tracks = {}
    for f, gt in enumerate(s["ground_truth"]):
        for b in json.load(open(gt["paths"]["label3D"])).values():
            tracks.setdefault(b["id"], {})[f] = (np.array(b["center"]),
                                                 b["rot_angle"] * b["axis"][2])
    full = [t for t in tracks.values() if len(t) == FRAMES]
    assert len(full) >= 3
    moving = 0
    for t in full:
        c = np.stack([t[f][0] for f in range(FRAMES)])
        v = np.diff(c, axis=0)
        assert np.abs(np.diff(v, axis=0)).max() < 0.01          # constant velocity at 10 Hz
        yaw = np.array([t[f][1] for f in range(FRAMES)])
        assert np.abs(np.angle(np.exp(1j * np.diff(yaw)))).max() < 0.01
        moving += np.linalg.norm(v[0]) > 0.05
    assert moving >= 1
    # ground truth through the API: all road users every frame; the listed ones match label3D
    for f, gt in enumerate(s["ground_truth"]):
        assert gt["boxes"].shape == (len(gt["ids"]), 7)
        listed = {i for i, v in zip(gt["ids"], gt["in_label3d"]) if v}
        assert listed == {i for i, t in tracks.items() if f in t}
        for i in listed:
            np.testing.assert_allclose(gt["boxes"][gt["ids"].index(i), :3], tracks[i][f][0],
                                       atol=1e-9)


def test_car_centre_pixel_is_car_and_undistortion_round_trip(data):
    _, s = data
    fr, cal = _scene_frame(0)
    gt = s["ground_truth"][0]
    lab = load_label3d(gt["paths"]["label3D"])
    import cv2
    raw = cv2.imread(gt["paths"]["label"], cv2.IMREAD_COLOR)[..., ::-1]
    ids = rgb_label_to_ids(raw)
    und = undistort_image(ids, cal, cv2.INTER_NEAREST, border_value=255)
    valid = und != 255
    agree = (und == fr.label)[valid].mean()
    assert agree > 0.97, agree
    img = cv2.imread(gt["paths"]["camera"], cv2.IMREAD_COLOR)[..., ::-1]
    img_u = undistort_image(img, cal, cv2.INTER_LINEAR)
    m = np.zeros((H, W), bool)
    m[20:-20, 20:-20] = True
    assert np.abs(img_u.astype(int) - fr.image.astype(int))[m].mean() < 12
    K = cal.cam_matrix
    checked = 0
    for (x, y, z, *_), cls, ex in zip(lab.boxes, lab.classes, lab.extra):
        if cls != "Car" or ex["occlusion"] > 0.05 or ex["truncation"] > 0 or x > 40:
            continue
        col = int(round(K[0, 2] - K[0, 0] * y / x))
        row = int(round(K[1, 2] - K[1, 1] * z / x))
        assert fr.label[row, col] == CID["Car"]
        assert und[row, col] == CID["Car"]
        checked += 1
    assert checked >= 1


def test_reader_round_trip(data):
    out, s = data
    ds = A2D2Dataset(out)
    assert len(ds) == FRAMES
    f = ds.load_frame(0)
    z = np.load(s["ground_truth"][0]["paths"]["lidar"])
    np.testing.assert_allclose(f.points, z["points"].astype(np.float32))
    assert f.image.shape == (H, W, 3) and f.semantic.shape == (H, W)
    assert f.calibration.width == W and len(f.box_classes) == len(
        json.load(open(s["ground_truth"][0]["paths"]["label3D"])))


def test_scene_content_statistics():
    """Across seeds: several cars and at least one pedestrian in view per frame on average.

    All detection classes present, no overlapping road users.
    """
    hfov = np.radians(29.6)
    cars = peds = 0
    classes = set()
    n = 12
    for seed in range(n):
        sc = build_scene(seed, 0, 20, hfov=hfov)
        poses = sc.object_poses(10)
        x = poses[:, 0] - sc.ego_position(10)[0]
        inview = (x > 3) & (x < 80) & (np.abs(poses[:, 1]) < x * np.tan(hfov))
        for o, v in zip(sc.objects, inview):
            classes.add(o.cls)
            if v:
                cars += o.cls in ("Car", "VanSUV")
                peds += o.cls == "Pedestrian"
    assert cars / n >= 3 and peds / n >= 1
    assert {"Car", "VanSUV", "Truck", "Pedestrian", "Cyclist"} <= classes


def test_cli(tmp_path):
    from bev_mtl_ros.cli import main
    out = str(tmp_path / "cli")
    assert main(["synth", "--out", out, "--scenes", "1", "--frames", "1", "--width", "160",
                 "--height", "101", "--seed", "1", "--no-progress"]) == 0
    assert len([f for f in _files(out) if f.endswith(".npz")]) == 1
    assert main(["synth", "--out", out, "--frames", "1", "--camera", "side_left",
                 "--no-progress"]) == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        generate(str(tmp_path), frames=0)
    with pytest.raises(ValueError, match="camera"):
        generate(str(tmp_path), camera="rear_center")


def test_parallel_workers_give_identical_files(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    sa = generate(a, scenes=2, frames=1, seed=9, width=160, height=101)
    sb = generate(b, scenes=2, frames=1, seed=9, width=160, height=101, workers=2)
    assert sa["scenes"] == sb["scenes"] and len(set(sa["scenes"])) == 2
    fa = _files(a)
    assert fa == _files(b) and len(fa) == 1 + 2 * 6
    for f in fa:
        with open(os.path.join(a, f), "rb") as x, open(os.path.join(b, f), "rb") as y:
            assert x.read() == y.read(), f
