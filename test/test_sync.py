"""ApproxTimeSync.

Pairing, slop, timeout -> lidar-only, out-of-order stamps, bag-loop reset, diagnosis.
"""

import pytest

from bev_mtl_ros.ros.sync import ApproxTimeSync, stamp_to_sec


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def make(**kw):
    clock = FakeClock()
    kw.setdefault("slop", 0.05)
    kw.setdefault("camera_timeout", 0.2)
    return ApproxTimeSync(clock=clock, **kw), clock


def test_stamp_to_sec():
    class T:
        sec, nanosec = 3, 250_000_000

    assert stamp_to_sec(T) == 3.25


def test_pairs_with_closest_image_once_a_later_image_arrives():
    s, _ = make()
    assert s.add_image("i0", 0.97) == []
    # a later, closer image may still come (no period known yet)
    assert s.add_cloud("c0", 1.00) == []
    out = s.add_image("i1", 1.01)
    assert len(out) == 1
    p = out[0]
    assert (p.cloud, p.image, p.reason, p.lidar_only) == ("c0", "i1", "matched", False)
    assert p.offset == pytest.approx(0.01)
    assert s.stats.matched == 1 and s.pending_clouds == 0


def test_earlier_image_chosen_when_closer():
    s, _ = make()
    s.add_image("i0", 0.99)
    s.add_cloud("c0", 1.00)
    out = s.add_image("i1", 1.04)
    assert out[0].image == "i0"


def test_camera_period_lets_pairs_resolve_without_waiting():
    s, _ = make()
    for k in range(4):
        s.add_image(f"i{k}", 0.7 + 0.1 * k)  # 10 Hz camera, last 1.0 - 0.03 = 0.97 ... (0.7..1.0)
    # camera earlier than lidar by 0.02 s: next image predicted at ~1.1, farther than 0.98
    s.add_image("i4", 1.08)
    out = s.add_cloud("c", 1.10)
    assert out == [] or out[0].image == "i4"
    s2, _ = make()
    for k in range(4):
        s2.add_image(f"i{k}", 0.68 + 0.1 * k)  # ..., 0.98
    # best 0.98 (0.02 away); predicted next 1.08 (0.08 away) -> decide now
    out = s2.add_cloud("c", 1.00)
    assert len(out) == 1 and out[0].image == "i3" and not out[0].timed_out


def test_slop_respected_and_timeout_gives_lidar_only():
    s, clock = make(slop=0.02)
    s.add_image("old", 0.90)
    assert s.add_cloud("c", 1.00) == []
    clock.t += 0.1
    assert s.poll() == []
    clock.t += 0.15
    out = s.poll()
    assert len(out) == 1
    p = out[0]
    assert p.lidar_only and p.reason == "images_too_old" and p.timed_out
    assert (s.stats.lidar_only == 1 and s.stats.unmatched_images_too_old == 1
            and s.stats.timeouts == 1)


def test_image_beyond_slop_resolves_unmatched_immediately():
    s, _ = make(slop=0.02)
    s.add_cloud("c", 1.00)
    out = s.add_image("late", 1.10)
    assert len(out) == 1 and out[0].lidar_only and out[0].reason == "images_too_new"


def test_no_lidar_only_when_model_cannot():
    s, clock = make(allow_lidar_only=False)
    s.add_cloud("c", 1.0)
    clock.t += 1.0
    out = s.poll()
    assert out[0].lidar_only and s.stats.dropped_no_camera == 1 and s.stats.lidar_only == 0
    assert out[0].reason == "no_images"


