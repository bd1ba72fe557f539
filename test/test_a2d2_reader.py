"""A2D2 reader, class colours and calibration on small frames written here in A2D2's exact format.

Also, where helper E's generator exists, on generated frames.

The writer helpers below (``write_scene``) are also used by test_to_bag.py and test_drivable.py.
They follow A2D2's README/tutorial independently of the reader: box corners via cv2.Rodrigues and
the tutorial's corner list, images written distorted with cv2's point undistortion.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest

from bev_mtl_ros.data import calibration as C
from bev_mtl_ros.data import classes as K
from bev_mtl_ros.data.a2d2 import (A2D2Dataset, A2D2FormatError, box_corners, load_lidar_npz,
                                   parse_label3d, tai_us_to_utc_ns)
from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES

SMALL = (240, 151)  # 1920x1208 / 8
SCENE = "20180807_145028"
STAMP = "20180807145028"
T0_US = 1_533_653_428_000_000 + 37_000_000  # TAI µs

ROAD = np.array([255, 0, 255], np.uint8)        # "RD normal street"
SIDEWALK = np.array([180, 150, 200], np.uint8)  # "Sidewalk" #b496c8
SKY = np.array([135, 206, 255], np.uint8)       # "Sky"
CAR2 = np.array([200, 0, 0], np.uint8)          # "Car 2"


def _colour_of(name: str) -> np.ndarray:
    cm = K.default_class_map()
    return cm.colours[cm.colour_names.index(name)]


def tutorial_corners(center, size, axis, angle) -> np.ndarray:
    """Return box corners as in the A2D2 tutorial: Rodrigues rotation of (axis, angle).

    Corner offsets in the order brl, bfl, bfr, brr, trl, tfl, tfr, trr.
    """
    R, _ = cv2.Rodrigues(np.asarray(axis, np.float64) * angle)
    h = np.asarray(size, np.float64) / 2
    offs = np.array([[-h[0], +h[1], -h[2]], [+h[0], +h[1], -h[2]], [+h[0], -h[1], -h[2]],
                     [-h[0], -h[1], -h[2]],
                     [-h[0], +h[1], +h[2]], [+h[0], +h[1], +h[2]], [+h[0], -h[1], +h[2]],
                     [-h[0], -h[1], +h[2]]])
    return offs @ R.T + np.asarray(center, np.float64)


def small_calibration() -> C.Calibration:
    return C.load_calibration().scaled(SMALL)


def make_label_raw(w: int, h: int) -> np.ndarray:
    """Draw a raw (distorted-space) label image.

    Sky top third, sidewalk left quarter, road elsewhere, a car patch.
    """
    lab = np.empty((h, w, 3), np.uint8)
    lab[:] = ROAD
    lab[: h // 3] = SKY
    lab[h // 3:, : w // 4] = SIDEWALK
    lab[h // 2: h // 2 + 10, w // 2: w // 2 + 20] = CAR2
    return lab


def write_frame(root: Path, idx: int, cal: C.Calibration, camera: str = "front_center",
                scene: str = SCENE,
                modalities=("camera", "lidar", "label", "label3D"), n_points: int = 400,
                seed: int = 0, raw_subset: bool = False) -> Dict[str, Path]:
    """Write one frame in A2D2's layout and formats; returns modality -> path."""
    rng = np.random.default_rng(seed + idx)
    cam = cal.camera(camera)
    w, h = cam.resolution
    fcam = camera.replace("_", "")
    num = f"{idx:09d}"
    paths = {}

    def p(mod, ext):
        d = root / scene / mod / f"cam_{camera}"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{STAMP}_{mod}_{fcam}_{num}.{ext}"

    t_cam = T0_US + idx * 100_000
    # ground points + a few box points, projected with CamMatrix (undistorted row/col)
    x = rng.uniform(4, 40, n_points)
    y = rng.uniform(-8, 8, n_points)
    z = np.full(n_points, -1.78) + rng.normal(0, 0.02, n_points)
    pts = np.stack([x, y, z], 1)
    row, col, ok = C.project_view_points(pts, cam.cam_matrix)
    inside = ok & (row >= 0) & (row < h) & (col >= 0) & (col < w)
    pts, row, col = pts[inside], row[inside], col[inside]
    n = len(pts)
    if "lidar" in modalities:
        ts = t_cam + rng.integers(-40_000, 40_000, n)
        lid = rng.integers(0, 5, n).astype(np.float64)
        refl = rng.integers(0, 256, n).astype(np.int64)
        if raw_subset:
            valid = np.ones(n, bool)
            valid[::4] = False
            np.savez(p("lidar", "npz"), pcloud_points=pts, **{
                "pcloud_attr.reflectance": refl, "pcloud_attr.timestamp": ts,
                "pcloud_attr.row": row,
                "pcloud_attr.col": col, "pcloud_attr.lidar_id": lid, "pcloud_attr.valid": valid,
                "pcloud_attr.depth": pts[:, 0],
                "pcloud_attr.distance": np.linalg.norm(pts, axis=1)})
        else:
            np.savez_compressed(p("lidar", "npz"), points=pts, reflectance=refl, timestamp=ts,
                                row=row, col=col,
                                depth=pts[:, 0], distance=np.linalg.norm(pts, axis=1),
                                azimuth=np.arctan2(pts[:, 1], pts[:, 0]), lidar_id=lid)
        paths["lidar"] = p("lidar", "npz")
    if "camera" in modalities:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(p("camera", "png")), img[..., ::-1])
        side = {"cam_name": camera, "cam_tstamp": t_cam,
                "lidar_ids": {"0": "front_left", "1": "rear_right", "2": "front_right",
                              "3": "front_center", "4": "rear_left"}}
        p("camera", "json").write_text(json.dumps(side))
        paths["camera"] = p("camera", "png")
    if "label" in modalities:
        cv2.imwrite(str(p("label", "png")), make_label_raw(w, h)[..., ::-1])
        paths["label"] = p("label", "png")
    if "label3D" in modalities:
        boxes = {}
        specs = [("Car", [15.0, 2.0, -1.0], [4.2, 1.8, 1.5], [0, 0, -1], 0.3),
                 ("Pedestrian", [9.0, -3.0, -0.9], [0.6, 0.7, 1.75], [0, 0, 1], 1.2),
                 ("Truck", [30.0, -5.0, -0.2], [9.0, 2.5, 3.2], [0, 0, -1], -2.5)]
        for i, (cls, c, s, a, ang) in enumerate(specs):
            boxes[f"box_{i}"] = {"id": i, "class": cls, "center": c, "size": s, "axis": a,
                                 "rot_angle": ang,
                                 "3d_points": tutorial_corners(c, s, a, ang).tolist(),
                                 "2d_bbox": [0, 0, 10, 10], "truncation": 0.0, "occlusion": 0.0,
                                 "alpha": 0.0}
        p("label3D", "json").write_text(json.dumps(boxes))
        paths["label3D"] = p("label3D", "json")
    return paths


