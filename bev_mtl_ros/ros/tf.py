"""Transforms between coordinate frames (TF) for the node: bring each cloud into ``target_frame``.

Two sources of transforms, chosen once at start-up by :func:`make_transform_source`:

* ``tf2_ros`` (a ROS 2 distribution): ``tf2_ros.Buffer`` + ``TransformListener``; look-ups wait
  at most ``timeout_s`` for the transform (tf2's own bounded wait).
* ``own buffer`` (the pip-only venv has no ``tf2_ros``): the node subscribes to ``/tf_static``
  (reliable, transient local) and ``/tf`` itself and keeps a :class:`TransformBuffer`, which
  composes the chain with SciPy's ``Rotation``. Same semantics as tf2 for what the node needs: a
  tree (each child has one parent), static edges valid at every time, dynamic edges interpolated
  between their two neighbouring stamps (translation linear, rotation slerp), no extrapolation,
  stamp 0 = the latest data.

Bad /tf data is refused before it is stored (:meth:`RigidTransform.from_quaternion`: finite
translation and quaternion, a quaternion norm that is finite and non-zero, so that normalising
it gives a rotation; e.g. components of 1e200 overflow the norm to infinity and are refused, as
tf2 refuses them), reported through ``on_invalid``. A child frame that changes its parent (a
dynamic /tf naming another parent for a frame of /tf_static: tf2 keeps one parent too) is
reported by name through ``on_reparent`` and named in every failed look-up it affects.

Waiting: :meth:`TransformBuffer.wait_lookup` waits for a transform at most ``timeout_s``, and
stops early when ``abort()`` says a newer frame is waiting. Frames that are not connected (a
frame unknown to TF, or in another tree) cost that wait once: until the tree's structure changes
(a new frame or a new parent), later look-ups between the same frames fail at once. So a cloud in
a wrong frame holds the worker once per frame name, not once per cloud.

Conventions (REP 103 / tf2): a ``geometry_msgs/TransformStamped`` with ``header.frame_id`` = P and
``child_frame_id`` = C holds the pose of C in P, i.e. maps C coordinates to P coordinates:
``p_P = R @ p_C + t``. :meth:`TransformBuffer.lookup` ``(target, source)`` returns the map of
``source`` coordinates into ``target`` coordinates (tf2's ``lookup_transform(target, source, t)``).

Only :func:`make_transform_source` touches rclpy (imported inside it); the rest is numpy/SciPy
and testable without ROS.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from bev_mtl_ros.data import calibration

__all__ = [
    "TransformError",
    "RigidTransform",
    "TransformBuffer",
    "transform_points",
    "make_transform_source",
]


class TransformError(LookupError):
    """No transform between two frames at the requested time.

    The message names the frames (and, when they are not connected, the root of each frame's
    tree).

    Attributes:
        kind: "unconnected" (a frame unknown to TF, or the two in different trees), "loop",
            "extrapolation" (no data at the stamp) or "other".
    """

    def __init__(self, text: str, kind: str = "other") -> None:
        super().__init__(text)
        self.kind = kind


@dataclass(frozen=True)
class RigidTransform:
    """A rigid transform ``p_out = rotation.apply(p_in) + translation``.

    Attributes:
        rotation: ``scipy.spatial.transform.Rotation`` (a single rotation).
        translation: (3,) float64, metres.
    """

    rotation: Rotation
    translation: np.ndarray

    @staticmethod
    def identity() -> "RigidTransform":
        """Return the identity transform."""
        return RigidTransform(Rotation.identity(), np.zeros(3))

    @staticmethod
    def from_quaternion(
        translation: Sequence[float], quaternion_xyzw: Sequence[float]
    ) -> "RigidTransform":
        """Build from a translation (metres) and a quaternion in ROS order (x, y, z, w).

        The quaternion is normalised.

        Raises:
            ValueError: a non-finite translation or quaternion, or a quaternion whose norm is
                not finite and > 1e-9 (zero, or so large that it overflows, e.g. components of
                1e200: SciPy would store a zero quaternion that breaks every later look-up).
        """
        q = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        if not (np.isfinite(q).all() and np.isfinite(t).all()):
            raise ValueError(
                f"invalid transform: non-finite translation {t.tolist()} or quaternion "
                f"{q.tolist()}"
            )
        with np.errstate(over="ignore", under="ignore"):
            norm = float(np.sqrt(np.dot(q, q)))
        if not (np.isfinite(norm) and norm > 1e-9):
            raise ValueError(
                f"invalid transform: quaternion {q.tolist()} has norm {norm:g} (must be finite "
                "and > 1e-9 to be normalised)"
            )
        return RigidTransform(Rotation.from_quat(q / norm), t)

    def compose(self, other: "RigidTransform") -> "RigidTransform":
        """Return ``self ∘ other``: first ``other``, then ``self``.

        T_a_c = T_a_b.compose(T_b_c).
        """
        return RigidTransform(
            self.rotation * other.rotation,
            self.rotation.apply(other.translation) + self.translation,
        )

    def inverse(self) -> "RigidTransform":
        """Return the inverse map: R^T, -R^T t."""
        inv = self.rotation.inv()
        return RigidTransform(inv, -inv.apply(self.translation))

    def matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.rotation.as_matrix()
        T[:3, 3] = self.translation
        return T

    def is_identity(self, tol: float = 1e-12) -> bool:
        """Return True when rotation and translation are the identity within ``tol``."""
        return bool(
            np.abs(self.rotation.as_matrix() - np.eye(3)).max() <= tol
            and np.abs(self.translation).max() <= tol
        )


def transform_points(points: np.ndarray, transform: RigidTransform) -> np.ndarray:
    """Transform the x, y, z columns of a point array in place.

    Vectorised, float64 arithmetic: :func:`bev_mtl_ros.data.calibration.transform_points`.

    Args:
        points: (N, C >= 3) float32 or float64, columns 0..2 = x, y, z in metres of the source
            frame; other columns (intensity, ...) are left as they are. Non-finite points stay
            non-finite.
        transform: map from the source frame to the target frame.
    Returns:
        ``points`` itself, its x, y, z now in the target frame.
    Raises:
        ValueError when ``points`` is not (N, >= 3) floating point.
    """
    if points.ndim != 2 or points.shape[1] < 3 or not np.issubdtype(points.dtype, np.floating):
        raise ValueError(
            f"points must be (N, >=3) floating point, got {points.dtype} {points.shape}"
        )
    if points.shape[0]:
        points[:, :3] = calibration.transform_points(transform.matrix(), points[:, :3])
    return points


@dataclass
class _Edge:
    """Transforms of one child frame relative to its parent."""

    parent: str
    static: bool
    stamps: List[int]  # ns, sorted (one entry, 0, for a static edge)
    transforms: List[RigidTransform]


class TransformBuffer:
    """A thread-safe TF tree fed with ``TransformStamped``-like data; looks up chains.

    Args:
        cache_s: dynamic transforms older than this (relative to the newest stamp of the same
            edge) are forgotten, seconds (tf2's default cache is 10 s).
        on_invalid: called with one line for each refused entry of :meth:`add_message`.
        on_reparent: called with one line each time a child frame gets another parent.
    """

    #: (target, source) pairs remembered as "waited in vain" (see :meth:`wait_lookup`)
    MAX_GAVE_UP = 1024

    def __init__(self, cache_s: float = 10.0,
                 on_invalid: Optional[Callable[[str], None]] = None,
                 on_reparent: Optional[Callable[[str], None]] = None) -> None:
        if not cache_s > 0:
            raise ValueError(f"cache_s must be > 0, got {cache_s}")
        self.cache_ns = int(cache_s * 1e9)
        self._edges: Dict[str, _Edge] = {}
        self._cond = threading.Condition()
        self._static_cache: Dict[Tuple[str, str], RigidTransform] = {}
        self._on_invalid = on_invalid
        self._on_reparent = on_reparent
        #: child frame -> the latest re-parenting of it (one line)
        self.reparented: Dict[str, str] = {}
        self._topology = 0  # bumped when a frame appears or changes its parent
        self._gave_up: Dict[Tuple[str, str], int] = {}  # (target, source) -> topology then

    # ------------------------------------------------------------------ input
    def set_transform(
        self, parent: str, child: str, transform: RigidTransform, stamp_ns: int, static: bool
    ) -> None:
        """Add the pose of ``child`` in ``parent`` at ``stamp_ns`` (ns; ignored for static ones).

        A child has one parent: a new parent replaces the old edge; that is recorded in
        :attr:`reparented` and reported through ``on_reparent``. Raises ValueError for empty
        frame names or ``parent == child``.
        """
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"invalid transform edge '{parent}' -> '{child}'")
        note = None
        with self._cond:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent:
                self._topology += 1
                self._gave_up.clear()
                if edge is not None:
                    note = (f"frame '{child}' re-parented from '{edge.parent}' "
                            f"({'static' if edge.static else 'dynamic'}) to '{parent}' "
                            f"({'static' if static else 'dynamic'}"
                            + ("" if static else f", stamp {int(stamp_ns) * 1e-9:.3f} s")
                            + "): a frame has one parent, the old edge is gone")
                    self.reparented[child] = note
            if static or edge is None or edge.static or edge.parent != parent:
                edge = _Edge(parent, bool(static), [], [])
                self._edges[child] = edge
            if static:
                edge.stamps[:], edge.transforms[:] = [0], [transform]
                self._static_cache.clear()
            else:
                k = bisect.bisect_left(edge.stamps, int(stamp_ns))
                if k < len(edge.stamps) and edge.stamps[k] == int(stamp_ns):
                    edge.transforms[k] = transform
                else:
                    edge.stamps.insert(k, int(stamp_ns))
                    edge.transforms.insert(k, transform)
                drop = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
                if drop:
                    del edge.stamps[:drop], edge.transforms[:drop]
                self._static_cache.clear()
            self._cond.notify_all()
        if note is not None and self._on_reparent is not None:
            self._on_reparent(note)

    def add_message(self, msg: Any, static: bool) -> int:
        """Add every transform of a ``tf2_msgs/TFMessage``; return how many were added.

        Any object with ``transforms`` of ``TransformStamped``-like items works. Invalid entries
        (non-finite values, a quaternion that cannot be normalised, empty or equal frame names)
        are refused before they are stored and reported through ``on_invalid``.
        """
        added = 0
        for ts in msg.transforms:
            tr, q = ts.transform.translation, ts.transform.rotation
            try:
                T = RigidTransform.from_quaternion((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
                stamp = int(ts.header.stamp.sec) * 1_000_000_000 + int(ts.header.stamp.nanosec)
                self.set_transform(ts.header.frame_id, ts.child_frame_id, T, stamp, static)
            except ValueError as e:
                if self._on_invalid is not None:
                    self._on_invalid(f"{'/tf_static' if static else '/tf'} transform "
                                     f"'{ts.header.frame_id}' -> '{ts.child_frame_id}' refused: "
                                     f"{e}")
                continue
            added += 1
        return added

    # ------------------------------------------------------------------ queries
    def frames(self) -> List[str]:
        """All frame names known (children and parents), sorted."""
        with self._cond:
            names = set(self._edges) | {e.parent for e in self._edges.values()}
        return sorted(names)

    def _chain(self, frame: str) -> List[str]:
        """[frame, parent, grandparent, ..., root]; caller holds the lock.

        Raises TransformError on a loop.
        """
        out = [frame]
        while out[-1] in self._edges:
            nxt = self._edges[out[-1]].parent
            if nxt in out:
                raise TransformError(f"TF loop through frames {out + [nxt]}", "loop")
            out.append(nxt)
        return out

    def _edge_at(self, child: str, stamp_ns: int) -> RigidTransform:
        e = self._edges[child]
        if e.static:
            return e.transforms[0]
        if stamp_ns == 0:
            return e.transforms[-1]
        k = bisect.bisect_left(e.stamps, stamp_ns)
        if k < len(e.stamps) and e.stamps[k] == stamp_ns:
            return e.transforms[k]
        if k == 0 or k == len(e.stamps):
            lo, hi = e.stamps[0] * 1e-9, e.stamps[-1] * 1e-9
            raise TransformError(
                f"transform '{e.parent}' -> '{child}' at {stamp_ns * 1e-9:.3f} s needs "
                f"extrapolation: data covers {lo:.3f} .. {hi:.3f} s", "extrapolation"
            )
        t0, t1 = e.stamps[k - 1], e.stamps[k]
        a, b = e.transforms[k - 1], e.transforms[k]
        w = (stamp_ns - t0) / (t1 - t0)
        rot = Slerp([0.0, 1.0], Rotation.concatenate([a.rotation, b.rotation]))([w])[0]
        return RigidTransform(rot, (1.0 - w) * a.translation + w * b.translation)

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> RigidTransform:
        """Return the map of ``source`` coordinates into ``target`` coordinates at ``stamp_ns``.

        Args:
            target, source: frame names (a leading "/" is ignored).
            stamp_ns: time in ns (ROS time of the data); 0 = the latest of every dynamic edge.
        Returns:
            :class:`RigidTransform` with ``p_target = T(p_source)``; identity when the frames
            are equal.
        Raises:
            TransformError: a frame is unknown, the frames are in different trees (the message
            names both roots), or a dynamic edge would need extrapolation.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return RigidTransform.identity()
        with self._cond:
            key = (target, source)
            hit = self._static_cache.get(key)
            if hit is not None:
                return hit
            up_s, up_t = self._chain(source), self._chain(target)
            on_t = {f: i for i, f in enumerate(up_t)}
            common = next((f for f in up_s if f in on_t), None)
            if common is None:
                raise TransformError(self._unconnected_text(target, source, up_t, up_s),
                                     "unconnected")
            path_s = up_s[: up_s.index(common)]
            path_t = up_t[: on_t[common]]
            T_c_s = RigidTransform.identity()
            for child in reversed(path_s):  # common ... -> source
                T_c_s = T_c_s.compose(self._edge_at(child, stamp_ns))
            T_c_t = RigidTransform.identity()
            for child in reversed(path_t):
                T_c_t = T_c_t.compose(self._edge_at(child, stamp_ns))
            out = T_c_t.inverse().compose(T_c_s)
            if all(self._edges[c].static for c in path_s + path_t):
                self._static_cache[key] = out
            return out

    def wait_lookup(
        self, target: str, source: str, stamp_ns: int, timeout_s: float,
        abort: Optional[Callable[[], bool]] = None,
    ) -> RigidTransform:
        """Run :meth:`lookup`, retried whenever new transforms arrive, for at most ``timeout_s`` s.

        Monotonic clock. The wait also ends when ``abort()`` returns True (checked every 10 ms;
        the node passes "a newer frame is waiting"). Frames found not connected after a wait are
        remembered: until the tree's structure changes (a frame appears or gets another parent),
        the same look-up fails at once without waiting again.

        Raises:
            TransformError: the last look-up error when the time is up, on ``abort``, or at once
            for a remembered unconnected pair.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        key = (target.lstrip("/"), source.lstrip("/"))
        while True:
            try:
                return self.lookup(target, source, stamp_ns)
            except TransformError as e:
                with self._cond:
                    topology = self._topology
                    if e.kind == "unconnected" and self._gave_up.get(key) == topology:
                        raise
                left = deadline - time.monotonic()
                if left <= 0 or (abort is not None and abort()):
                    if e.kind == "unconnected":
                        with self._cond:
                            if len(self._gave_up) >= self.MAX_GAVE_UP:
                                self._gave_up.clear()
                            self._gave_up[key] = topology
                    raise
                with self._cond:
                    if self._topology == topology:
                        self._cond.wait(min(left, 0.01))

    def _unconnected_text(self, target: str, source: str, up_t: List[str], up_s: List[str]) -> str:
        known = set(self._edges) | {e.parent for e in self._edges.values()}

        def where(frame: str, up: List[str]) -> str:
            if frame not in known:
                return f"'{frame}' (unknown to TF)"
            return f"'{frame}' (tree root '{up[-1]}')"

        notes = [self.reparented[f] for f in dict.fromkeys(up_s + up_t) if f in self.reparented]
        return (
            f"frames not connected: {where(source, up_s)} and {where(target, up_t)}; "
            f"known frames: {sorted(known) if known else 'none (no /tf or /tf_static received)'}"
            + "".join(f"; {n}" for n in notes)
        )


# ---------------------------------------------------------------------------------------- ROS side
class _OwnSource:
    """Transforms from the node's own /tf_static + /tf subscriptions into a TransformBuffer."""

    mode = "own buffer (/tf_static + /tf, SciPy Rotation)"

    def __init__(self, node: Any, cache_s: float,
                 on_invalid: Optional[Callable[[str], None]] = None,
                 on_reparent: Optional[Callable[[str], None]] = None) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage

        self.buffer = TransformBuffer(cache_s, on_invalid, on_reparent)
        static_qos = QoSProfile(
            depth=100,
            reliability=ReliabilityPolicy.RELIABLE,
            history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        dyn_qos = QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
        )
        self._subs = [
            node.create_subscription(
                TFMessage, "/tf_static", lambda m: self.buffer.add_message(m, True), static_qos
            ),
            node.create_subscription(
                TFMessage, "/tf", lambda m: self.buffer.add_message(m, False), dyn_qos
            ),
        ]

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float,
               abort: Optional[Callable[[], bool]] = None) -> RigidTransform:
        return self.buffer.wait_lookup(target, source, stamp_ns, timeout_s, abort)


