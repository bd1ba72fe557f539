"""a2d2-to-bag: A2D2-format scenes -> rosbag2 (mcap, sqlite3) read back with rosbags."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_a2d2_reader import T0_US, write_scene  # noqa: E402

from bev_mtl_ros.data import bag_io, to_bag  # noqa: E402
from bev_mtl_ros.data.a2d2 import A2D2Dataset  # noqa: E402
from bev_mtl_ros.data.calibration import OPTICAL_FROM_VIEW  # noqa: E402

CAM_T = [T0_US + i * 100_000 for i in (1, 2, 3)]


def _quat_to_R(q):
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2d2")
    write_scene(root, 3)
    return root


@pytest.mark.parametrize("storage,compress",
                         [("mcap", False), ("sqlite3", False), ("mcap", True), ("sqlite3", True)])
def test_round_trip(scene, tmp_path, storage, compress):
    out = tmp_path / "bag"
    st = to_bag.convert(str(scene), str(out), storage=storage, compress=compress, progress=False)
    assert st.frames_written == 3 and st.frames_skipped == 0 and st.bytes > 0
    tn = to_bag.topic_names("front_center")
    assert tn["image"] == "/a2d2/camera/front_center/image_rect"
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == storage
    counts = {t["topic_metadata"]["name"]: t["message_count"]
              for t in meta["topics_with_message_count"]}
    assert counts == {tn["points"]: 3, tn["image"]: 3, tn["camera_info"]: 3, tn["tf_static"]: 1,
                      tn["boxes"]: 3, tn["semantic"]: 3}
    qos = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])
           for t in meta["topics_with_message_count"]}
    assert qos["/tf_static"][0]["durability"] == 1 and qos[tn["points"]][0]["durability"] == 2

    msgs = list(bag_io.read_bag_messages(str(out)))
    assert msgs[0][0] == "/tf_static"
    by_topic = {}
    for topic, t, m in msgs:
        by_topic.setdefault(topic, []).append((t, m))
    ds = A2D2Dataset(str(scene))
    expect_ns = [(t - 37_000_000) * 1000 for t in CAM_T]
    for topic in (tn["points"], tn["image"], tn["camera_info"], tn["boxes"], tn["semantic"]):
        got = [t for t, _ in by_topic[topic]]
        hdr = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in by_topic[topic]]
        assert got == expect_ns and hdr == expect_ns, topic
    fids = {topic: {m.header.frame_id for _, m in v} for topic, v in by_topic.items()
            if topic != "/tf_static"}
    assert fids == {tn["points"]: {"cam_front_center"}, tn["image"]: {"cam_front_center_optical"},
                    tn["camera_info"]: {"cam_front_center_optical"},
                    tn["boxes"]: {"cam_front_center"},
                    tn["semantic"]: {"cam_front_center_optical"}}

    # tf_static: base_link -> cam_front_center (calibration) -> optical
    tf = by_topic["/tf_static"][0][1].transforms
    assert [(x.header.frame_id, x.child_frame_id) for x in tf] == [
        ("base_link", "cam_front_center"), ("cam_front_center", "cam_front_center_optical")]
    T = ds.cam.view_to_vehicle
    tr = tf[0].transform
    np.testing.assert_allclose([tr.translation.x, tr.translation.y, tr.translation.z], T[:3, 3],
                               atol=1e-9)
    r = tr.rotation
    np.testing.assert_allclose(_quat_to_R([r.x, r.y, r.z, r.w]), T[:3, :3], atol=1e-9)
    r = tf[1].transform.rotation
    np.testing.assert_allclose(_quat_to_R([r.x, r.y, r.z, r.w]) @ OPTICAL_FROM_VIEW, np.eye(3),
                               atol=1e-9)

    for k in range(3):
        f = ds.load_frame(k)
        cloud = bag_io.cloud_to_structured(by_topic[tn["points"]][k][1])
        np.testing.assert_array_equal(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), f.points)
        np.testing.assert_array_equal(cloud["intensity"], f.reflectance)
        np.testing.assert_array_equal(cloud["lidar_id"], f.lidar_id)
        np.testing.assert_allclose(cloud["t"], (f.timestamp - CAM_T[k]) * 1e-6, atol=1e-6)
        assert np.abs(cloud["t"]).max() < 0.05          # within the camera's +-40 ms window
        img = by_topic[tn["image"]][k][1]
        assert img.encoding == "rgb8" and img.step == img.width * 3
        np.testing.assert_array_equal(bag_io.image_to_array(img), f.image)
        sem = by_topic[tn["semantic"]][k][1]
        assert sem.encoding == "mono8"
        np.testing.assert_array_equal(bag_io.image_to_array(sem), f.semantic)
        info = by_topic[tn["camera_info"]][k][1]
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), ds.cam.cam_matrix)
        np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], ds.cam.cam_matrix)
        assert (info.distortion_model == "plumb_bob" and not np.any(info.d)
                and (info.width, info.height) == (240, 151))
        dets = by_topic[tn["boxes"]][k][1].detections
        assert [d.results[0].hypothesis.class_id for d in dets] == f.box_classes
        for d, b in zip(dets, f.boxes):
            c, s, q = d.bbox.center.position, d.bbox.size, d.bbox.center.orientation
            np.testing.assert_allclose([c.x, c.y, c.z, s.x, s.y, s.z], b[:6], rtol=1e-6)
            assert 2 * np.arctan2(q.z, q.w) == pytest.approx(float(b[6]), abs=1e-6)
            assert d.results[0].hypothesis.score == 1.0


def test_bad_frame_skipped_and_counted(scene, tmp_path, caplog):
    import shutil
    src = tmp_path / "a2d2"
    shutil.copytree(scene, src)
    ds = A2D2Dataset(str(src))
    lid = Path(ds.frames[1].paths["lidar"])
    lid.write_bytes(lid.read_bytes()[:100])                  # truncated npz
    st = to_bag.convert(str(src), str(tmp_path / "bag"), storage="mcap", progress=False)
    assert st.frames_written == 2 and st.frames_skipped == 1
    assert lid.name in st.skipped[0] and any(lid.name in r.getMessage() for r in caplog.records)
    tn = to_bag.topic_names()
    assert (st.messages[tn["points"]] == 2 and st.messages[tn["image"]] == 2
            and st.messages["/tf_static"] == 1)
    n = sum(1 for topic, _, _ in bag_io.read_bag_messages(str(tmp_path / "bag"),
                                                          topics=[tn["image"]], deserialize=False))
    assert n == 2
    # a topic the bag does not have yields nothing (rosbags alone would read every connection)
    assert list(bag_io.read_bag_messages(str(tmp_path / "bag"), topics=["/not/in/bag"])) == []


def test_cli_and_max_frames(scene, tmp_path, capsys):
    from bev_mtl_ros.cli import main
    out = tmp_path / "bag"
    rc = main(["a2d2-to-bag", str(scene), str(out), "--storage", "sqlite3", "--max-frames", "2",
               "--no-progress", "--throughput"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "2 frames" in text and "frames/s" in text
    assert main(["a2d2-to-bag", str(scene), str(out), "--no-progress"]) == 2     # output exists


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_generated_scene_round_trip(tmp_path, storage):
    from test_a2d2_reader import generate_small
    generate_small(tmp_path / "synth", frames=3)
    st = to_bag.convert(str(tmp_path / "synth"), str(tmp_path / "bag"), storage=storage,
                        progress=False)
    assert st.frames_written == 3 and st.frames_skipped == 0
    tn = to_bag.topic_names()
    by_topic = {}
    for topic, t, m in bag_io.read_bag_messages(str(tmp_path / "bag")):
        by_topic.setdefault(topic, []).append((t, m))
    assert {k: len(v) for k, v in by_topic.items()} == {tn["points"]: 3, tn["image"]: 3,
                                                        tn["camera_info"]: 3,
                                                        "/tf_static": 1, tn["boxes"]: 3,
                                                        tn["semantic"]: 3}
    ds = A2D2Dataset(str(tmp_path / "synth"))
    for k in range(3):
        f = ds.load_frame(k)
        stamp = (f.cam_tstamp - 37_000_000) * 1000
        for topic in (tn["points"], tn["image"], tn["boxes"], tn["semantic"]):
            assert by_topic[topic][k][0] == stamp
        cloud = bag_io.cloud_to_structured(by_topic[tn["points"]][k][1])
        np.testing.assert_array_equal(cloud["x"], f.points[:, 0])
        np.testing.assert_allclose(cloud["t"], (f.timestamp - f.cam_tstamp) * 1e-6, atol=1e-6)
        dets = by_topic[tn["boxes"]][k][1].detections
        got = np.array([[d.bbox.center.position.x, d.bbox.center.position.y,
                         d.bbox.center.position.z, d.bbox.size.x, d.bbox.size.y, d.bbox.size.z,
                         2 * np.arctan2(d.bbox.center.orientation.z,
                                        d.bbox.center.orientation.w)] for d in dets])
        np.testing.assert_allclose(got[:, :6], f.boxes[:, :6], rtol=1e-6, atol=1e-6)
        dyaw = np.angle(np.exp(1j * (got[:, 6] - f.boxes[:, 6])))
        assert np.abs(dyaw).max() < 1e-5
        assert [d.id for d in dets] == f.box_ids
        np.testing.assert_array_equal(bag_io.image_to_array(by_topic[tn["image"]][k][1]), f.image)


def test_rclpy_reads_bag_bytes(scene, tmp_path):
    """The CDR written by rosbags deserialises with the installed rclpy types.

    rosbags writes with the Humble definitions.
    """
    try:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from tf2_msgs.msg import TFMessage
        from vision_msgs.msg import Detection3DArray
    except ImportError as e:  # pragma: no cover - rclpy wheels / vision_msgs not installed
        pytest.skip(f"rclpy message packages not installed: {e}")
    out = tmp_path / "bag"
    to_bag.convert(str(scene), str(out), storage="mcap", progress=False, max_frames=1)
    tn = to_bag.topic_names()
    types = {tn["points"]: PointCloud2, tn["image"]: Image, tn["camera_info"]: CameraInfo,
             "/tf_static": TFMessage, tn["boxes"]: Detection3DArray, tn["semantic"]: Image}
    ref = {topic: m for topic, _, m in bag_io.read_bag_messages(str(out))}
    for topic, _, raw in bag_io.read_bag_messages(str(out), deserialize=False):
        m = deserialize_message(raw, types[topic])
        if topic == "/tf_static":
            assert [t.child_frame_id
                    for t in m.transforms] == ["cam_front_center", "cam_front_center_optical"]
            continue
        assert m.header.frame_id == ref[topic].header.frame_id
        if topic == tn["points"]:
            assert m.width == ref[topic].width and [f.name for f in m.fields] == [
                "x", "y", "z", "intensity", "lidar_id", "t"]
            assert bytes(m.data) == bytes(ref[topic].data)
        if topic == tn["boxes"]:
            assert [d.results[0].hypothesis.class_id
                    for d in m.detections] == ["Car", "Pedestrian", "Truck"]
            assert m.detections[0].bbox.size.x == pytest.approx(4.2)


def test_scene_filter(tmp_path):
    from test_a2d2_reader import write_frame
    cal = write_scene(tmp_path / "a2d2", 2)
    write_frame(tmp_path / "a2d2", 5, cal, scene="20190401_121727")
    st = to_bag.convert(str(tmp_path / "a2d2"), str(tmp_path / "b1"), scene="20190401_121727",
                        progress=False)
    assert st.frames_written == 1 and st.messages["/a2d2/lidar/points"] == 1
    st = to_bag.convert(str(tmp_path / "a2d2"), str(tmp_path / "b2"), progress=False)
    assert st.frames_written == 3
    with pytest.raises(to_bag.BagConversionError, match="no frames of scene"):
        to_bag.convert(str(tmp_path / "a2d2"), str(tmp_path / "b3"), scene="nope", progress=False)


def test_cloud_frame_base_link_full_tf_tree(scene, tmp_path, capsys):
    """--cloud-frame base_link: clouds in the vehicle frame; /tf_static holds every sensor.

    Every camera (view and optical) and lidar of cams_lidars.json; the tree maps the clouds back
    onto the view-frame points of the default conversion (the node's TF path).
    """
    from bev_mtl_ros.cli import main
    from bev_mtl_ros.ros.tf import TransformBuffer, transform_points

    view, base = tmp_path / "view", tmp_path / "base"
    assert main(["a2d2-to-bag", str(scene), str(base), "--cloud-frame", "base_link",
                 "--no-progress"]) == 0
    to_bag.convert(str(scene), str(view), progress=False)
    tn = to_bag.topic_names()
    got = {}
    for topic, _, m in bag_io.read_bag_messages(str(base)):
        got.setdefault(topic, []).append(m)
    ref = [m for _, _, m in bag_io.read_bag_messages(str(view), topics=[tn["points"]])]
    assert {m.header.frame_id for m in got[tn["points"]]} == {"base_link"}
    # ground truth unchanged
    assert {m.header.frame_id for m in got[tn["boxes"]]} == {"cam_front_center"}
    ds = A2D2Dataset(str(scene))
    cal = ds.calibration
    edges = [(x.header.frame_id, x.child_frame_id) for x in got["/tf_static"][0].transforms]
    assert edges[:2] == [("base_link", "cam_front_center"),
                         ("cam_front_center", "cam_front_center_optical")]
    want = ({("base_link", f"cam_{c}") for c in cal.cameras}
            | {(f"cam_{c}", f"cam_{c}_optical") for c in cal.cameras}
            | {("base_link", f"lidar_{k}") for k in cal.lidar_views})
    assert set(edges) == want and len(edges) == len(want)
    assert len(cal.cameras) > 1 and cal.lidar_views
    buf = TransformBuffer()
    buf.add_message(got["/tf_static"][0], static=True)
    T = buf.lookup("cam_front_center", "base_link")
    for mb, mv in zip(got[tn["points"]], ref):
        cb, cv = bag_io.cloud_to_structured(mb), bag_io.cloud_to_structured(mv)
        xyz_v = np.stack([cv["x"], cv["y"], cv["z"]], 1)
        xyz_b = np.stack([cb["x"], cb["y"], cb["z"]], 1)
        assert np.abs(xyz_b - xyz_v).max() > 0.1            # really another frame
        back = transform_points(xyz_b.astype(np.float32), T)
        np.testing.assert_allclose(back, xyz_v, atol=2e-5)  # float32 storage, metres
        np.testing.assert_array_equal(cb["intensity"], cv["intensity"])
    # the optical frame through the tree equals OPTICAL_FROM_VIEW
    R = buf.lookup("cam_front_center_optical", "cam_front_center").rotation.as_matrix()
    np.testing.assert_allclose(R, OPTICAL_FROM_VIEW, atol=1e-12)
    with pytest.raises(to_bag.BagConversionError, match="cloud frame"):
        to_bag.convert(str(scene), str(tmp_path / "x"), cloud_frame="lidar", progress=False)


def _by_topic(bag):
    out = {}
    for topic, t, m in bag_io.read_bag_messages(str(bag)):
        out.setdefault(topic, []).append((t, m))
    return out


def test_camera_image_raw_and_png(scene, tmp_path):
    """--camera-image raw / png: the image as recorded with the raw image's CameraInfo.

    png: the file's bytes, unchanged. Undistorting the image with that CameraInfo, as the node
    does, gives exactly the default (rect) conversion's image. Within a frame: CameraInfo, image,
    cloud.
    """
    from bev_mtl_ros.data.a2d2 import read_png_rgb
    from bev_mtl_ros.ros.camera import ImageRectifier

    bags = {}
    for mode in ("rect", "raw", "png"):
        bags[mode] = tmp_path / mode
        st = to_bag.convert(str(scene), str(bags[mode]), camera_image=mode, progress=False)
        assert st.frames_written == 3
    ds = A2D2Dataset(str(scene))
    cam = ds.cam
    got = {mode: _by_topic(b) for mode, b in bags.items()}
    tn = {mode: to_bag.topic_names("front_center", mode) for mode in bags}
    assert tn["raw"]["image"] == "/a2d2/camera/front_center/image_raw"
    assert tn["png"]["image"] == "/a2d2/camera/front_center/image_raw/compressed"
    assert bag_io.bag_topic_types(bags["png"])[tn["png"]["image"]] == \
        "sensor_msgs/msg/CompressedImage"
    for i, rec in enumerate(ds.frames):
        rect = got["rect"][tn["rect"]["image"]][i][1]
        raw = got["raw"][tn["raw"]["image"]][i][1]
        png = got["png"][tn["png"]["image"]][i][1]
        assert png.format == "png"
        assert bytes(png.data) == Path(rec.paths["camera"]).read_bytes()
        file_rgb = read_png_rgb(rec.paths["camera"])
        np.testing.assert_array_equal(bag_io.image_to_array(raw), file_rgb)
        np.testing.assert_array_equal(bag_io.image_to_array(png), file_rgb)
        for mode in ("raw", "png"):
            info = got[mode][tn[mode]["camera_info"]][i][1]
            assert info.distortion_model == "plumb_bob" and (info.width, info.height) == (240, 151)
            np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), cam.cam_matrix_original)
            np.testing.assert_array_equal(info.d, cam.distortion)
            np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], cam.cam_matrix)
            r = ImageRectifier()
            r.update(info)
            out = r.rectify(bag_io.image_to_array(png))
            assert out.status == "undistorted"
            np.testing.assert_array_equal(out.image, bag_io.image_to_array(rect))
            np.testing.assert_array_equal(out.camera_matrix, cam.cam_matrix)
            # ground truth semantics stay in the undistorted geometry (the node's output's)
            np.testing.assert_array_equal(
                bag_io.image_to_array(got[mode][tn[mode]["semantic"]][i][1]),
                bag_io.image_to_array(got["rect"][tn["rect"]["semantic"]][i][1]))
        rect_info = got["rect"][tn["rect"]["camera_info"]][i][1]
        assert not np.any(rect_info.d)
    order = [topic for topic, _, _
             in bag_io.read_bag_messages(str(bags["png"]), deserialize=False)]
    assert order[:4] == ["/tf_static", tn["png"]["camera_info"], tn["png"]["image"],
                         tn["png"]["points"]]
    with pytest.raises(to_bag.BagConversionError, match="camera image"):
        to_bag.convert(str(scene), str(tmp_path / "x"), camera_image="jpeg", progress=False)


def test_png_of_wrong_size_skipped_and_counted(tmp_path):
    import cv2
    root = tmp_path / "a2d2"
    write_scene(root, 2)
    ds = A2D2Dataset(str(root))
    cv2.imwrite(ds.frames[1].paths["camera"], np.zeros((10, 12, 3), np.uint8))
    st = to_bag.convert(str(root), str(tmp_path / "bag"), camera_image="png", progress=False)
    assert (st.frames_written, st.frames_skipped) == (1, 1)
    assert "12x10" in st.skipped[0] and "240x151" in st.skipped[0]
    assert to_bag.png_size(Path(ds.frames[0].paths["camera"]).read_bytes()) == (240, 151)
    with pytest.raises(to_bag.A2D2FormatError, match="not a PNG"):
        to_bag.png_size(b"GIF89a" + bytes(40), "x.gif")


def test_period_restamps_frames_and_keeps_recorded_stamps(scene, tmp_path):
    """--period: frame k at first stamp + k * period, all of a frame's messages alike.

    The points' own times (t) are unchanged; the recorded stamps go to the custom data.
    """
    import json

    ref, out = tmp_path / "ref", tmp_path / "restamped"
    to_bag.convert(str(scene), str(ref), progress=False)
    st = to_bag.convert(str(scene), str(out), period_s=0.5, camera_image="png", progress=False)
    recorded = [(t - 37_000_000) * 1000 for t in CAM_T]
    want = [recorded[0] + k * 500_000_000 for k in range(3)]
    got = _by_topic(out)
    for topic, msgs in got.items():
        if topic != "/tf_static":
            assert {bag_io.stamp_ns(m) for _, m in msgs} <= set(want), topic
            assert all(t == bag_io.stamp_ns(m) for t, m in msgs)
    tn = to_bag.topic_names()
    assert [bag_io.stamp_ns(m) for _, m in got[tn["points"]]] == want
    for (_, a), (_, b) in zip(got[tn["points"]], _by_topic(ref)[tn["points"]]):
        np.testing.assert_array_equal(bag_io.cloud_to_structured(a)["t"],
                                      bag_io.cloud_to_structured(b)["t"])
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    custom = meta["custom_data"]
    assert float(custom["bev_mtl_ros.stamp_period_s"]) == 0.5
    keys = [r.key for r in A2D2Dataset(str(scene)).frames]
    assert json.loads(custom["bev_mtl_ros.source_stamps"]) == \
        [[w, r, k] for w, r, k in zip(want, recorded, keys)]
    assert st.source_stamps == [(w, r, k) for w, r, k in zip(want, recorded, keys)]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(to_bag.BagConversionError, match="period"):
            to_bag.convert(str(scene), str(tmp_path / "x"), period_s=bad, progress=False)


REAL_DIR = Path(__file__).resolve().parent / "data" / "real_a2d2"
REAL_BAG = Path(__file__).resolve().parent / "data" / "real_a2d2_bag"


def test_committed_real_recording_matches_its_a2d2_files():
    """test/data/real_a2d2_bag holds what its README says.

    The ten lidar frames of test/data/real_a2d2 (the lidar-less one left out), camera PNG bytes
    unchanged, the raw CameraInfo of A2D2's calibration, clouds in base_link, frames 0.5 s apart
    from the first frame's recorded stamp, the recorded stamps in the custom data.
    """
    import json

    from bev_mtl_ros.data.a2d2 import load_camera_sidecar

    assert REAL_BAG.exists() and REAL_DIR.exists()
    meta = yaml.safe_load((REAL_BAG / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    custom = meta["custom_data"]
    assert custom["bev_mtl_ros.camera_image"] == "png"
    # zstd-compressed mcap chunks: the camera PNGs (34.8 MB) plus ~1.8 MB for everything else
    assert sum(f.stat().st_size for f in REAL_BAG.iterdir()) < 40e6
    src = json.loads(custom["bev_mtl_ros.source_stamps"])
    ds = A2D2Dataset(str(REAL_DIR))
    assert [k for _, _, k in src] == [r.key for r in ds.frames] and len(src) == 10
    assert [r.key for r in ds.skipped] == ["20181107133258/000000250"]
    got = _by_topic(REAL_BAG)
    tn = to_bag.topic_names("front_center", "png")
    cam = ds.cam
    for k, (rec, (bag_ns, recorded_ns, _)) in enumerate(zip(ds.frames, src)):
        sidecar = load_camera_sidecar(rec.paths["camera"][:-4] + ".json")
        assert recorded_ns == (sidecar["cam_tstamp"] - 37_000_000) * 1000
        assert bag_ns == src[0][1] + k * 500_000_000
        png = got[tn["image"]][k][1]
        assert bag_io.stamp_ns(png) == bag_ns
        assert bytes(png.data) == Path(rec.paths["camera"]).read_bytes()
        info = got[tn["camera_info"]][k][1]
        np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), cam.cam_matrix_original)
        np.testing.assert_array_equal(info.d, cam.distortion)
        cloud = got[tn["points"]][k][1]
        assert cloud.header.frame_id == "base_link" and bag_io.stamp_ns(cloud) == bag_ns
    assert np.any(cam.distortion) and (cam.width, cam.height) == (1920, 1208)
    assert len(got[tn["boxes"]]) == 5
