"""Test support: a reference approximate-time pairing policy and a replay driver.

The replay driver runs ``bev_mtl_ros.ros.sync.ApproxTimeSync``.

``message_filters`` (ros2/message_filters) is not on PyPI and not in the venv, so its Python
``ApproximateTimeSynchronizer`` rule is re-implemented here from its documented behaviour, for two
topics: every arriving message is stored in its topic's queue (at most ``queue_size`` stamps, the
oldest stamp evicted); then the other topic's queue is searched for the stamp nearest to the new
message's stamp within ``slop``; if one exists the two messages are emitted as a pair and both
are removed from their queues (each message is used at most once). Nothing waits: a pair forms at
the arrival of its second message.

:func:`replay` feeds the same arrival sequence to an ``ApproxTimeSync`` driven by a fake clock,
polling it every ``poll_period`` seconds as the node's worker does, and records when each cloud
was resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: one input event: (arrival time s, "cloud" | "image", stamp s)
Event = Tuple[float, str, float]


class ReferenceApproxTime:
    """Two-topic approximate-time policy of ``message_filters.ApproximateTimeSynchronizer``.

    As its Python implementation. ``add`` returns the (cloud stamp, image stamp) pair formed by
    this arrival, if any.
    """

    def __init__(self, queue_size: int = 10, slop: float = 0.05) -> None:
        self.queue_size = queue_size
        self.slop = slop
        self.queues: Dict[str, List[float]] = {"cloud": [], "image": []}
        self.pairs: List[Tuple[float, float]] = []

    def add(self, kind: str, stamp: float) -> Optional[Tuple[float, float]]:
        mine = self.queues[kind]
        other = self.queues["image" if kind == "cloud" else "cloud"]
        mine.append(stamp)
        while len(mine) > self.queue_size:
            mine.remove(min(mine))
        near = [s for s in other if abs(s - stamp) <= self.slop]
        if not near:
            return None
        best = min(near, key=lambda s: abs(s - stamp))
        mine.remove(stamp)
        other.remove(best)
        pair = (stamp, best) if kind == "cloud" else (best, stamp)
        self.pairs.append(pair)
        return pair


def reference_pairs(events: Sequence[Event], queue_size: int = 10,
                    slop: float = 0.05) -> List[Tuple[float, float]]:
    """(cloud stamp, image stamp) pairs the reference policy forms for ``events``."""
    ref = ReferenceApproxTime(queue_size, slop)
    for _, kind, stamp in sorted(events):
        ref.add(kind, stamp)
    return ref.pairs


@dataclass
class Resolution:
    """One cloud as the synchronizer resolved it (times in s of the fake clock)."""

    cloud_stamp: float
    image_stamp: Optional[float]
    arrival: float
    resolved: float

    @property
    def wait(self) -> float:
        return self.resolved - self.arrival


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def replay(sync, clock: FakeClock, events: Sequence[Event],
           poll_period: float = 0.01) -> List[Resolution]:
    """Feed ``events`` (in arrival order) to ``sync`` (an ApproxTimeSync using ``clock``).

    ``poll`` is called every ``poll_period`` s of the fake clock in between; messages are their
    stamps. Returns one :class:`Resolution` per resolved cloud, in resolution order.
    """
    arrivals: Dict[float, float] = {}
    out: List[Resolution] = []

    def take(pairs):
        for p in pairs:
            out.append(Resolution(p.cloud_stamp, p.image_stamp, arrivals[p.cloud_stamp], clock.t))

    events = sorted(events)
    end = events[-1][0] + 1.0
    next_poll = events[0][0]
    for arrival, kind, stamp in list(events) + [(end, "end", 0.0)]:
        while next_poll < arrival:
            clock.t = next_poll
            take(sync.poll())
            next_poll += poll_period
        clock.t = arrival
        if kind == "cloud":
            arrivals[stamp] = arrival
            take(sync.add_cloud(stamp, stamp))
        elif kind == "image":
            take(sync.add_image(stamp, stamp))
    return out


def make_events(seed: int, duration: float = 60.0, cloud_hz: float = 10.0,
                camera_hz: float = 10.0, camera_offset: float = 0.0, stamp_jitter: float = 0.0,
                cloud_jitter: float = 0.0, outages: Sequence[Tuple[float, float]] = (),
                t0: float = 1000.0) -> List[Event]:
    """Arrival events of a lidar + camera pair.

    Clouds are stamped ``t0 + k / cloud_hz`` (+ uniform ``cloud_jitter``), images
    ``t0 + k / camera_hz + camera_offset`` (+ uniform ``stamp_jitter``); no image is stamped in an
    outage ``[start, end)`` (s after t0). Transport: clouds arrive 8-12 ms after their stamp,
    images 12-22 ms after theirs (larger messages).
    """
    rng = np.random.default_rng(seed)
    events: List[Event] = []
    for k in range(int(duration * cloud_hz)):
        t = t0 + k / cloud_hz + rng.uniform(-cloud_jitter, cloud_jitter)
        events.append((t + rng.uniform(0.008, 0.012), "cloud", round(t, 9)))
    for k in range(int(duration * camera_hz)):
        rel = k / camera_hz + camera_offset + rng.uniform(-stamp_jitter, stamp_jitter)
        if any(a <= rel < b for a, b in outages):
            continue
        t = t0 + rel
        events.append((t + rng.uniform(0.012, 0.022), "image", round(t, 9)))
    return sorted(events)
