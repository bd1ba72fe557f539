"""ONNX export and checkpoints.

Parity ONNX (onnxruntime CPU) vs PyTorch on every head, dynamic pillar count, contract in the ONNX
metadata, no ScatterND, checkpoint round trip and error messages.
"""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bev_mtl_ros import cli
from bev_mtl_ros.model.contract import ONNX_CONTRACT_KEY, ContractError, ModelContract
from bev_mtl_ros.model.network import (INPUT_NAMES, OUTPUT_NAMES, BevMultiTaskNet, DeployWrapper,
                                       random_inputs)
from bev_mtl_ros.runtime.checkpoint import (CheckpointError, load_checkpoint, save_checkpoint,
                                            with_semantic_stride)
from bev_mtl_ros.runtime.export import ExportError, export_onnx, read_onnx_contract, verify_onnx


def small_contract():
    return ModelContract(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0), max_pillars=400,
                         image_size=(128, 64), detection_classes=("Car", "Pedestrian"),
                         box_class_map={"Car": "Car", "Pedestrian": "Pedestrian"}).validate()


def _trained_like(net):
    """Give BatchNorm non-trivial running statistics (as after training).

    Export must then use them.
    """
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # regression outputs of O(1) like a trained head (the init is std 1e-3), so parity means
        # something
        torch.nn.init.normal_(net.det_head.regression[-1].weight, std=0.5)
    return net


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    c = small_contract()
    net = _trained_like(BevMultiTaskNet.tiny(c))
    path = str(tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    rep = export_onnx(net, c, path, opset=17, verify=True, n_checks=3)
    return net, c, path, rep


def _session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _compare(net, sess, inputs):
    with torch.no_grad():
        ref = [t.numpy() for t in DeployWrapper(net.eval())(*inputs)]
    got = sess.run(list(OUTPUT_NAMES), {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs)})
    return {n: float(np.max(np.abs(r - g))) for n, r, g in zip(OUTPUT_NAMES, ref, got)}, got


def test_export_report_parity_every_head(exported):
    net, c, path, rep = exported
    assert os.path.getsize(path) == rep["size_bytes"] > 10_000
    assert set(rep["parity"]) == set(OUTPUT_NAMES)
    assert all(v <= 1e-4 for v in rep["parity"].values()), rep["parity"]
    with torch.no_grad():
        out = net.eval()(*random_inputs(c, 100))
    assert all(float(out[k].abs().max()) > 0.05
               for k in OUTPUT_NAMES), "outputs too small for a parity test"
    assert len(rep["checks"]) == 3 and len({ch["num_pillars"] for ch in rep["checks"]}) == 3
    assert any(ch["camera_valid"] == 0.0 for ch in rep["checks"])


def test_dynamic_pillar_count_and_parity(exported):
    net, c, path, _ = exported
    sess = _session(path)
    for p, cv in ((3, 1.0), (377, 1.0), (0, 1.0), (150, 0.0)):
        if p == 0:
            gw, gh = c.grid_size
            wi, hi = c.image_size
            inputs = (torch.zeros(0, c.max_points_per_pillar, c.num_decorated_features),
                      torch.zeros(0, dtype=torch.int32),
                      torch.zeros(1, gw * gh, dtype=torch.int64),
                      torch.rand(1, 3, hi, wi), torch.ones(1))
        else:
            inputs = random_inputs(c, p, seed=p, camera_valid=[cv])
        diffs, got = _compare(net, sess, inputs)
        assert all(d <= 1e-4 for d in diffs.values()), (p, diffs)
        assert got[0].shape == (1, 2) + c.bev_size[::-1]
        assert got[5].shape == (1, 1) + c.grid_size[::-1]
        assert got[6].shape == (1, len(c.semantic_classes)) + c.image_size[::-1]
    # the graph's pillar axis is symbolic, batch is fixed to 1
    g = onnx.load(path).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in g.input}
    assert dims["pillars"][0] == dims["num_points"][0] == "num_pillars"
    assert dims["canvas_index"] == [1, c.grid_size[0] * c.grid_size[1]]