def test_camera_stops_mid_run_then_lidar_only_and_diagnosed():
    s, clock = make()
    t = 1.0
    before = []
    for _ in range(5):
        before += s.add_image("i", t + 0.005)
        before += s.add_cloud("c", t)
        clock.t += 0.1
        t += 0.1
        before += s.poll()
    assert len(before) == 5 and all(not p.lidar_only for p in before)
    matched_before = s.stats.matched
    assert s.diagnose() is None
    results, waits = [], []
    for _ in range(30):  # camera silent for 3 s; poll every 10 ms as the node's worker does
        arrival = clock.t
        got = s.add_cloud("c", t)
        while not got:
            clock.t += 0.01
            got = s.poll()
        waits.append(clock.t - arrival)
        results += got
        clock.t = arrival + 0.1
        t += 0.1
    assert len(results) == 30 and all(p.lidar_only and p.reason == "images_too_old"
                                      for p in results)
    assert s.stats.matched == matched_before and s.stats.lidar_only == 30
    # the first clouds wait camera_timeout (0.2 s); once no image came for camera_stale_after
    # (0.5 s) a cloud only waits until an image within slop would have arrived: slop 0.05 +
    # image transport lag 0 + 0.01 margin
    assert waits[:3] == [pytest.approx(0.2)] * 3
    assert all(0.05 <= w <= 0.07 for w in waits[6:]), waits
    assert s.camera_stale
    msg = s.diagnose()
    assert msg is not None and "camera stopped" in msg and "30 lidar-only" in msg


def test_out_of_order_stamps_are_paired_correctly():
    s, _ = make()
    s.add_cloud("c2", 1.2)
    s.add_cloud("c1", 1.1)  # arrives late, stamp older: no reset
    assert s.stats.out_of_order_clouds == 1 and s.stats.resets == 0
    out = s.add_image("i2", 1.2)
    assert sorted((p.cloud, p.image, p.reason) for p in out) == [
        ("c1", None, "images_too_new"), ("c2", "i2", "matched")]
    s.add_image("i1", 1.1)  # out of order image
    assert s.stats.out_of_order_images == 1


def test_backward_jump_resets_queues():
    s, _ = make()
    s.add_image("i", 10.0)
    s.add_cloud("c", 10.0)
    s.add_cloud("pending", 10.1)
    assert s.pending_clouds == 1
    out = s.add_cloud("loop", 0.5)  # bag restarted: the pre-loop cloud is resolved, not lost
    assert [(p.cloud, p.reason) for p in out] == [("pending", "images_too_old")]
    assert s.stats.resets == 1 and s.stats.resolved_on_jump == 1 and s.stats.stamp_outliers == 0
    assert s.pending_clouds == 1 and "bag loop" in s.last_jump
    out = s.add_image("i0", 0.5)  # the camera loops too: the same reset, old images dropped
    assert len(out) == 1 and out[0].cloud == "loop" and out[0].image == "i0"
    assert s.stats.resets == 1 and s.stats.stamp_outliers == 0
    assert s.stats.images_dropped_on_jump == 1 and s.queued_images == 1
    # a second loop is a second reset
    s.add_image("j", 3.0)
    s.add_cloud("d", 3.0)
    s.add_cloud("loop2", 0.5)
    assert s.stats.resets == 2


def test_queue_overflow_resolves_oldest():
    s, _ = make(queue_size=2)
    s.add_cloud("a", 1.0)
    s.add_cloud("b", 1.1)
    out = s.add_cloud("c", 1.2)
    assert [p.cloud for p in out] == ["a"] and out[0].lidar_only and s.stats.queue_overflows == 1


def test_diagnose_no_images_points_at_qos_or_topic():
    s, _ = make()
    assert s.diagnose() is None
    s.add_cloud("c", 1.0)
    msg = s.diagnose()
    assert "no image received" in msg and "QoS" in msg


def test_diagnose_no_clouds():
    s, _ = make()
    s.add_image("i", 1.0)
    assert "no cloud received" in s.diagnose()


def test_diagnose_zero_stamps():
    s, _ = make()
    s.add_image("i", 0.0)
    s.add_cloud("c", 0.0)
    assert "zero header.stamp" in s.diagnose()
    assert s.stats.zero_stamp_clouds == 1 and s.stats.zero_stamp_images == 1


def test_diagnose_consistent_clock_skew():
    # camera host 0.5 s ahead and a short image queue: no queued image is ever within slop
    s, clock = make(slop=0.05, queue_size=3)
    results = []
    for k in range(12):
        t = 100.0 + 0.1 * k
        results += s.add_image("i", t + 0.5 + 0.003 * (k % 2))
        results += s.add_cloud("c", t)
        clock.t += 0.1
        results += s.poll()
    assert len(results) >= 10 and all(p.lidar_only and p.reason == "images_too_new"
                                      for p in results)
    assert s.estimated_skew() == pytest.approx(0.5, abs=0.01)
    msg = s.diagnose()
    assert msg is not None and "clock skew" in msg and "0.50" in msg and "after" in msg


