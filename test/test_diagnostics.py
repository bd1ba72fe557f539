"""PipelineHealth: counter-based causes clear after the window.

Overload above the fraction is WARN; levels and order.
"""

import pytest

from bev_mtl_ros.ros.diagnostics import HealthConfig, PipelineHealth

BASE = {"pairs_in": 0, "skipped_frames": 0, "pillars_dropped": 0, "errors.inference": 0,
        "bad_input.cloud_malformed": 0, "bad_input.image_too_large": 0}


def _run(health, counters, t0, seconds, **kw):
    """Call assess once per second for ``seconds`` s with the counters unchanged; the verdicts."""
    return [health.assess(t0 + k, counters, 0.1, **kw) for k in range(1, seconds + 1)]


def test_single_bad_input_warns_then_clears_after_the_window():
    h = PipelineHealth(HealthConfig(window_s=5.0), BASE, 0.0)
    assert h.assess(1.0, BASE, 0.1) == ("OK", [])
    c = dict(BASE, **{"bad_input.image_too_large": 1})
    level, causes = h.assess(2.0, c, 0.1)
    assert level == "WARN" and causes == ["1 bad inputs in the last 5 s (image_too_large 1)"]
    verdicts = _run(h, c, 2.0, 6)
    assert [v[0] for v in verdicts] == ["WARN"] * 4 + ["OK"] * 2  # clears 5 s after it happened


def test_overload_above_fraction_warns():
    # 50 Hz input, 162 of 250 pairs skipped in 5 s (the fault-injection figure)
    h = PipelineHealth(HealthConfig(window_s=5.0, overload_fraction=0.1), BASE, 0.0)
    c = dict(BASE)
    for k in range(1, 6):
        c = dict(c, pairs_in=50 * k, skipped_frames=round(162 * k / 5))
        level, causes = h.assess(float(k), c, 0.02)
    assert level == "WARN" and causes[0].startswith("overload: 162 of 250 frames (65 %)")
    # 10 Hz, 1 skip in 5 s (2 %): fine; the overload cause clears once the window holds no excess
    for k in range(6, 12):
        c = dict(c, pairs_in=c["pairs_in"] + 10, skipped_frames=c["skipped_frames"]
                 + (1 if k == 8 else 0))
        level, causes = h.assess(float(k), c, 0.1)
    assert (level, causes) == ("OK", [])


def test_overload_needs_enough_frames_and_uses_the_stated_fraction():
    h = PipelineHealth(HealthConfig(window_s=5.0, overload_fraction=0.25), BASE, 0.0)
    assert h.assess(1.0, dict(BASE, pairs_in=4, skipped_frames=3), 0.1)[0] == "OK"  # < min_frames
    h = PipelineHealth(HealthConfig(window_s=5.0, overload_fraction=0.25), BASE, 0.0)
    assert h.assess(1.0, dict(BASE, pairs_in=20, skipped_frames=5), 0.1)[0] == "OK"  # = 25 %
    assert h.assess(2.0, dict(BASE, pairs_in=20, skipped_frames=6), 0.1)[0] == "WARN"


def test_levels_order_and_input_staleness():
    h = PipelineHealth(HealthConfig(window_s=5.0, input_stale_s=2.0), BASE, 0.0)
    c = dict(BASE, **{"errors.inference": 2, "pillars_dropped": 7})
    level, causes = h.assess(1.0, c, 3.5, sync_diagnosis="camera stopped: ...",
                             cloud_topic="/t/points")
    assert level == "ERROR"
    assert causes == ["2 inference errors in the last 5 s", "no cloud on '/t/points' for 3.5 s",
                      "camera stopped: ...", "7 pillars over max_pillars dropped in the last 5 s"]
    level, causes = h.assess(7.0, c, 0.05)
    assert (level, causes) == ("OK", [])


def test_bad_settings_rejected():
    with pytest.raises(ValueError):
        HealthConfig(overload_fraction=1.5).validate()
    with pytest.raises(ValueError):
        PipelineHealth(HealthConfig(window_s=0.0), BASE, 0.0)


def test_cloud_burst_is_named_a_burst_not_clock_skew():
    """Issue 23 defect 6: one image stamped T, then 100 clouds within 100 ms (one clock).

    The stamp offsets of the overflow-resolved clouds looked like a 0.1 s skew; the cause is
    100 clouds per image, which the diagnosis must say (and clear after the window).
    """
    from bev_mtl_ros.ros.sync import ApproxTimeSync

    now = [0.0]
    sync = ApproxTimeSync(slop=0.05, queue_size=10, camera_timeout=0.2, clock=lambda: now[0],
                          diag_window=5.0)
    t_image = 1000.0
    sync.add_image("image", t_image)
    for k in range(100):  # wall-clock stamps: arrival time on the image's clock
        now[0] = 0.001 * (k + 1)
        sync.add_cloud(k, t_image + now[0])
    now[0] = 0.3
    sync.poll()
    text = sync.diagnose()
    assert text.startswith("cloud burst: 100 clouds per image (100 clouds, 1 images) in the "
                           "last 5 s; the pending-cloud queue (sync_queue_size 10) overflowed "
                           f"{sync.stats.queue_overflows} times"), text
    assert sync.stats.queue_overflows == 90 and "clock skew" not in text
    now[0] = 5.4
    assert sync.diagnose() is None  # both inputs idle, the burst out of the window
