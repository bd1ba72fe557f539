"""bench.node_overhead: the per-scenario figure `bev-mtl-ros bench` prints (issue 11's target)."""

from bev_mtl_ros.bench import OVERHEAD_TARGET_MS, SCENARIOS, format_table, node_overhead


def _scenario():
    return {"points": 20000, "image": [1920, 1208], "stages": {},
            "pipeline_in_process": {"total": {"p50": 30.0, "p95": 31.0, "max": 32.0}},
            "pipeline_in_process_no_semantic": {"total": {"p50": 25.0, "p95": 26.0, "max": 27.0}},
            "end_to_end_dds": {"latency_ms": {"p50": 33.5, "p95": 40.0, "max": 41.0}, "lost": 0},
            "end_to_end_dds_all_outputs": {"latency_ms": {"p50": 52.0, "p95": 60.0, "max": 61.0}, "lost": 0}}


def test_overhead_known_answer_and_missing_figures():
    s = _scenario()
    assert node_overhead(s) == {"detections_only": 8.5, "all_outputs": 22.0}
    s["end_to_end_dds_all_outputs"] = {"error": "RuntimeError: node did not subscribe in time"}
    assert node_overhead(s) == {"detections_only": 8.5, "all_outputs": None}


def test_table_prints_overhead_with_target():
    assert set(OVERHEAD_TARGET_MS) == set(SCENARIOS)
    s = _scenario()
    s["node_overhead_ms"] = node_overhead(s)
    res = {"device": "cpu", "model": "m", "frames": 10, "warmup": 2, "scenarios": {"a2d2_front_center": s},
           "machine": {"processor": "x", "cpu_count": 2, "torch": "t", "torch_threads": 1, "onnxruntime": "o",
                       "loadavg_1_5_15": [1, 1, 1]}}
    text = format_table(res)
    assert "node overhead, end-to-end p50 - pipeline p50: detections only 8.5 ms, all outputs 22.0 ms " \
           "(target <= 10 ms)" in text
    assert "end-to-end over DDS (all outputs subscribed), lost 0" in text