def test_delayed_clouds_with_matching_pairs_are_not_called_skew():
    # clouds reach the synchronizer 0.5 s after their images (busy executor) but pairs form: no
    # warning
    s, clock = make(slop=0.05, camera_timeout=1.0)
    for k in range(15):
        t = 100.0 + 0.1 * k
        s.add_image("i", t)
        clock.t += 0.1
        if k >= 4:
            s.add_cloud("c", t - 0.4)
    assert s.estimated_skew() == pytest.approx(0.5, abs=0.01) and s.stats.matched >= 5
    assert s.diagnose() is None


def test_diagnose_skew_from_unmatched_offsets():
    s, clock = make(slop=0.05, queue_size=3)
    for k in range(12):
        t = 100.0 + 0.1 * k
        s.add_cloud("c", t)
        s.add_image("i", t - 0.3)  # arrives with the cloud but stamped 0.3 s earlier
        clock.t += 0.25
        s.poll()
    msg = s.diagnose()
    assert "clock skew" in msg and "0.300 s before" in msg


def test_diagnose_healthy_stream_is_none():
    s, clock = make()
    results = []
    for k in range(20):
        t = 5.0 + 0.1 * k
        results += s.add_cloud("c", t)
        results += s.add_image("i", t + 0.01)
        clock.t += 0.1
        results += s.poll()
    assert len(results) == 20 and all(not p.lidar_only for p in results)
    assert s.diagnose() is None


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        ApproxTimeSync(slop=-1)


def test_camera_resumes_after_stale_period():
    s, clock = make()
    s.add_cloud("c0", 1.0)
    clock.t += 1.0
    assert s.poll()[0].lidar_only and s.camera_stale  # never an image: stale after 0.5 s
    s.add_image("i", 2.0)
    assert not s.camera_stale
    out = s.add_cloud("c1", 2.0)
    assert len(out) == 1 and out[0].image == "i" and out[0].reason == "matched"


# ------------------------------------------------------------------ fault-injection reproductions
def _frames(s, clock, t0, n, image_offset=0.005, step=0.1):
    """Feed n frames at 10 Hz and return the resolved pairs.

    Per frame: image (stamp + image_offset) then cloud, clock advancing with the stamps.
    """
    out = []
    for k in range(n):
        t = t0 + step * k
        out += s.add_image(f"i{t:.3f}", t + image_offset)
        out += s.add_cloud(f"c{t:.3f}", t)
        clock.t += step
        out += s.poll()
    return out


def test_single_zero_stamp_clears_from_diagnosis_and_keeps_pairing():
    # defect 1: one zero stamp left the diagnosis at "zero header.stamp" for good (and, through
    # a reset, cost the next frame its image)
    s, clock = make(diag_window=5.0)
    assert all(not p.lidar_only for p in _frames(s, clock, 50.0, 10))
    out = s.add_cloud("zero", 0.0)
    assert [(p.cloud, p.reason) for p in out] == [("zero", "zero_stamp")]
    assert "zero header.stamp" in s.diagnose()
    nxt = _frames(s, clock, 51.0, 1)
    assert [(p.cloud, p.image) for p in nxt] == [("c51.000", "i51.000")]
    assert s.stats.resets == 0 and s.stats.stamp_outliers == 0
    _frames(s, clock, 51.1, 49)  # 4.9 s of good frames: still within the 5 s window
    assert "zero header.stamp" in s.diagnose()
    _frames(s, clock, 56.0, 2)
    assert s.diagnose() is None
    # a later cause is not hidden behind an old zero stamp
    s.add_image("zero_img", 0.0)
    clock.t += 5.1
    for k in range(10):  # camera silent, clouds keep coming
        s.add_cloud("c", 56.2 + 5.1 + 0.1 * k)
        clock.t += 0.1
        s.poll()
    assert "camera stopped" in s.diagnose()


