"""``bev-mtl-ros bench``'s open-loop rate replay with every output subscribed (issue 24).

Known answers for the pure parts (stamp matching, frames out, CPU arithmetic, the table section),
then one short real run against the node in a separate process (tiny model, small messages).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from support_models import export_tiny_onnx

from bev_mtl_ros.bench.rate_replay import (OUTPUTS, counter_deltas, cpu_ms_per_frame,
                                           match_outputs, match_timing_by_order,
                                           proc_cpu_seconds, rate_table_lines, read_proc_cpu_s)
from bev_mtl_ros.bench.report import format_table

S0 = 100 * 1_000_000_000
PERIOD = 100_000_000


def _sent(n=10):
    return {S0 + k * PERIOD: 10.0 + 0.1 * k for k in range(n)}


def test_match_outputs_by_stamp_counts_and_latency():
    sent = _sent()
    stamps = sorted(sent)
    det = {s: sent[s] + 0.05 for s in stamps if s != stamps[3]}
    det[S0 + 99 * PERIOD] = 30.0                      # a stamp never sent: unmatched
    sem = {s: sent[s] + (0.05 if k % 2 == 0 else 0.15) for k, s in enumerate(stamps)}
    res = match_outputs(sent, {"detections": det, "semantic": sem, "markers": {}})
    assert res["detections"]["frames_out"] == 9 and res["detections"]["unmatched"] == 1
    assert res["detections"]["latency_ms"]["p50"] == pytest.approx(50.0)
    assert res["detections"]["latency_ms"]["n"] == 9
    lat = [50.0 if k % 2 == 0 else 150.0 for k in range(10)]
    assert res["semantic"]["frames_out"] == 10
    assert res["semantic"]["latency_ms"]["p50"] == pytest.approx(np.percentile(lat, 50))
    assert res["semantic"]["latency_ms"]["p95"] == pytest.approx(150.0)
    assert res["semantic"]["latency_ms"]["max"] == pytest.approx(150.0)
    assert res["markers"] == {"frames_out": 0, "unmatched": 0, "latency_ms": {"n": 0}}


def test_timing_matched_by_order_only_when_counts_agree():
    sent = _sent(5)
    stamps = sorted(sent)
    det = {s: sent[s] + 0.04 for s in stamps if s != stamps[1]}       # frame 1 skipped
    # timing messages arrive 20 ms after their frame's detections, in frame order
    times = [det[s] + 0.02 for s in sorted(det)]
    res = match_timing_by_order(sent, det, times)
    assert res["frames_out"] == 4
    assert res["latency_ms"]["p50"] == pytest.approx(60.0)
    assert res["latency_ms"]["n"] == 4
    bad = match_timing_by_order(sent, det, times[:3])
    assert bad["frames_out"] == 3 and "error" in bad["latency_ms"]


def test_proc_stat_cpu_arithmetic():
    # comm with a space and parentheses; utime 250, stime 50 ticks at 100 Hz -> 3.0 s
    fields = ["S", "1"] + ["0"] * 9 + ["250", "50"] + ["0"] * 30
    line = "4242 (perception (node) x) " + " ".join(fields)
    assert proc_cpu_seconds(line, 100) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        proc_cpu_seconds("4242 perception_node S 1", 100)
    assert cpu_ms_per_frame(1.0, 13.0, 600) == pytest.approx(20.0)
    assert cpu_ms_per_frame(None, 13.0, 600) is None
    assert cpu_ms_per_frame(1.0, 13.0, 0) is None


def test_read_proc_cpu_of_this_process_follows_os_times():
    t_end = time.process_time() + 0.3
    while time.process_time() < t_end:     # burn 0.3 s of CPU
        pass
    t = os.times()
    mine = read_proc_cpu_s(os.getpid())
    assert mine == pytest.approx(t.user + t.system, abs=0.05)
    assert mine >= 0.3
    assert read_proc_cpu_s(2 ** 22 + 12345) is None   # no such pid


def test_counter_deltas():
    before = {"pairs_in": "10", "skipped_frames": "1", "processed": "9"}
    after = {"pairs_in": "610", "skipped_frames": "13", "processed": "597", "published": "x"}
    d = counter_deltas(before, after, ("pairs_in", "skipped_frames", "processed", "published",
                                       "output_stage_waits"))
    assert d == {"pairs_in": 600, "skipped_frames": 12, "processed": 588, "published": None,
                 "output_stage_waits": None}


def _run(frames_in, out, p50, p95, cpu, cores, skipped, waits, load):
    outputs = {k: {"frames_out": out, "unmatched": 0,
                   "latency_ms": {"n": out, "p50": p50, "p95": p95, "max": p95}}
               for k in OUTPUTS}
    outputs["semantic/color"]["latency_ms"] = {"n": out, "p50": p50 + 30, "p95": p95 + 45,
                                               "max": p95 + 45}
    outputs["timing"]["latency_ms"] = {"error": "not matched"}
    return {"frames_in": frames_in, "sent_hz": 10.0, "outputs": outputs,
            "node_cpu_ms_per_frame": cpu, "node_cpu_cores": cores,
            "node_counters": {"skipped_frames": skipped, "output_stage_waits": waits},
            "loadavg_1_5_15": [load, 1.0, 1.0]}


def _section():
    return {"scenario": "a2d2_front_center", "points": 20000, "image": [1920, 1208],
            "rate_hz": 10.0, "seconds": 60.0,
            "runs": {"quiet": _run(600, 590, 66.0, 144.0, 142.5, 1.41, 10, 0, 2.5),
                     "busy_core": _run(600, 502, 120.0, 238.0, 150.25, 1.26, 98, None, 3.25)}}


def test_rate_table_lines_known_numbers():
    lines = rate_table_lines(_section())
    assert lines[0] == ("\n10 Hz, every output (open loop 60.0 s, a2d2_front_center: 20000 "
                        "points + 1920x1208 image; latency = cloud published -> output "
                        "received):")
    assert lines[2] == ("  quiet        600   10.00        142.5  1.41     10            10 "
                        "           0       2.50")
    assert lines[3] == ("  busy_core    600   10.00        150.2  1.26     98            98 "
                        "         n/a       3.25")
    det = next(x for x in lines if x.startswith("  detections "))
    assert det == ("  detections                             590  98.3    66.0   144.0 |"
                   "             502  83.7   120.0   238.0")
    over = next(x for x in lines if x.startswith("  semantic colour overlay"))
    assert over.split() == ["semantic", "colour", "overlay", "590", "98.3", "96.0", "189.0",
                            "|", "502", "83.7", "150.0", "283.0"]
    timing = next(x for x in lines if x.startswith("  timing"))
    assert timing.split()[4:8] == ["590", "98.3", "n/a", "n/a"]
    assert len([x for x in lines if "|" in x]) == 1 + len(OUTPUTS)


def test_rate_table_errors_and_format_table_hook():
    sec = _section()
    sec["runs"]["busy_core"] = {"error": "RuntimeError: node exited during the replay"}
    lines = rate_table_lines(sec)
    assert "  busy_core  n/a (RuntimeError: node exited during the replay)" in lines
    assert all("busy_core: out" not in x for x in lines)
    err = rate_table_lines({"rate_hz": 10.0, "seconds": 5.0, "error": "RuntimeError: boom"})
    assert err[-1] == "  n/a (RuntimeError: boom)"
    res = {"device": "cpu", "model": "m", "frames": 10, "warmup": 2, "scenarios": {},
           "rate_replay": _section(),
           "machine": {"processor": "x", "cpu_count": 2, "torch": "t", "torch_threads": 1,
                       "onnxruntime": "o", "loadavg_1_5_15": [1, 1, 1]}}
    text = format_table(res)
    assert "10 Hz, every output (open loop 60.0 s" in text
    assert "quiet: out" in text and "busy_core: out" in text


def test_short_rate_replay_against_the_node(tiny_model_path):
    pytest.importorskip("rclpy", reason="rclpy wheels not installed")
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into the venv")
    from bev_mtl_ros.bench.rate_replay import bench_rate_replay
    from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan

    res = bench_rate_replay(tiny_model_path, synthetic_scan(2000, "front", seed=0),
                            synthetic_image((256, 160), seed=0), rate_hz=10.0, seconds=3.0,
                            warmup=2, backend="onnxruntime", params_file=None,
                            log=lambda *_: None, node_params=("pipeline_outputs:=false",))
    assert set(res["runs"]) == {"quiet", "busy_core"}
    # --node-param reached the node: it built its outputs in the inference thread
    with open(res["node_log"]) as f:
        assert "outputs in the inference thread" in f.read()
    for name, r in res["runs"].items():
        assert r["node_counters"]["images_undistorted"] == 0, name  # a rectified camera
        assert r["frames_in"] == 30, name
        assert set(r["outputs"]) == set(OUTPUTS), name
        for out, o in r["outputs"].items():
            # every output comes back, stamped with the input's stamp; none unknown
            assert 15 <= o["frames_out"] <= 30 and o["unmatched"] == 0, (name, out, o)
            assert r["skipped_in_minus_out"][out] == 30 - o["frames_out"]
        det = r["outputs"]["detections"]
        assert 0.0 < det["latency_ms"]["p50"] <= det["latency_ms"]["p95"] < 5000.0
        c = r["node_counters"]
        assert c["pairs_in"] == 30, (name, c)
        assert c["processed"] + c["skipped_frames"] == 30, (name, c)
        assert det["frames_out"] == c["published"], (name, c)
        assert r["node_cpu_ms_per_frame"] > 0.0 and r["node_cpu_cores"] > 0.0
        assert r["node_cpu_ms_per_frame_out"] == pytest.approx(
            r["node_cpu_ms_per_frame"] * 30 / det["frames_out"], rel=0.01)
    assert res["runs"]["quiet"]["busy_cpu_cores"] is None
    assert res["runs"]["busy_core"]["busy_cpu_cores"] > 0.2


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    return export_tiny_onnx(tmp_path_factory.mktemp("rate_model") / "tiny.onnx", seed=0)


def test_onnx_node_params_reach_the_in_process_backend():
    from bev_mtl_ros.bench.models import onnx_backend_options
    assert onnx_backend_options(["pipeline_outputs:=false", "onnx_spin_us:=0",
                                 "onnx_intra_op_threads:=0"]) == {"spin_us": 0,
                                                                  "intra_op_threads": None}
    assert onnx_backend_options(["onnx_intra_op_threads:=2"]) == {"intra_op_threads": 2}
    with pytest.raises(ValueError, match="onnx_spin_us"):
        onnx_backend_options(["onnx_spin_us:=fast"])


@pytest.mark.parametrize("module,dest", [("bev_mtl_ros.bench.command", "node_param"),
                                         ("bev_mtl_ros.demo", "param"),
                                         ("bev_mtl_ros.soak", "param")])
def test_node_parameter_option_is_the_same_in_every_command(module, dest):
    """bench, demo and soak take node parameters alike: ``--param`` or ``-p``.

    Several after one option, or the option repeated (a repeated option used to replace the
    earlier ones in demo).
    """
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(parser)
    extra = ["--bag", "x"] if module.endswith("demo") else []
    args = parser.parse_args(extra + ["--param", "a:=1", "b:=2", "-p", "c:=3"])
    assert getattr(args, dest) == ["a:=1", "b:=2", "c:=3"]
    if module.endswith("command"):  # the bench's earlier name stays
        assert parser.parse_args(["--node-param", "d:=4"]).node_param == ["d:=4"]


def test_raw_camera_replay_is_undistorted_by_the_node(tiny_model_path):
    """``bench --raw-camera``: the image goes out distorted with A2D2's lens and its CameraInfo.

    The node undistorts every frame it processes (its ``images_undistorted`` counter grows
    with ``processed``), and every frame still comes out.
    """
    pytest.importorskip("rclpy", reason="rclpy wheels not installed")
    pytest.importorskip("vision_msgs.msg", reason="vision_msgs not built into the venv")
    from bev_mtl_ros.bench.rate_replay import bench_rate_replay
    from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan

    res = bench_rate_replay(tiny_model_path, synthetic_scan(2000, "front", seed=0),
                            synthetic_image((256, 160), seed=0), rate_hz=10.0, seconds=2.0,
                            warmup=2, backend="onnxruntime", params_file=None,
                            runs={"quiet": 0}, log=lambda *_: None, raw_camera=True)
    r = res["runs"]["quiet"]
    c = r["node_counters"]
    assert c["processed"] > 0 and c["images_undistorted"] == c["processed"], c
    assert r["outputs"]["detections"]["frames_out"] >= 15, r["outputs"]["detections"]
