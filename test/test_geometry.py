"""bev_mtl_ros.geometry: corners, yaw <-> quaternion and rotated BEV IoU on hand-computed cases."""

import math
import subprocess
import sys

import numpy as np
import pytest

from bev_mtl_ros import geometry as G


def test_unit_box_corners_documented_order():
    c = G.box_corners_3d(np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]))
    h = 0.5
    np.testing.assert_array_equal(c[0], [[h, h, -h], [-h, h, -h], [-h, -h, -h], [h, -h, -h],
                                         [h, h, h], [-h, h, h], [-h, -h, h], [h, -h, h]])
    assert c.dtype == np.float64
    np.testing.assert_array_equal(G.box_corners_bev(np.array([[0.0, 0, 0, 1, 1, 1, 0]]))[0],
                                  c[0, :4, :2])


def test_rotated_corners_and_bev_agree():
    b = np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 6.0, math.pi / 2]], np.float32)
    c = G.box_corners_3d(b)
    # yaw 90 deg: the length axis points along +y
    np.testing.assert_allclose(c[0, 0], [0.0, 4.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(c[0, 6], [2.0, 0.0, 6.0], atol=1e-6)
    five = b[:, [0, 1, 3, 4, 6]]
    np.testing.assert_array_equal(G.box_corners_bev(five), c[:, :4, :2])
    np.testing.assert_array_equal(G.box_corners_bev(b), c[:, :4, :2])
    assert G.box_corners_3d(np.zeros((0, 7))).shape == (0, 8, 3)
    with pytest.raises(ValueError):
        G.box_corners_3d(five)
    with pytest.raises(ValueError):
        G.box_corners_bev(np.zeros((2, 6)))


def test_edges_join_corners_differing_in_one_axis():
    s = G.CORNER_SIGNS
    assert len({tuple(sorted(e)) for e in G.BOX_EDGES.tolist()}) == 12
    for i, j in G.BOX_EDGES:
        assert int((s[i] != s[j]).sum()) == 1


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, math.pi / 2, math.pi - 1e-9, math.pi, -math.pi])
def test_yaw_quaternion_round_trip(yaw):
    q = G.yaw_to_quaternion(yaw)
    assert q.shape == (4,) and q[0] == 0.0 and q[1] == 0.0
    assert np.linalg.norm(q) == pytest.approx(1.0)
    back = float(G.quaternion_to_yaw(q))
    # +pi and -pi are the same rotation: compare on the circle
    assert abs(float(G.normalize_yaw(back - yaw))) < 1e-12
    assert -math.pi <= back <= math.pi


def test_quaternion_vectorised_and_known_values():
    yaw = np.array([[0.0, math.pi / 2], [math.pi, -math.pi / 2]])
    q = G.yaw_to_quaternion(yaw)
    assert q.shape == (2, 2, 4)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(q[0, 1], [0, 0, s, s], atol=1e-15)
    np.testing.assert_allclose(q[1, 1], [0, 0, -s, s], atol=1e-15)
    np.testing.assert_allclose(G.quaternion_to_yaw(q)[0], [0.0, math.pi / 2], atol=1e-12)
    with pytest.raises(ValueError):
        G.quaternion_to_yaw([0.0, 0.0, 1.0])


def test_normalize_yaw():
    np.testing.assert_allclose(G.normalize_yaw([math.pi, -math.pi, 3 * math.pi / 2, 0.1]),
                               [-math.pi, -math.pi, -math.pi / 2, 0.1])


def _sq(x=0.0, y=0.0, yaw=0.0, side=2.0):
    return [x, y, 0.0, side, side, 1.0, yaw]


def test_iou_identical_disjoint_rotated_squares():
    a = np.array([_sq()])
    assert G.rotated_bev_iou(a, a)[0, 0] == pytest.approx(1.0, abs=1e-12)
    # a square turned by 90 degrees is the same square
    assert G.rotated_bev_iou(a, np.array([_sq(yaw=math.pi / 2)]))[0, 0] == pytest.approx(1.0)
    assert G.rotated_bev_iou(a, np.array([_sq(x=2.5)]))[0, 0] == 0.0           # disjoint
    assert G.rotated_bev_iou(a, np.array([_sq(x=50.0)]))[0, 0] == 0.0
    # 2x1 rectangle and the same turned by 90 degrees: intersection 1x1, union 3
    r = np.array([[0.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0]])
    r90 = np.array([[0.0, 0.0, 0.0, 2.0, 1.0, 1.0, math.pi / 2]])
    assert G.rotated_bev_iou(r, r90)[0, 0] == pytest.approx(1 / 3, abs=1e-12)
    # square vs the same square turned 45 degrees: regular octagon
    octagon = 8 * (math.sqrt(2) - 1)
    iou = G.rotated_bev_iou(a, np.array([_sq(yaw=math.pi / 4)]))[0, 0]
    assert iou == pytest.approx(octagon / (8 - octagon), abs=1e-12)


def test_iou_shapes_dtypes_candidates_and_errors():
    a = np.array([_sq(), _sq(x=1.0)], np.float32)
    iou = G.rotated_bev_iou(a, a[:, [0, 1, 3, 4, 6]])
    assert iou.shape == (2, 2) and iou.dtype == np.float64
    assert iou[0, 1] == pytest.approx(1 / 3)
    only = G.rotated_bev_iou(a, a, candidates=np.array([[False, True], [False, False]]))
    np.testing.assert_array_equal(only, [[0.0, iou[0, 1]], [0.0, 0.0]])
    assert G.rotated_bev_iou(np.zeros((0, 7)), a).shape == (0, 2)
    with pytest.raises(ValueError):
        G.rotated_bev_iou(np.zeros((2, 6)), a)
    with pytest.raises(ValueError):
        G.rotated_bev_iou(a, a, candidates=np.ones((3, 2), bool))


def test_importable_without_torch_and_rclpy():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'rclpy'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import bev_mtl_ros.geometry as g\n"
            "print(g.rotated_bev_iou([[0, 0, 2, 2, 0]], [[0, 0, 2, 2, 0]])[0, 0])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1.0"