def write_scene(root: Path, n: int = 3, camera: str = "front_center", **kw) -> C.Calibration:
    """Write a scene of ``n`` frames at 240x151 with its own cams_lidars.json.

    Returns its calibration.
    """
    cal = small_calibration()
    root.mkdir(parents=True, exist_ok=True)
    (root / "cams_lidars.json").write_text(json.dumps(cal.to_json_dict()))
    for i in range(n):
        write_frame(root, i + 1, cal, camera=camera, **kw)
    return cal


# ------------------------------------------------------------------------------------ classes
def test_class_map_55_colours_38_classes_and_palette():
    cm = K.default_class_map()
    assert len(cm.colours) == 55
    assert (cm.class_present.all()
            and len(cm.class_id_to_colour) == len(A2D2_SEMANTIC_CLASSES) == 38)
    # every numbered variant merges: Car 1..4 -> Car (id 0); palette = first colour (#ff0000)
    car = [i for i, n in enumerate(cm.colour_names) if n.startswith("Car ")]
    assert len(car) == 4 and set(cm.colour_class_ids[car]) == {0}
    assert tuple(K.class_id_to_colour[0]) == (255, 0, 0)
    assert K.DRIVABLE_CLASS_IDS[0] == A2D2_SEMANTIC_CLASSES.index("RD normal street")
    assert A2D2_SEMANTIC_CLASSES.index("Sidewalk") not in K.DRIVABLE_CLASS_IDS


