"""Unit tests of the network's stages.

Modules: model/pillar_net, bev_backbone, camera_encoder, fusion, heads, network. Covers shapes,
masking of padded points, the Gather scatter, gradient flow, determinism and the exact lidar-only
identity of the fusion.
"""

import json
import math

import pytest
import torch

from bev_mtl_ros.model.bev_backbone import BevBackbone, BevNeck
from bev_mtl_ros.model.camera_encoder import CameraEncoder
from bev_mtl_ros.model.contract import ContractError, ModelContract
from bev_mtl_ros.model.fusion import (A2D2_FX_OVER_WIDTH, CameraBevFusion, bev_query_encoding,
                                      camera_key_encoding)
from bev_mtl_ros.model.heads import (HEATMAP_PRIOR_BIAS, CenterPointHead, DrivableHead,
                                     SemanticFPNHead)
from bev_mtl_ros.model.network import (DEFAULT_WIDTHS, OUTPUT_NAMES, TINY_WIDTHS, BevMultiTaskNet,
                                       DeployWrapper, random_inputs)
from bev_mtl_ros.model.pillar_net import PillarFeatureNet, PillarScatter


def small_contract(**kw):
    """64 x 64 pillar grid (20.48 m x 20.48 m), 128 x 64 image, 300 pillars max."""
    d = dict(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0), max_pillars=300,
             image_size=(128, 64))
    d.update(kw)
    return ModelContract(**d).validate()


@pytest.fixture(scope="module")
def contract():
    return small_contract()


# ------------------------------------------------------------------------------------ pillars
def test_pfn_shape_and_padded_points_do_not_contribute():
    torch.manual_seed(0)
    pfn = PillarFeatureNet(9, 16)
    p, m = 50, 20
    pillars = torch.randn(p, m, 9)
    num = torch.randint(1, m + 1, (p,), dtype=torch.int32)
    valid = torch.arange(m)[None, :] < num[:, None]
    pillars[~valid] = 0.0
    garbage = pillars.clone()
    garbage[~valid] = torch.randn(int((~valid).sum()), 9) * 100.0
    for mode in ("train", "eval"):
        pfn.train(mode == "train")
        state = {k: v.clone() for k, v in pfn.state_dict().items()}
        a = pfn(pillars, num)
        pfn.load_state_dict(state)
        b = pfn(garbage, num)
        assert a.shape == (p, 16)
        assert torch.allclose(a, b, atol=1e-5), mode
        assert (a >= 0).all()
    # The max is over real points only: a pillar equals the PFN of its real points alone.
    pfn.eval()
    k = int(torch.argmin(num))
    alone = pfn(pillars[k:k + 1, :int(num[k])], num[k:k + 1])
    assert torch.allclose(alone[0], pfn(pillars, num)[k], atol=1e-6)


def test_pfn_batchnorm_statistics_ignore_padding():
    torch.manual_seed(1)
    pfn = PillarFeatureNet(9, 8).train()
    pfn.norm.momentum = 1.0  # running stats = last batch stats
    pillars = torch.randn(30, 10, 9)
    num = torch.randint(1, 11, (30,), dtype=torch.int32)
    valid = torch.arange(10)[None, :] < num[:, None]
    pillars[~valid] = 0.0
    pfn(pillars, num)
    lin = pfn.linear(pillars[valid])
    assert torch.allclose(pfn.norm.running_mean, lin.mean(0), atol=1e-5)
    assert torch.allclose(pfn.norm.running_var, lin.var(0, unbiased=True), atol=1e-4)


def test_pfn_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match="pillars must be"):
        PillarFeatureNet(9, 8)(torch.zeros(3, 5, 4), torch.ones(3, dtype=torch.int32))


def test_scatter_places_features_by_gather():
    sc = PillarScatter((4, 3))                         # grid_w = 4, grid_h = 3
    feats = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    ci = torch.full((2, 12), 3, dtype=torch.int64)     # P = 3 -> empty
    ci[0, 1 * 4 + 2] = 0                               # frame 0, iy=1, ix=2 <- pillar 0
    ci[0, 0] = 1                                       # frame 0, iy=0, ix=0 <- pillar 1
    ci[1, 2 * 4 + 3] = 2                               # frame 1, iy=2, ix=3 <- pillar 2
    out = sc(feats, ci)
    assert out.shape == (2, 2, 3, 4)
    expect = torch.zeros(2, 2, 3, 4)
    expect[0, :, 1, 2] = feats[0]
    expect[0, :, 0, 0] = feats[1]
    expect[1, :, 2, 3] = feats[2]
    assert torch.equal(out, expect)
    with pytest.raises(ValueError, match="canvas_index values"):
        sc(feats, ci + 1)


