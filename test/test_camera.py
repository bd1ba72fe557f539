"""ros.camera: undistortion through CameraInfo and the comparison with the model's camera.

Known answer: an image distorted with A2D2's calibration comes back. Also rectified images used as
they are, maps cached per calibration, the other CameraInfo cases, and the comparison with the
model's nominal camera. No ROS needed.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

from bev_mtl_ros.data.calibration import distort_image, load_calibration
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.ros.camera import ImageRectifier, nominal_camera_mismatch

W, H = 480, 302


def scene(w=W, h=H):
    """Draw a smooth RGB picture (gradients + low-frequency waves).

    Interpolation error stays small on it.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 29.0)
    g = 255 * xx / w
    b = 255 * yy / h
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def info_for(cam, model=None, raw=True):
    """Return CameraInfo fields of a raw (distorted) image of ``cam``.

    With ``raw=False``: of its rectified image.
    """
    P = np.zeros((3, 4))
    P[:, :3] = cam.cam_matrix
    K = cam.cam_matrix_original if raw else cam.cam_matrix
    d = np.asarray(cam.distortion, float).reshape(-1) if raw else np.zeros(5)
    return NS(
        width=cam.width,
        height=cam.height,
        distortion_model=model or ("equidistant" if cam.is_fisheye else "plumb_bob"),
        d=d.tolist(),
        k=np.asarray(K).reshape(9).tolist(),
        r=np.eye(3).reshape(9).tolist(),
        p=P.reshape(12).tolist(),
    )


