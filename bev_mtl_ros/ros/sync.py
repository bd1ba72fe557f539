"""Approximate-time synchronizer for (lidar cloud, camera image) pairs, plus a diagnosis of why
pairs do not form. Pure Python: no rclpy import, so it is testable without ROS.

Policy (lidar-driven, one output per cloud)
-------------------------------------------
Every cloud is paired with the queued image whose stamp is closest to the cloud's stamp, if that
distance is at most ``slop`` seconds (the "approximate time" rule of ROS's ``message_filters``,
restricted to two topics with the cloud as the pivot). Images may be reused by consecutive clouds
(as Autoware's fusion nodes keep the latest image), so a 10 Hz lidar with a 30 Hz camera works.

A cloud is *resolved* as soon as no future image can be closer:
  * an image with stamp >= the cloud's stamp has arrived (images come in stamp order), or
  * the next image, predicted from the camera's measured period, would be farther than the best
    queued one, or
  * ``camera_timeout`` seconds (of the injectable ``clock``, wall/monotonic time by default) have
    passed since the cloud arrived - then the best image within slop is used, or, if there is none,
    the cloud is emitted *lidar-only* (``image=None``) when ``allow_lidar_only`` (the model has a
    lidar-only path), otherwise it is dropped and counted.
  * the pending-cloud queue (``queue_size``) overflows: the oldest cloud is resolved at once.
  * the camera counts as stopped (no image for ``camera_stale_after`` s): clouds are resolved
    lidar-only on arrival instead of each waiting ``camera_timeout``; the first image ends that.

Stamps
------
Stamps are float seconds (use :func:`stamp_to_sec` on a ``builtin_interfaces/Time``). Small
out-of-order arrivals are inserted in stamp order. A jump backwards by more than
``reset_threshold`` seconds on either topic (a bag restarting from the beginning, ``--loop``)
resets the synchronizer: queues are cleared, pending clouds are dropped and counted. Zero stamps
(drivers that never fill ``header.stamp``) are counted: they make approximate-time matching
meaningless.

Diagnosis
---------
:meth:`ApproxTimeSync.diagnose` names the likely cause when pairs are not forming:
no messages at all on one topic (wrong topic name or a QoS mismatch, e.g. a BEST_EFFORT publisher
and a RELIABLE subscription), zero stamps, a consistent clock offset between the topics larger
than ``slop`` (sensor hosts not time-synchronised), or the camera having stopped.
"""

from __future__ import annotations

import bisect
import statistics
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

__all__ = ["stamp_to_sec", "SyncedPair", "SyncStats", "ApproxTimeSync"]


