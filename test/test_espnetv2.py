"""The Cityscapes-pretrained ESPNetv2 (model/espnetv2.py) and its use as camera encoder and head.

The released weights load strictly; the exact adaptive pooling equals PyTorch's; the network
reproduces the zero-shot figure of ``../shared/weights/README.md`` on the eleven real A2D2 frames;
inside the multi-task network the encoder gives strides 4/8/16/32, the pretrained head segments
real streets into the contract's A2D2 classes before any training, checkpoints round-trip, and
the ONNX export matches PyTorch.
"""

import dataclasses
import os
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bev_mtl_ros.data.a2d2 import A2D2Dataset
from bev_mtl_ros.data.classes import COARSE_GROUP_NAMES, coarse_group_lut
from bev_mtl_ros.data.colour_stats import camera_colour_statistics
from bev_mtl_ros.model import camera_encoder as ce
from bev_mtl_ros.model.camera_encoder import (ESPNetV2Encoder, cityscapes_weights_path,
                                              load_cityscapes_weights)
from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES, ModelContract
from bev_mtl_ros.model.espnetv2 import (CITYSCAPES_CLASSES, CITYSCAPES_MEAN, CITYSCAPES_STD,
                                        IMAGENET_MEAN, IMAGENET_STD, ESPNetV2Segmentation,
                                        _pool_taps, adaptive_avg_pool,
                                        cityscapes_matched_normalisation, eesp_dilations,
                                        resize_bilinear)
from bev_mtl_ros.model.heads import (A2D2_NEAREST_CITYSCAPES, PRIMARY_A2D2_CLASSES,
                                     SECONDARY_BIAS_OFFSET, ESPNetV2SemanticHead)
from bev_mtl_ros.model.network import (TINY_WIDTHS, BevMultiTaskNet, random_inputs,
                                       widths_from_saved)
from bev_mtl_ros.runtime.checkpoint import load_checkpoint, save_checkpoint
from bev_mtl_ros.runtime.export import export_onnx
from bev_mtl_ros.train.config import ConfigError
from bev_mtl_ros.train.model_setup import build_model
from bev_mtl_ros.train.train import recalibrate_batchnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "test", "data", "real_a2d2")
WEIGHTS = os.path.join(ROOT, "models", "pretrained", "espnetv2_s_1.5_city_1024x512.pth")

#: Cityscapes trainId -> coarse group, as ../shared/weights/README.md scored it: road ->
#: drivable; sidewalk -> other flat; building, wall -> building; fence, pole, traffic light,
#: traffic sign -> object/sign/pole; vegetation, terrain -> nature; sky; person, rider,
#: motorcycle, bicycle -> human+bike; car, truck, bus, train -> vehicle; background -> none
_G = {n: i for i, n in enumerate(COARSE_GROUP_NAMES)}
CITY_TO_COARSE = np.array(
    [_G["drivable"], _G["other flat"], _G["building"], _G["building"]]
    + [_G["object/sign/pole"]] * 4 + [_G["nature"]] * 2 + [_G["sky"]]
    + [_G["human+bike"]] * 2 + [_G["vehicle"]] * 4 + [_G["human+bike"]] * 2 + [255], np.int64)

ESP_WIDTHS = {**TINY_WIDTHS, "camera_encoder": "espnetv2_s1.5", "semantic_head": "espnetv2"}


def imagenet_contract(image_size=(128, 64)):
    return ModelContract(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0),
                         max_pillars=400, image_size=image_size,
                         detection_classes=("Car", "Pedestrian"),
                         box_class_map={"Car": "Car", "Pedestrian": "Pedestrian"},
                         image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).validate()