def test_label_colours_round_trip():
    cm = K.default_class_map()
    img = np.repeat(cm.colours[None], 3, axis=0)  # (3, 55, 3): every colour
    ids = K.rgb_label_to_ids(img)
    np.testing.assert_array_equal(ids[0], cm.colour_class_ids)
    assert tuple(np.asarray(_colour_of("Sidewalk"))) == tuple(SIDEWALK)
    # ids -> palette colours -> ids is the identity
    all_ids = np.arange(38, dtype=np.uint8)[None]
    np.testing.assert_array_equal(K.rgb_label_to_ids(K.ids_to_rgb(all_ids)), all_ids)


def test_unknown_colour_error_names_file_and_colour():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:] = ROAD
    img[1, 2] = (1, 2, 3)
    with pytest.raises(K.UnknownColourError) as ei:
        K.rgb_label_to_ids(img, path="/x/lab.png")
    assert "/x/lab.png" in str(ei.value) and "#010203" in str(ei.value)
    ids = K.rgb_label_to_ids(img, strict=False)
    assert ids[1, 2] == 255 and ids[0, 0] == A2D2_SEMANTIC_CLASSES.index("RD normal street")


# ------------------------------------------------------------------------------------ calibration
def test_calibration_transforms_orthonormal_and_front_center_origin():
    cal = C.load_calibration()
    for name in list(cal.cameras) + ["lidar_" + k for k in cal.lidar_views]:
        T = cal.view(name)
        R = T[:3, :3]
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
        assert abs(np.linalg.det(R) - 1) < 1e-12
    T = cal.transform("front_center", "vehicle")
    np.testing.assert_allclose(T[:3, 3], [1.711, 0.0, 0.943], atol=2e-3)
    # x axis of the view = normalised x-axis entry
    raw = json.load(open(C.CAMS_LIDARS_PATH))["cameras"]["front_center"]["view"]["x-axis"]
    np.testing.assert_allclose(T[:3, 0], np.asarray(raw) / np.linalg.norm(raw), atol=1e-12)
    # view A -> B -> A is identity; A -> B equals inv(T_B) T_A applied to a point
    AB, BA = cal.transform("front_center", "side_left"), cal.transform("side_left", "front_center")
    np.testing.assert_allclose(BA @ AB, np.eye(4), atol=1e-12)
    p = np.array([[10.0, 1.0, -1.0]])
    pv = C.transform_points(cal.view("front_center"), p)
    np.testing.assert_allclose(C.transform_points(AB, p),
                               C.transform_points(C.invert_transform(cal.view("side_left")), pv))
    # ground in the front_center view frame: vehicle ground z=0 lies ~0.94 m below the camera
    g = C.transform_points(cal.transform("vehicle", "front_center"), np.array([[10.0, 0.0, 0.0]]))
    assert -1.2 < g[0, 2] < -0.7


def test_projection_formula_and_optical_frame():
    K3 = np.array([[1000.0, 0, 500], [0, 900.0, 300], [0, 0, 1]])
    row, col, ok = C.project_view_points(np.array([[10.0, 2.0, -1.0], [-1.0, 0, 0]]), K3)
    assert ok.tolist() == [True, False]
    assert (col[0] == pytest.approx(500 - 1000 * 2 / 10)
            and row[0] == pytest.approx(300 + 900 * 1 / 10))
    # the same through the optical frame and a pinhole: u = fx X/Z + cx
    po = C.OPTICAL_FROM_VIEW @ np.array([10.0, 2.0, -1.0])
    assert po[2] == 10.0 and 1000 * po[0] / po[2] + 500 == pytest.approx(col[0])
    assert 900 * po[1] / po[2] + 300 == pytest.approx(row[0])
    back = C.unproject_pixels(row[:1], col[:1], np.array([10.0]), K3)
    np.testing.assert_allclose(back[0], [10, 2, -1])