class _Tf2RosSource:
    """Transforms from ``tf2_ros.Buffer`` + ``TransformListener`` (ROS 2 distributions)."""

    mode = "tf2_ros"

    def __init__(self, node: Any, cache_s: float) -> None:
        import tf2_ros
        from rclpy.duration import Duration

        self._tf2 = tf2_ros
        self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_s))
        self._listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float,
               abort: Optional[Callable[[], bool]] = None) -> RigidTransform:
        """tf2's look-up with its bounded wait; with ``abort``, waited in 10 ms slices."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        deadline = time.monotonic() + max(0.0, float(timeout_s))
        while True:
            step = float(timeout_s) if abort is None else 0.01  # None: one bounded call
            try:
                ts = self.buffer.lookup_transform(
                    target,
                    source,
                    Time(nanoseconds=int(stamp_ns)),
                    timeout=Duration(seconds=step),
                )
                break
            except self._tf2.TransformException as e:
                if abort is None or time.monotonic() >= deadline or abort():
                    raise TransformError(f"tf2: {type(e).__name__}: {e}") from None
        tr, q = ts.transform.translation, ts.transform.rotation
        try:
            return RigidTransform.from_quaternion((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
        except ValueError as e:
            raise TransformError(f"tf2 returned an unusable transform: {e}") from None


def make_transform_source(node: Any, cache_s: float = 10.0,
                          on_invalid: Optional[Callable[[str], None]] = None,
                          on_reparent: Optional[Callable[[str], None]] = None) -> Any:
    """Return the node's transform source.

    ``tf2_ros`` when importable, else the own buffer fed by /tf_static and /tf subscriptions on
    ``node``. Both have ``mode`` (text for the log) and
    ``lookup(target, source, stamp_ns, timeout_s, abort=None) -> RigidTransform`` raising
    :class:`TransformError`.

    Args:
        node: the rclpy node that owns the subscriptions.
        cache_s: s of dynamic transforms kept.
        on_invalid, on_reparent: the own buffer's reports (one line each) of refused /tf
            entries and re-parented frames (tf2_ros logs these itself).
    Raises:
        ImportError when neither ``tf2_ros`` nor ``tf2_msgs`` is importable (no TF at all).
    """
    try:
        return _Tf2RosSource(node, cache_s)  # a ROS 2 distribution
    except ImportError:
        return _OwnSource(node, cache_s, on_invalid, on_reparent)