def test_graph_has_no_scatter_and_contract_roundtrip(exported):
    net, c, path, _ = exported
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"ScatterND", "ScatterElements", "Scatter"}, ops
    # plain opset-17 ops that onnxruntime CPU/CUDA and TensorRT 8.6+/10 all run
    portable = {"Add", "BatchNormalization", "Cast", "Concat", "Constant", "ConstantOfShape",
                "Conv",
                "ConvTranspose", "Div", "Erf", "Gather", "Gemm", "Greater", "Identity",
                "LayerNormalization", "Less",
                "MatMul", "Mul", "ReduceMax", "Relu", "Reshape", "Resize", "Shape", "Sigmoid",
                "Slice", "Softmax",
                "Sub", "Transpose", "Unsqueeze", "Where", "Squeeze", "Expand", "Flatten"}
    assert ops <= portable, f"unexpected ops: {sorted(ops - portable)}"
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    back = read_onnx_contract(path)
    assert back == c and back.mismatches(c) == {}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[ONNX_CONTRACT_KEY] == c.to_json()


def test_read_onnx_contract_errors(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        read_onnx_contract(str(tmp_path / "nope.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(ContractError, match="bad.onnx"):
        read_onnx_contract(str(bad))
    model = onnx.load(exported[2])
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(ContractError, match="plain.onnx.*metadata"):
        read_onnx_contract(str(plain))


def test_verify_detects_mismatch(exported, tmp_path):
    net, c, path, _ = exported
    torch.manual_seed(1)
    other = _trained_like(BevMultiTaskNet.tiny(c))
    with pytest.raises(ExportError, match=r"parity failed on output '\w+': max abs diff"):
        verify_onnx(other, path, c, n_checks=1)


def test_export_parity_with_semantic_stride(tmp_path):
    """contract.semantic_stride 2: the graph's semantic output is half the image size, parity."""
    import dataclasses
    torch.manual_seed(1)
    c = dataclasses.replace(small_contract(), semantic_stride=2).validate()
    net = _trained_like(BevMultiTaskNet.tiny(c))
    path = str(tmp_path / "s2.onnx")
    rep = export_onnx(net, c, path, opset=17, verify=True, n_checks=2)
    assert read_onnx_contract(path).semantic_stride == 2
    diffs, got = _compare(net, _session(path), random_inputs(c, 50, seed=3))
    sem = got[list(OUTPUT_NAMES).index("semantic")]
    assert sem.shape == (1, len(c.semantic_classes), 32, 64)
    assert max(diffs.values()) < 1e-4, (diffs, rep)


def test_checkpoint_roundtrip_identical_outputs(tmp_path):
    torch.manual_seed(2)
    c = small_contract()
    net = _trained_like(BevMultiTaskNet.tiny(c)).eval()
    path = str(tmp_path / "models" / "m.pt")
    save_checkpoint(path, net, c,
                    extra={"epoch": 3, "metrics": {"map": np.float64(0.5), "n": np.int64(7)},
                           "hist": (1.0, 2.0), "curve": np.arange(3, dtype=np.float32)})
    net2, c2, extra = load_checkpoint(path)
    assert c2 == c and extra["epoch"] == 3 and extra["metrics"] == {"map": 0.5, "n": 7}
    assert type(extra["metrics"]["map"]) is float and extra["hist"] == (1.0, 2.0)
    assert torch.equal(extra["curve"], torch.arange(3, dtype=torch.float32))
    assert not net2.training
    inputs = random_inputs(c, 200, seed=4)
    with torch.no_grad():
        a, b = net(*inputs), net2(*inputs)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    payload = torch.load(path, weights_only=True)
    assert payload["widths"] == net.widths and payload["contract"] == c.to_dict()


def test_checkpoint_errors_name_the_file(tmp_path):
    c = small_contract()
    net = BevMultiTaskNet.tiny(c)
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(str(tmp_path / "missing.pt"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_checkpoint(str(corrupt))
    good = tmp_path / "good.pt"
    save_checkpoint(str(good), net, c)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(str(trunc))
    payload = torch.load(str(good), weights_only=True)
    # architecture no longer fits the weights
    payload["widths"]["pfn_channels"] = 12
    torch.save(payload, str(tmp_path / "mismatch.pt"))
    with pytest.raises(CheckpointError, match="mismatch.pt.*state_dict"):
        load_checkpoint(str(tmp_path / "mismatch.pt"))
    with pytest.raises(CheckpointError, match="extra"):
        save_checkpoint(str(tmp_path / "x.pt"), net, c, extra={"obj": object()})
    with pytest.raises(ContractError):
        save_checkpoint(str(tmp_path / "y.pt"), net, ModelContract())


def test_export_cli_from_checkpoint(tmp_path, capsys):
    torch.manual_seed(3)
    c = small_contract()
    net = BevMultiTaskNet.tiny(c)
    ck = str(tmp_path / "m.pt")
    save_checkpoint(ck, net, c)
    out = str(tmp_path / "models" / "m.onnx")
    assert cli.main(["export", "--checkpoint", ck, "--out", out, "--checks", "2"]) == 0
    text = capsys.readouterr().out
    assert "parity" in text and "semantic" in text and os.path.isfile(out)
    assert read_onnx_contract(out) == c
    assert cli.main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", out]) == 1
    assert "none.pt" in capsys.readouterr().out


def test_export_cli_semantic_stride_same_weights(tmp_path, capsys):
    """Export with --semantic-stride 2: the same weights at half the semantic size.

    Every other output is identical, and the checkpoint's and the ONNX graph's contracts agree.
    """
    torch.manual_seed(5)
    c = small_contract()
    net = _trained_like(BevMultiTaskNet.tiny(c)).eval()
    ck = str(tmp_path / "m.pt")
    save_checkpoint(ck, net, c, extra={"epoch": 4})
    ck2, out = str(tmp_path / "m2.pt"), str(tmp_path / "m2.onnx")
    assert cli.main(["export", "--checkpoint", ck, "--semantic-stride", "2", "--checkpoint-out",
                     ck2, "--out", out, "--checks", "2"]) == 0
    assert "semantic_stride 2" in capsys.readouterr().out
    net2, c2, extra = load_checkpoint(ck2)
    assert c2.semantic_stride == 2 and read_onnx_contract(out) == c2 and extra["epoch"] == 4
    assert c2.mismatches(c) and dataclasses_equal_but_stride(c, c2)
    inputs = random_inputs(c, 100, seed=6)
    with torch.no_grad():
        a, b = net(*inputs), net2(*inputs)
    for k in a:
        if k != "semantic":
            assert torch.equal(a[k], b[k]), k
    assert b["semantic"].shape[-2:] == (32, 64)
    assert with_semantic_stride(net, 1) is net
    assert cli.main(["export", "--checkpoint", ck, "--checkpoint-out", ck2, "--out", out]) == 1
    assert "needs --semantic-stride" in capsys.readouterr().out


def dataclasses_equal_but_stride(a, b):
    """Return True when two contracts differ in semantic_stride only."""
    import dataclasses
    return dataclasses.replace(a, semantic_stride=b.semantic_stride) == b


def test_parity_on_pillarized_points(exported):
    """Inputs from runtime.pillarize (the real input distribution): ONNX == PyTorch.

    Padded point slots of the pillar tensor are ignored by both.
    """
    from bev_mtl_ros.runtime.pillarize import collate_pillars, pillarize
    net, c, path, _ = exported
    rng = np.random.default_rng(0)
    x0, y0, z0, x1, y1, z1 = c.point_cloud_range
    n = 6000
    pts = np.stack([rng.uniform(x0 - 2, x1 + 2, n), rng.uniform(y0 - 2, y1 + 2, n),
                    rng.uniform(z0, z1, n), rng.uniform(0, 255, n)], axis=1).astype(np.float32)
    pillars, num_points, canvas_index = collate_pillars([pillarize(pts, c)])
    assert 0 < pillars.shape[0] <= c.max_pillars
    wi, hi = c.image_size
    image = torch.rand(1, 3, hi, wi, generator=torch.Generator().manual_seed(0))
    inputs = (pillars, num_points.to(torch.int32), canvas_index, image, torch.ones(1))
    diffs, got = _compare(net, _session(path), inputs)
    assert all(d <= 1e-4 for d in diffs.values()), diffs
    m = torch.arange(pillars.shape[1])[None, :] >= num_points[:, None].long()
    noisy = pillars.clone()
    noisy[m] = 123.0
    diffs2, got2 = _compare(net, _session(path), (noisy,) + inputs[1:])
    for a, b in zip(got, got2):
        assert np.array_equal(a, b)
