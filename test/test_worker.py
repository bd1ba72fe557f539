"""The node's two worker stages (ros/worker.py) in-process, and the ownership of what they pass.

Fake ``process`` / ``publish`` functions gated by events put frames in known places (being
published, waiting in the hand-over, being inferred, waiting in the mailbox), so overlap, order,
shutdown and the counters are checked without timing guesses. The DDS tests of the same
behaviour on the real node are in test/test_node_pipeline.py.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, Dict, List

import numpy as np
import pytest

from bev_mtl_ros.ros.diagnostics import NodeCounters
from bev_mtl_ros.ros.worker import FrameWorker

WAIT = 10.0  # s, generous bound for a thread to reach a gate on a loaded machine


class _Log:
    """Logger stand-in that records warnings."""

    def __init__(self) -> None:
        self.warnings: List[str] = []

    def warning(self, text: str, **_: Any) -> None:
        self.warnings.append(text)


class Stages:
    """A FrameWorker whose process/publish record what they do and can be held at gates."""

    def __init__(self, pipelined: bool = True) -> None:
        self.counters = NodeCounters()
        self.log = _Log()
        self.events: List[tuple] = []          # (what, frame, thread name), in order
        self.lock = threading.Lock()
        self.entered: Dict[tuple, threading.Event] = {}
        self.gates: Dict[tuple, threading.Event] = {}
        self.worker = FrameWorker(self._process, lambda: [], self.counters, True,
                                  lambda: True, self.log, lambda period: {}, self._publish,
                                  pipelined=pipelined)

    def gate(self, what: str, k: int) -> threading.Event:
        """Hold ``what`` ("process" / "publish") of frame ``k`` until the returned event is set."""
        self.gates[(what, k)] = threading.Event()
        self.entered[(what, k)] = threading.Event()
        return self.gates[(what, k)]

    def wait_entered(self, what: str, k: int) -> None:
        assert self.entered[(what, k)].wait(WAIT), f"{what} of frame {k} never started"

    def _step(self, what: str, k: int) -> None:
        with self.lock:
            self.events.append((what + ":start", k, threading.current_thread().name))
        if (what, k) in self.gates:
            self.entered[(what, k)].set()
            assert self.gates[(what, k)].wait(WAIT), f"{what} {k} gate never opened"
        with self.lock:
            self.events.append((what + ":end", k, threading.current_thread().name))

    def _process(self, pair: Any) -> Any:
        self.counters.count("processed")
        self._step("process", pair.k)
        return SimpleNamespace(k=pair.k)

    def _publish(self, item: Any) -> None:
        self._step("publish", item.k)
        self.counters.count("published")

    def offer(self, k: int) -> None:
        self.worker.offer([SimpleNamespace(k=k, image=object())])

    def done(self, what: str) -> List[int]:
        with self.lock:
            return [k for w, k, _ in self.events if w == what + ":end"]


def _until(pred, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.002)
    return False


def test_outputs_of_frame_k_overlap_inference_of_k_plus_1_in_order():
    s = Stages()
    pub1 = s.gate("publish", 1)
    proc2 = s.gate("process", 2)
    s.worker.start()
    try:
        s.offer(1)
        s.wait_entered("publish", 1)
        s.offer(2)
        s.wait_entered("process", 2)  # frame 2 is inferred while frame 1 is still published
        proc2.set()
        pub1.set()
        for k in range(3, 8):
            assert _until(lambda: k - 1 in s.done("publish"))
            s.offer(k)
        assert _until(lambda: s.done("publish") == [1, 2, 3, 4, 5, 6, 7])
    finally:
        assert s.worker.stop(timeout=5.0)
    threads = {w: {t for e, _, t in s.events if e.startswith(w)} for w in ("process", "publish")}
    assert threads == {"process": {"perception_worker"}, "publish": {"perception_outputs"}}
    c = s.counters.snapshot()
    assert (c["pairs_in"], c["processed"], c["published"], c["skipped_frames"]) == (7, 7, 7, 0)
    assert c["outputs_dropped"] == 0 and c["errors.inference"] == 0


def test_stop_with_frames_in_both_stages_publishes_them_in_order():
    """Frame 1 being published, 2 in the hand-over, 3 being inferred, 4 and 5 in the mailbox."""
    s = Stages()
    pub1, proc3 = s.gate("publish", 1), s.gate("process", 3)
    s.worker.start()
    s.offer(1)
    s.wait_entered("publish", 1)
    s.offer(2)
    assert _until(lambda: 2 in s.done("process"))
    s.offer(3)
    s.wait_entered("process", 3)
    s.offer(4)
    s.offer(5)  # replaces 4 in the mailbox
    assert s.worker.in_flight() == {"mailbox": 1, "inference": 1, "outputs": 2}
    result: List[bool] = []
    stopper = threading.Thread(target=lambda: result.append(s.worker.stop(timeout=5.0)))
    t0 = time.monotonic()
    stopper.start()
    time.sleep(0.1)
    proc3.set()  # frame 3 is done and waits to be handed over: frame 2 is still there
    assert _until(lambda: s.counters.snapshot()["output_stage_waits"] == 1)
    pub1.set()
    stopper.join(8.0)
    assert not stopper.is_alive() and result == [True]
    assert time.monotonic() - t0 < 5.0
    assert s.done("publish") == [1, 2, 3]  # the frames in flight are finished, in order
    assert s.done("process") == [1, 2, 3]  # the pair left in the mailbox (5) is dropped
    c = s.counters.snapshot()
    assert c["pairs_in"] == 5 and c["skipped_frames"] == 1
    # pairs_in = processed + skipped + in the mailbox (frame 5)
    assert c["pairs_in"] == c["processed"] + c["skipped_frames"] + 1
    assert c["published"] == c["processed"] == 3 and c["outputs_dropped"] == 0
    assert c["output_stage_waits"] == 1  # frame 3 waited for frame 2 to be taken


def test_stop_is_bounded_when_publishing_hangs_and_counts_the_dropped_frame():
    s = Stages()
    pub1 = s.gate("publish", 1)
    s.worker.start()
    s.offer(1)
    s.wait_entered("publish", 1)
    s.offer(2)
    assert _until(lambda: 2 in s.done("process"))
    t0 = time.monotonic()
    assert s.worker.stop(timeout=0.5) is False
    assert time.monotonic() - t0 < 1.5
    assert s.counters.snapshot()["outputs_dropped"] == 1  # frame 2, in the hand-over
    pub1.set()  # let the daemon thread end
    assert _until(lambda: s.done("publish") == [1])
    time.sleep(0.1)
    assert s.done("publish") == [1]


def test_without_pipelining_one_thread_publishes_before_the_next_frame():
    s = Stages(pipelined=False)
    s.worker.start()
    try:
        for k in (1, 2, 3):
            s.offer(k)
            assert _until(lambda: k in s.done("publish"))
    finally:
        assert s.worker.stop(timeout=5.0)
    assert [(e, k) for e, k, _ in s.events] == [
        (f"{w}:{p}", k) for k in (1, 2, 3) for w in ("process", "publish")
        for p in ("start", "end")]
    assert {t for _, _, t in s.events} == {"perception_worker"}
    assert s.worker.in_flight() == {"mailbox": 0, "inference": 0, "outputs": 0}


def test_a_failing_publish_is_counted_and_the_next_frame_still_published():
    s = Stages()
    calls: List[int] = []

    def publish(item):
        calls.append(item.k)
        if item.k == 1:
            raise ValueError("bad frame")

    s.worker = FrameWorker(s._process, lambda: [], s.counters, True, lambda: True, s.log,
                           lambda period: {}, publish)
    s.worker.start()
    try:
        s.offer(1)
        assert _until(lambda: calls == [1])
        s.offer(2)
        assert _until(lambda: calls == [1, 2])
    finally:
        assert s.worker.stop(timeout=5.0)
    assert s.counters.snapshot()["errors.inference"] == 1
    assert len(s.log.warnings) == 1 and "frame outputs failed: ValueError: bad frame" in (
        s.log.warnings[0])


# ----------------------------------------------------------------- ownership of the hand-over
def _arrays(result: Any) -> Dict[str, np.ndarray]:
    """Return every numpy array a FrameResult holds (its own and its Detections'), by name."""
    out = {f"detections.{k}": v for k, v in vars(result.detections).items()
           if isinstance(v, np.ndarray)}
    out.update({k: v for k, v in vars(result).items() if isinstance(v, np.ndarray)})
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_frame_results_own_their_arrays(tmp_path, backend):
    """A result handed to the output thread is not written by the next frame's inference."""
    import torch

    from bev_mtl_ros.model.contract import ModelContract
    from bev_mtl_ros.model.network import BevMultiTaskNet
    from bev_mtl_ros.runtime.backends import create_backend
    from bev_mtl_ros.runtime.checkpoint import save_checkpoint
    from bev_mtl_ros.runtime.export import export_onnx
    from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
    from bev_mtl_ros.runtime.postprocess import PostProcessConfig

    torch.manual_seed(3)
    contract = ModelContract(point_cloud_range=(0.0, -10.24, -3.0, 20.48, 10.24, 3.0),
                             max_pillars=1000, image_size=(128, 96)).validate()
    net = BevMultiTaskNet.tiny(contract).eval()
    if backend == "onnxruntime":
        path = str(tmp_path / "tiny.onnx")
        export_onnx(net, contract, path, verify=False)
    else:
        path = str(tmp_path / "tiny.pt")
        save_checkpoint(path, net)
    pipe = PerceptionPipeline(create_backend(path, backend),
                              PostProcessConfig(score_threshold=0.0), torch_threads=None)
    rng = np.random.default_rng(0)

    def frame():
        pts = rng.uniform([0, -10, -3, 0], [20, 10, 3, 255], (3000, 4)).astype(np.float32)
        return pts, rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)

    pts_a, img_a = frame()
    a = pipe(pts_a, img_a)
    arrays_a = _arrays(a)
    assert {"detections.boxes", "drivable", "semantic"} <= set(arrays_a)
    assert arrays_a["detections.boxes"].shape[0] > 0
    before = {k: v.copy() for k, v in arrays_a.items()}
    b = pipe(*frame())
    for name, arr in arrays_a.items():
        np.testing.assert_array_equal(arr, before[name], err_msg=name)
        for other_name, other in _arrays(b).items():
            assert not np.shares_memory(arr, other), (name, other_name)
        assert not np.shares_memory(arr, img_a) and not np.shares_memory(arr, pts_a), name