@pytest.mark.parametrize(
    "name", ["front_center", "side_left"]
)  # radial-tangential and fisheye lenses
def test_distorted_image_comes_back(name):
    cam = load_calibration().cameras[name].scaled((W, H))
    rect = scene()
    raw = distort_image(rect, cam)
    r = ImageRectifier()
    r.update(info_for(cam))
    out = r.rectify(raw)
    assert out.status == "undistorted" and out.image.shape == rect.shape
    np.testing.assert_allclose(out.camera_matrix, cam.cam_matrix)
    inner = (slice(H // 8, -H // 8), slice(W // 8, -W // 8))  # away from the unmapped border
    err = np.abs(out.image[inner].astype(int) - rect[inner].astype(int))
    before = np.abs(
        raw[inner].astype(int) - rect[inner].astype(int)
    )  # not undistorted: visibly off
    assert err.mean() < 0.2 and before.mean() > 3.0, (err.mean(), before.mean())
    assert np.percentile(err, 99) <= 2, np.percentile(err, 99)


def test_maps_cached_per_calibration_and_resolution(monkeypatch):
    """One map computation per calibration and resolution, however many frames.

    The network's image (a quarter of the camera's size here) is undistorted at that size, the
    full image at full size: two computations for the first frame, none for the next ones, and
    none before an image is asked for.
    """
    import cv2

    calls = []
    real = cv2.initUndistortRectifyMap
    monkeypatch.setattr(cv2, "initUndistortRectifyMap",
                        lambda *a: calls.append(a[4]) or real(*a))
    cam = load_calibration().cameras["front_center"].scaled((W, H))
    r = ImageRectifier()
    raw = distort_image(scene(), cam)
    for _ in range(3):
        r.update(info_for(cam))  # same content, new message each frame
        out = r.rectify(raw)
        assert out.reduced((W // 4, H // 4)).shape == (H // 4, W // 4, 3)
        assert out.image.shape == (H, W, 3)
    assert calls == [(W // 4, H // 4), (W, H)]
    other = info_for(cam)
    other.d[0] = -0.2
    r.update(other)
    out = r.rectify(raw)
    assert len(calls) == 2  # nothing computed before it is asked for
    out.reduced((W // 4, H // 4))
    assert len(calls) == 3


def test_network_image_undistorted_at_reduced_resolution():
    """``reduced`` undistorts an area-halved raw image; the network input barely changes.

    At a network input of a third of the camera's size, the raw image is halved once and
    undistorted at half size; resized to the network input it is within 1 grey level on average
    of the full-resolution undistortion resized the same way (0.58 on the real A2D2 frames,
    bev_mtl_ros/ros/camera.py). An image without distortion is given back as it came, and once
    the full image exists the network gets that one.
    """
    from bev_mtl_ros.runtime.pipeline import resize_to_input
    cam = load_calibration().cameras["front_center"].scaled((W, H))
    raw = distort_image(scene(), cam)
    r = ImageRectifier()
    r.update(info_for(cam))
    net = (W // 3, H // 3)
    out = r.rectify(raw)
    half = out.reduced(net)
    assert half.shape == (H // 2, W // 2, 3) and out.reduced(net) is half  # kept
    inner = (slice(H // 24, -H // 24), slice(W // 24, -W // 24))
    full = r.rectify(raw).image
    err = np.abs(resize_to_input(half, net).astype(int) - resize_to_input(full, net))[inner]
    assert err.mean() < 1.0 and np.percentile(err, 99) <= 6, (err.mean(), np.percentile(err, 99))
    shown = out.for_display(net)  # for the overlay: the half-size image scaled back
    assert shown.shape == (H, W, 3)
    blur = np.abs(shown.astype(int) - full)[inner]
    assert blur.mean() < 2.0, blur.mean()
    same = r.rectify(raw)
    whole = same.image
    assert same.reduced(net) is whole and same.for_display(net) is whole  # no second one
    r.update(info_for(cam, raw=False))  # D = 0: nothing to undistort
    img = scene()
    plain = r.rectify(img)
    assert plain.reduced(net) is img and plain.image is img and plain.for_display(net) is img


def test_rectified_missing_and_unusable_camera_info():
    cam = load_calibration().cameras["front_center"].scaled((W, H))
    img = scene()
    r = ImageRectifier()
    assert r.rectify(img).status == "no_camera_info" and r.rectify(img).image is img
    r.update(info_for(cam, raw=False))  # D = 0: image_rect, used as it is
    out = r.rectify(img)
    assert out.status == "rectified" and out.image is img
    np.testing.assert_allclose(out.camera_matrix, cam.cam_matrix)
    r.update(info_for(cam))
    assert r.rectify(scene(320, 200)).status == "size_mismatch"
    r.update(info_for(cam, model="some_vendor_model"))
    assert r.rectify(img).status == "unknown_model"
    empty = info_for(cam, raw=False)
    empty.d = []  # D empty, P unset: K is the camera matrix
    empty.p = [0.0] * 12
    r.update(empty)
    out = r.rectify(img)
    assert out.status == "rectified"
    np.testing.assert_allclose(out.camera_matrix, cam.cam_matrix)


def test_nominal_camera_comparison():
    nominal = ModelContract().nominal_camera
    a2d2 = load_calibration().cameras["front_center"]
    assert nominal_camera_mismatch(a2d2.cam_matrix, a2d2.resolution, nominal) is None
    small = a2d2.scaled((W, H))  # same field of view at another size
    assert nominal_camera_mismatch(small.cam_matrix, (W, H), nominal) is None
    wide = np.array([[640.0, 0, 640], [0, 640.0, 360], [0, 0, 1]])  # 90 deg camera at 1280x720
    text = nominal_camera_mismatch(wide, (1280, 720), nominal)
    assert (
        text is not None
        and "fx 640.0" in text
        and "1687.3" in text
        and "1280x720" in text
        and "1920x1208" in text
    )


# ------------------------------------------------------------------ issue 23: validation, pairing
K_A2D2 = [1687.34, 0.0, 965.43, 0.0, 1783.43, 684.42, 0.0, 0.0, 1.0]


def issue_info(d, k=K_A2D2, p=None, model="plumb_bob"):
    """Return the CameraInfo fields of issue 23's reproductions (1920x1208, R = I, P = [K|0])."""
    if p is None:
        P = np.zeros((3, 4))
        P[:, :3] = np.reshape(k, (3, 3))
        p = P.reshape(12).tolist()
    return NS(width=1920, height=1208, distortion_model=model, d=list(d), k=list(k),
              r=np.eye(3).reshape(9).tolist(), p=list(p))


@pytest.mark.parametrize("info, words", [
    # defect 1: three coefficients for plumb_bob (OpenCV raised inside the undistortion)
    (issue_info([-0.25, 0.08, 0.001]), ["'plumb_bob' takes 4 / 5 / 8 / 12 / 14", "D has 3"]),
    # defect 3: NaN in D with a good K; K = P = 0 with non-zero D (both blacked the image out)
    (issue_info([float("nan"), 0, 0, 0, 0]), ["D has non-finite values"]),
    (issue_info([-0.25, 0.08, 0, 0, 0], k=[0.0] * 9, p=[0.0] * 12),
     ["K has focal lengths fx 0, fy 0", "uncalibrated"]),
    (issue_info([0.1, 0, 0, 0, 0.01], model="equidistant"), ["'equidistant' takes 4", "D has 5"]),
    (issue_info([0.1, 0, 0, 0, 0], k=K_A2D2[:8] + [0.0]), ["not a camera matrix"]),
])
def test_bad_camera_info_refused_on_arrival_and_image_used_as_is(info, words):
    img = np.random.default_rng(0).integers(0, 256, (1208, 1920, 3), dtype=np.uint8)
    r = ImageRectifier()
    problem = r.update(info)
    assert problem is not None and all(w in problem for w in words), problem
    out = r.rectify(img)  # no OpenCV error, no black image: the image as it came
    assert out.status == "camera_info_invalid" and out.image is img and out.problem == problem
    assert out.camera_matrix is None


def test_accepted_coefficient_counts_undistort():
    img = scene(1920, 1208)
    for n in (4, 5, 8, 12, 14):
        d = np.zeros(n)
        d[:2] = (-0.25, 0.08)
        r = ImageRectifier()
        assert r.update(issue_info(d)) is None
        out = r.rectify(img)
        assert out.status == "undistorted" and out.image.shape == img.shape
        # the centre pixel (principal point, no distortion there) keeps its value
        assert np.abs(out.image[684, 965].astype(int) - img[684, 965].astype(int)).max() <= 2
    assert ImageRectifier().update(issue_info([])) is None  # empty D: rectified camera


def test_camera_info_paired_with_the_image_by_stamp():
    cam = load_calibration().cameras["front_center"].scaled((W, H))
    raw = distort_image(scene(), cam)
    r = ImageRectifier(slop=0.05)
    assert r.update(info_for(cam), stamp_s=10.0) is None  # valid, with distortion
    bad = info_for(cam)
    bad.d = [float("nan")] * 5
    assert r.update(bad, stamp_s=10.1) is not None  # refused
    assert r.rectify(raw, 10.0).status == "undistorted"  # its own CameraInfo, not the latest
    assert r.rectify(raw, 10.02).status == "undistorted"  # nearest within slop
    assert r.rectify(raw, 10.1).status == "camera_info_invalid"
    assert r.rectify(raw, 12.0).status == "camera_info_invalid"  # none within slop: the latest
    assert r.rectify(raw).status == "camera_info_invalid"  # no stamp: the latest
    r.update(info_for(cam, raw=False), stamp_s=0.0)  # unstamped CameraInfo: the latest wins
    assert r.rectify(raw, 12.0).status == "rectified"
    np.testing.assert_allclose(r.camera_matrix(), cam.cam_matrix)
