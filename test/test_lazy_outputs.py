"""The node's lazy full-resolution outputs (issue 24, item 3): class ids, mono8 and overlay images.

* known answers: the uint8 argmax (ties, dtypes, strided input), the overlay blend of a two-class
  image with OpenCV's rounding (half to even), unknown ids, the message buffers;
* parity with the formula the node used before (argmax over the classes at the network's
  resolution with ``np.argmax``, ``cv2.resize`` nearest neighbour to the camera image, colour
  overlay ``round((1 - alpha) * rgb + alpha * palette[ids])`` at full resolution; written here
  only, as the reference) on the shipped model's logits for the ten real A2D2 frames with lidar
  in ``test/data/real_a2d2`` and the first frames of the committed sample bag
  ``test/data/sample_a2d2``: the share of differing pixels is measured and must be 0;
* the benchmark's lazy-output stage (``bench.stages.time_lazy_outputs``) and its table rows.
"""

from __future__ import annotations

import array
import os

import cv2
import numpy as np
import pytest
import torch
from std_msgs.msg import Header

from bev_mtl_ros.bench.config import BenchConfig
from bev_mtl_ros.bench.report import format_table
from bev_mtl_ros.bench.stages import LAZY_OUTPUT_ITEMS, time_lazy_outputs
from bev_mtl_ros.data import bag_io as B
from bev_mtl_ros.data.a2d2 import A2D2Dataset
from bev_mtl_ros.data.classes import class_id_to_colour
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.ros import messages as M
from bev_mtl_ros.runtime.backends import create_backend
from bev_mtl_ros.runtime.pillarize import pillarize
from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
from bev_mtl_ros.runtime.postprocess import Detections, resize_ids, semantic_ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "test", "data", "real_a2d2")
SAMPLE_BAG = os.path.join(ROOT, "test", "data", "sample_a2d2")
MODEL = os.path.join(ROOT, "models", "bev_mtl_default.onnx")
#: frames of the sample bag used (each costs two network passes)
SAMPLE_FRAMES = 3


def _header() -> Header:
    return Header(frame_id="cam_front_center")


def _pixels(msg) -> np.ndarray:
    ch = {"rgb8": 3, "mono8": 1}[msg.encoding]
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, ch)


# ----------------------------------------------------------------------------- the reference
def _old_ids(logits: np.ndarray, size) -> np.ndarray:
    """Return the ids as the node made them before issue 24 (np.argmax, cv2 nearest resize)."""
    ids = np.argmax(np.asarray(logits)[0], axis=0).astype(np.uint8)
    return cv2.resize(ids, size, interpolation=cv2.INTER_NEAREST)


