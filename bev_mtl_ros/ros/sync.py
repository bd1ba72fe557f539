"""Approximate-time synchronizer for (lidar cloud, camera image) pairs.

Plus a diagnosis of why pairs do not form. Pure Python: no rclpy import, so it is testable
without ROS. (About 550 lines, over the house's ~500, on purpose: one thread-safe class whose
state sits under one lock; the diagnosis reads that state and would only cross a module boundary
to reach it.)

Policy (lidar-driven, one output per cloud)
-------------------------------------------
Every cloud is paired with the queued image whose stamp is closest to the cloud's stamp, if that
distance is at most ``slop`` seconds (the "approximate time" rule of ROS's ``message_filters``,
restricted to two topics with the cloud as the pivot). Images may be reused by consecutive clouds
(as Autoware's fusion nodes keep the latest image), so a 10 Hz lidar with a 30 Hz camera works.

A cloud is *resolved* as soon as no future image can be closer:
  * an image with stamp >= the cloud's stamp has arrived (images come in stamp order), or
  * the earliest plausible next image is farther than the best queued one (or beyond ``slop``):
    the next image is predicted at ``last + period - margin``, where ``period`` is the median of
    the recent camera periods and ``margin = 2 * max |period_k - nearest multiple of period| +
    2 ms`` covers the measured jitter (a missed frame counts as a multiple, not as jitter), or
  * ``camera_timeout`` seconds (of the injectable ``clock``, wall/monotonic time by default) have
    passed since the cloud arrived - then the best image within slop is used, or, if there is none,
    the cloud is emitted *lidar-only* (``image=None``) when ``allow_lidar_only`` (the model has a
    lidar-only path), otherwise it is dropped and counted.
  * the pending-cloud queue (``queue_size``) overflows: the oldest cloud is resolved at once.
  * the camera counts as stopped (no image for ``camera_stale_after`` s): a cloud then waits only
    as long as an image within ``slop`` could still be on its way - until ``clock`` reaches
    ``cloud stamp + slop + (largest recent image arrival - image stamp) + 10 ms``, capped by
    ``camera_timeout`` - instead of each waiting ``camera_timeout``; the first image ends that.
    (An image stamped within slop of the cloud arrives by then if its transport is as recent.)

Stamps
------
Stamps are float seconds (use :func:`stamp_to_sec` on a ``builtin_interfaces/Time``). Small
out-of-order arrivals are inserted in stamp order. A jump backwards by more than
``reset_threshold`` seconds on one topic re-bases that topic: its queued items stamped more than
``reset_threshold`` after the new stamp are resolved (clouds, with their best image) or dropped
(images), its period and lag history is cleared, and the other topic's queue is left alone. When
the other topic's newest stamp agrees with the new one (within ``reset_threshold``), the jump is
a *stamp outlier* (the previous message was stamped ahead, e.g. +1 h) and counted in
``stamp_outliers``; otherwise a *reset* (a bag restarting from the beginning, ``--loop``) in
``resets`` (the other topic's jump to the same time that follows is part of the same reset).
Images more than ``reset_threshold`` away from a cloud's stamp never decide or pair
it, so a looping bag pairs its first frames again as soon as both topics have looped.
Zero stamps (drivers that never fill ``header.stamp``) make approximate-time matching
meaningless: such clouds are resolved lidar-only at once (reason ``zero_stamp``) and such images
are not queued; both are counted and leave the stamp history untouched.

Diagnosis
---------
:meth:`ApproxTimeSync.diagnose` names the likely cause when pairs are not forming:
no messages at all on one topic (wrong topic name or a QoS mismatch, e.g. a BEST_EFFORT publisher
and a RELIABLE subscription), zero stamps, the camera having stopped while clouds keep arriving,
a burst of clouds (the pending-cloud queue overflowed: many clouds per image, which also makes
the stamp offsets look like a skew, so it is named first), a consistent clock offset between the
topics larger than ``slop`` (sensor hosts not time-synchronised). Every cause is about the
present: zero stamps and overflows count only when one happened in the last ``diag_window``
seconds, offsets only when a cloud was resolved in that window, and when both inputs stopped (the
end of a bag) no pairing cause is reported at all.
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

#: extra wait after the latest moment an image within slop can arrive (camera-stale mode), s
_LAG_MARGIN = 0.010
#: fixed part of the camera-period prediction margin, s
_PERIOD_MARGIN = 0.002


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
            "no_image_within_slop" (images on both sides, none close enough),
            "zero_stamp" (the cloud has no stamp).
        timed_out: the cloud waited ``camera_timeout`` (or, camera stopped, the shorter wait for
            an image in flight) before being resolved.
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
    """Counters since start (never reset)."""

    clouds_in: int = 0
    images_in: int = 0
    matched: int = 0
    lidar_only: int = 0
    dropped_no_camera: int = 0  #: unmatched clouds dropped because lidar-only is not allowed
    unmatched_no_images: int = 0
    unmatched_images_too_old: int = 0
    unmatched_images_too_new: int = 0
    unmatched_gap: int = 0
    unmatched_zero_stamp: int = 0
    timeouts: int = 0
    stale_waits: int = 0  #: clouds resolved by the short wait while the camera counts as stopped
    queue_overflows: int = 0
    zero_stamp_clouds: int = 0
    zero_stamp_images: int = 0
    out_of_order_clouds: int = 0
    out_of_order_images: int = 0
    resets: int = 0  #: backward jumps to a time the other topic is not at (bag loop, restart)
    stamp_outliers: int = 0  #: backward jumps back to the other topic's time (one stamped ahead)
    resolved_on_jump: int = 0  #: pending clouds stamped ahead of a backward jump, resolved then
    images_dropped_on_jump: int = 0

    @property
    def unmatched(self) -> int:
        """Clouds resolved without an image (lidar-only or dropped)."""
        return self.lidar_only + self.dropped_no_camera

    @property
    def stamp_jumps(self) -> int:
        """Backward stamp jumps of either kind."""
        return self.resets + self.stamp_outliers

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
        queue_size: max pending clouds and max queued images (the oldest arrival goes first).
        camera_timeout: max wait for an image after a cloud arrives, s of ``clock``.
        allow_lidar_only: emit unmatched clouds with ``image=None`` (else drop and count).
        reset_threshold: a stamp this many seconds older than the newest one on its topic is a
            backward jump (see module docstring); images farther than this from a cloud's stamp
            are ignored for that cloud.
        clock: () -> float seconds, monotonic; ``time.monotonic`` by default (inject for tests).
        offset_window: how many recent nearest-image offsets are kept for the skew diagnosis.
        camera_stale_after: seconds without any image (since the last one, or since the first
            cloud when none ever came) after which the camera counts as stopped (see module
            docstring). Default max(0.5, 2 * camera_timeout).
        diag_window: seconds after which a cause of :meth:`diagnose` that has not recurred clears.
    Raises:
        ValueError: negative slop/camera_timeout/diag_window, queue_size < 1, reset_threshold <= 0.
    """

    def __init__(self, slop: float = 0.05, queue_size: int = 10, camera_timeout: float = 0.2,
                 allow_lidar_only: bool = True, reset_threshold: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, offset_window: int = 20,
                 camera_stale_after: Optional[float] = None, diag_window: float = 5.0) -> None:
        if (slop < 0 or queue_size < 1 or camera_timeout < 0 or reset_threshold <= 0
                or diag_window < 0):
            raise ValueError(f"bad sync parameters: slop={slop} queue_size={queue_size} "
                             f"camera_timeout={camera_timeout} reset_threshold={reset_threshold} "
                             f"diag_window={diag_window}")
        self.slop = float(slop)
        self.queue_size = int(queue_size)
        self.camera_timeout = float(camera_timeout)
        self.allow_lidar_only = bool(allow_lidar_only)
        self.reset_threshold = float(reset_threshold)
        self.clock = clock
        self.camera_stale_after = (max(0.5, 2.0 * self.camera_timeout)
                                   if camera_stale_after is None else float(camera_stale_after))
        self.diag_window = float(diag_window)
        self.stats = SyncStats()
        #: one line about the latest backward stamp jump (for the node's log), None before one
        self.last_jump: Optional[str] = None
        self._lock = threading.Lock()
        self._seq = 0
        self._clouds: List[_Pending] = []  # sorted by stamp
        self._images: List[Tuple[float, int, Any]] = []  # sorted (stamp, seq, msg)
        self._newest_cloud: Optional[float] = None
        self._newest_image: Optional[float] = None
        self._image_periods: Deque[float] = deque(maxlen=16)
        self._offsets: Deque[float] = deque(maxlen=offset_window)  # nearest image - cloud, s
        self._first_cloud_arrival: Optional[float] = None
        self._last_cloud_arrival: Optional[float] = None
        self._last_image_arrival: Optional[float] = None
        self._last_zero_stamp: Optional[float] = None
        self._last_resolution: Optional[float] = None
        # (topic, new stamp) of the latest reset the other topic has not followed yet
        self._open_reset: Optional[Tuple[str, float]] = None
        # arrival time (clock) - stamp per topic; their difference estimates a clock offset
        self._cloud_lag: Deque[float] = deque(maxlen=offset_window)
        self._image_lag: Deque[float] = deque(maxlen=offset_window)
        # clock times of recent arrivals and queue overflows (the burst diagnosis)
        self._cloud_times: Deque[float] = deque(maxlen=4096)
        self._image_times: Deque[float] = deque(maxlen=4096)
        self._overflow_times: Deque[float] = deque(maxlen=4096)

    # ------------------------------------------------------------------ input
    def add_cloud(self, msg: Any, stamp: float) -> List[SyncedPair]:
        """Queue a cloud with its stamp (s); returns the pairs resolved now (possibly several)."""
        now = self.clock()
        with self._lock:
            self.stats.clouds_in += 1
            self._last_cloud_arrival = now
            self._cloud_times.append(now)
            if self._first_cloud_arrival is None:
                self._first_cloud_arrival = now
            out: List[SyncedPair] = []
            if stamp == 0.0:
                self.stats.zero_stamp_clouds += 1
                self._last_zero_stamp = now
                out.append(self._unmatched_locked(msg, stamp, "zero_stamp", False, now))
                out.extend(self._sweep_locked(now))
                return out
            if (self._newest_cloud is not None
                    and stamp < self._newest_cloud - self.reset_threshold):
                out.extend(self._jump_locked("cloud", stamp, now))
            if self._newest_cloud is not None and stamp < self._newest_cloud:
                self.stats.out_of_order_clouds += 1
            self._cloud_lag.append(now - stamp)
            self._newest_cloud = (stamp if self._newest_cloud is None
                                  else max(self._newest_cloud, stamp))
            self._seq += 1
            bisect.insort(self._clouds, _Pending(stamp, self._seq, now, msg))
            while len(self._clouds) > self.queue_size:
                self.stats.queue_overflows += 1
                self._overflow_times.append(now)
                out.append(self._resolve_locked(self._clouds.pop(0), False, now))
            out.extend(self._sweep_locked(now))
            return out

    def add_image(self, msg: Any, stamp: float) -> List[SyncedPair]:
        """Queue an image with its stamp (s); returns the pairs resolved now."""
        now = self.clock()
        with self._lock:
            self.stats.images_in += 1
            self._last_image_arrival = now
            self._image_times.append(now)
            if stamp == 0.0:
                self.stats.zero_stamp_images += 1
                self._last_zero_stamp = now
                return self._sweep_locked(now)
            out: List[SyncedPair] = []
            if (self._newest_image is not None
                    and stamp < self._newest_image - self.reset_threshold):
                out.extend(self._jump_locked("image", stamp, now))
            if self._newest_image is not None:
                if stamp < self._newest_image:
                    self.stats.out_of_order_images += 1
                elif stamp > self._newest_image:
                    self._image_periods.append(stamp - self._newest_image)
            self._image_lag.append(now - stamp)
            self._newest_image = (stamp if self._newest_image is None
                                  else max(self._newest_image, stamp))
            self._seq += 1
            bisect.insort(self._images, (stamp, self._seq, msg))
            if len(self._images) > self.queue_size:  # forget the oldest arrival
                del self._images[min(range(len(self._images)), key=lambda k: self._images[k][1])]
            out.extend(self._sweep_locked(now))
            return out

    def poll(self) -> List[SyncedPair]:
        """Resolve clouds whose wait has expired; call periodically (e.g. every 10-50 ms)."""
        now = self.clock()
        with self._lock:
            return self._sweep_locked(now)

    def reset(self) -> None:
        """Forget queued images and stamp history.

        Pending clouds are resolved by the next call (they keep waiting at most
        ``camera_timeout``).
        """
        with self._lock:
            self._images.clear()
            self._newest_cloud = self._newest_image = None
            self._image_periods.clear()
            self._offsets.clear()
            self._cloud_lag.clear()
            self._image_lag.clear()

    @property
    def pending_clouds(self) -> int:
        return len(self._clouds)

    @property
    def queued_images(self) -> int:
        return len(self._images)

    # ------------------------------------------------------------------ internals
    def _jump_locked(self, topic: str, stamp: float, now: float) -> List[SyncedPair]:
        """Re-base ``topic`` ("cloud" or "image") after its stamps jumped back to ``stamp``."""
        newest = self._newest_cloud if topic == "cloud" else self._newest_image
        other = self._newest_image if topic == "cloud" else self._newest_cloud
        back = (newest or stamp) - stamp
        limit = stamp + self.reset_threshold
        out: List[SyncedPair] = []
        if topic == "cloud":
            ahead = [c for c in self._clouds if c.stamp > limit]
            self._clouds = [c for c in self._clouds if c.stamp <= limit]
            self.stats.resolved_on_jump += len(ahead)
            out = [self._resolve_locked(c, False, now) for c in ahead]
            self._newest_cloud = stamp
            self._cloud_lag.clear()
        else:
            kept = [e for e in self._images if e[0] <= limit]
            self.stats.images_dropped_on_jump += len(self._images) - len(kept)
            self._images = kept
            self._newest_image = stamp
            self._image_periods.clear()
            self._image_lag.clear()
        self._offsets.clear()
        follows = self._open_reset
        self._open_reset = None
        if (follows is not None and follows[0] != topic
                and follows[1] - self.reset_threshold <= stamp
                and (other is None or stamp <= other + self.reset_threshold)):
            self.last_jump = (f"{topic} stamps jumped back {back:.3f} s after the {follows[0]} "
                              "stamps did (the same bag loop or restart)")
        elif (other is not None and abs(other - stamp) <= self.reset_threshold
              and newest is not None and newest - other > self.reset_threshold):
            self.stats.stamp_outliers += 1
            self.last_jump = (f"{topic} stamps jumped back {back:.3f} s to agree with the other "
                              f"topic again: the previous {topic} was stamped ahead (one-off "
                              "stamp outlier); pairing continues")
        else:
            self.stats.resets += 1
            self._open_reset = (topic, stamp)
            self.last_jump = (f"{topic} stamps jumped back {back:.3f} s (bag loop or restart?): "
                              f"{topic} history re-based")
        return out

    def _camera_period(self) -> Optional[Tuple[float, float]]:
        """(median period, prediction margin) of the recent camera periods, s; None if < 2."""
        if len(self._image_periods) < 2:
            return None
        periods = list(self._image_periods)
        med = statistics.median(periods)
        if med <= 0:
            return None
        dev = max(abs(p - max(1.0, round(p / med)) * med) for p in periods)
        return med, 2.0 * dev + _PERIOD_MARGIN

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
        lag = max(self._image_lag) if self._image_lag else None
        for c in self._clouds:
            if self._decided(c.stamp):
                out.append(self._resolve_locked(c, False, now))
            elif now - c.arrival >= self.camera_timeout:
                self.stats.timeouts += 1
                out.append(self._resolve_locked(c, True, now))
            elif stale and (lag is None or now >= c.stamp + self.slop + lag + _LAG_MARGIN):
                self.stats.stale_waits += 1
                out.append(self._resolve_locked(c, True, now))
            else:
                keep.append(c)
        self._clouds = keep
        return out

    def _camera_stale(self, now: float) -> bool:
        """No image for ``camera_stale_after`` s (since the last one, or the first cloud)."""
        ref = (self._last_image_arrival if self._last_image_arrival is not None
               else self._first_cloud_arrival)
        return ref is not None and now - ref > self.camera_stale_after

    @property
    def camera_stale(self) -> bool:
        """True while the camera counts as stopped (see ``camera_stale_after``)."""
        with self._lock:
            return self._camera_stale(self.clock())

    def _decided(self, stamp: float) -> bool:
        """Return True when no future image can be closer to ``stamp`` than the best queued one.

        Or can be within slop when none is. Images more than ``reset_threshold`` away are
        ignored.
        """
        i = bisect.bisect_left(self._images, (stamp,))
        if i < len(self._images) and self._images[i][0] <= stamp + self.reset_threshold:
            return True  # an image at/after the cloud: later ones are farther
        if i == 0:
            return False
        last = self._images[i - 1][0]  # newest image before the cloud
        dist = stamp - last
        if dist > self.reset_threshold:
            return False
        pm = self._camera_period()
        if pm is None:
            return False
        earliest_next = last + pm[0] - pm[1]
        if dist <= self.slop:
            return earliest_next - stamp >= dist
        return earliest_next > stamp + self.slop

    def _resolve_locked(self, c: _Pending, timed_out: bool, now: float) -> SyncedPair:
        self._last_resolution = now
        best = self._best_image(c.stamp)
        if best is not None and abs(best[0] - c.stamp) <= self.reset_threshold:
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
        return self._unmatched_locked(c.msg, c.stamp, reason, timed_out, now)

    def _unmatched_locked(self, msg: Any, stamp: float, reason: str, timed_out: bool,
                          now: float) -> SyncedPair:
        self._last_resolution = now
        if reason == "zero_stamp":
            self.stats.unmatched_zero_stamp += 1
        if self.allow_lidar_only:
            self.stats.lidar_only += 1
        else:
            self.stats.dropped_no_camera += 1
        return SyncedPair(msg, None, stamp, None, reason, timed_out)

    # ------------------------------------------------------------------ diagnosis
    def estimated_skew(self) -> Optional[float]:
        """Estimate the image-stamp minus cloud-stamp offset of messages arriving together, s.

        median(cloud arrival - cloud stamp) - median(image arrival - image stamp) over the
        recent messages (transport latency differences are included). None until 5 of each
        arrived.
        """
        if len(self._cloud_lag) < 5 or len(self._image_lag) < 5:
            return None
        return statistics.median(self._cloud_lag) - statistics.median(self._image_lag)

    def diagnose(self, idle_timeout: Optional[float] = None) -> Optional[str]:
        """Explain in one line why pairs are not forming now (None when all looks fine).

        Args:
            idle_timeout: seconds (of ``clock``) without images that count as "the camera
                stopped", and without clouds that count as "clouds stopped too";
                default ``camera_stale_after``.
        Returns:
            Text naming the likely cause (most specific first): no images / no clouds at all
            (topic name or QoS mismatch), a zero stamp within ``diag_window`` s, camera stopped
            while clouds keep arriving, consistent clock offset > slop (judged only when a cloud
            was resolved within ``diag_window`` s); None if the recent resolutions matched,
            nothing arrived, or both inputs stopped.
        """
        now = self.clock()
        if idle_timeout is None:
            idle_timeout = self.camera_stale_after
        with self._lock:
            s = self.stats
            if s.clouds_in == 0 and s.images_in == 0:
                return None
            if s.images_in == 0:
                return (f"no image received while {s.clouds_in} clouds arrived: check the image "
                        "topic name and QoS compatibility (a BEST_EFFORT camera publisher cannot "
                        "feed a RELIABLE subscription)")
            if s.clouds_in == 0:
                return (f"no cloud received while {s.images_in} images arrived: check the cloud "
                        "topic name and QoS compatibility (a BEST_EFFORT lidar publisher cannot "
                        "feed a RELIABLE subscription)")
            zero_age = None if self._last_zero_stamp is None else now - self._last_zero_stamp
            if zero_age is not None and zero_age <= self.diag_window:
                return (f"zero header.stamp within the last {self.diag_window:.0f} s "
                        f"({s.zero_stamp_clouds} clouds, {s.zero_stamp_images} images since "
                        "start): the driver does not stamp messages; such clouds run lidar-only")
            clouds_flowing = (self._last_cloud_arrival is not None
                              and now - self._last_cloud_arrival <= idle_timeout)
            camera_idle = (self._last_image_arrival is not None
                           and now - self._last_image_arrival > idle_timeout)
            if camera_idle and not clouds_flowing:
                return None  # both inputs stopped (end of a bag): nothing to pair
            if camera_idle:
                idle = now - self._last_image_arrival
                return (f"camera stopped: no image for {idle:.1f} s while clouds keep arriving; "
                        + (f"running lidar-only ({s.lidar_only} lidar-only clouds so far)"
                           if self.allow_lidar_only else
                           f"clouds are dropped ({s.dropped_no_camera} so far)"))
            overflows = sum(now - t <= self.diag_window for t in self._overflow_times)
            if overflows:
                clouds = sum(now - t <= self.diag_window for t in self._cloud_times)
                images = sum(now - t <= self.diag_window for t in self._image_times)
                rate = (f"{clouds / images:.0f} clouds per image ({clouds} clouds, {images} "
                        "images)" if images else f"{clouds} clouds and no image")
                return (f"cloud burst: {rate} in the last {self.diag_window:.0f} s; the "
                        f"pending-cloud queue (sync_queue_size {self.queue_size}) overflowed "
                        f"{overflows} times, so clouds were resolved before an image within "
                        "sync_slop could arrive: clouds come far faster than images (not a "
                        "clock problem); lower the cloud rate or raise sync_queue_size")
            if self._last_resolution is None or now - self._last_resolution > self.diag_window:
                return None
            offs = list(self._offsets)
            if len(offs) < 5:
                return None
            unmatched_recent = sum(abs(o) > self.slop for o in offs)
            if unmatched_recent < (len(offs) + 1) // 2:
                return None  # pairs are forming
            med = statistics.median(offs)
            spread = statistics.median([abs(o - med) for o in offs])
            # arrival-time estimate first (the nearest-image offset is biased by the image
            # queue's span); it is sensitive to transport/executor delays, so it only explains
            # failing pairs
            skew = self.estimated_skew()
            if skew is not None and abs(skew) > max(2.0 * self.slop, 0.1):
                side = "after" if skew > 0 else "before"
                return (f"clock skew: messages arriving together carry image stamps "
                        f"{abs(skew):.3f} s {side} the cloud stamps (> 2 x sync_slop "
                        f"{self.slop:.3f} s); time-synchronise the sensors")
            if abs(med) > self.slop and spread <= max(self.slop, 0.25 * abs(med)):
                side = "after" if med > 0 else "before"
                return (f"clock skew: image stamps are consistently {abs(med):.3f} s {side} "
                        f"cloud stamps (> sync_slop {self.slop:.3f} s); time-synchronise the "
                        "sensors or raise sync_slop")
            return (f"{unmatched_recent} of the last {len(offs)} clouds had no image within "
                    f"sync_slop {self.slop:.3f} s (median offset {med:+.3f} s); camera and lidar "
                    "rates or stamps do not line up")