@pytest.fixture(scope="module")
def city_state():
    return torch.load(WEIGHTS, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def real_frames():
    """Load the eleven real frames, undistorted as the A2D2 reader returns them.

    Returns [(image RGB uint8, label ids uint8)].
    """
    ds = A2D2Dataset(REAL, require=("camera", "label"))
    frames = [ds.load_frame(i) for i in range(len(ds))]
    return [(f.image, f.semantic) for f in frames]


def _coarse_iou(conf):
    tp = np.diag(conf[:, :8]).astype(np.float64)
    return tp / (conf.sum(1) + conf[:, :8].sum(0) - tp), tp.sum() / conf.sum()


def _accumulate(conf, pred_groups, gt_groups):
    """Add pixels to an (8, 9) confusion matrix; predictions outside the groups go to column 8."""
    m = gt_groups != 255
    p = np.where(pred_groups[m] == 255, 8, pred_groups[m]).astype(np.int64)
    conf += np.bincount(gt_groups[m].astype(np.int64) * 9 + p, minlength=72).reshape(8, 9)


def _normalised(image_rgb, size):
    img = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (img - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


# ------------------------------------------------------------------------------ the network

def test_released_weights_load_strictly(city_state):
    net = ESPNetV2Segmentation(1.5)
    net.load_state_dict(city_state, strict=True)
    assert sum(p.numel() for p in net.parameters()) == 468_362
    assert net.classifier.out_channels == len(CITYSCAPES_CLASSES) == 20
    with pytest.raises(ValueError, match="s=1.25"):
        ESPNetV2Segmentation(1.25)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.zeros(1, 3, 40, 64))


@pytest.mark.parametrize("n_in,h,w", [((37, 64), 5, 7), ((60, 96), 40, 64), ((4, 8), 5, 5),
                                      ((20, 32), 10, 16), ((21, 33), 21, 33)])
def test_exact_adaptive_pooling(n_in, h, w):
    x = torch.randn(2, 3, *n_in, generator=torch.Generator().manual_seed(0))
    ref = F.adaptive_avg_pool2d(x, (h, w))
    got = adaptive_avg_pool(x, (h, w))
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n_in,size", [((20, 32), (40, 64)), ((20, 32), (30, 48)),
                                       ((5, 7), (37, 64)), ((40, 64), (40, 64))])
def test_exact_bilinear_equals_interpolate(n_in, size):
    """The gather form (eval / export) and F.interpolate (training) are the same function."""
    x = torch.randn(2, 3, *n_in, generator=torch.Generator().manual_seed(1))
    ref = F.interpolate(x, size, mode="bilinear", align_corners=True)
    got = resize_bilinear(x, size)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5, rtol=0)
    assert torch.equal(resize_bilinear(x, size, exact=False), ref)


def test_pool_taps_known_answer():
    # 3 -> 2: windows [0, 2) and [1, 3); 2 -> 3 (upsampling): [0,1), [0,2), [1,2)
    assert _pool_taps(3, 2) == ([[0, 1], [1, 2]], [[0.5, 0.5], [0.5, 0.5]])
    idx, wt = _pool_taps(2, 3)
    assert idx == [[0, 0, 1], [0, 1, 1]] and wt == [[1.0, 0.5, 1.0], [0.0, 0.5, 0.0]]


def test_eesp_dilations():
    assert eesp_dilations(13) == eesp_dilations(9) == (1, 2, 3, 4)
    assert eesp_dilations(7) == (1, 1, 2, 3)
    assert eesp_dilations(5) == (1, 1, 1, 2)