def _old_overlay(rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Return the overlay formula in float64 (blend rounded half to even; unknown ids keep rgb)."""
    pal = np.asarray(class_id_to_colour, np.float64)
    known = ids < len(pal)
    colour = pal[np.where(known, ids, 0)]
    out = np.rint((1.0 - alpha) * rgb.astype(np.float64) + alpha * colour).astype(np.uint8)
    out[~known] = rgb[~known]
    return out


# ----------------------------------------------------------------------------- known answers
def test_argmax_known_answers_ties_dtypes_and_strides():
    logits = np.zeros((1, 4, 2, 3), np.float32)
    logits[0, 3, 0, 0] = 1.0                 # a clear winner
    logits[0, 1, 0, 1] = logits[0, 2, 0, 1] = 2.0   # a tie goes to the lower class
    logits[0, 2, 1, :] = -1.0                # all others 0: class 0 wins row 1 (ties 0, 1, 3)
    logits[0, 1, 1, 2] = 0.5
    assert semantic_ids(logits).tolist() == [[3, 1, 0], [0, 0, 1]]
    rng = np.random.default_rng(1)
    ints = rng.integers(-2, 3, size=(1, 38, 9, 13)).astype(np.float64)   # many ties
    ref = np.argmax(ints[0], axis=0).astype(np.uint8)
    assert np.array_equal(semantic_ids(ints), ref)
    assert np.array_equal(semantic_ids(torch.from_numpy(ints.astype(np.float32))), ref)
    # channels-last strides (what a channels-last PyTorch network returns)
    nhwc = np.ascontiguousarray(ints.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not nhwc.flags["C_CONTIGUOUS"]
    assert np.array_equal(semantic_ids(nhwc.astype(np.float32)), ref)
    one = semantic_ids(np.ones((1, 1, 2, 2), np.float32))
    assert one.dtype == np.uint8 and one.tolist() == [[0, 0], [0, 0]]
    many = np.zeros((256, 1, 2), np.float32)
    many[255, 0, 1] = 1.0
    assert semantic_ids(many).tolist() == [[0, 255]]


def test_resize_ids_is_nearest_neighbour_and_same_for_every_channel():
    ids = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    big = resize_ids(ids, (6, 4))
    assert big.tolist() == [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    assert resize_ids(ids, (3, 2)) is ids
    rng = np.random.default_rng(2)
    lo = rng.integers(0, 38, size=(320, 512), dtype=np.uint8)
    full = resize_ids(lo, (1920, 1208))
    three = resize_ids(np.dstack([lo, lo + 1, lo + 2]), (1920, 1208))
    assert full.shape == (1208, 1920)
    for c in range(3):
        assert np.array_equal(three[..., c], full + c)


def test_overlay_two_classes_equals_hand_computed_blend():
    ids = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)
    rgb = np.empty((2, 4, 3), np.uint8)
    rgb[:] = (10, 100, 201)
    pal = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    # alpha 0.5: class 0 (10+255)/2 = 132.5 -> 132, 100/2 = 50, 201/2 = 100.5 -> 100 (OpenCV
    # rounds half to even); class 1: 5, 50, (201+255)/2 = 228
    out = _pixels(M.semantic_overlay(rgb, ids, _header(), alpha=0.5, palette=pal))
    assert out[:, :2].reshape(-1, 3).tolist() == [[132, 50, 100]] * 4
    assert out[:, 2:].reshape(-1, 3).tolist() == [[5, 50, 228]] * 4
    # alpha 0.25: 7.5 + 63.75 = 71.25 -> 71, 75, 150.75 -> 151; class 1: 7.5 -> 8, 75,
    # 150.75 + 63.75 = 214.5 -> 214
    out = _pixels(M.semantic_overlay(rgb, ids, _header(), alpha=0.25, palette=pal))
    assert out[0, 0].tolist() == [71, 75, 151] and out[1, 3].tolist() == [8, 75, 214]
    # the same overlay from the ids at half the width (upsample: coloured, then scaled)
    lo = np.array([[0, 1]], np.uint8)
    up = M.semantic_overlay(rgb, lo, _header(), alpha=0.25, palette=pal, upsample=True)
    assert np.array_equal(_pixels(up), out)
    with pytest.raises(ValueError, match="differ"):
        M.semantic_overlay(rgb, lo, _header(), palette=pal)     # sizes differ, no upsample
    with pytest.raises(ValueError, match="differ"):
        M.semantic_overlay(rgb[..., 0], ids, _header(), palette=pal)
    with pytest.raises(ValueError, match="empty"):
        M.semantic_overlay(rgb[:0], ids[:0], _header(), palette=pal)
    with pytest.raises(ValueError, match="256"):
        M.semantic_overlay(rgb, ids, _header(), palette=np.zeros((257, 3), np.uint8))


def test_overlay_unknown_ids_keep_the_camera_pixel_at_both_resolutions():
    rgb = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3) * 5
    pal = np.array([[200, 200, 200]], np.uint8)
    lo = np.array([[0, 255]], np.uint8)                    # 255: no colour
    full = resize_ids(lo, (4, 2))
    a = _pixels(M.semantic_overlay(rgb, full, _header(), alpha=0.5, palette=pal))
    b = _pixels(M.semantic_overlay(rgb, lo, _header(), alpha=0.5, palette=pal, upsample=True))
    assert np.array_equal(a, b)
    assert np.array_equal(a[:, 2:], rgb[:, 2:])
    assert np.array_equal(a[:, :2], np.rint(0.5 * rgb[:, :2] + 100.0).astype(np.uint8))


def test_image_messages_own_their_pixels():
    ids = np.array([[0, 1, 2], [3, 4, 37]], np.uint8)
    m = M.semantic_to_image(ids, _header())
    assert isinstance(m.data, array.array) and m.data.typecode == "B"
    assert (m.height, m.width, m.step, m.encoding, m.is_bigendian) == (2, 3, 3, "mono8", 0)
    assert bytes(m.data) == ids.tobytes() and m.header.frame_id == "cam_front_center"
    ids[0, 0] = 9                                            # the message holds a copy
    assert m.data[0] == 0
    d = M.drivable_to_image(np.array([[True, False], [False, True]]), _header())
    assert bytes(d.data) == bytes([255, 0, 0, 255])
    rgb = np.full((2, 3, 3), 7, np.uint8)
    o = M.semantic_overlay(rgb, ids, _header())
    assert (o.step, len(o.data), o.encoding) == (9, 18, "rgb8")
    assert bytes(o.data) == _old_overlay(rgb, ids).tobytes()
    with pytest.raises(ValueError, match="2-D|\\(H, W\\)"):
        M.semantic_to_image(np.zeros((2, 2, 2), np.uint8), _header())


# ----------------------------------------------------------------------------- real logits
@pytest.fixture(scope="module")
def model_frames():
    """(name, points (N, 4), rgb (H, W, 3), logits (1, S, h, w), pipeline result) per frame.

    The shipped model (onnxruntime CPU): the ten real A2D2 frames with lidar and the first
    :data:`SAMPLE_FRAMES` frames of the sample bag (clouds with an image of the same stamp).
    """
    torch.set_num_threads(1)
    backend = create_backend(MODEL, backend="onnxruntime", device="cpu")
    pipe = PerceptionPipeline(backend, torch_threads=None)
    inputs = []
    ds = A2D2Dataset(REAL)
    for i in range(len(ds)):
        f = ds.load_frame(i, load_label=False)
        pts = np.concatenate([f.points, f.reflectance[:, None]], 1).astype(np.float32)
        inputs.append((f"real {f.scene}/{f.frame}", pts, f.image))
    from bev_mtl_ros.ros import replay as R
    image_topic = R.bag_inputs(SAMPLE_BAG).bag_image
    data = B.read_topics(SAMPLE_BAG, [R.LIDAR_TOPIC, image_topic])
    images = {B.stamp_ns(m): m for _, m in data[image_topic]}
    for _, m in data[R.LIDAR_TOPIC]:
        s = B.stamp_ns(m)
        if s in images and sum(n.startswith("sample") for n, _, _ in inputs) < SAMPLE_FRAMES:
            inputs.append((f"sample {s}", B.cloud_to_array(m, ("x", "y", "z", "intensity")),
                           B.image_to_array(images[s])))
    out = []
    for name, pts, rgb in inputs:
        batch = pillarize(pts, backend.contract)
        outs = backend.infer(batch.pillars, batch.num_points, batch.canvas_index.unsqueeze(0),
                             pipe.preprocess_image(rgb), torch.ones((1,), dtype=torch.float32))
        out.append((name, pts, rgb, np.asarray(outs["semantic"]), pipe(pts, rgb)))
    return out


def test_ids_and_overlay_equal_the_old_formula_on_real_and_sample_frames(model_frames):
    assert len(model_frames) == 10 + SAMPLE_FRAMES
    shares = {}
    for name, _, rgb, logits, result in model_frames:
        h, w = rgb.shape[:2]
        ref = _old_ids(logits, (w, h))
        assert result.semantic.shape == (h, w) and result.semantic.dtype == np.uint8
        assert np.array_equal(result.semantic_net, semantic_ids(logits)), name
        # the same argmax and the same nearest-neighbour mapping: not even border pixels differ
        shares[name] = float(np.mean(result.semantic != ref))
        ov = M.semantic_overlay(rgb, result.semantic_net, _header(), upsample=True)
        assert np.array_equal(_pixels(ov), _old_overlay(rgb, ref)), name
        assert len(np.unique(ref)) > 1, name                 # real content, not one class
    assert max(shares.values()) == 0.0, shares


def test_pipeline_without_semantic_gives_neither_resolution(model_frames):
    backend = create_backend(MODEL, backend="onnxruntime", device="cpu")
    pipe = PerceptionPipeline(backend, torch_threads=None)
    _, pts, rgb, _, _ = model_frames[0]
    r = pipe(pts, rgb, semantic=False)
    assert r.semantic is None and r.semantic_net is None
    r = pipe(pts, None)
    assert r.semantic is None and r.semantic_net is None


# ----------------------------------------------------------------------------- benchmark stage
def test_bench_lazy_output_stage_times_every_item_and_prints_it():
    c = ModelContract()
    rng = np.random.default_rng(3)
    outputs = {"semantic": rng.normal(size=(1, 38, 40, 64)).astype(np.float32)}
    img = rng.integers(0, 256, size=(151, 240, 3), dtype=np.uint8)
    gw, gh = c.grid_size
    drv = (rng.random((gh, gw)) > 0.5).astype(np.uint8)
    dets = Detections(np.array([[10, 0, 0, 4, 2, 1.5, 0.1]], np.float32),
                      np.array([0.9], np.float32), np.array([0], np.int64))
    s = {"points": 1, "image": [240, 151], "stages": {}}
    time_lazy_outputs(s["stages"], outputs, dets, drv, img, c, BenchConfig(frames=2, warmup=0))
    st = s["stages"]
    assert list(st) == ["lazy_detections"] + [f"lazy_{k}" for k in LAZY_OUTPUT_ITEMS]
    assert st["lazy_detections"] == 1
    for k in LAZY_OUTPUT_ITEMS:
        assert st[f"lazy_{k}"]["n"] == 2 and st[f"lazy_{k}"]["p50"] > 0, k
    table = format_table({"machine": {"processor": "x", "cpu_count": 2, "torch": "t",
                                      "torch_threads": 1, "onnxruntime": "o",
                                      "loadavg_1_5_15": [0, 0, 0]},
                          "device": "cpu", "model": "m", "frames": 2, "warmup": 0,
                          "scenarios": {"custom": s}})
    for k in LAZY_OUTPUT_ITEMS:
        assert f"  lazy_{k} " in table, k
    assert "lazy_detections" not in table