def test_scaled_calibration_and_undistort_inverse():
    cal = C.load_calibration()
    fc = cal.camera("front_center")
    s = fc.scaled(SMALL)
    assert s.resolution == SMALL
    assert s.cam_matrix[0, 0] == pytest.approx(fc.cam_matrix[0, 0] / 8)
    assert s.cam_matrix[0, 2] == pytest.approx((fc.cam_matrix[0, 2] + 0.5) / 8 - 0.5)
    np.testing.assert_array_equal(s.distortion, fc.distortion)
    # distort then undistort a smooth image returns it (inside the common field of view)
    w, h = SMALL
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx, yy, xx + yy], -1).astype(np.uint8)
    for cam in (s, cal.camera("side_left").scaled(SMALL)):
        back = C.undistort_image(C.distort_image(img, cam), cam)
        inner = np.abs(back[30:120, 40:200].astype(int) - img[30:120, 40:200])
        assert np.median(inner) <= 1, cam.name
    with pytest.raises(ValueError, match="calibrated for"):
        C.undistort_image(np.zeros((10, 10, 3), np.uint8), s)


def test_calibration_error_names_file(tmp_path):
    bad = {"cameras": {"front_center": {"view": {"origin": [0, 0, 0], "x-axis": [1, 0, 0],
                                                 "y-axis": [0, 1, 0]},
                                        "CamMatrixOriginal": np.eye(3).tolist(),
                                        "Distortion": [[0, 0, 0, 0, 0]],
                                        "Lens": "Telecam", "Resolution": [10, 10]}}}
    f = tmp_path / "cams_lidars.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(C.CalibrationError, match=r"cams_lidars\.json.*front_center.*CamMatrix"):
        C.load_calibration(str(f))


# ------------------------------------------------------------------------------------ boxes
def test_box_yaw_and_corners_match_file_3d_points(tmp_path):
    cal = small_calibration()
    paths = write_frame(tmp_path, 1, cal)
    data = json.loads(paths["label3D"].read_text())
    lab = parse_label3d(data, str(paths["label3D"]))
    assert lab.classes == ["Car", "Pedestrian", "Truck"]
    assert lab.boxes[0, 6] == pytest.approx(-0.3)       # axis [0,0,-1]: yaw = -rot_angle
    assert lab.boxes[1, 6] == pytest.approx(1.2)        # axis [0,0,+1]: yaw = +rot_angle
    assert lab.boxes[2, 6] == pytest.approx(2.5)
    np.testing.assert_allclose(lab.boxes[0, 3:6], [4.2, 1.8, 1.5], rtol=1e-6)
    corners = box_corners(lab.boxes)
    np.testing.assert_allclose(corners, lab.points3d, atol=1e-5)   # same points, same order
    # order: corner 1 (bottom-front-left) minus corner 0 (bottom-rear-left) points along heading
    d = corners[:, 1] - corners[:, 0]
    np.testing.assert_allclose(np.arctan2(d[:, 1], d[:, 0]), lab.boxes[:, 6], atol=1e-5)


def test_tilted_box_warns_and_missing_key_names_file():
    box = {"class": "Car", "center": [5, 0, 0], "size": [4, 2, 1.5], "axis": [0.3, 0, 1],
           "rot_angle": 0.5}
    with pytest.warns(UserWarning, match="tilted"):
        lab = parse_label3d({"box_0": box}, "f.json")
    assert np.isfinite(lab.boxes[0, 6])
    with pytest.raises(A2D2FormatError, match=r"f\.json.*box_0.*'size'"):
        parse_label3d({"box_0": {k: v for k, v in box.items() if k != "size"}}, "f.json")


