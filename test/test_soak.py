"""``bev-mtl-ros soak``: window statistics (known answers) and a short run of the command path.

The real command path runs against the node in a separate process (tiny model, small messages).
"""

from __future__ import annotations

import os

import pytest

from support_models import export_tiny_onnx

from bev_mtl_ros.soak import read_rss_mb, window_summary


def test_window_summary_known_answer():
    sent = {k: 100.0 + 0.1 * k for k in range(20)}  # 10 Hz for 2 s
    got = {k: sent[k] + (0.05 if k % 2 else 0.15) for k in range(20) if k != 3}
    first = window_summary(sent, got, 100.0, 101.0)
    assert first["frames_in"] == 10 and first["frames_out"] == 9
    assert first["latency_p50_ms"] == pytest.approx(150.0)
    last = window_summary(sent, got, 101.0, 102.0)
    assert (last["frames_in"], last["frames_out"]) == (10, 10)
    assert last["latency_p50_ms"] == pytest.approx(100.0)
    assert last["latency_p95_ms"] == pytest.approx(150.0)
    assert window_summary(sent, {}, 100.0, 101.0)["latency_p50_ms"] is None


def test_read_rss_of_this_process():
    assert read_rss_mb(os.getpid()) > 10.0
    assert read_rss_mb(2 ** 22 + 12345) is None  # no such pid


def test_short_soak_against_the_node(tiny_model_path):
    pytest.importorskip("rclpy", reason="rclpy wheels not installed")
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into the venv")
    from bev_mtl_ros.soak import run_soak

    res = run_soak(6.0, rate=5.0, points=2000, image_wh=(256, 160), model=tiny_model_path,
                   backend="onnxruntime", window=3.0, params_file=None, log=lambda *_: None)
    assert res["frames_in"] == 30 and res["node_exit_code"] == 0
    assert res["detections_out"] >= 20 and res["semantic_out"] >= 20
    assert res["first_window"]["frames_in"] + res["last_window"]["frames_in"] >= 30
    assert 50.0 < res["rss_mb"]["start"] <= res["rss_mb"]["max"]
    assert res["last_window"]["latency_p50_ms"] > 0


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    return export_tiny_onnx(tmp_path_factory.mktemp("soak_model") / "tiny.onnx", seed=0)
