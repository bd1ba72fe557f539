"""Augmentation keeps lidar, boxes, camera image and labels consistent.

Module under test: bev_mtl_ros.train.augment.
"""

import math

import numpy as np
import pytest

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.train.augment import (AugmentConfig, augment_sample, class_mix, flip_y,
                                       fourier_amplitude, fourier_domain_adaptation, photometric,
                                       rotate_scale)

C = ModelContract(point_cloud_range=(0.0, -5.12, -3.0, 10.24, 5.12, 3.0), pillar_size=(0.32, 0.32),
                  image_size=(64, 32)).validate()
K = np.array([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]])  # cx = (W - 1) / 2


def project(p):
    return K[1, 2] - K[1, 1] * p[:, 2] / p[:, 0], K[0, 2] - K[0, 0] * p[:, 1] / p[:, 0]


def cell_of(x, y):
    return int((y - C.point_cloud_range[1]) // 0.32), int((x - C.point_cloud_range[0]) // 0.32)


def sample():
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(2, 10, (50, 1)), rng.uniform(-4, 4, (50, 1)),
                rng.uniform(-2, 1, (50, 1)), rng.uniform(0, 255, (50, 1))].astype(np.float32)
    gw, gh = C.grid_size
    drv = np.zeros((gh, gw), np.uint8)
    drv[cell_of(3.0, 1.0)] = 1
    return {"points": pts, "boxes": np.array([[5.0, 1.0, -1.0, 4.0, 2.0, 1.5, 0.3]], np.float32),
            "labels": np.array([0]), "key": f"k{int(rng.integers(1 << 30))}",
            "image": rng.integers(0, 256, (32, 64, 3), dtype=np.uint8),
            "semantic": rng.integers(0, 38, (32, 64), dtype=np.uint8), "drivable": drv}


def test_flip_mirrors_everything_consistently():
    s = sample()
    f = flip_y(s, C)
    np.testing.assert_array_equal(f["points"][:, 1], -s["points"][:, 1])
    np.testing.assert_array_equal(f["points"][:, [0, 2, 3]], s["points"][:, [0, 2, 3]])
    assert f["boxes"][0, 1] == -1.0 and f["boxes"][0, 6] == pytest.approx(-0.3)
    np.testing.assert_array_equal(f["image"], s["image"][:, ::-1])
    np.testing.assert_array_equal(f["semantic"], s["semantic"][:, ::-1])
    # drivable cell at y=+1 moves to y=-1
    assert f["drivable"][cell_of(3.0, -1.0)] == 1 and f["drivable"].sum() == 1
    # the lidar point still projects onto the same image content: col -> W - 1 - col
    r0, c0 = project(s["points"].astype(np.float64))
    r1, c1 = project(f["points"].astype(np.float64))
    np.testing.assert_allclose(r1, r0, atol=1e-4)
    np.testing.assert_allclose(c1, 63 - c0, atol=1e-4)
    # flipping twice is the identity
    ff = flip_y(f, C)
    for k in ("points", "boxes", "image", "semantic", "drivable"):
        np.testing.assert_allclose(ff[k], s[k])
    assert s["points"][0, 1] != f["points"][0, 1]  # input not modified in place


def test_flip_refuses_asymmetric_y_range():
    c = (ModelContract(point_cloud_range=(0.0, -5.12, -3.0, 10.24, 10.24, 3.0),
                       pillar_size=(0.32, 0.32)).validate())
    with pytest.raises(ValueError, match="symmetric"):
        flip_y(sample(), c)


def test_scaling_keeps_camera_projection_and_moves_bev_label():
    s = sample()
    t = rotate_scale(s, C, 0.0, 1.5)
    r0, c0 = project(s["points"].astype(np.float64))
    r1, c1 = project(t["points"].astype(np.float64))
    np.testing.assert_allclose(r1, r0, atol=1e-3)
    np.testing.assert_allclose(c1, c0, atol=1e-3)
    np.testing.assert_allclose(t["boxes"][0, :6], s["boxes"][0, :6] * 1.5, rtol=1e-6)
    assert t["boxes"][0, 6] == pytest.approx(0.3)
    # the drivable cell x 2.88..3.2, y 0.96..1.28 (centre 3.04, 1.12) becomes a 1.5x larger patch
    # around (4.56, 1.68); the cell centred (4.64, 1.76) maps back to (3.09, 1.17), inside it
    assert t["drivable"][cell_of(4.56, 1.68)] == 1 and t["drivable"][cell_of(3.0, 1.0)] == 0
    assert 1 <= int((t["drivable"] == 1).sum()) <= 4
    assert t["image"] is s["image"] and t["semantic"] is s["semantic"]


