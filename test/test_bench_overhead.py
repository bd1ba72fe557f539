"""bench.node_overhead and the table line `bev-mtl-ros bench` prints per scenario.

Issue 11's target: end-to-end minus pipeline.
"""

from bev_mtl_ros.bench.config import SCENARIOS
from bev_mtl_ros.bench.report import OVERHEAD_TARGET_MS, format_table, node_overhead


def _e2e(lat, pipe, over):
    return {
        "latency_ms": {"p50": lat, "p95": lat, "max": lat},
        "node_pipeline_ms": {"p50": pipe, "p95": pipe, "max": pipe},
        "node_overhead_ms": {"p50": over, "p95": over, "max": over},
        "lost": 0,
    }


def _scenario():
    return {
        "points": 20000,
        "image": [1920, 1208],
        "stages": {},
        "end_to_end_dds": _e2e(33.5, 25.0, 8.5),
        "end_to_end_dds_all_outputs": _e2e(52.0, 30.0, 22.0),
    }


def test_overhead_per_scenario_and_missing_figures():
    s = _scenario()
    assert node_overhead(s) == {"detections_only": 8.5, "all_outputs": 22.0}
    s["end_to_end_dds_all_outputs"] = {"error": "RuntimeError: node did not subscribe in time"}
    assert node_overhead(s) == {"detections_only": 8.5, "all_outputs": None}


def test_table_prints_overhead_with_target():
    assert set(OVERHEAD_TARGET_MS) == set(SCENARIOS)
    s = _scenario()
    s["node_overhead_ms"] = node_overhead(s)
    res = {
        "device": "cpu",
        "model": "m",
        "frames": 10,
        "warmup": 2,
        "scenarios": {"a2d2_front_center": s},
        "machine": {
            "processor": "x",
            "cpu_count": 2,
            "torch": "t",
            "torch_threads": 1,
            "onnxruntime": "o",
            "loadavg_1_5_15": [1, 1, 1],
        },
    }
    text = format_table(res)
    assert (
        "node overhead p50 (end-to-end - pipeline, per frame): detections only 8.5 ms, "
        "all outputs 22.0 ms "
        "(target <= 10 ms)"
    ) in text, text
    assert "end-to-end over DDS (all outputs subscribed), lost 0" in text
