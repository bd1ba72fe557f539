"""Inference backends.

Covers onnxruntime vs PyTorch parity, auto fallback with logged reasons, errors, TensorRT provider
options.
"""

import logging
import os
import shutil

import numpy as np
import pytest
import torch

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.runtime import backends as B
from bev_mtl_ros.runtime import onnx_backend
from bev_mtl_ros.runtime.backends import (BackendError, OnnxRuntimeBackend, TorchBackend,
                                          create_backend, output_shapes)

from bev_mtl_ros.model import network  # noqa: E402
from bev_mtl_ros.runtime.checkpoint import save_checkpoint  # noqa: E402
from bev_mtl_ros.runtime.export import export_onnx  # noqa: E402

LOGGER = "bev_mtl_ros.test_backends"


def tiny_contract():
    return ModelContract(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0),
                         max_pillars=1000, image_size=(128, 96)).validate()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = network.BevMultiTaskNet.tiny(tiny_contract()).eval()
    # Non-trivial head biases so that outputs are not all ~equal.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(str(d / "tiny.pt"), net)
    export_onnx(net, None, str(d / "tiny.onnx"), verify=False)
    return d


def test_output_shapes_and_parity(model_dir):
    ort_b = create_backend(str(model_dir / "tiny.onnx"), "onnxruntime")
    pt_b = create_backend(str(model_dir / "tiny.onnx"), "pytorch")      # sibling .pt
    assert isinstance(ort_b, OnnxRuntimeBackend) and isinstance(pt_b, TorchBackend)
    assert ort_b.providers == ["CPUExecutionProvider"] and ort_b.device == "cpu"
    assert ort_b.contract == pt_b.contract == tiny_contract()
    shapes = output_shapes(ort_b.contract)
    for p, cam in ((300, 1.0), (1, 1.0), (640, 0.0)):
        inp = network.random_inputs(ort_b.contract, p, seed=p, camera_valid=[cam])
        a = ort_b.infer(*inp)
        b = pt_b.infer(*(t.numpy() for t in inp))    # numpy inputs work too
        assert list(a) == list(B.OUTPUT_NAMES)
        for k in B.OUTPUT_NAMES:
            assert isinstance(a[k], np.ndarray) and isinstance(b[k], np.ndarray)
            assert a[k].shape == b[k].shape == shapes[k] and a[k].dtype == np.float32
            assert float(np.abs(a[k] - b[k]).max()) < 1e-4, k
        assert a["heatmap"].std() > 1e-4 and a["semantic"].std() > 1e-4
        assert 0.0 <= a["heatmap"].min() and a["heatmap"].max() <= 1.0


def test_bad_input_shape_raises(model_dir):
    be = create_backend(str(model_dir / "tiny.onnx"), "onnxruntime")
    inp = list(network.random_inputs(be.contract, 10, seed=1))
    inp[0] = inp[0][:, :, :5]
    with pytest.raises(BackendError, match="pillars"):
        be.infer(*inp)
    inp = list(network.random_inputs(be.contract, 10, seed=1))
    inp[3] = torch.zeros(1, 3, 32, 32)
    with pytest.raises(BackendError, match="image"):
        be.infer(*inp)