def stamp_to_sec(stamp: Any) -> float:
    """``builtin_interfaces/Time`` (fields ``sec``, ``nanosec``) -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


@dataclass
class SyncedPair:
    """One synchronizer output.

    Attributes:
        cloud: the cloud message (any object; passed through untouched).
        image: the paired image message, or None (lidar-only).
        cloud_stamp: cloud stamp, s.
        image_stamp: paired image stamp, s (None when lidar-only).
        reason: "matched" or why no image was paired: "no_images" (none queued),
            "images_too_old" (all queued images older than cloud_stamp - slop),
            "images_too_new" (all newer than cloud_stamp + slop),
            "no_image_within_slop" (images on both sides, none close enough).
        timed_out: the cloud waited ``camera_timeout`` before being resolved.
    """

    cloud: Any
    image: Any
    cloud_stamp: float
    image_stamp: Optional[float]
    reason: str
    timed_out: bool = False

    @property
    def lidar_only(self) -> bool:
        return self.image is None

    @property
    def offset(self) -> Optional[float]:
        """image_stamp - cloud_stamp, s (None when lidar-only)."""
        return None if self.image_stamp is None else self.image_stamp - self.cloud_stamp


@dataclass
class SyncStats:
    """Counters since start (never reset, a reset only clears queues)."""

    clouds_in: int = 0
    images_in: int = 0
    matched: int = 0
    lidar_only: int = 0
    dropped_no_camera: int = 0  #: unmatched clouds dropped because lidar-only is not allowed
    unmatched_no_images: int = 0
    unmatched_images_too_old: int = 0
    unmatched_images_too_new: int = 0
    unmatched_gap: int = 0
    timeouts: int = 0
    queue_overflows: int = 0
    zero_stamp_clouds: int = 0
    zero_stamp_images: int = 0
    out_of_order_clouds: int = 0
    out_of_order_images: int = 0
    resets: int = 0
    dropped_on_reset: int = 0

    @property
    def unmatched(self) -> int:
        """Clouds resolved without an image (lidar-only or dropped)."""
        return self.lidar_only + self.dropped_no_camera

    def to_dict(self) -> Dict[str, int]:
        d = asdict(self)
        d["unmatched"] = self.unmatched
        return d


@dataclass(order=True)
class _Pending:
    stamp: float
    seq: int
    arrival: float = field(compare=False)
    msg: Any = field(compare=False)


class ApproxTimeSync:
    """Lidar-driven approximate-time synchronizer (see module docstring). Thread-safe.

    Args:
        slop: max |image_stamp - cloud_stamp| for a pair, s.
        queue_size: max pending clouds and max queued images.
        camera_timeout: max wait for an image after a cloud arrives, s of ``clock``.
        allow_lidar_only: emit unmatched clouds with ``image=None`` (else drop and count).
        reset_threshold: a stamp this many seconds older than the newest one on its topic resets.
        clock: () -> float seconds, monotonic; ``time.monotonic`` by default (inject for tests).
        offset_window: how many recent nearest-image offsets are kept for the skew diagnosis.
        camera_stale_after: seconds without any image (since the last one, or since the first
            cloud when none ever came) after which the camera counts as stopped: clouds are then
            resolved lidar-only at once instead of each waiting ``camera_timeout``. Default
            max(0.5, 2 * camera_timeout).
    """

    def __init__(self, slop: float = 0.05, queue_size: int = 10, camera_timeout: float = 0.2,
                 allow_lidar_only: bool = True, reset_threshold: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, offset_window: int = 20,
                 camera_stale_after: Optional[float] = None) -> None:
        if slop < 0 or queue_size < 1 or camera_timeout < 0 or reset_threshold <= 0:
            raise ValueError(f"bad sync parameters: slop={slop} queue_size={queue_size} "
                             f"camera_timeout={camera_timeout} reset_threshold={reset_threshold}")
        self.slop = float(slop)
        self.queue_size = int(queue_size)
        self.camera_timeout = float(camera_timeout)
        self.allow_lidar_only = bool(allow_lidar_only)
        self.reset_threshold = float(reset_threshold)
        self.clock = clock
        self.camera_stale_after = (max(0.5, 2.0 * self.camera_timeout) if camera_stale_after is None
                                   else float(camera_stale_after))
        self._first_cloud_arrival: Optional[float] = None
        self.stats = SyncStats()
        self._lock = threading.Lock()
        self._seq = 0
        self._clouds: List[_Pending] = []  # sorted by stamp
        self._images: List[Tuple[float, int, Any]] = []  # sorted (stamp, seq, msg)
        self._newest_cloud: Optional[float] = None
        self._newest_image: Optional[float] = None
        self._image_periods: Deque[float] = deque(maxlen=16)
        self._offsets: Deque[float] = deque(maxlen=offset_window)  # nearest image - cloud, s
        self._last_cloud_arrival: Optional[float] = None
        self._last_image_arrival: Optional[float] = None
        # arrival time (clock) - stamp per topic; their difference estimates a clock offset
        self._cloud_lag: Deque[float] = deque(maxlen=offset_window)
        self._image_lag: Deque[float] = deque(maxlen=offset_window)

    # ------------------------------------------------------------------ input
    def add_cloud(self, msg: Any, stamp: float) -> List[SyncedPair]:
        """Queue a cloud with its stamp (s); returns the pairs resolved now (possibly several)."""
        now = self.clock()
        with self._lock:
            self.stats.clouds_in += 1
            self._last_cloud_arrival = now
            if self._first_cloud_arrival is None:
                self._first_cloud_arrival = now
            if stamp == 0.0:
                self.stats.zero_stamp_clouds += 1
            else:
                self._cloud_lag.append(now - stamp)
            if self._newest_cloud is not None and stamp < self._newest_cloud - self.reset_threshold:
                self._reset_locked()
            if self._newest_cloud is not None and stamp < self._newest_cloud:
                self.stats.out_of_order_clouds += 1
            self._newest_cloud = stamp if self._newest_cloud is None else max(self._newest_cloud, stamp)
            self._seq += 1
            bisect.insort(self._clouds, _Pending(stamp, self._seq, now, msg))
            out: List[SyncedPair] = []
            while len(self._clouds) > self.queue_size:
                self.stats.queue_overflows += 1
                out.append(self._resolve_locked(self._clouds.pop(0), timed_out=False))
            out.extend(self._sweep_locked(now))
            return out

    def add_image(self, msg: Any, stamp: float) -> List[SyncedPair]:
        """Queue an image with its stamp (s); returns the pairs resolved now."""
        now = self.clock()
        with self._lock:
            self.stats.images_in += 1
            self._last_image_arrival = now
            if stamp == 0.0:
                self.stats.zero_stamp_images += 1
            else:
                self._image_lag.append(now - stamp)
            if self._newest_image is not None and stamp < self._newest_image - self.reset_threshold:
                self._reset_locked()
            if self._newest_image is not None:
                if stamp < self._newest_image:
                    self.stats.out_of_order_images += 1
                elif stamp > self._newest_image:
                    self._image_periods.append(stamp - self._newest_image)
            self._newest_image = stamp if self._newest_image is None else max(self._newest_image, stamp)
            self._seq += 1
            bisect.insort(self._images, (stamp, self._seq, msg))
            if len(self._images) > self.queue_size:
                del self._images[0]
            return self._sweep_locked(now)

    def poll(self) -> List[SyncedPair]:
        """Resolve clouds whose camera_timeout has expired; call periodically (e.g. every 10-50 ms)."""
        now = self.clock()
        with self._lock:
            return self._sweep_locked(now)

    def reset(self) -> None:
        """Clear queues and stamp history (pending clouds are dropped and counted)."""
        with self._lock:
            self._reset_locked()

    @property
    def pending_clouds(self) -> int:
        return len(self._clouds)

    @property
    def queued_images(self) -> int:
        return len(self._images)

    # ------------------------------------------------------------------ internals
    def _reset_locked(self) -> None:
        self.stats.resets += 1
        self.stats.dropped_on_reset += len(self._clouds)
        self._clouds.clear()
        self._images.clear()
        self._newest_cloud = None
        self._newest_image = None
        self._image_periods.clear()
        self._offsets.clear()
        self._cloud_lag.clear()
        self._image_lag.clear()

    def _camera_period(self) -> Optional[float]:
        if len(self._image_periods) < 2:
            return None
        return statistics.median(self._image_periods)

    def _best_image(self, stamp: float) -> Optional[Tuple[float, int, Any]]:
        if not self._images:
            return None
        i = bisect.bisect_left(self._images, (stamp,))
        cands = self._images[max(0, i - 1): i + 1]
        return min(cands, key=lambda e: (abs(e[0] - stamp), -e[0]))

    def _sweep_locked(self, now: float) -> List[SyncedPair]:
        out: List[SyncedPair] = []
        keep: List[_Pending] = []
        stale = self._camera_stale(now)
        for c in self._clouds:
            timed_out = stale or now - c.arrival >= self.camera_timeout
            if timed_out or self._decided(c.stamp):
                if timed_out and not self._decided(c.stamp):
                    self.stats.timeouts += 1
                    out.append(self._resolve_locked(c, timed_out=True))
                else:
                    out.append(self._resolve_locked(c, timed_out=False))
            else:
                keep.append(c)
        self._clouds = keep
        return out

    def _camera_stale(self, now: float) -> bool:
        """No image for ``camera_stale_after`` s (since the last image, or the first cloud if none came)."""
        ref = self._last_image_arrival if self._last_image_arrival is not None else self._first_cloud_arrival
        return ref is not None and now - ref > self.camera_stale_after

    @property
    def camera_stale(self) -> bool:
        """True while the camera counts as stopped (see ``camera_stale_after``)."""
        with self._lock:
            return self._camera_stale(self.clock())

    def _decided(self, stamp: float) -> bool:
        """True when no future image can be closer to ``stamp`` than the best queued one (or can
        be within slop when none is)."""
        if not self._images:
            return False
        last = self._images[-1][0]
        if last >= stamp:
            return True
        best = self._best_image(stamp)
        dist = abs(best[0] - stamp) if best is not None else float("inf")
        period = self._camera_period()
        if period is None:
            return False
        predicted = last + period
        if dist <= self.slop:
            return predicted - stamp >= dist
        return predicted > stamp + self.slop

    def _resolve_locked(self, c: _Pending, timed_out: bool) -> SyncedPair:
        best = self._best_image(c.stamp)
        if best is not None:
            self._offsets.append(best[0] - c.stamp)
        if best is not None and abs(best[0] - c.stamp) <= self.slop:
            self.stats.matched += 1
            return SyncedPair(c.msg, best[2], c.stamp, best[0], "matched", timed_out)
        if not self._images:
            reason = "no_images"
            self.stats.unmatched_no_images += 1
        elif self._images[-1][0] < c.stamp - self.slop:
            reason = "images_too_old"
            self.stats.unmatched_images_too_old += 1
        elif self._images[0][0] > c.stamp + self.slop:
            reason = "images_too_new"
            self.stats.unmatched_images_too_new += 1
        else:
            reason = "no_image_within_slop"
            self.stats.unmatched_gap += 1
        if self.allow_lidar_only:
            self.stats.lidar_only += 1
        else:
            self.stats.dropped_no_camera += 1
        return SyncedPair(c.msg, None, c.stamp, None, reason, timed_out)

    # ------------------------------------------------------------------ diagnosis
    def estimated_skew(self) -> Optional[float]:
        """Estimated image-stamp minus cloud-stamp offset of messages that arrive at the same time,
        s: median(cloud arrival - cloud stamp) - median(image arrival - image stamp) over the recent
        messages (transport latency differences are included). None until 5 of each arrived."""
        if len(self._cloud_lag) < 5 or len(self._image_lag) < 5:
            return None
        return statistics.median(self._cloud_lag) - statistics.median(self._image_lag)

    def diagnose(self, idle_timeout: Optional[float] = None) -> Optional[str]:
        """A one-line explanation of why pairs are not forming, or None when all looks fine.

        Args:
            idle_timeout: seconds (of ``clock``) without images that count as "the camera
                stopped"; default ``camera_stale_after``.
        Returns:
            Text naming the likely cause (most specific first): no images / no clouds at all
            (topic name or QoS mismatch), zero stamps, consistent clock offset > slop, camera
            stopped; None if the last resolutions matched or nothing arrived at all.
        """
        now = self.clock()
        if idle_timeout is None:
            idle_timeout = self.camera_stale_after
        with self._lock:
            s = self.stats
            if s.clouds_in == 0 and s.images_in == 0:
                return None
            if s.images_in == 0:
                return (f"no image received while {s.clouds_in} clouds arrived: check the image topic name and "
                        "QoS compatibility (a BEST_EFFORT camera publisher cannot feed a RELIABLE subscription)")
            if s.clouds_in == 0:
                return (f"no cloud received while {s.images_in} images arrived: check the cloud topic name and "
                        "QoS compatibility (a BEST_EFFORT lidar publisher cannot feed a RELIABLE subscription)")
            if s.zero_stamp_clouds or s.zero_stamp_images:
                return (f"zero header.stamp on {s.zero_stamp_clouds} clouds and {s.zero_stamp_images} images: the "
                        "driver does not stamp messages; approximate-time pairing is meaningless")
            if self._last_image_arrival is not None and now - self._last_image_arrival > idle_timeout \
                    and self._last_cloud_arrival is not None and self._last_cloud_arrival > self._last_image_arrival:
                return (f"camera stopped: no image for {now - self._last_image_arrival:.1f} s while clouds "
                        "keep arriving; running lidar-only" if self.allow_lidar_only else
                        f"camera stopped: no image for {now - self._last_image_arrival:.1f} s; clouds are dropped")
            offs = list(self._offsets)
            if len(offs) < 5:
                return None
            unmatched_recent = sum(abs(o) > self.slop for o in offs)
            if unmatched_recent < (len(offs) + 1) // 2:
                return None  # pairs are forming
            med = statistics.median(offs)
            spread = statistics.median([abs(o - med) for o in offs])
            # arrival-time estimate first (the nearest-image offset is biased by the image queue's span);
            # it is sensitive to transport/executor delays, so it only explains failing pairs
            skew = self.estimated_skew()
            if skew is not None and abs(skew) > max(2.0 * self.slop, 0.1):
                side = "after" if skew > 0 else "before"
                return (f"clock skew: messages arriving together carry image stamps {abs(skew):.3f} s {side} the "
                        f"cloud stamps (> 2 x sync_slop {self.slop:.3f} s); time-synchronise the sensors")
            if abs(med) > self.slop and spread <= max(self.slop, 0.25 * abs(med)):
                side = "after" if med > 0 else "before"
                return (f"clock skew: image stamps are consistently {abs(med):.3f} s {side} cloud stamps "
                        f"(> sync_slop {self.slop:.3f} s); time-synchronise the sensors or raise sync_slop")
            return (f"{unmatched_recent} of the last {len(offs)} clouds had no image within "
                    f"sync_slop {self.slop:.3f} s (median offset {med:+.3f} s); camera and lidar rates or "
                    "stamps do not line up")
