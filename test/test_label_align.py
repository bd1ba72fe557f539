"""Label-to-image registration (``data/label_align.py``): known shifts, round trips, refusals."""

import os

import numpy as np
import pytest

from bev_mtl_ros.data.label_align import IGNORE, label_offset, register_label, shift_label

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "test", "data", "real_a2d2")


def _scene(h=240, w=320, seed=0):
    """Return an image of random flat rectangles and its exact label (ids 0..K)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    image = np.full((h, w, 3), 90, np.uint8)
    for k in range(1, 25):
        y, x = int(rng.integers(0, h - 30)), int(rng.integers(0, w - 30))
        hh, ww = int(rng.integers(8, 60)), int(rng.integers(8, 60))
        label[y:y + hh, x:x + ww] = k
        image[y:y + hh, x:x + ww] = rng.integers(0, 256, 3)
    return image, label


def test_shift_label_moves_and_fills_with_ignore():
    lab = np.arange(30, dtype=np.uint8).reshape(5, 6)
    out = shift_label(lab, 2, -1)
    assert out[0, 2] == lab[1, 0] and out[3, 5] == lab[4, 3]
    assert np.all(out[:, :2] == IGNORE) and np.all(out[4] == IGNORE)
    back = shift_label(out, -2, 1)
    assert np.array_equal(back[1:, :4], lab[1:, :4])
    assert np.all(shift_label(lab, 6, 0) == IGNORE)                 # shifted out entirely


@pytest.mark.parametrize("dx,dy", [(12, -8), (-20, 6), (0, 0)])
def test_label_offset_recovers_a_known_shift(dx, dy):
    image, label = _scene()
    moved = shift_label(label, -dx, -dy)          # the label sits (-dx, -dy) off its image
    ex, ey, gain = label_offset(image, moved, max_shift=32, scale=0.5)
    assert abs(ex - dx) <= 2 and abs(ey - dy) <= 2                  # 2 px = one working pixel
    assert gain >= 1.0
    fixed, shift = register_label(image, moved, max_shift=32, scale=1.0)
    if (dx, dy) == (0, 0):
        assert shift == (0, 0) and fixed is moved                   # nothing better: untouched
    else:
        assert shift == (dx, dy)                                    # exact at full resolution
        ok = fixed != IGNORE
        assert np.array_equal(fixed[ok], label[ok])


def test_register_label_leaves_a_fit_outside_the_window_alone():
    image, label = _scene(seed=1)
    moved = shift_label(label, -30, 0)            # further off than the 16 px searched
    fixed, shift = register_label(image, moved, max_shift=16)
    assert shift == (0, 0) and fixed is moved


def test_label_offset_refuses_bad_input():
    image, label = _scene()
    with pytest.raises(ValueError, match="differ in size"):
        label_offset(image, label[:-1])
    with pytest.raises(ValueError, match="scale"):
        label_offset(image, label, scale=0.0)
    with pytest.raises(ValueError, match="no class border"):
        label_offset(image, np.zeros_like(label))


def test_real_a2d2_frame_label_offset():
    """Move the committed frame 20181107132300's label back onto its image.

    Its label lies ~16 px right of and ~6 px above the image content (README of
    test/data/real_a2d2).
    """
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    ds = A2D2Dataset(REAL, require=("camera", "label"))
    k = [f.key for f in ds.frames].index("20181107132300/000002994")
    f = ds.load_frame(k)
    dx, dy, gain = label_offset(f.image, np.asarray(f.semantic, np.uint8))
    assert abs(dx + 16) <= 2 and abs(dy - 6) <= 2 and gain > 1.1


def test_real_camera_dataset_registers_its_labels():
    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.train.dataset import RealCameraDataset
    c = ModelContract()
    plain = RealCameraDataset(REAL, c)
    moved = RealCameraDataset(REAL, c, register_labels=True)
    assert plain.label_shifts == {} and set(moved.label_shifts) == {0, 1, 2, 3}
    k = moved.keys.index("20181107132300/000002994")
    dx, dy = moved.label_shifts[k]
    assert abs(dx + 16) <= 2 and abs(dy - 6) <= 2
    a, b = plain.raw(k)["semantic"], moved.raw(k)["semantic"]
    assert np.array_equal(plain.raw(k)["image"], moved.raw(k)["image"])   # images untouched
    assert (a != b).mean() > 0.01                                          # labels moved
