"""Output message builders.

Detection3DArray, markers, drivable image/grid, semantic, LabelInfo, diagnostics.
"""

import math

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message wheels not installed")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into the venv (see msgs/)")

from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from bev_mtl_ros.model.contract import ModelContract  # noqa: E402
from bev_mtl_ros.ros import messages as M  # noqa: E402

CLASSES = ("Car", "Truck", "Pedestrian", "Cyclist")


def _header():
    h = Header()
    h.stamp.sec, h.stamp.nanosec, h.frame_id = 1234, 5678, "cam_front_center"
    return h


BOXES = np.array([[10.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.5],
                  [20.0, -3.0, -0.8, 0.6, 0.6, 1.8, -2.0]], dtype=np.float32)
SCORES = np.array([0.9, 0.4], np.float32)
LABELS = np.array([0, 2], np.int64)


def test_detection3d_array_fields_and_header():
    msg = M.detections_to_msg(BOXES, SCORES, LABELS, CLASSES, _header())
    assert msg.header.stamp.sec == 1234 and msg.header.stamp.nanosec == 5678
    assert msg.header.frame_id == "cam_front_center"
    assert len(msg.detections) == 2
    d = msg.detections[0]
    assert d.header.frame_id == "cam_front_center" and d.header.stamp.sec == 1234
    assert d.results[0].hypothesis.class_id == "Car"
    assert d.results[0].hypothesis.score == pytest.approx(0.9)
    assert msg.detections[1].results[0].hypothesis.class_id == "Pedestrian"
    c = d.bbox.center
    assert (c.position.x, c.position.y, c.position.z) == (10.0, 2.0, -1.0)
    q = c.orientation
    assert (q.x, q.y) == (0.0, 0.0)
    assert 2 * math.atan2(q.z, q.w) == pytest.approx(0.5, abs=1e-6)
    assert (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) == (4.0, 2.0, 1.5)
    q1 = msg.detections[1].bbox.center.orientation
    assert 2 * math.atan2(q1.z, q1.w) == pytest.approx(-2.0, abs=1e-6)
    assert d.results[0].pose.pose.position.x == 10.0


def test_empty_detection_array_keeps_header():
    msg = M.detections_to_msg(np.zeros((0, 7), np.float32), np.zeros(0, np.float32),
                              np.zeros(0, np.int64), CLASSES, _header())
    assert len(msg.detections) == 0 and msg.header.stamp.sec == 1234