# ------------------------------------------------------------------------------------ reader
def test_dataset_reads_frames(tmp_path):
    write_scene(tmp_path, 2)
    ds = A2D2Dataset(str(tmp_path))
    assert len(ds) == 2 and ds.scenes == [SCENE]
    assert ds.calibration.path.endswith("cams_lidars.json") and ds.cam.resolution == SMALL
    f = ds.load_frame(0)
    raw = np.load(ds.frames[0].paths["lidar"])
    np.testing.assert_allclose(f.points, raw["points"].astype(np.float32))
    assert (f.points.dtype == np.float32 and f.reflectance.dtype == np.float32
            and f.timestamp.dtype == np.int64)
    assert f.lidar_id.dtype == np.uint8 and set(np.unique(f.lidar_id)) <= set(range(5))
    np.testing.assert_array_equal(f.reflectance, raw["reflectance"].astype(np.float32))
    assert f.cam_tstamp == T0_US + 100_000 and f.lidar_ids[3] == "front_center"
    assert tai_us_to_utc_ns(f.cam_tstamp) == (T0_US + 100_000 - 37_000_000) * 1000
    assert f.image.shape == (SMALL[1], SMALL[0], 3) and f.image.dtype == np.uint8
    # the image is undistorted: equals undistort(raw PNG as RGB)
    rawimg = cv2.imread(str(ds.frames[0].paths["camera"]))[..., ::-1]
    np.testing.assert_array_equal(f.image, C.undistort_image(np.ascontiguousarray(rawimg), ds.cam))
    # label: ids == nearest-neighbour undistortion of the known raw ids (255 outside)
    raw_ids = K.rgb_label_to_ids(make_label_raw(*SMALL))
    exp = C.undistort_image(raw_ids, ds.cam, cv2.INTER_NEAREST, border_value=255)
    np.testing.assert_array_equal(f.semantic, exp)
    vals = set(np.unique(f.semantic).tolist())
    assert {A2D2_SEMANTIC_CLASSES.index(n)
            for n in ("RD normal street", "Sidewalk", "Sky", "Car")} <= vals
    g = ds.load_frame(0, undistort=False)
    np.testing.assert_array_equal(g.semantic, raw_ids)
    assert f.boxes.shape == (3, 7) and f.box_classes[0] == "Car"
    np.testing.assert_allclose(box_corners(f.boxes), f.box_points3d, atol=1e-5)
    # lidar row/col are consistent with CamMatrix projection in the undistorted image
    r, c, _ = C.project_view_points(f.points, ds.cam.cam_matrix)
    np.testing.assert_allclose(f.row, r, atol=1e-3)
    np.testing.assert_allclose(f.col, c, atol=1e-3)
    assert f.points_xyzi.shape == (len(f.points), 4)


def test_raw_subset_keys_and_valid_filter(tmp_path):
    cal = small_calibration()
    paths = write_frame(tmp_path, 7, cal, raw_subset=True, modalities=("lidar",))
    z = np.load(paths["lidar"])
    scan = load_lidar_npz(str(paths["lidar"]))
    valid = z["pcloud_attr.valid"]
    assert scan.dropped_invalid == int((~valid).sum()) > 0
    np.testing.assert_allclose(scan.points, z["pcloud_points"][valid].astype(np.float32))
    np.testing.assert_array_equal(scan.timestamp, z["pcloud_attr.timestamp"][valid])


def test_scan_report_missing_modalities(tmp_path):
    cal = write_scene(tmp_path, 2)
    write_frame(tmp_path, 3, cal, modalities=("lidar", "camera"))
    write_frame(tmp_path, 4, cal, modalities=("camera", "label"))   # no lidar: skipped
    ds = A2D2Dataset(str(tmp_path))
    rep = ds.scan_report()
    assert rep["frames"] == 3 and rep["skipped"] == 1
    assert rep["missing"] == {"camera": 0, "lidar": 1, "label": 1, "label3D": 2}
    assert rep["missing_frames"]["label3D"] == [f"{SCENE}/000000003", f"{SCENE}/000000004"]
    assert "skipped" in rep["summary"]
    f = ds.load_frame(2)
    assert f.semantic is None and f.boxes.shape == (0, 7) and f.missing == ("label", "label3D")
    ds_all = A2D2Dataset(str(tmp_path), require=())
    assert len(ds_all) == 4
    assert ds_all.load_frame(3).points.shape == (0, 3)