def test_both_inputs_stopping_is_not_called_camera_stopped():
    # defect 2: at the end of a bag both inputs stop; the diagnosis claimed "camera stopped ...
    # running lidar-only" while no cloud ran lidar-only
    s, clock = make()
    _frames(s, clock, 5.0, 20)
    clock.t += 5.1
    assert s.diagnose() is None and s.stats.lidar_only == 0
    # the camera alone stopping is still diagnosed, with the real lidar-only count
    for k in range(10):
        s.add_cloud("c", 12.1 + 0.1 * k)
        clock.t += 0.1
        s.poll()
    msg = s.diagnose()
    assert "camera stopped" in msg and f"{s.stats.lidar_only} lidar-only" in msg
    assert s.stats.lidar_only == 10


def test_cloud_stamped_one_hour_ahead_costs_no_image():
    # defect 3: the next normal cloud reset the synchronizer and threw away its queued image
    s, clock = make()
    _frames(s, clock, 100.0, 5)
    out = s.add_cloud("ahead", 100.5 + 3600.0)
    out += s.add_image("i100.500", 100.505)
    out += s.add_cloud("c100.500", 100.5)
    assert ("c100.500", "i100.500") in [(p.cloud, p.image) for p in out]
    assert [p.reason for p in out if p.cloud == "ahead"] == ["images_too_old"]  # not lost
    assert s.stats.stamp_outliers == 1 and s.stats.resets == 0
    assert "outlier" in s.last_jump and "bag loop" not in s.last_jump
    assert all(not p.lidar_only for p in _frames(s, clock, 100.6, 10))


def test_image_stamped_one_hour_ahead_costs_no_pair():
    s, clock = make()
    _frames(s, clock, 100.0, 5)
    s.add_image("ahead", 3600.0 + 100.5)
    out = _frames(s, clock, 100.5, 5)
    assert [p.image for p in out] == [f"i{100.5 + 0.1 * k:.3f}" for k in range(5)]
    assert s.stats.stamp_outliers == 1 and s.stats.resets == 0
    assert s.stats.images_dropped_on_jump == 1


def _jittered_history(s, stamps):
    for k, t in enumerate(stamps):
        s.add_image(f"h{k}", t)


def test_jitter_does_not_give_up_before_an_image_within_slop():
    # defect 4: camera period 102.5 ms: the prediction (last + period = 1.1515 > 1.100 + slop)
    # resolved the cloud lidar-only before the image at 1.145 arrived
    s, clock = make()
    _jittered_history(s, [0.634, 0.731, 0.841, 0.944, 1.048])  # periods 97, 110, 103, 104 ms
    assert s.add_cloud("c", 1.100) == []
    out = s.add_image("late", 1.145)
    assert [(p.cloud, p.image, p.reason) for p in out] == [("c", "late", "matched")]


def test_jitter_does_not_settle_for_a_farther_image():
    s, clock = make()
    _jittered_history(s, [0.641, 0.738, 0.848, 0.951, 1.055])
    assert s.add_cloud("c", 1.100) == []  # 1.055 is within slop, but 1.135 may still come
    out = s.add_image("nearer", 1.135)
    assert [(p.cloud, p.image) for p in out] == [("c", "nearer")]


def test_prediction_still_decides_early_on_a_steady_camera():
    s, clock = make()
    _jittered_history(s, [0.68, 0.78, 0.88, 0.98])
    out = s.add_cloud("c", 1.00)  # best 0.98; next no earlier than ~1.078: decided at once
    assert [(p.cloud, p.image) for p in out] == [("c", "h3")]


def test_first_cloud_after_camera_outage_waits_for_its_image():
    # defect 4: after a 1 s camera outage the cloud arriving just before its (45 ms later
    # stamped) image was resolved lidar-only at once; message_filters paired it
    s, clock = make()
    clock.t = 0.0
    events = []
    for k in range(100):
        t = 0.1 * k
        events.append((t + 0.010, "cloud", t))
        if not 5.0 <= t < 6.0:
            events.append((t + 0.045 + 0.010, "image", t + 0.045))
    pairs = []
    for arrival, kind, stamp in sorted(events):
        while clock.t + 0.01 < arrival:
            clock.t += 0.01
            pairs += s.poll()
        clock.t = arrival
        pairs += (s.add_cloud if kind == "cloud" else s.add_image)(stamp, stamp)
    by_cloud = {round(p.cloud, 3): p for p in pairs}
    assert by_cloud[6.0].image == pytest.approx(6.045)
    assert all(by_cloud[round(0.1 * k, 3)].lidar_only for k in range(50, 60))
