"""The node's own TF buffer (bev_mtl_ros.ros.tf).

Known answers for chain composition, inverse, stamped look-ups (interpolation, extrapolation
refused, latest), unconnected frames named, the bounded wait, and the vectorised point transform.
No ROS needed.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace as NS

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bev_mtl_ros.ros.tf import RigidTransform, TransformBuffer, TransformError, transform_points

SEC = 1_000_000_000


def yaw_tf(yaw_deg: float, t=(0.0, 0.0, 0.0)) -> RigidTransform:
    return RigidTransform(Rotation.from_euler("z", yaw_deg, degrees=True), np.asarray(t, float))


def tf_msg(parent, child, t, q, sec=0, nanosec=0):
    """Build a TFMessage-shaped object (what rclpy and rosbags messages look like)."""
    return NS(
        transforms=[
            NS(
                header=NS(frame_id=parent, stamp=NS(sec=sec, nanosec=nanosec)),
                child_frame_id=child,
                transform=NS(
                    translation=NS(x=t[0], y=t[1], z=t[2]),
                    rotation=NS(x=q[0], y=q[1], z=q[2], w=q[3]),
                ),
            )
        ]
    )


@pytest.fixture
def tree() -> TransformBuffer:
    """base_link -> lidar (1 m forward, 2 m up, yawed +90 deg), base_link -> cam (0.5 m left)."""
    b = TransformBuffer()
    b.set_transform("base_link", "lidar", yaw_tf(90, (1.0, 0.0, 2.0)), 0, static=True)
    b.set_transform("base_link", "cam", yaw_tf(0, (0.0, 0.5, 0.0)), 0, static=True)
    return b


def test_chain_composition_known_answer(tree):
    # lidar point (1, 0, 0): yawed +90 deg -> (0, 1, 0) in base axes, + (1, 0, 2) = (1, 1, 2) in
    # base_link; in cam (origin at y = 0.5): (1, 0.5, 2)
    T = tree.lookup("cam", "lidar")
    np.testing.assert_allclose(
        T.rotation.apply([1.0, 0.0, 0.0]) + T.translation, [1.0, 0.5, 2.0], atol=1e-12
    )
    np.testing.assert_allclose(
        tree.lookup("base_link", "lidar").matrix() @ [1, 0, 0, 1], [1, 1, 2, 1], atol=1e-12
    )
    # the 4x4 product of the two edges, the way it is usually written down
    expected = np.linalg.inv(yaw_tf(0, (0, 0.5, 0)).matrix()) @ yaw_tf(90, (1, 0, 2)).matrix()
    np.testing.assert_allclose(T.matrix(), expected, atol=1e-12)


def test_longer_chain_and_common_ancestor_below_root():
    b = TransformBuffer()
    b.set_transform("map", "base_link", yaw_tf(30, (10, 5, 0)), 0, static=True)
    b.set_transform("base_link", "mount", yaw_tf(-45, (0.2, 0, 1.5)), 0, static=True)
    b.set_transform("mount", "lidar", yaw_tf(10, (0.1, 0.1, 0.1)), 0, static=True)
    b.set_transform("base_link", "cam", yaw_tf(5, (1.0, 0, 1.0)), 0, static=True)
    T = b.lookup("cam", "lidar")
    M = (
        np.linalg.inv(yaw_tf(5, (1.0, 0, 1.0)).matrix())
        @ yaw_tf(-45, (0.2, 0, 1.5)).matrix()
        @ yaw_tf(10, (0.1, 0.1, 0.1)).matrix()
    )
    np.testing.assert_allclose(T.matrix(), M, atol=1e-12)
    # the same through the root 'map' (a common ancestor above base_link gives the same answer)
    via_map = b.lookup("cam", "map").compose(b.lookup("map", "lidar"))
    np.testing.assert_allclose(via_map.matrix(), M, atol=1e-12)


def test_inverse_and_identity(tree):
    a, b = tree.lookup("cam", "lidar"), tree.lookup("lidar", "cam")
    np.testing.assert_allclose(a.compose(b).matrix(), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(a.inverse().matrix(), b.matrix(), atol=1e-12)
    assert tree.lookup("cam", "cam").is_identity() and tree.lookup("/cam", "cam").is_identity()
    assert not a.is_identity()


def test_stamped_lookup_interpolates_and_refuses_extrapolation():
    b = TransformBuffer()
    b.set_transform("odom", "base_link", yaw_tf(0, (0, 0, 0)), 1 * SEC, static=False)
    b.set_transform("odom", "base_link", yaw_tf(90, (1.0, 2.0, 0)), 2 * SEC, static=False)
    b.set_transform("base_link", "lidar", yaw_tf(0, (0, 0, 1.0)), 0, static=True)
    mid = b.lookup("odom", "lidar", 1 * SEC + SEC // 2)
    np.testing.assert_allclose(mid.translation, [0.5, 1.0, 1.0], atol=1e-12)  # linear translation
    assert mid.rotation.as_euler("zyx", degrees=True)[0] == pytest.approx(45.0)  # slerp
    np.testing.assert_allclose(
        b.lookup("odom", "lidar", 2 * SEC).translation, [1.0, 2.0, 1.0], atol=1e-12
    )
    np.testing.assert_allclose(
        b.lookup("odom", "lidar", 0).translation, [1.0, 2.0, 1.0], atol=1e-12
    )  # latest
    with pytest.raises(TransformError, match="extrapolation"):
        b.lookup("odom", "lidar", 3 * SEC)
    with pytest.raises(TransformError, match="extrapolation"):
        b.lookup("odom", "lidar", SEC // 2)


def test_dynamic_cache_forgets_old_stamps():
    b = TransformBuffer(cache_s=1.0)
    for k in range(5):
        b.set_transform("odom", "base_link", yaw_tf(0, (k, 0, 0)), k * SEC, static=False)
    with pytest.raises(TransformError):
        b.lookup("odom", "base_link", 1 * SEC + SEC // 2)  # before the cache window (3..4 s)
    assert b.lookup("odom", "base_link", 3 * SEC + SEC // 2).translation[0] == pytest.approx(3.5)


def test_unconnected_frames_are_named(tree):
    tree.set_transform("odom", "map_helper", yaw_tf(0), 0, static=True)
    with pytest.raises(TransformError) as e:
        tree.lookup("cam", "velodyne")
    assert "'velodyne' (unknown to TF)" in str(e.value) and "'cam' (tree root 'base_link')" in str(
        e.value
    )
    with pytest.raises(TransformError) as e:
        tree.lookup("cam", "map_helper")
    assert "tree root 'odom'" in str(e.value) and "tree root 'base_link'" in str(e.value)
    with pytest.raises(TransformError, match="no /tf or /tf_static"):
        TransformBuffer().lookup("a", "b")


def test_messages_in_and_reparenting():
    b = TransformBuffer()
    q = Rotation.from_euler("z", 90, degrees=True).as_quat()
    assert b.add_message(tf_msg("base_link", "lidar", (1, 0, 0), q), static=True) == 1
    bad = tf_msg("base_link", "x", (0, 0, 0), (0, 0, 0, 0))  # zero quaternion: skipped
    assert b.add_message(bad, static=True) == 0
    np.testing.assert_allclose(
        b.lookup("base_link", "lidar").matrix() @ [0, 1, 0, 1], [0, 0, 0, 1], atol=1e-12
    )
    b.add_message(
        tf_msg("top", "lidar", (0, 0, 3), (0, 0, 0, 1)), static=True
    )  # new parent replaces the old
    assert b.frames() == ["lidar", "top"]  # base_link had no other edge
    np.testing.assert_allclose(b.lookup("top", "lidar").translation, [0, 0, 3])
    with pytest.raises(TransformError):
        b.lookup("base_link", "lidar")


def test_static_lookup_cache_is_invalidated_by_updates(tree):
    assert tree.lookup("base_link", "cam").translation[1] == pytest.approx(0.5)
    tree.set_transform("base_link", "cam", yaw_tf(0, (0, -0.5, 0)), 0, static=True)
    assert tree.lookup("base_link", "cam").translation[1] == pytest.approx(-0.5)


def test_wait_lookup_returns_when_the_transform_arrives_and_times_out(tree):
    def late():
        time.sleep(0.15)
        tree.set_transform("base_link", "velodyne", yaw_tf(0, (0, 0, 1.8)), 0, static=True)

    th = threading.Thread(target=late)
    t0 = time.monotonic()
    th.start()
    T = tree.wait_lookup("base_link", "velodyne", 0, timeout_s=5.0)
    th.join()
    assert 0.1 <= time.monotonic() - t0 < 4.0 and T.translation[2] == pytest.approx(1.8)
    t0 = time.monotonic()
    with pytest.raises(TransformError):
        tree.wait_lookup("base_link", "nowhere", 0, timeout_s=0.1)
    assert 0.09 <= time.monotonic() - t0 < 2.0


def test_transform_points_in_place_vectorised():
    pts = np.array([[1, 0, 0, 7], [0, 2, 0, 8], [np.nan, 0, 0, 9]], np.float32)
    out = transform_points(pts, yaw_tf(90, (1.0, 0.0, 2.0)))
    assert out is pts and out.dtype == np.float32
    np.testing.assert_allclose(pts[:2, :3], [[1, 1, 2], [-1, 0, 2]], atol=1e-6)
    np.testing.assert_array_equal(pts[:, 3], [7, 8, 9])  # intensity untouched
    assert np.isnan(pts[2, 0])
    assert transform_points(np.zeros((0, 4), np.float32), yaw_tf(10)).shape == (0, 4)
    with pytest.raises(ValueError):
        transform_points(np.zeros((3, 2), np.float32), yaw_tf(0))


def test_a2d2_view_frame_round_trip_through_the_tree():
    """base_link -> cam_front_center from cams_lidars.json.

    Vehicle-frame points looked up into the camera view frame equal inv(view_to_vehicle) applied
    to them.
    """
    from bev_mtl_ros.data.calibration import load_calibration, rotation_to_quaternion

    V = np.asarray(load_calibration().cameras["front_center"].view_to_vehicle)
    b = TransformBuffer()
    b.add_message(
        tf_msg("base_link", "cam_front_center", V[:3, 3], rotation_to_quaternion(V[:3, :3])), True
    )
    rng = np.random.default_rng(0)
    p_view = rng.uniform(-40, 80, (1000, 3))
    p_base = p_view @ V[:3, :3].T + V[:3, 3]
    back = transform_points(p_base.copy(), b.lookup("cam_front_center", "base_link"))
    np.testing.assert_allclose(back, p_view, atol=1e-9)


def test_tf2_ros_source_adapter_with_a_stand_in_module(monkeypatch):
    """The tf2_ros path (ROS 2 distributions; not installable in the pip-only venv).

    With a stand-in ``tf2_ros`` module, make_transform_source picks it, passes target, source,
    the stamp and the bounded wait through, converts the TransformStamped and maps tf2's
    exceptions to TransformError.
    """
    import sys
    import types

    pytest.importorskip("rclpy")
    from bev_mtl_ros.ros.tf import make_transform_source

    calls = []

    class TransformException(Exception):
        pass

    class Buffer:
        def __init__(self, cache_time=None):
            self.cache_time = cache_time

        def lookup_transform(self, target, source, time, timeout=None):
            calls.append((target, source, time.nanoseconds, timeout.nanoseconds))
            if source == "nowhere":
                raise TransformException("frame does not exist")
            q = (0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4))   # +90 deg about z
            return tf_msg(target, source, (1.0, 2.0, 3.0), q).transforms[0]

    stand_in = types.ModuleType("tf2_ros")
    stand_in.Buffer, stand_in.TransformException = Buffer, TransformException
    stand_in.TransformListener = lambda buffer, node: ("listener", buffer, node)
    monkeypatch.setitem(sys.modules, "tf2_ros", stand_in)
    src = make_transform_source(node="the node", cache_s=5.0)
    assert src.mode == "tf2_ros" and src.buffer.cache_time.nanoseconds == 5 * SEC
    T = src.lookup("base_link", "velodyne", 3 * SEC + 7, 0.25)
    assert calls == [("base_link", "velodyne", 3 * SEC + 7, SEC // 4)]
    np.testing.assert_allclose(T.matrix() @ [1, 0, 0, 1], [1, 3, 3, 1], atol=1e-12)
    with pytest.raises(TransformError, match="frame does not exist"):
        src.lookup("base_link", "nowhere", 0, 0.1)


# ------------------------------------------------------------------ issue 23
def test_overflowing_quaternion_refused_before_it_is_stored():
    """Issue 23 defect 2: rotation (1e200, 1e200, 0, 1e200) on /tf.

    Its norm overflows to infinity; it used to pass the check and be stored as a zero quaternion
    that broke every later look-up with SciPy's ValueError.
    """
    refused = []
    b = TransformBuffer(on_invalid=refused.append)
    b.set_transform("base_link", "cam_front_center", yaw_tf(0), 0, static=True)
    msg = tf_msg("cam_front_center", "lidar_big", (0, 0, 0), (1e200, 1e200, 0, 1e200), sec=5)
    assert b.add_message(msg, static=False) == 0
    assert len(refused) == 1 and "'cam_front_center' -> 'lidar_big' refused" in refused[0]
    assert "norm inf" in refused[0] and refused[0].startswith("/tf transform")
    with pytest.raises(TransformError, match="'lidar_big' \\(unknown to TF\\)"):
        b.lookup("cam_front_center", "lidar_big", 5 * SEC)
    # tiny components underflow to a zero norm: refused as well; large finite ones normalise
    with pytest.raises(ValueError, match="norm 0"):
        RigidTransform.from_quaternion((0, 0, 0), (1e-200, 0, 0, 1e-200))
    big = RigidTransform.from_quaternion((0, 0, 0), (0, 0, 1e150, 1e150))  # +90 deg about z
    np.testing.assert_allclose(big.rotation.apply([1.0, 0, 0]), [0, 1, 0], atol=1e-12)


def test_reparented_frame_reported_by_name():
    """A dynamic /tf that re-parents a frame of /tf_static is reported, and named on failure."""
    notes = []
    b = TransformBuffer(on_reparent=notes.append)
    b.set_transform("base_link", "lidar", yaw_tf(0, (1, 0, 0)), 0, static=True)
    b.set_transform("base_link", "cam_front_center", yaw_tf(0), 0, static=True)
    assert notes == [] and b.lookup("cam_front_center", "lidar").translation[0] == 1.0
    b.add_message(tf_msg("odom", "cam_front_center", (0, 0, 0), (0, 0, 0, 1), sec=3), False)
    assert notes == ["frame 'cam_front_center' re-parented from 'base_link' (static) to 'odom' "
                     "(dynamic, stamp 3.000 s): a frame has one parent, the old edge is gone"]
    with pytest.raises(TransformError) as e:
        b.lookup("cam_front_center", "lidar", 3 * SEC)
    assert "frame 'cam_front_center' re-parented from 'base_link'" in str(e.value)
    # /tf_static re-published: connected again (and reported, it is another parent change)
    b.set_transform("base_link", "cam_front_center", yaw_tf(0), 0, static=True)
    assert len(notes) == 2 and b.lookup("cam_front_center", "lidar").translation[0] == 1.0


def test_unconnected_frame_waits_once_per_tree_and_abort_ends_the_wait(tree):
    """The TF wait is bounded per frame name, not per cloud; a newer frame ends it early."""
    def timed(**kw):
        t0 = time.monotonic()
        with pytest.raises(TransformError):
            tree.wait_lookup("base_link", "lidar_nowhere", 0, timeout_s=0.2, **kw)
        return time.monotonic() - t0

    assert timed() >= 0.19  # the first cloud in this frame waits tf_timeout
    assert timed() < 0.02  # the same frame again, tree unchanged: no second wait
    tree.set_transform("base_link", "radar", yaw_tf(0), 0, static=True)  # the tree changes
    assert timed() >= 0.19  # waited again: the new edge might have connected it
    t0 = time.monotonic()
    with pytest.raises(TransformError):
        tree.wait_lookup("base_link", "other_nowhere", 0, timeout_s=5.0,
                         abort=lambda: time.monotonic() - t0 > 0.05)
    assert time.monotonic() - t0 < 0.5  # ended by abort, not after 5 s