def test_zero_shot_real_frames_reproduce_the_weights_readme(city_state, real_frames):
    """Pooled coarse mIoU of the Cityscapes network on the eleven real frames, at 768x480.

    ../shared/weights/README.md: about 0.550 at 768x480 (0.544 at 1024x640). Measured here
    (undistorted frames, INTER_AREA resize, labels resized nearest): 0.5495 at 768x480; raw
    (distorted) frames and labels 0.544; at 1024x640 0.534 undistorted, 0.531 raw (bilinear
    instead of INTER_AREA resizing: 0.519). 768x480 also keeps the test fast. The
    tolerance 0.01 covers CPU kernel differences (argmax flips on near-ties) and is well
    below what a wrong input costs (measured: the image's R and B channels swapped, as a BGR slip
    would do, gives 0.383).
    """
    torch.set_num_threads(2)
    net = ESPNetV2Segmentation(1.5)
    net.load_state_dict(city_state, strict=True)
    net.eval()
    lut = coarse_group_lut()
    size = (768, 480)
    conf = np.zeros((8, 9), np.int64)
    assert len(real_frames) == 11
    for image, label in real_frames:
        with torch.no_grad():
            pred = net(_normalised(image, size))[0].argmax(0).numpy()
        gt = lut[cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)]
        _accumulate(conf, CITY_TO_COARSE[pred], gt)
    iou, acc = _coarse_iou(conf)
    assert conf[:, 8].sum() == 0, "background output predicted"
    assert iou.mean() == pytest.approx(0.550, abs=0.01), np.round(iou, 3)
    assert acc == pytest.approx(0.880, abs=0.01)
    by_group = dict(zip(COARSE_GROUP_NAMES, iou))
    assert by_group["sky"] > 0.9 and by_group["drivable"] > 0.8 and by_group["vehicle"] > 0.75


# ------------------------------------------------------------------------------ in the network

def test_encoder_levels_strides_and_pretrained_tensors(city_state):
    enc = ESPNetV2Encoder()
    load_cityscapes_weights(enc)
    assert torch.equal(enc.base_net.level4[6].conv_1x1_exp.conv.weight,
                       city_state["base_net.level4.6.conv_1x1_exp.conv.weight"])
    assert enc.out_channels == (96, 192, 384, 512) and enc.stride2_channels == 32
    feats = enc.eval()(torch.rand(1, 3, 64, 128))
    for f, c, s in zip(feats, (*enc.out_channels, 32), (4, 8, 16, 32, 2)):
        assert tuple(f.shape) == (1, c, 64 // s, 128 // s)
    enc.freeze(2)
    assert not enc.base_net.level3[2].proj_1x1.conv.weight.requires_grad
    assert enc.base_net.level4_0.eesp.proj_1x1.conv.weight.requires_grad
    enc.train()
    assert not enc.base_net.level3_0.act.training and enc.base_net.level4[0].training


def test_decoder_last_stage_at_stride_4_known_answer(city_state):
    """``last_stride`` 4: the same weights, the last stage on the stride-4 map.

    The stride-2 level is average-pooled before its merge; logits at stride 4 instead of 2.
    """
    torch.manual_seed(0)
    full = ESPNetV2Segmentation(1.5)
    full.load_state_dict(city_state, strict=True)
    s4 = ESPNetV2Segmentation(1.5, last_stride=4)
    s4.load_state_dict(city_state, strict=True)
    full.eval(), s4.eval()
    with torch.no_grad():
        l1, l2, l3, l4 = full.base_net(torch.rand(1, 3, 64, 128))
        y = full.bu_dec_l1(l4)
        y = full.bu_dec_l2(full.bu_br_l2(F.interpolate(y, scale_factor=2.0, mode="bilinear",
                                                       align_corners=True)
                                         + full.merge_enc_dec_l2(l3)))
        y = full.bu_dec_l3(full.bu_br_l3(F.interpolate(y, scale_factor=2.0, mode="bilinear",
                                                       align_corners=True)
                                         + full.merge_enc_dec_l3(l2)))
        pooled = l1.reshape(1, 32, 16, 2, 32, 2).mean((3, 5))
        expected = full.bu_dec_l4(full.bu_br_l4(y + full.merge_enc_dec_l4(pooled)))
        got = s4.decode(l1, l2, l3, l4)
        assert tuple(got.shape) == (1, 20, 16, 32)
        assert tuple(full.decode(l1, l2, l3, l4).shape) == (1, 20, 32, 64)
    assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="last_stride"):
        ESPNetV2Segmentation(1.5, last_stride=8)