def test_bad_files_raise_naming_the_file(tmp_path):
    write_scene(tmp_path, 3)
    ds = A2D2Dataset(str(tmp_path))
    lid = ds.frames[0].paths["lidar"]
    data = open(lid, "rb").read()
    open(lid, "wb").write(data[: len(data) // 2])                        # truncated npz
    with pytest.raises(A2D2FormatError, match=os.path.basename(lid)):
        ds.load_frame(0)
    cam = ds.frames[1].paths["camera"]
    cv2.imwrite(cam, np.zeros((20, 30, 3), np.uint8))                    # PNG of the wrong size
    with pytest.raises(A2D2FormatError, match=os.path.basename(cam) + ".*30x20"):
        ds.load_frame(1)
    side = os.path.splitext(ds.frames[2].paths["camera"])[0] + ".json"
    Path(side).write_text(json.dumps({"cam_name": "front_center"}))     # JSON missing a key
    with pytest.raises(A2D2FormatError, match=os.path.basename(side) + ".*cam_tstamp"):
        ds.load_frame(2)
    lab = ds.frames[2].paths["label"]
    img = make_label_raw(*SMALL)
    img[0, 0] = (1, 2, 3)
    cv2.imwrite(lab, img[..., ::-1])                                     # unknown colour
    Path(side).write_text(json.dumps({"cam_tstamp": 5}))
    with pytest.raises(A2D2FormatError, match=os.path.basename(lab) + ".*#010203"):
        ds.load_frame(2)


def test_other_camera_by_name(tmp_path):
    write_scene(tmp_path, 1, camera="side_left")
    with pytest.raises(FileNotFoundError):
        A2D2Dataset(str(tmp_path))        # no front_center frames
    ds = A2D2Dataset(str(tmp_path), camera="cam_side_left")
    f = ds.load_frame(0)
    assert (f.camera == "side_left" and ds.cam.lens == "Fisheye"
            and f.image.shape == (SMALL[1], SMALL[0], 3))


# ------------------------------------------------------------------------------------ generator
def generate_small(out: Path, frames: int = 2) -> dict:
    """2 generated frames at 256x160 with a coarse lidar (fast)."""
    from bev_mtl_ros.data.synth import generate
    from bev_mtl_ros.data.synth_lidar import LidarConfig
    return generate(str(out), scenes=1, frames=frames, width=256, height=160,
                    lidar=LidarConfig(az_step_deg=0.4), return_ground_truth=True)


def test_reader_reads_generated_frames(tmp_path):
    summary = generate_small(tmp_path)
    ds = A2D2Dataset(str(tmp_path))
    rep = ds.scan_report()
    assert rep["frames"] == 2 and rep["missing"] == {"camera": 0, "lidar": 0, "label": 0,
                                                     "label3D": 0}
    assert ds.cam.resolution == (256, 160)
    n_points = []
    for i in range(2):
        f = ds.load_frame(i)
        n_points.append(f.points.shape[0])
        assert f.points.shape[0] > 100
        assert f.image.shape == (160, 256, 3) and f.semantic.shape == (160, 256)
        assert set(np.unique(f.semantic).tolist()) - {255} <= set(range(38))
        assert A2D2_SEMANTIC_CLASSES.index("RD normal street") in f.semantic
        assert len(f.boxes) > 0 and set(f.box_classes) <= {
            "Car",
            "VanSUV",
            "Truck",
            "Pedestrian",
            "Cyclist",
            "Bicycle",
        }
        # corner test: computed corners equal the file's 3d_points, same order
        assert np.isfinite(f.box_points3d).all()
        np.testing.assert_allclose(box_corners(f.boxes), f.box_points3d, atol=1e-4)
        # lidar row/col agree with the CamMatrix projection and fall inside the image
        r, c, ok = C.project_view_points(f.points, ds.cam.cam_matrix)
        assert ok.all()
        np.testing.assert_allclose(f.row, r, atol=0.01)
        np.testing.assert_allclose(f.col, c, atol=0.01)
        # points painted through row/col mostly land on road/ground classes or objects, not sky
        from bev_mtl_ros.data.drivable import paint_points
        cls = paint_points(f.row, f.col, f.semantic)
        assert np.mean(cls == A2D2_SEMANTIC_CLASSES.index("Sky")) < 0.05
    assert np.mean(n_points) == pytest.approx(summary["points_mean"])