# ------------------------------------------------------------------------------------ stages
def test_backbone_neck_camera_heads_shapes():
    bb = BevBackbone(8, (12, 24), (1, 1))
    f2, f4 = bb(torch.randn(2, 8, 32, 48))
    assert f2.shape == (2, 12, 16, 24) and f4.shape == (2, 24, 8, 12)
    for stride, hw in ((1, (32, 48)), (2, (16, 24)), (4, (8, 12))):
        n2, det = BevNeck((12, 24), 8, 16, stride)(f2, f4)
        assert n2.shape == (2, 16, 16, 24) and det.shape == (2, 16) + hw
    with pytest.raises(ValueError, match="bev_stride"):
        BevNeck((12, 24), 8, 16, 3)
    cam = CameraEncoder((4, 6, 8, 10, 12), blocks=0)
    feats = cam(torch.rand(2, 3, 64, 128))
    assert [tuple(f.shape) for f in feats] == [(2, 6, 16, 32), (2, 8, 8, 16), (2, 10, 4, 8),
                                               (2, 12, 2, 4)]
    head = CenterPointHead(16, 4, 8)
    out = head(torch.randn(2, 16, 16, 24))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "heatmap": (4, 16, 24), "offset": (2, 16, 24), "z": (1, 16, 24), "size": (3, 16, 24),
        "rot": (2, 16, 24)}
    assert torch.all(head.heatmap[-1].bias == HEATMAP_PRIOR_BIAS)
    assert DrivableHead(16, 8, 4)(n2, torch.randn(2, 8, 32, 48)).shape == (2, 1, 32, 48)
    seg = SemanticFPNHead(cam.out_channels, 38, 8, image_size=(128, 64))
    assert seg(feats).shape == (2, 38, 64, 128)


def test_camera_encoder_normalises_inside():
    torch.manual_seed(0)
    cam = (CameraEncoder((4, 6, 8, 10, 12), image_mean=(0.5, 0.25, 0.75),
                         image_std=(0.5, 0.5, 0.25), blocks=0).eval())
    img = torch.rand(1, 3, 64, 64)
    normed = ((img - torch.tensor([0.5, 0.25, 0.75]).view(1, 3, 1, 1))
              / torch.tensor([0.5, 0.5, 0.25]).view(1, 3, 1, 1))
    ref = cam.s32(cam.s16(cam.s8(cam.s4(cam.stem(normed)))))
    assert torch.allclose(cam(img)[3], ref, atol=1e-5)
    assert not torch.allclose(cam(img)[3], cam.s32(cam.s16(cam.s8(cam.s4(cam.stem(img))))),
                              atol=1e-3)