def test_wrong_normalisation_and_head_choice_are_refused():
    with pytest.raises(ValueError, match="ImageNet|image_mean"):
        load_cityscapes_weights(ESPNetV2Encoder("espnetv2_s1.5", (0.5,) * 3, (0.5,) * 3))
    with pytest.raises(ValueError, match="only with an ESPNetv2 encoder"):
        BevMultiTaskNet(imagenet_contract(), **{**TINY_WIDTHS, "semantic_head": "espnetv2"})
    with pytest.raises(ValueError, match="only with an ESPNetv2 encoder"):
        BevMultiTaskNet(imagenet_contract(), **{**TINY_WIDTHS, "semantic_head": "espnetv2_s4"})
    with pytest.raises(ValueError, match="unknown ESPNetv2 variant"):
        ESPNetV2Encoder("espnetv2_s3")


def test_head_classifier_is_mapped_from_cityscapes(city_state):
    net = BevMultiTaskNet(imagenet_contract(), **ESP_WIDTHS)
    load_cityscapes_weights(net.camera, net.semantic_head)
    w = net.semantic_head.classifier.weight
    b = net.semantic_head.classifier.bias
    w_src = city_state["bu_dec_l4.merge_layer.3.weight"]
    b_src = city_state["bu_dec_l4.merge_layer.3.bias"]
    assert w.shape == (38, 10, 1, 1)
    assert set(A2D2_NEAREST_CITYSCAPES) == set(A2D2_SEMANTIC_CLASSES)
    for i, name in enumerate(A2D2_SEMANTIC_CLASSES):
        j = CITYSCAPES_CLASSES.index(A2D2_NEAREST_CITYSCAPES[name])
        off = 0.0 if name in PRIMARY_A2D2_CLASSES else SECONDARY_BIAS_OFFSET
        assert torch.equal(w[i], w_src[j])
        assert float(b[i].detach()) == pytest.approx(float(b_src[j]) + off)
    assert torch.equal(net.semantic_head.bu_dec_l1.stages[3].weight,
                       city_state["bu_dec_l1.stages.3.weight"])
    with pytest.raises(ValueError, match="no nearest Cityscapes class"):
        ESPNetV2SemanticHead((32, 96, 192, 384), 2).load_cityscapes_decoder(
            city_state, ("Car", "Spaceship"))