def test_shrinking_marks_cells_without_source_as_ignored():
    t = rotate_scale(sample(), C, 0.0, 0.5)
    # cells with x > 5.12 m map to x > 10.24 m before the transform: outside the grid -> 255
    assert (t["drivable"][:, cell_of(6.0, 0.0)[1]:] == 255).all()
    assert (t["drivable"][:, : cell_of(4.0, 0.0)[1]] != 255).any()


def test_rotation_keeps_points_inside_their_box():
    s = sample()
    b = s["boxes"][0]
    rng = np.random.default_rng(0)
    u = rng.uniform(-0.45, 0.45, (20, 3)) * b[3:6]
    c, sn = math.cos(b[6]), math.sin(b[6])
    inside = np.c_[b[0] + c * u[:, 0] - sn * u[:, 1], b[1] + sn * u[:, 0] + c * u[:, 1],
                   b[2] + u[:, 2], np.zeros(20)]
    s["points"] = inside.astype(np.float32)
    t = rotate_scale(s, C, math.radians(5), 1.0)
    tb = t["boxes"][0]
    d = t["points"][:, :2] - tb[:2]
    c2, s2 = math.cos(tb[6]), math.sin(tb[6])
    local = np.c_[c2 * d[:, 0] + s2 * d[:, 1], -s2 * d[:, 0] + c2 * d[:, 1]]
    np.testing.assert_allclose(local, u[:, :2], atol=1e-4)
    assert tb[6] == pytest.approx(0.3 + math.radians(5), abs=1e-6)


def test_augment_sample_is_reproducible_and_config_validated():
    cfg = AugmentConfig(flip_prob=0.5, scale_range=(0.9, 1.1), rot_deg=3.0)
    a = augment_sample(sample(), C, cfg, np.random.default_rng(7))
    b = augment_sample(sample(), C, cfg, np.random.default_rng(7))
    for k in ("points", "boxes", "image", "drivable"):
        np.testing.assert_array_equal(a[k], b[k])
    off = augment_sample(sample(), C, AugmentConfig(enabled=False), np.random.default_rng(7))
    np.testing.assert_array_equal(off["points"], sample()["points"])
    with pytest.raises(ValueError, match="unknown augment keys"):
        AugmentConfig.from_dict({"mixup": 0.5})


def test_photometric_changes_only_the_image():
    img = np.full((4, 4, 3), 100, np.uint8)
    out = photometric(img, np.random.default_rng(0), 0.3, 0.0, 0.0)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert len(np.unique(out)) == 1 and out[0, 0, 0] != 100
    assert 70 <= out[0, 0, 0] <= 130


def test_loader_workers_draw_new_augmentations_each_epoch():
    """set_epoch must reach the loader workers (non-persistent workers).

    Else every epoch repeats the epoch-0 augmentations.
    """
    from bev_mtl_ros.train.dataset import InMemoryDataset
    from bev_mtl_ros.train.train import make_loader
    ds = InMemoryDataset([sample() for _ in range(2)], C,
                         augment=AugmentConfig(flip_prob=0.5, scale_range=(0.5, 1.5)))
    loader = make_loader(ds, {"batch_size": 2, "num_workers": 1}, seed=0)
    seen = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        (_inputs, _targets, meta), = list(loader)
        seen.append(np.concatenate([m["boxes"] for m in sorted(meta, key=lambda m: m["key"])]))
    assert not np.allclose(seen[0], seen[1])
    # and the same epoch reproduces the same augmentation
    ds.set_epoch(0)
    (_i, _t, meta), = list(loader)
    np.testing.assert_allclose(
        np.concatenate([m["boxes"] for m in sorted(meta, key=lambda m: m["key"])]), seen[0])


