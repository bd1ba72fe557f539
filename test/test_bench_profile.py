"""The benchmark's network profile (``bench/network_profile.py``) on a tiny exported model."""

import pytest

from bev_mtl_ros.bench.network_profile import module_of, node_modules, profile_network
from support_models import SMALL_NODE_CONTRACT, export_tiny_onnx


def test_module_of_known_names():
    assert module_of("/net/camera/base_net/level1/Conv") == "camera"
    assert module_of("/net/semantic_head/Resize") == "semantic_head"
    assert module_of("Conv_123") == "other"
    assert module_of("/wrapper/Where") == "other"


def _feeds(contract):
    import torch

    from bev_mtl_ros.bench.models import network_inputs
    from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan
    from bev_mtl_ros.model.network import INPUT_NAMES
    from bev_mtl_ros.runtime.pillarize import pillarize
    torch.manual_seed(0)
    batch = pillarize(synthetic_scan(3000, "front", seed=0), contract)
    img = synthetic_image((512, 320), seed=0)
    return {n: t.numpy() for n, t in zip(INPUT_NAMES, network_inputs(batch, img, contract))}


def test_profile_sums_kernel_time_per_module_and_op(tmp_path):
    """Every module of the network appears; shares add up to 1; per-module and per-op sums agree.

    The added nodes of onnxruntime's optimised graph are given to a module (none left as
    'other' in this all-/net/ graph), and the profile files are removed afterwards.
    """
    from bev_mtl_ros.model.contract import ModelContract
    path = export_tiny_onnx(tmp_path / "tiny.onnx")
    contract = ModelContract(**SMALL_NODE_CONTRACT).validate()
    prof = profile_network(path, [_feeds(contract)], runs=3, out_dir=str(tmp_path),
                           intra_op_threads=1, spin_us=0)
    mods = prof["per_module_ms"]
    assert {"camera", "pfn", "fusion", "semantic_head", "det_head", "drivable_head"} <= set(mods)
    assert sum(mods.values()) == pytest.approx(prof["node_ms_per_frame"], rel=0.01, abs=0.01)
    assert sum(prof["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert list(mods.values()) == sorted(mods.values(), reverse=True)
    assert 0 < prof["node_ms_per_frame"] and 0 < prof["wall_ms_p50"]
    assert sum(prof["camera_ops"].values()) <= mods["camera"] + 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]
    with pytest.raises(ValueError, match="runs >= 1"):
        profile_network(path, [], runs=3, out_dir=str(tmp_path))


def test_node_modules_gives_added_nodes_a_module(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    # /net/a/Relu -> Identity (no /net/ name, as onnxruntime's added nodes) -> /net/b/Relu
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="/net/a/Relu"),
             helper.make_node("Identity", ["y"], ["z"], name="ReorderOutput_0"),
             helper.make_node("Relu", ["z"], ["w"], name="/net/b/Relu"),
             helper.make_node("Identity", ["x"], ["v"], name="lonely")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]),
                           helper.make_tensor_value_info("v", TensorProto.FLOAT, [1])])
    p = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g), str(p))
    assert node_modules(str(p)) == {"/net/a/Relu": "a", "ReorderOutput_0": "a",
                                    "/net/b/Relu": "b", "lonely": "other"}