def test_untrained_network_segments_real_streets(real_frames):
    """The pretrained head, before any training, on the real frames at the network's input.

    Pooled coarse mIoU of the 38-class output (grouped by classes.COARSE_GROUPS) at 512x320:
    measured 0.510 (0.537 at 768x480; 38-class mIoU 0.140 / 0.160, train.evaluate's
    EvalAccumulator; the Cityscapes argmax scored the README's way gives 0.520 at 512x320).
    Tolerance 0.015: argmax flips on near-ties across CPU kernels, while a classifier row mapped
    to the wrong class moves it by more. Road pixels come out as "RD normal street"; without the
    tie-break they would all go to "Speed bumper" (the first road-like class id).
    """
    torch.set_num_threads(2)
    c = imagenet_contract((512, 320))
    net = build_model(c, {**ESP_WIDTHS, "pretrained": True}).eval()
    lut = coarse_group_lut()
    conf = np.zeros((8, 9), np.int64)
    street = A2D2_SEMANTIC_CLASSES.index("RD normal street")
    street_hits = street_gt = 0
    for image, label in real_frames:
        img = cv2.resize(image, c.image_size, interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            pred = net.semantic_head(net.camera(x))[0].argmax(0).numpy()
        gt_ids = cv2.resize(label, c.image_size, interpolation=cv2.INTER_NEAREST)
        _accumulate(conf, lut[pred], lut[gt_ids])
        street_gt += int((gt_ids == street).sum())
        street_hits += int(((gt_ids == street) & (pred == street)).sum())
    iou, acc = _coarse_iou(conf)
    assert iou.mean() == pytest.approx(0.510, abs=0.015), np.round(iou, 3)
    assert street_hits / street_gt > 0.8


def test_build_model_loads_cityscapes_and_rejects_misuse(tmp_path):
    c = imagenet_contract()
    net = build_model(c, {**ESP_WIDTHS, "pretrained": True, "freeze_camera_levels": 1,
                          "pretrained_weights": WEIGHTS})
    assert "pretrained_weights" not in net.widths
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert torch.equal(net.camera.base_net.level1.conv.weight,
                       state["base_net.level1.conv.weight"])
    assert not net.camera.base_net.level2_0.eesp.proj_1x1.conv.weight.requires_grad
    with pytest.raises(ConfigError, match="pretrained_weights"):
        build_model(c, {**TINY_WIDTHS, "pretrained_weights": WEIGHTS})
    with pytest.raises(FileNotFoundError):
        build_model(c, {**ESP_WIDTHS, "pretrained": True,
                        "pretrained_weights": str(tmp_path / "missing.pth")})
    # a colour-matched normalisation loads the weights only when the config says so
    matched = dataclasses.replace(c, image_mean=(0.69, 0.62, 0.63), image_std=(0.25, 0.26, 0.28))
    with pytest.raises(ValueError, match="image_mean"):
        build_model(matched, {**ESP_WIDTHS, "pretrained": True})
    net = build_model(matched, {**ESP_WIDTHS, "pretrained": True,
                                "colour_matched_normalisation": True})
    assert torch.equal(net.camera.base_net.level1.conv.weight,
                       state["base_net.level1.conv.weight"])
    assert torch.allclose(net.camera.mean.flatten(), torch.tensor([0.69, 0.62, 0.63]))
    with pytest.raises(ConfigError, match="colour_matched_normalisation"):
        build_model(c, {**TINY_WIDTHS, "colour_matched_normalisation": True})


def test_frozen_batchnorm_statistics_survive_training_and_recalibration():
    """``freeze_pretrained_batchnorm``: the pretrained parts' statistics stay, their affine trains.

    The camera encoder's and the ESPNetv2 decoder's BatchNorms stay in eval mode when the network
    trains, keep their running statistics through a training step and ``recalibrate_batchnorm``,
    and their weights get gradients; the BEV backbone's BatchNorms still learn statistics. The
    state dict is the plain network's. The plain encoder refuses the option.
    """
    torch.manual_seed(0)
    c = imagenet_contract()
    net = build_model(c, {**ESP_WIDTHS, "pretrained": True, "freeze_pretrained_batchnorm": True})
    plain = build_model(c, {**ESP_WIDTHS, "pretrained": True})
    assert net.state_dict().keys() == plain.state_dict().keys()
    net.train()
    frozen = [m for part in (net.camera.base_net, net.semantic_head) for m in part.modules()
              if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen and all(isinstance(m, ce.FrozenStatisticsBatchNorm2d) for m in frozen)
    assert not any(m.training for m in frozen)
    # the BEV backbone and the encoder's new stride-32 level (not in the weights) still learn
    new = [m for part in (net.backbone, net.camera.level5_0, net.camera.level5)
           for m in part.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert new and all(m.training and type(m) is torch.nn.BatchNorm2d for m in new)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    inputs = random_inputs(c, 50, batch=2)
    out = net(*inputs)
    out["semantic"].square().mean().backward()
    assert frozen[0].weight.grad is not None and frozen[0].weight.grad.abs().sum() > 0
    batch = dict(zip(("pillars", "num_points", "canvas_index", "image", "camera_valid"), inputs))
    assert recalibrate_batchnorm(net, [(batch, None, None)], torch.device("cpu")) == 1
    after = net.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("backbone.") for k in moved)
    assert any(k.startswith("camera.level5") for k in moved)
    assert not [k for k in moved if k.startswith(("camera.base_net.", "semantic_head."))]
    with pytest.raises(ConfigError, match="freeze_pretrained_batchnorm"):
        build_model(c, {**TINY_WIDTHS, "freeze_pretrained_batchnorm": True})   # plain encoder


def test_batchnorm_statistics_re_estimated_cost_the_zero_shot_semantics(real_frames):
    """Why training keeps the Cityscapes network's BatchNorm statistics frozen.

    The street model's network (colour-matched ESPNetv2 s1.5 with its decoder at stride 4, 512x320,
    config/train_street.yaml's normalisation) before any training, the 38-class output grouped to
    the coarse groups: pooled coarse mIoU 0.535 with the Cityscapes statistics. Re-estimating its
    BatchNorm statistics on the eleven real frames themselves, no weight changed, drops it to
    0.377 (on 48 synthetic frames: 0.371; only the encoder's, on real frames: 0.416): the
    statistics were learnt at Cityscapes' scale and batch and the weights after each layer
    expect them. With ``freeze_pretrained_batchnorm`` the same pass leaves them, and the figure,
    unchanged.
    """
    torch.set_num_threads(2)
    c = dataclasses.replace(imagenet_contract((512, 320)), image_mean=(0.697, 0.6245, 0.6323),
                            image_std=(0.2541, 0.2616, 0.2827))
    cfg = {**ESP_WIDTHS, "semantic_head": "espnetv2_s4", "pretrained": True,
           "colour_matched_normalisation": True}
    lut = coarse_group_lut()
    xs = [torch.from_numpy(cv2.resize(im, c.image_size, interpolation=cv2.INTER_AREA))
          .permute(2, 0, 1)[None].float() / 255.0 for im, _ in real_frames]

    def coarse_miou(net):
        net.eval()
        conf = np.zeros((8, 9), np.int64)
        for x, (_, label) in zip(xs, real_frames):
            with torch.no_grad():
                pred = net.semantic_head(net.camera(x))[0].argmax(0).numpy().astype(np.uint8)
            pred = cv2.resize(pred, label.shape[::-1], interpolation=cv2.INTER_NEAREST)
            _accumulate(conf, lut[pred], lut[label])
        return float(_coarse_iou(conf)[0].mean())

    def re_estimate(net):
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None   # cumulative average over the batches
        net.train()
        with torch.no_grad():
            for k in range(0, len(xs), 4):
                net.semantic_head(net.camera(torch.cat(xs[k:k + 4])))
        return net

    assert coarse_miou(build_model(c, cfg)) == pytest.approx(0.535, abs=0.01)
    assert coarse_miou(re_estimate(build_model(c, cfg))) == pytest.approx(0.377, abs=0.015)
    frozen = build_model(c, {**cfg, "freeze_pretrained_batchnorm": True})
    for m in frozen.modules():   # what training would do to them: momentum 1 = this batch only
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    frozen.train()
    with torch.no_grad():
        frozen.semantic_head(frozen.camera(torch.cat(xs[:4])))
    assert coarse_miou(frozen) == pytest.approx(0.535, abs=0.01)


def test_weights_found_in_source_tree_and_installed_share(tmp_path, monkeypatch):
    assert os.path.samefile(cityscapes_weights_path(), WEIGHTS)
    share = tmp_path / "share" / "bev_mtl_ros" / "models" / "pretrained"
    share.mkdir(parents=True)
    (share / "espnetv2_s_1.5_city_1024x512.pth").write_bytes(b"x")
    monkeypatch.setattr(ce, "SOURCE_PRETRAINED_DIR", str(tmp_path / "no_source_tree"))
    # the venv's share/bev_mtl_ros/models may link back to the source tree: look elsewhere
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "no_prefix"))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "no_prefix"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert cityscapes_weights_path() == str(share / "espnetv2_s_1.5_city_1024x512.pth")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="looked in"):
        cityscapes_weights_path()
    setup_py = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    assert 'share("models/pretrained")' in setup_py