def test_auto_falls_back_when_onnxruntime_missing(model_dir, monkeypatch, caplog):
    def no_ort():
        raise ImportError("No module named 'onnxruntime'")
    monkeypatch.setattr(onnx_backend, "_import_onnxruntime", no_ort)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        be = create_backend(str(model_dir / "tiny.onnx"), "auto", logger=logging.getLogger(LOGGER))
    assert isinstance(be, TorchBackend)
    assert any("onnxruntime is not importable" in r.getMessage()
               and "falling back to PyTorch" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(BackendError, match="not importable"):
        create_backend(str(model_dir / "tiny.onnx"), "onnxruntime")


def test_auto_falls_back_on_provider_failure(model_dir, monkeypatch, caplog):
    import onnxruntime

    def broken(*a, **k):
        raise RuntimeError("provider init failed")
    monkeypatch.setattr(onnxruntime, "InferenceSession", broken)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        be = create_backend(str(model_dir / "tiny.pt"), "auto", logger=logging.getLogger(LOGGER))
    assert isinstance(be, TorchBackend)
    assert any("provider init failed" in r.getMessage() for r in caplog.records)


def test_auto_with_missing_onnx_file_falls_back(model_dir, tmp_path, caplog):
    shutil.copy(model_dir / "tiny.pt", tmp_path / "only.pt")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        be = create_backend(str(tmp_path / "only.onnx"), logger=logging.getLogger(LOGGER))
    assert isinstance(be, TorchBackend) and be.model_path == str(tmp_path / "only.pt")
    assert any("ONNX model not found" in r.getMessage() for r in caplog.records)
    # Neither file: one error with both reasons.
    with pytest.raises(BackendError, match="onnxruntime: .*not found.*pytorch: .*not found"):
        create_backend(str(tmp_path / "nothing.onnx"))


def test_onnx_without_contract_metadata_rejected(model_dir, tmp_path):
    import onnx
    m = onnx.load(str(model_dir / "tiny.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "bare.onnx"))
    with pytest.raises(BackendError, match="metadata"):
        OnnxRuntimeBackend(str(tmp_path / "bare.onnx"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device exists here")
def test_cuda_without_gpu_raises(model_dir):
    import onnxruntime
    if set(onnxruntime.get_available_providers()) & {"CUDAExecutionProvider",
                                                     "TensorrtExecutionProvider"}:
        pytest.skip("onnxruntime has a GPU provider here")
    with pytest.raises(BackendError, match="CUDA"):
        create_backend(str(model_dir / "tiny.onnx"), "onnxruntime", device="cuda")
    with pytest.raises(BackendError, match="CUDA"):
        create_backend(str(model_dir / "tiny.onnx"), "pytorch", device="cuda")
    with pytest.raises(BackendError, match="onnxruntime: .*CUDA.*pytorch: .*CUDA"):
        create_backend(str(model_dir / "tiny.onnx"), "auto", device="cuda")
    with pytest.raises(BackendError, match="device"):
        create_backend(str(model_dir / "tiny.onnx"), device="tpu")


def test_tensorrt_provider_options(model_dir, tmp_path, monkeypatch):
    """With TensorRT 'installed', the session gets TRT -> CUDA -> CPU, engine cache and FP16.

    It also gets one profile spanning 1..max_pillars pillars.
    """
    import onnxruntime
    seen = {}

    def fake_session(path, so, providers):
        seen.setdefault("calls", []).append(providers)
        seen["providers"] = seen["calls"][0]
        raise RuntimeError("stop here")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                 "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", fake_session)
    cache = tmp_path / "trt"
    with pytest.raises(BackendError, match="stop here"):
        OnnxRuntimeBackend(str(model_dir / "tiny.onnx"), device="cuda", fp16=True,
                           trt_cache_dir=str(cache))
    names = [p[0] if isinstance(p, tuple) else p for p in seen["providers"]]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = seen["providers"][0][1]
    c = tiny_contract()
    assert trt["trt_engine_cache_enable"] is True and trt["trt_engine_cache_path"] == str(cache)
    assert trt["trt_fp16_enable"] is True and os.path.isdir(cache)
    assert trt["trt_profile_min_shapes"] == "pillars:1x20x9,num_points:1"
    assert trt["trt_profile_max_shapes"] == (f"pillars:{c.max_pillars}x20x9,"
                                             f"num_points:{c.max_pillars}")
    assert trt["trt_profile_opt_shapes"] == (f"pillars:{c.max_pillars // 2}x20x9,"
                                             f"num_points:{c.max_pillars // 2}")
    # After the TensorRT attempt fails, CUDA -> CPU is tried before giving up.
    assert [p[0] if isinstance(p, tuple) else p for p in seen["calls"][1]] == \
        ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_warmup_and_torch_device(model_dir):
    be = create_backend(str(model_dir / "tiny.pt"), "onnxruntime")
    assert be.torch_device == torch.device("cpu")
    be.warmup()


def test_spin_settings_reach_the_session(model_dir):
    """spin_us > 0: intra-op spinning bounded to spin_us and stopped after each run; 0: none."""
    import onnxruntime as ort
    so = onnx_backend.session_options(ort, None, 100)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert so.get_session_config_entry("session.intra_op.spin_duration_us") == "100"
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    so = onnx_backend.session_options(ort, 1, 0)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 1
    so = onnx_backend.session_options(ort, None, -1)    # onnxruntime's unbounded default
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    with pytest.raises(RuntimeError, match="force_spinning_stop"):   # not set
        so.get_session_config_entry("session.force_spinning_stop")
    with pytest.raises(BackendError, match="spin_us"):
        OnnxRuntimeBackend(str(model_dir / "tiny.onnx"), spin_us=-2)
    # both settings run and give the same outputs
    inp = network.random_inputs(tiny_contract(), 200, seed=3)
    a = create_backend(str(model_dir / "tiny.onnx"), "onnxruntime", spin_us=0).infer(*inp)
    b = create_backend(str(model_dir / "tiny.onnx"), "onnxruntime", spin_us=100,
                       intra_op_threads=2).infer(*inp)
    for k in B.OUTPUT_NAMES:
        assert float(np.abs(a[k] - b[k]).max()) < 1e-5, k