def test_box_edge_points():
    b = np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 6.0, math.pi / 2]])
    e = M.box_edge_points(b).reshape(12, 2, 3)
    # yaw 90 deg: the length axis points along +y; edge 0 runs from corner 0 to corner 1
    np.testing.assert_allclose(e[0], [[0.0, 4.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(e[9], [[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]], atol=1e-9)
    q = M.yaw_to_quaternion(0.5)
    assert (q.x, q.y) == (0.0, 0.0) and 2 * math.atan2(q.z, q.w) == pytest.approx(0.5)
    assert M.box_edge_points(np.repeat(BOXES, 3, axis=0)).shape == (6 * 24, 3)


def test_markers_deleteall_first_then_boxes_and_labels():
    ma = M.detections_to_markers(BOXES, SCORES, LABELS, CLASSES, _header())
    assert ma.markers[0].action == Marker.DELETEALL
    lines = [m for m in ma.markers if m.type == Marker.LINE_LIST]
    texts = [m for m in ma.markers if m.type == Marker.TEXT_VIEW_FACING]
    # one LINE_LIST per class
    assert len(lines) == 2 and [len(m.points) for m in lines] == [24, 24]
    assert len({(m.ns, m.id) for m in lines}) == 2
    assert ((lines[0].color.r, lines[0].color.g, lines[0].color.b)
            == pytest.approx(M.CLASS_COLOURS["Car"]))
    assert ((lines[1].color.r, lines[1].color.g, lines[1].color.b)
            == pytest.approx(M.CLASS_COLOURS["Pedestrian"]))
    assert [t.text for t in texts] == ["Car 0.90", "Pedestrian 0.40"]
    assert len({(t.ns, t.id) for t in texts}) == 2
    assert all(m.header.stamp.sec == 1234 and m.header.frame_id == "cam_front_center"
               for m in ma.markers)
    # every edge vertex lies on the box surface: max |local coords| = half extents
    p = np.array([[pt.x, pt.y, pt.z] for pt in lines[0].points[:24]])
    assert p[:, 2].min() == pytest.approx(-1.75) and p[:, 2].max() == pytest.approx(-0.25)
    empty = M.detections_to_markers(np.zeros((0, 7)), np.zeros(0), np.zeros(0, np.int64), CLASSES,
                                    _header())
    assert len(empty.markers) == 1 and empty.markers[0].action == Marker.DELETEALL


def test_drivable_image_and_occupancy_grid_geometry():
    c = ModelContract()
    gw, gh = c.grid_size
    mask = np.zeros((gh, gw), np.uint8)
    mask[10, 200] = 1  # iy = 10, ix = 200
    img = M.drivable_to_image(mask, _header())
    assert (img.height, img.width, img.encoding, img.step) == (gh, gw, "mono8", gw)
    arr = np.frombuffer(img.data, np.uint8).reshape(gh, gw)
    assert arr[10, 200] == 255 and arr.sum() == 255
    grid = M.drivable_to_occupancy_grid(mask, c.point_cloud_range, c.pillar_size, _header())
    assert grid.info.resolution == pytest.approx(0.32)
    assert (grid.info.width, grid.info.height) == (gw, gh)
    assert ((grid.info.origin.position.x, grid.info.origin.position.y)
            == (0.0, pytest.approx(-40.96)))
    assert grid.header.frame_id == "cam_front_center" and grid.info.map_load_time.sec == 1234
    data = np.asarray(grid.data, dtype=np.int8)
    assert data.size == gw * gh and set(np.unique(data)) == {0, 100}
    assert data[10 * gw + 200] == 0  # drivable
    # that cell's centre in metres: x = x_min + (ix + 0.5) * res, y = y_min + (iy + 0.5) * res
    x = grid.info.origin.position.x + (200 + 0.5) * grid.info.resolution
    y = grid.info.origin.position.y + (10 + 0.5) * grid.info.resolution
    assert (x, y) == (pytest.approx(64.16), pytest.approx(-37.6))
    with pytest.raises(ValueError, match="square"):
        M.drivable_to_occupancy_grid(mask, c.point_cloud_range, (0.32, 0.16), _header())


def test_semantic_image_and_overlay():
    ids = np.array([[0, 1], [255, 2]], np.uint8)
    rgb = np.full((2, 2, 3), 100, np.uint8)
    m = M.semantic_to_image(ids, _header())
    assert m.encoding == "mono8" and bytes(m.data) == bytes([0, 1, 255, 2])
    pal = np.array([[0, 0, 0], [255, 255, 255], [200, 0, 100]], np.uint8)
    o = M.semantic_overlay(rgb, ids, _header(), alpha=0.5, palette=pal)
    out = np.frombuffer(o.data, np.uint8).reshape(2, 2, 3)
    assert o.encoding == "rgb8"
    np.testing.assert_array_equal(out[0, 0], [50, 50, 50])
    np.testing.assert_array_equal(out[0, 1], [178, 178, 178])  # (100 + 255) / 2 rounded
    np.testing.assert_array_equal(out[1, 0], [100, 100, 100])  # unknown id keeps the camera pixel
    np.testing.assert_array_equal(out[1, 1], [150, 50, 100])
    # default A2D2 palette
    o2 = M.semantic_overlay(rgb, np.zeros((2, 2), np.uint8), _header(), alpha=1.0)
    from bev_mtl_ros.data.classes import class_id_to_colour

    assert tuple(np.frombuffer(o2.data, np.uint8)[:3]) == tuple(class_id_to_colour[0])
    with pytest.raises(ValueError, match="differ"):
        M.semantic_overlay(rgb, np.zeros((3, 2), np.uint8), _header())


def test_label_info():
    c = ModelContract()
    li = M.label_info_msg(c.semantic_classes, _header(), threshold=0.0)
    assert len(li.class_map) == 38
    assert li.class_map[0].class_id == 0 and li.class_map[0].class_name == "Car"
    assert li.class_map[34].class_name == "Sky"


def test_diagnostics_and_timings():
    st = M.diagnostic_status("perception_node: pipeline", "WARN", "pillars dropped",
                             {"rate_in_hz": 9.87654, "skipped_frames": 3}, hardware_id="cpu")
    assert st.level == b"\x01" and st.values[0].value == "9.877" and st.values[1].value == "3"
    arr = M.diagnostic_array([st], _header().stamp)
    assert arr.header.stamp.sec == 1234 and len(arr.status) == 1
    t = M.timings_msg({"convert": 1.5, "infer": 20.0, "total": 22.0})
    assert t.layout.dim[0].label == "convert,infer,total" and list(t.data) == [1.5, 20.0, 22.0]