def test_checkpoint_round_trip_and_old_widths(tmp_path):
    c = imagenet_contract()
    torch.manual_seed(0)
    net = build_model(c, {**ESP_WIDTHS, "pretrained": True})
    path = str(tmp_path / "esp.pt")
    save_checkpoint(path, net, c)
    loaded, _, _ = load_checkpoint(path)
    assert loaded.widths == net.widths
    assert isinstance(loaded.camera, ESPNetV2Encoder)
    assert isinstance(loaded.semantic_head, ESPNetV2SemanticHead)
    inputs = random_inputs(c, 50)
    with torch.no_grad():
        a, b = net.eval()(*inputs), loaded(*inputs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert widths_from_saved({"camera_encoder": "efficientnet_lite0"})["semantic_head"] == "fpn"


@pytest.mark.parametrize("head", ["espnetv2", "espnetv2_s4"])
def test_onnx_export_parity_espnetv2_encoder_and_head(tmp_path, head):
    c = imagenet_contract()
    torch.manual_seed(0)
    net = build_model(c, {**ESP_WIDTHS, "semantic_head": head, "pretrained": True})
    rep = export_onnx(net, c, str(tmp_path / "esp.onnx"), opset=17, verify=True, n_checks=2)
    assert set(rep["parity"]) >= {"semantic", "heatmap", "drivable"}
    assert all(v <= 1e-4 for v in rep["parity"].values()), rep["parity"]
    with torch.no_grad():
        sem = net.eval()(*random_inputs(c, 50))["semantic"]
    assert float(sem.abs().max()) > 1.0, "semantic logits too small for a parity test"


# ------------------------------------------------------------------------------ colour matching

def test_cityscapes_matched_normalisation_known_answers():
    # a camera with Cityscapes' own statistics keeps the weights' ImageNet normalisation
    mean, std = cityscapes_matched_normalisation(CITYSCAPES_MEAN, CITYSCAPES_STD)
    assert np.allclose(mean, IMAGENET_MEAN, atol=1e-12) and np.allclose(std, IMAGENET_STD)
    # otherwise (x - m) / s moves the camera's moments onto Cityscapes' before ImageNet's
    mu, sd = (0.46, 0.47, 0.49), (0.21, 0.23, 0.24)
    mean, std = cityscapes_matched_normalisation(mu, sd)
    x = np.random.default_rng(0).random((100, 3))
    ref = ((x - mu) / sd * CITYSCAPES_STD + CITYSCAPES_MEAN - IMAGENET_MEAN) / IMAGENET_STD
    assert np.allclose((x - mean) / std, ref, atol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        cityscapes_matched_normalisation(mu, (0.2, 0.0, 0.2))


def test_camera_colour_statistics_of_the_real_frames(real_frames):
    st = camera_colour_statistics(REAL, (512, 320))
    assert st["frames"] == 11 and len(st["scenes"]) == 9
    px = np.concatenate([cv2.resize(im, (512, 320), interpolation=cv2.INTER_AREA).reshape(-1, 3)
                         for im, _ in real_frames]).astype(np.float64) / 255.0
    assert np.allclose(st["mean"], px.mean(0), atol=1e-9)
    assert np.allclose(st["std"], px.std(0), atol=1e-9)
    one = camera_colour_statistics(REAL, (512, 320), exclude_scenes=st["scenes"][1:])
    assert one["frames"] == 2 and one["scenes"] == st["scenes"][:1]
    with pytest.raises(FileNotFoundError, match="no camera frame"):
        camera_colour_statistics(REAL, exclude_scenes=st["scenes"])


class _LastStagesAtStride8(ESPNetV2Segmentation):
    """The released decoder with its last two stages at stride 8 (the encoder levels pooled)."""

    def __init__(self, s: float):
        super().__init__(s, last_stride=4)

    def decode(self, l1, l2, l3, l4):
        y = self.bu_dec_l1(l4)
        y = self.bu_dec_l2(self.bu_br_l2(resize_bilinear(y, tuple(l3.shape[-2:]), False)
                                         + self.merge_enc_dec_l2(l3)))
        y = self.bu_dec_l3(self.bu_br_l3(y + self.merge_enc_dec_l3(F.avg_pool2d(l2, 2))))
        return self.bu_dec_l4(self.bu_br_l4(y + self.merge_enc_dec_l4(F.avg_pool2d(l1, 4))))


def test_colour_matching_raises_zero_shot_miou_on_unseen_drives(city_state, real_frames):
    """Colour matching raises the Cityscapes network's zero-shot mIoU on unseen drives.

    At the shipped 512x320, every frame scored with the colour statistics of the *other* drives'
    frames (leave-one-drive-out), against ImageNet's normalisation alone: pooled coarse mIoU
    0.521 -> 0.561 on the undistorted frames (0.512 -> 0.564 on the raw, distorted ones). The
    colour statistics are those of :func:`camera_colour_statistics` (``bev-mtl-ros
    colour-stats``). The same with the decoder's last stage at stride 4 (the
    ``espnetv2_s4`` semantic head): 0.546. With its last two stages at stride 8 (tried as a
    cheaper street-model head, the same weights; PyTorch 51 ms per frame against 73 ms for the
    whole network at stride 4): 0.522, under the stride-4 head by about what that head gains
    over the FPN head in cross-validation, so it was not taken further.
    """
    torch.set_num_threads(2)
    net = ESPNetV2Segmentation(1.5)
    net.load_state_dict(city_state, strict=True)
    net.eval()
    ds = A2D2Dataset(REAL, require=("camera", "label"))
    drives = [fr.scene for fr in ds.frames]
    lut = coarse_group_lut()
    size = (512, 320)
    small = [cv2.resize(im, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
             for im, _ in real_frames]
    net4 = ESPNetV2Segmentation(1.5, last_stride=4)
    net4.load_state_dict(city_state, strict=True)
    net4.eval()
    net8 = _LastStagesAtStride8(1.5)
    net8.load_state_dict(city_state, strict=True)
    net8.eval()
    miou = {}
    arms = (("imagenet", net, False), ("matched", net, True),
            ("matched, last stage at stride 4", net4, True),
            ("matched, last two stages at stride 8", net8, True))
    for arm, arm_net, matched in arms:
        conf = np.zeros((8, 9), np.int64)
        for k, (img, (_, label)) in enumerate(zip(small, real_frames)):
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            if matched:
                px = np.concatenate([s.reshape(-1, 3) for j, s in enumerate(small)
                                     if drives[j] != drives[k]]).astype(np.float64)
                mean, std = cityscapes_matched_normalisation(px.mean(0), px.std(0))
            x = (img - np.float32(mean)) / np.float32(std)
            with torch.no_grad():
                pred = arm_net(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous())
            pred = cv2.resize(pred[0].argmax(0).numpy().astype(np.uint8),
                              label.shape[::-1], interpolation=cv2.INTER_NEAREST)
            _accumulate(conf, CITY_TO_COARSE[pred], lut[label])
        miou[arm] = float(_coarse_iou(conf)[0].mean())
    assert miou["imagenet"] == pytest.approx(0.521, abs=0.01), miou
    assert miou["matched"] == pytest.approx(0.561, abs=0.01), miou
    # the decoder's last stage at stride 4 (semantic_head "espnetv2_s4") keeps most of it
    assert miou["matched, last stage at stride 4"] == pytest.approx(0.546, abs=0.01), miou
    assert miou["matched, last two stages at stride 8"] == pytest.approx(0.522, abs=0.01), miou
