"""ONNX graph rewrites (runtime/onnx_rewrite.py): PReLU as depth-wise 1x1 convolutions."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bev_mtl_ros.runtime.onnx_rewrite import prelu_as_depthwise_conv


class _Block(torch.nn.Module):
    """Conv -> channel-wise PReLU -> Conv -> shared-slope PReLU."""

    def __init__(self, c: int = 6):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, c, 3, padding=1)
        self.act1 = torch.nn.PReLU(c)
        self.conv2 = torch.nn.Conv2d(c, c, 1)
        self.act2 = torch.nn.PReLU(1)
        with torch.no_grad():     # slopes below 0, between 0 and 1 and above 1
            self.act1.weight.copy_(torch.linspace(-0.5, 1.5, c))
            self.act2.weight.fill_(0.3)

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x))))


def _export(net: torch.nn.Module) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(net.eval(), (torch.zeros(1, 3, 8, 10),), buf, input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_channel_wise_prelu_rewritten_same_outputs():
    torch.manual_seed(0)
    net = _Block()
    model = _export(net)
    before = [n.op_type for n in model.graph.node].count("PRelu")
    assert before == 2
    x = np.random.default_rng(0).normal(0.0, 2.0, (1, 3, 8, 10)).astype(np.float32)
    ref = _run(model, x)
    rep = prelu_as_depthwise_conv(model)
    # the channel-wise PReLU is rewritten; the shared-slope one (1 slope, 6 channels) is kept
    assert rep == {"prelu": 2, "rewritten": 1}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("PRelu") == 1 and ops.count("Conv") == 4 and "Relu" in ops
    names = {i.name for i in model.graph.initializer}
    assert not any(n.endswith("act1.weight") for n in names), names   # replaced slope dropped
    got = _run(model, x)
    with torch.no_grad():
        torch_out = net(torch.from_numpy(x)).numpy()
    assert float(np.abs(got - ref).max()) <= 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(got - torch_out).max()) <= 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert (ref < 0).any() and (ref > 0).any()      # both branches of the activation were used


def test_graph_without_prelu_untouched():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU())
    model = _export(net)
    before = model.SerializeToString()
    assert prelu_as_depthwise_conv(model) == {"prelu": 0, "rewritten": 0}
    assert model.SerializeToString() == before


@pytest.mark.parametrize("keep", [False, True])
def test_export_rewrites_prelu_unless_kept(tmp_path, keep):
    """Export a network with PReLUs (ESPNetv2 camera encoder), with and without the rewrite.

    By default every channel-wise PRelu becomes convolutions and parity with PyTorch holds;
    rewrite_prelu=False keeps them.
    """
    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.model.espnetv2 import IMAGENET_MEAN, IMAGENET_STD
    from bev_mtl_ros.model.network import TINY_WIDTHS, BevMultiTaskNet
    from bev_mtl_ros.runtime.export import export_onnx

    c = ModelContract(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0), max_pillars=400,
                      image_size=(128, 64), detection_classes=("Car",),
                      box_class_map={"Car": "Car"}, image_mean=IMAGENET_MEAN,
                      image_std=IMAGENET_STD).validate()
    torch.manual_seed(0)
    net = BevMultiTaskNet(c, **{**TINY_WIDTHS, "camera_encoder": "espnetv2_s1.5"})
    path = str(tmp_path / "esp.onnx")
    rep = export_onnx(net, c, path, verify=True, n_checks=1, rewrite_prelu=not keep)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    if keep:
        assert rep["prelu"] == {"prelu": 0, "rewritten": 0} and ops.count("PRelu") > 20
    else:
        assert rep["prelu"]["rewritten"] == rep["prelu"]["prelu"] > 20
        assert "PRelu" not in ops
    assert max(rep["parity"].values()) <= 1e-4