def test_positional_encodings_geometry(contract):
    q = bev_query_encoding(contract, 4)
    gw, gh = contract.grid_size
    assert q.shape[0] == (gw // 4) * (gh // 4)
    # cell (iy, ix) = (h/2, 0): centre y = +0.64 m (just left of the axis), x = 0.64 m -> azimuth
    # 45 deg
    h, w = gh // 4, gw // 4
    row = q[(h // 2) * w + 0]
    az = math.atan2(0.64, 0.64)
    assert row[0].item() == pytest.approx(math.sin(az), abs=1e-6)      # sin(1 * az)
    assert row[8].item() == pytest.approx(math.cos(az), abs=1e-6)      # cos(1 * az)
    k = camera_key_encoding((512, 320), (16, 32))
    assert k.shape == (32 * 20 + 16 * 10, 16 + 24 + 2)
    # left-most stride-16 token: u = 8 px, looks left (+y):
    # azimuth = atan((256 - 8) / (0.879 * 512))
    az_left = math.atan2(256 - 8, A2D2_FX_OVER_WIDTH * 512)
    assert k[0, 0].item() == pytest.approx(math.sin(az_left), abs=1e-6)
    assert k[0, -2].item() == 1.0 and k[-1, -1].item() == 1.0            # scale one-hot
    # shared azimuth basis: the query/key azimuth kernel peaks where the azimuths agree

    def kernel(a, b):
        return sum(math.cos(n * (a - b)) for n in range(1, 9))
    assert kernel(0.3, 0.3) > kernel(0.3, 0.1) > 0


def test_fusion_exact_identity_when_camera_invalid(contract):
    torch.manual_seed(0)
    fus = CameraBevFusion(contract, 16, (10, 12), dim=8, heads=2, ffn_dim=16)
    gw, gh = contract.grid_size
    bev = torch.randn(2, 16, gh // 4, gw // 4)
    c16, c32 = torch.randn(2, 10, 4, 8), torch.randn(2, 12, 2, 4)
    out = fus(bev, c16, c32, torch.tensor([1.0, 0.0]))
    assert out.shape == bev.shape
    # exact identity, lidar-only sample
    assert torch.equal(out[1], bev[1])
    assert not torch.allclose(out[0], bev[0])                          # camera sample is changed
    nan16 = torch.full_like(c16, float("nan"))
    out0 = fus(bev, nan16, c32, torch.zeros(2))
    assert torch.equal(out0, bev)                                      # even with a garbage image


# ------------------------------------------------------------------------------------ network
def test_network_output_shapes_and_widths(contract):
    torch.manual_seed(0)
    net = BevMultiTaskNet.tiny(contract).eval()
    out = net(*random_inputs(contract, 100, batch=2))
    gw, gh = contract.grid_size
    bw, bh = contract.bev_size
    k, s = len(contract.detection_classes), len(contract.semantic_classes)
    wi, hi = contract.image_size
    assert {n: tuple(v.shape) for n, v in out.items()} == {
        "heatmap": (2, k, bh, bw), "offset": (2, 2, bh, bw), "z": (2, 1, bh, bw),
        "size": (2, 3, bh, bw),
        "rot": (2, 2, bh, bw), "drivable": (2, 1, gh, gw), "semantic": (2, s, hi, wi)}
    json.dumps(net.widths)
    assert set(net.widths) == set(DEFAULT_WIDTHS)
    rebuilt = BevMultiTaskNet(contract, **net.widths)
    assert rebuilt.num_parameters() == net.num_parameters()
    with pytest.raises(TypeError, match="unknown"):
        BevMultiTaskNet(contract, no_such_width=3)
    with torch.no_grad():
        dep = DeployWrapper(net)(*random_inputs(contract, 100))
    assert len(dep) == len(OUTPUT_NAMES)
    assert 0.0 <= float(dep[0].min()) and float(dep[0].max()) <= 1.0          # heatmap probability


@pytest.mark.parametrize("stride", [1, 4])
def test_network_other_bev_strides(stride):
    c = small_contract(bev_stride=stride, point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0))
    net = BevMultiTaskNet.tiny(c).eval()
    out = net(*random_inputs(c, 50))
    bw, bh = c.bev_size
    assert out["heatmap"].shape[-2:] == (bh, bw)
    assert out["drivable"].shape[-2:] == c.grid_size[::-1]


def test_every_parameter_gets_gradient(contract):
    torch.manual_seed(0)
    net = BevMultiTaskNet.tiny(contract).train()
    out = net(*random_inputs(contract, 150, batch=2, seed=3))
    loss = sum((v.float() ** 2).mean() + v.float().mean() for v in out.values())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None
               or not torch.any(p.grad != 0)]
    assert not missing, f"parameters without gradient: {missing}"


def test_deterministic_forward(contract):
    torch.manual_seed(0)
    net = BevMultiTaskNet.tiny(contract).eval()
    inp = random_inputs(contract, 120, seed=5)
    a, b = net(*inp), net(*inp)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_lidar_only_outputs_do_not_depend_on_image(contract):
    torch.manual_seed(0)
    net = BevMultiTaskNet.tiny(contract).eval()
    pil, num, ci, img, _ = random_inputs(contract, 120, seed=7)
    other = torch.rand(img.shape, generator=torch.Generator().manual_seed(99))
    off = torch.zeros(1)
    a, b = net(pil, num, ci, img, off), net(pil, num, ci, other, off)
    for k in ("heatmap", "offset", "z", "size", "rot", "drivable"):
        assert torch.equal(a[k], b[k]), k
    c, d = net(pil, num, ci, img, torch.ones(1)), net(pil, num, ci, other, torch.ones(1))
    assert not torch.equal(c["heatmap"], d["heatmap"])                  # with the camera, it does


def test_semantic_stride_gives_smaller_logits_and_old_contracts_read_as_one(contract):
    import dataclasses
    assert contract.semantic_stride == 1 and contract.semantic_size == contract.image_size
    c2 = dataclasses.replace(contract, semantic_stride=2).validate()
    wi, hi = contract.image_size
    assert c2.semantic_size == (wi // 2, hi // 2)
    torch.manual_seed(0)
    net = BevMultiTaskNet.tiny(c2).eval()
    with torch.no_grad():
        out = net(*random_inputs(c2, 100))
    assert tuple(out["semantic"].shape) == (1, len(c2.semantic_classes), hi // 2, wi // 2)
    d = c2.to_dict()
    assert ModelContract.from_dict(d).semantic_stride == 2
    del d["semantic_stride"]                                        # saved before the field
    assert ModelContract.from_dict(d).semantic_stride == 1
    with pytest.raises(ContractError, match="semantic_stride"):
        dataclasses.replace(contract, semantic_stride=3).validate()


def test_default_widths_build_and_run_default_contract():
    net = BevMultiTaskNet(ModelContract()).eval()
    assert 3e5 < net.num_parameters() < 5e6  # EfficientNet-Lite0 features: 2.96 M of them
    c = ModelContract()
    with torch.no_grad():
        out = net(*random_inputs(c, 500))
    assert out["heatmap"].shape == (1, 4, 128, 128)
    assert out["drivable"].shape == (1, 1, 256, 256)
    assert out["semantic"].shape == (1, 38, 320, 512)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert TINY_WIDTHS.keys() == DEFAULT_WIDTHS.keys()


def test_fusion_rejects_shapes_not_matching_the_contract(contract):
    fus = CameraBevFusion(contract, 16, (10, 12), dim=8, heads=2, ffn_dim=16)
    gw, gh = contract.grid_size
    with pytest.raises(ValueError, match="camera tokens"):
        fus(torch.randn(1, 16, gh // 4, gw // 4), torch.randn(1, 10, 8, 8),
            torch.randn(1, 12, 2, 4), torch.ones(1))
    with pytest.raises(ValueError, match="BEV map"):
        fus(torch.randn(1, 16, gh // 2, gw // 2), torch.randn(1, 10, 4, 8),
            torch.randn(1, 12, 2, 4), torch.ones(1))


def test_network_rejects_inputs_not_matching_the_contract(contract):
    net = BevMultiTaskNet.tiny(contract).eval()
    pil, num, ci, img, cv = random_inputs(contract, 20)
    with pytest.raises(ValueError, match="image must be"):
        net(pil, num, ci, img[..., :64], cv)
    with pytest.raises(ValueError, match="camera_valid must be"):
        net(pil, num, ci, img, torch.ones(2))
    with pytest.raises(ValueError, match="canvas_index"):
        net(pil, num, ci[:, :100], img, cv)


def test_fused_and_explicit_attention_agree(contract):
    torch.manual_seed(0)
    fus = CameraBevFusion(contract, 16, (10, 12), dim=8, heads=2, ffn_dim=16).eval()
    gw, gh = contract.grid_size
    args = (torch.randn(2, 16, gh // 4, gw // 4), torch.randn(2, 10, 4, 8),
            torch.randn(2, 12, 2, 4), torch.ones(2))
    a = fus(*args)
    fus.fused_attention = False
    b = fus(*args)
    assert not torch.equal(a, args[0])
    assert torch.allclose(a, b, atol=1e-5)


def test_pfn_cumulative_statistics_match_batchnorm_semantics():
    """momentum=None (cumulative average) averages the batch statistics.

    It is used for BN re-estimation.
    """
    torch.manual_seed(4)
    pfn = PillarFeatureNet(9, 4).train()
    pfn.norm.momentum = None
    pfn.norm.reset_running_stats()
    means = []
    for _ in range(3):
        pillars, num = torch.randn(20, 5, 9) * 3.0, torch.full((20,), 5, dtype=torch.int32)
        pfn(pillars, num)
        means.append(pfn.linear(pillars.reshape(-1, 9)).mean(0))
    assert torch.allclose(pfn.norm.running_mean, torch.stack(means).mean(0), atol=1e-5)