# ----------------------------------------------------------------- Fourier domain adaptation

def _smooth_image(rng, h=64, w=96, base=100.0):
    """Return a low-contrast RGB image (no clipping under FDA): (h, w, 3) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = base + 20 * np.sin(xx / 7.0)[..., None] * np.array([1.0, 0.5, -0.5])
    return np.clip(img + rng.uniform(-5, 5, (h, w, 3)), 0, 255).astype(np.uint8)


def test_fda_zero_beta_swaps_the_mean_colour_only():
    rng = np.random.default_rng(0)
    src = _smooth_image(rng)
    tgt = _smooth_image(rng, base=50.0)[:, ::-1]
    out = fourier_domain_adaptation(src, fourier_amplitude(tgt), 0.0)
    np.testing.assert_allclose(out.mean((0, 1)), tgt.mean((0, 1)), atol=0.6)
    # everything but the mean is the source's: the zero-mean images agree up to rounding
    diff = (out.astype(float) - out.mean((0, 1))) - (src.astype(float) - src.mean((0, 1)))
    assert np.abs(diff).max() <= 1.0


def test_fda_own_spectrum_is_identity_and_window_takes_target_amplitude():
    rng = np.random.default_rng(1)
    src = _smooth_image(rng)
    assert np.array_equal(fourier_domain_adaptation(src, fourier_amplitude(src), 0.2), src)
    tgt = _smooth_image(rng, base=60.0)[::-1]
    out = fourier_domain_adaptation(src, fourier_amplitude(tgt), 0.05)   # b = floor(3.2) = 3
    a_out, a_src, a_tgt = (fourier_amplitude(x) for x in (out, src, tgt))
    inside = np.zeros(a_out.shape[:2], bool)
    inside[np.r_[0:4, 61:64], 0:4] = True
    scale = a_src.max()
    assert np.abs(a_out[inside] - a_tgt[inside]).max() < 1e-3 * scale
    assert np.abs(a_out[~inside] - a_src[~inside]).max() < 1e-3 * scale
    assert np.abs(a_tgt[inside] - a_src[inside]).max() > 0.1 * scale   # the swap did something


def test_fda_rejects_bad_input():
    img = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        fourier_domain_adaptation(img, np.zeros((32, 48, 3), np.float32), 0.01)
    with pytest.raises(ValueError, match="beta"):
        fourier_domain_adaptation(img, fourier_amplitude(img), 0.5)


def test_class_mix_pastes_half_of_the_source_classes_whole():
    rng = np.random.default_rng(3)
    src_label = np.full((24, 40), 255, np.uint8)
    for k, cls in enumerate((2, 5, 7, 9, 11)):                # five classes in vertical bands
        src_label[:20, 8 * k:8 * k + 8] = cls
    src = np.zeros((24, 40, 3), np.uint8)
    src[..., 0] = src_label                                   # the image tells the class apart
    dst = np.full((24, 40, 3), 200, np.uint8)
    dst_label = np.full((24, 40), 1, np.uint8)
    image, label, mask = class_mix(src, src_label, dst, dst_label, rng)
    pasted = np.unique(src_label[mask])
    assert pasted.size == 3 and 255 not in pasted            # ceil(5 / 2), never the ignore id
    assert np.array_equal(mask, np.isin(src_label, pasted))  # each chosen class whole
    assert np.array_equal(label[mask], src_label[mask]) and np.all(label[~mask] == 1)
    assert np.array_equal(image[mask], src[mask]) and np.all(image[~mask] == 200)
    # the draw varies with the generator
    draws = {tuple(np.unique(src_label[class_mix(src, src_label, dst, dst_label, rng)[2]]))
             for _ in range(20)}
    assert len(draws) > 3


def test_class_mix_rejects_mismatched_shapes():
    img = np.zeros((8, 8, 3), np.uint8)
    lab = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="do not match"):
        class_mix(img, lab, np.zeros((8, 9, 3), np.uint8), lab, np.random.default_rng(0))
