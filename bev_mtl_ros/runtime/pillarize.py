"""Pillarization: point cloud -> PointPillars pillar tensor.

One torch implementation for CPU and CUDA.

PointPillars (Lang et al., "PointPillars: Fast Encoders for Object Detection from Point Clouds",
CVPR 2019, Sec. 2.1) groups the points of a cloud into vertical columns ("pillars") on a BEV grid,
keeps at most ``max_pillars`` non-empty pillars and ``max_points_per_pillar`` points per pillar,
and decorates every point with its offsets to the arithmetic mean of the pillar's points and to the
pillar's centre in x and y.

Conventions (see ``model/contract.py``):

* Points are in the model lidar frame (x forward, y left, z up), metres.
* Cell (iy, ix) covers ``x in [x_min + ix*dx, x_min + (ix+1)*dx)`` and
  ``y in [y_min + iy*dy, y_min + (iy+1)*dy)``; flat index ``iy * grid_w + ix``. A point is in range
  when ``min <= coord < max`` on x, y *and* z. Cell assignment uses float32 arithmetic
  ``floor((x - x_min) / dx)`` clamped to the grid, so a point within float32 rounding of a cell
  border may land in either neighbour - deterministically.
* Kept pillars when more than ``max_pillars`` are occupied: the most-populated ones (count of
  in-range points), ties broken by lower flat index. Kept pillars are output in ascending flat
  index.
* Kept points in a pillar: the first ``max_points_per_pillar`` in input order.
* The pillar mean used for the x/y/z offsets is the mean over the **kept** points of the pillar
  (as PointPillars/OpenPCDet compute it from the stored voxel), so a pillar's decoration does not
  depend on points the network never sees.
* The pillar centre is ``(x_min + (ix + 0.5)*dx, y_min + (iy + 0.5)*dy)``.

Everything is vectorized (stable sort by cell, run-length counts from the segment boundaries, rank
within pillar as ``arange - segment start``, per-pillar sums as differences of a float64 cumulative
sum over the pillar-sorted points); there is no Python loop over points or pillars. The result is
deterministic on every device (stable sort, no atomics), and CPU and CUDA agree to float32
rounding.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..model.contract import ModelContract

__all__ = ["PillarStats", "PillarBatch", "pillarize", "collate_pillars", "PillarizeError"]


class PillarizeError(ValueError):
    """Raised for malformed point input (wrong rank, too few channels, unsupported dtype)."""


@dataclass
class PillarStats:
    """Counters of one pillarization (all plain ints).

    Attributes:
        points_in: rows of the input array.
        nonfinite_dropped: points with NaN/Inf in any used channel (x, y, z, intensity, ...).
        out_of_range_dropped: finite points outside ``contract.point_cloud_range``.
        pillars_occupied: non-empty pillars before the ``max_pillars`` cut.
        pillars_dropped: occupied pillars not kept (``pillars_occupied - P``).
        points_in_dropped_pillars: in-range points lost with the dropped pillars.
        points_over_max_dropped: points of kept pillars beyond ``max_points_per_pillar``.
    """

    points_in: int = 0
    nonfinite_dropped: int = 0
    out_of_range_dropped: int = 0
    pillars_occupied: int = 0
    pillars_dropped: int = 0
    points_in_dropped_pillars: int = 0
    points_over_max_dropped: int = 0

    @property
    def points_kept(self) -> int:
        """Points that reach the network."""
        return (self.points_in - self.nonfinite_dropped - self.out_of_range_dropped
                - self.points_in_dropped_pillars - self.points_over_max_dropped)

    def as_dict(self) -> Dict[str, int]:
        """Counters as a dict (``points_kept`` included)."""
        d = asdict(self)
        d["points_kept"] = self.points_kept
        return d


@dataclass
class PillarBatch:
    """Pillars of one frame, on one torch device.

    Attributes:
        pillars: (P, M, F) float32, M = ``max_points_per_pillar``, F =
            ``contract.num_decorated_features`` = [x, y, z, i*scale, (extra raw features...),
            x - x_mean, y - y_mean, z - z_mean, x - x_centre, y - y_centre]; rows beyond
            ``num_points`` are zero.
        num_points: (P,) int32, points stored per pillar, 1..M.
        coords: (P, 2) int64, (iy, ix) of each pillar.
        canvas_index: (grid_h * grid_w,) int64, pillar index of each BEV cell; P for empty cells.
        stats: :class:`PillarStats`.
    """

    pillars: torch.Tensor
    num_points: torch.Tensor
    coords: torch.Tensor
    canvas_index: torch.Tensor
    stats: PillarStats

    @property
    def num_pillars(self) -> int:
        """P, the number of pillars kept."""
        return int(self.pillars.shape[0])

    @property
    def device(self) -> torch.device:
        """The torch device every tensor lives on."""
        return self.pillars.device


def _as_tensor(points: Union[np.ndarray, torch.Tensor], device) -> torch.Tensor:
    """Return ``points`` as an (N, C) float32 torch tensor on ``device``.

    numpy input is wrapped zero-copy when possible. Raises PillarizeError for other types.
    """
    if isinstance(points, np.ndarray):
        if points.dtype.fields is not None:
            raise PillarizeError("points: structured numpy arrays are not supported; pass an (N, "
                                 "C) float array (e.g. via "
                                 "numpy.lib.recfunctions.structured_to_unstructured)")
        if points.dtype != np.float32:
            if not np.issubdtype(points.dtype, np.number):
                raise PillarizeError(f"points: unsupported dtype {points.dtype}")
            points = points.astype(np.float32)
        if any(s < 0 for s in points.strides):
            points = np.ascontiguousarray(points)
        with warnings.catch_warnings():
            # torch warns about non-writable arrays (e.g. ROS message buffers); we never write.
            warnings.simplefilter("ignore", UserWarning)
            try:
                t = torch.from_numpy(points)
            except (ValueError, TypeError):   # strides torch cannot view (odd byte steps)
                t = torch.from_numpy(np.ascontiguousarray(points))
    elif isinstance(points, torch.Tensor):
        t = points.detach()
        if t.dtype != torch.float32:
            if t.dtype.is_complex or t.dtype == torch.bool:
                raise PillarizeError(f"points: unsupported dtype {t.dtype}")
            t = t.float()
    else:
        raise PillarizeError("points must be a numpy array or torch tensor, got "
                             f"{type(points).__name__}")
    if device is not None:
        t = t.to(device)
    return t


class _Cells(NamedTuple):
    """Cell of every point (step 1 of :func:`pillarize`)."""

    key: torch.Tensor       # (N,) int32 flat cell index iy * grid_w + ix; n_cells if invalid
    finite: torch.Tensor    # (N,) bool, every used channel finite
    n_valid: int            # points finite and in range


class _Segments(NamedTuple):
    """Points sorted by cell, as runs of one pillar each (step 2 of :func:`pillarize`)."""

    order: torch.Tensor     # (N,) int64 input row of each sorted point
    seg: torch.Tensor       # (N,) int64 run (pillar) id of each sorted point, clamped to U
    rank: torch.Tensor      # (N,) int64 position of the point within its run
    cells: torch.Tensor     # (U,) int64 flat cell index of each occupied pillar, ascending
    counts: torch.Tensor    # (U,) int64 in-range points of each occupied pillar


class _Kept(NamedTuple):
    """Stored points of the kept pillars (step 4 of :func:`pillarize`)."""

    src: torch.Tensor           # (K,) int64 input row of each stored point
    pid: torch.Tensor           # (K,) int64 output pillar of each stored point
    slot: torch.Tensor          # (K,) int64 row of the point within its pillar
    kept_counts: torch.Tensor   # (P,) int64 in-range points of each kept pillar
    num_points: torch.Tensor    # (P,) int64 stored points of each kept pillar (<= M)


def _assign_cells(raw: torch.Tensor, contract: ModelContract) -> _Cells:
    """Flat BEV cell of every point; invalid (non-finite or out-of-range) points get n_cells."""
    dev = raw.device
    x0, y0, z0, x1, y1, z1 = (float(v) for v in contract.point_cloud_range)
    dx, dy = (float(v) for v in contract.pillar_size)
    gw, gh = contract.grid_size
    x, y, z = raw[:, 0], raw[:, 1], raw[:, 2]
    # Any NaN/Inf in a used channel makes the row sum non-finite (Inf - Inf = NaN).
    acc = x + y
    for c in range(2, raw.shape[1]):
        acc = acc + raw[:, c]
    finite = torch.isfinite(acc)
    # Divide by 0-dim tensors on the points' device, not by Python floats: CUDA replaces
    # `tensor / python_scalar` by a multiplication with the reciprocal (one bit less exact), which
    # moved a few border points per 120k-point cloud into the neighbouring cell vs the CPU.
    fx = (x - x0) / torch.full((), dx, dtype=torch.float32, device=dev)
    fy = (y - y0) / torch.full((), dy, dtype=torch.float32, device=dev)
    in_range = (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & (z >= z0) & (z < z1)
    valid = finite & in_range
    ix = fx.floor_().clamp_(0, gw - 1).to(torch.int32)
    iy = fy.floor_().clamp_(0, gh - 1).to(torch.int32)
    # Invalid points get the sentinel key n_cells and sort behind every pillar.
    key = torch.where(valid, iy * gw + ix, torch.full_like(ix, gh * gw))
    return _Cells(key=key, finite=finite, n_valid=int(valid.sum()))


def _segment(cells: _Cells) -> _Segments:
    """Stable sort by cell, run-length counts and rank within each pillar's run."""
    key_sorted, order = torch.sort(cells.key, stable=True)
    dev = key_sorted.device
    n_all = int(key_sorted.shape[0])
    boundary = torch.ones(n_all, dtype=torch.bool, device=dev)
    if n_all > 1:
        torch.ne(key_sorted[1:], key_sorted[:-1], out=boundary[1:])
    starts = torch.nonzero(boundary).squeeze(1)
    seg = torch.cumsum(boundary, 0, dtype=torch.int64) - 1          # segment id per sorted point
    rank = torch.arange(n_all, device=dev) - starts.index_select(0, seg)
    counts = torch.diff(starts, append=torch.tensor([n_all], device=dev))
    occupied = key_sorted.index_select(0, starts).long()
    # Drop the sentinel segment (invalid points), if any: it is the last one.
    U = int(starts.shape[0]) - (1 if cells.n_valid < n_all else 0)
    return _Segments(order=order, seg=seg.clamp_(max=U), rank=rank, cells=occupied[:U],
                     counts=counts[:U])


def _select_pillars(counts: torch.Tensor, max_pillars: int) -> torch.Tensor:
    """Return the indices (ascending) of the kept occupied pillars.

    The ``max_pillars`` most-populated; ties -> lower flat index (cells are ascending and the sort
    is stable). Kept pillars are then re-ordered by ascending flat index.
    """
    U = int(counts.shape[0])
    if U > max_pillars:
        by_count = torch.sort(-counts, stable=True).indices[:max_pillars]
        return torch.sort(by_count).values
    return torch.arange(U, device=counts.device)


def _keep_points(segs: _Segments, sel: torch.Tensor, M: int) -> _Kept:
    """Keep the first ``M`` points of every kept pillar: input rows, output pillar and slot."""
    dev = sel.device
    U, P = int(segs.cells.shape[0]), int(sel.shape[0])
    # last entry: sentinel segment
    new_id = torch.full((U + 1,), -1, dtype=torch.long, device=dev)
    new_id[sel] = torch.arange(P, device=dev)
    pid_sorted = new_id.index_select(0, segs.seg)
    keep_pt = (pid_sorted >= 0) & (segs.rank < M)
    kidx = torch.nonzero(keep_pt).squeeze(1)
    kept_counts = segs.counts.index_select(0, sel)
    return _Kept(src=segs.order.index_select(0, kidx), pid=pid_sorted.index_select(0, kidx),
                 slot=segs.rank.index_select(0, kidx), kept_counts=kept_counts,
                 num_points=torch.clamp(kept_counts, max=M))


def _decorate(pp: torch.Tensor, kept: _Kept, pcells: torch.Tensor,
              contract: ModelContract) -> torch.Tensor:
    """Return the decorated features (K, F) of the stored points ``pp`` (K, n_feat).

    [raw features (intensity scaled), offsets to the pillar's mean x/y/z, offsets to its centre
    x/y].
    """
    dev = pp.device
    x0, y0 = float(contract.point_cloud_range[0]), float(contract.point_cloud_range[1])
    dx, dy = (float(v) for v in contract.pillar_size)
    gw = contract.grid_size[0]
    n_feat = len(contract.point_features)
    num_points = kept.num_points
    # Segment sums of the kept points (which are contiguous per pillar, pillars ascending) as
    # differences of a float64 cumulative sum: deterministic on every device (no atomics).
    csum = torch.cumsum(pp[:, :3].to(torch.float64), 0)
    csum = torch.cat((torch.zeros((1, 3), dtype=torch.float64, device=dev), csum), 0)
    ends = torch.cumsum(num_points, 0)
    sums = csum.index_select(0, ends) - csum.index_select(0, ends - num_points)
    mean = (sums / num_points.clamp(min=1).to(torch.float64).unsqueeze(1)).to(torch.float32)
    piy = torch.div(pcells, gw, rounding_mode="floor")
    pix = pcells - piy * gw
    centre = torch.stack((x0 + (pix.to(torch.float32) + 0.5) * dx,
                          y0 + (piy.to(torch.float32) + 0.5) * dy), dim=1)   # (P, 2)

    feats = torch.empty((pp.shape[0], contract.num_decorated_features), dtype=torch.float32,
                        device=dev)
    feats[:, :n_feat] = pp
    if "intensity" in contract.point_features:
        ci = list(contract.point_features).index("intensity")
        feats[:, ci] *= float(contract.intensity_scale)
    feats[:, n_feat:n_feat + 3] = pp[:, :3] - mean.index_select(0, kept.pid)
    feats[:, n_feat + 3:n_feat + 5] = pp[:, :2] - centre.index_select(0, kept.pid)
    return feats


def _pillar_stats(n_in: int, cells: _Cells, segs: _Segments, kept: _Kept) -> PillarStats:
    """Counters of one pillarization (one host sync for all of them)."""
    U, P = int(segs.cells.shape[0]), int(kept.num_points.shape[0])
    tot = torch.stack((cells.finite.sum(), segs.counts.sum() - kept.kept_counts.sum(),
                       (kept.kept_counts - kept.num_points).sum())).tolist()
    n_finite = int(tot[0])
    return PillarStats(
        points_in=n_in,
        nonfinite_dropped=n_in - n_finite,
        out_of_range_dropped=n_finite - cells.n_valid,
        pillars_occupied=U,
        pillars_dropped=U - P,
        points_in_dropped_pillars=int(tot[1]),
        points_over_max_dropped=int(tot[2]),
    )


def pillarize(points: Union[np.ndarray, torch.Tensor], contract: ModelContract,
              device: Optional[Union[str, torch.device]] = None) -> PillarBatch:
    """Group a point cloud into decorated pillars (PointPillars, Lang et al. 2019, Sec. 2.1).

    Steps: cell of every point (:func:`_assign_cells`), sort into per-pillar runs
    (:func:`_segment`), choose the kept pillars (:func:`_select_pillars`) and their stored points
    (:func:`_keep_points`), decorate (:func:`_decorate`), scatter into (P, M, F) and the canvas.

    Args:
        points: (N, C) array, C >= len(contract.point_features) (>= 4): [x, y, z, intensity_raw,
            ...] in the model lidar frame, metres; intensity in raw units (multiplied by
            ``contract.intensity_scale`` here). Columns beyond the contract's features are ignored.
            numpy (any real dtype; float32 is wrapped without a copy) or torch (any device).
            N = 0 is allowed and gives P = 0.
        contract: the model contract (range, pillar size, limits, features).
        device: torch device for the computation and the result; None = the input tensor's device
            (numpy -> CPU).

    Returns:
        :class:`PillarBatch` on ``device``.

    Raises:
        PillarizeError: points not 2-D, fewer channels than the contract's point_features, or an
            unsupported dtype/type.
    """
    pts = _as_tensor(points, device)
    if pts.dim() != 2:
        raise PillarizeError(f"points must be (N, C), got shape {tuple(pts.shape)}")
    n_feat = len(contract.point_features)
    if pts.shape[1] < n_feat:
        raise PillarizeError(f"points have {pts.shape[1]} channels, the contract needs {n_feat} "
                             f"{tuple(contract.point_features)}")
    dev = pts.device
    gw, gh = contract.grid_size
    M = int(contract.max_points_per_pillar)
    raw = pts[:, :n_feat]
    cells = _assign_cells(raw, contract)
    segs = _segment(cells)
    sel = _select_pillars(segs.counts, int(contract.max_pillars))
    kept = _keep_points(segs, sel, M)
    P = int(sel.shape[0])
    pcells = segs.cells.index_select(0, sel)
    feats = _decorate(raw.index_select(0, kept.src), kept, pcells, contract)

    F = contract.num_decorated_features
    pillars = torch.zeros((P * M, F), dtype=torch.float32, device=dev)
    pillars.index_copy_(0, kept.pid * M + kept.slot, feats)
    canvas_index = torch.full((gh * gw,), P, dtype=torch.long, device=dev)
    canvas_index[pcells] = torch.arange(P, device=dev)
    piy = torch.div(pcells, gw, rounding_mode="floor")
    coords = torch.stack((piy, pcells - piy * gw), dim=1)
    return PillarBatch(pillars=pillars.view(P, M, F), num_points=kept.num_points.to(torch.int32),
                       coords=coords, canvas_index=canvas_index,
                       stats=_pillar_stats(int(pts.shape[0]), cells, segs, kept))


def collate_pillars(batches: Sequence[PillarBatch]
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate the pillars of B frames for one batched network call.

    Args:
        batches: B >= 1 :class:`PillarBatch` objects on one device, same grid and M, F.

    Returns:
        pillars (sumP, M, F) float32, num_points (sumP,) int32, canvas_index (B, H*W) int64
        indexing into the concatenation, empty cells = sumP (the network's appended zero row).

    Raises:
        ValueError: empty list, or frames with different grid sizes / pillar shapes / devices.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("collate_pillars needs at least one PillarBatch")
    hw = {int(b.canvas_index.shape[0]) for b in batches}
    shapes = {tuple(b.pillars.shape[1:]) for b in batches}
    devices = {str(b.pillars.device) for b in batches}
    if len(hw) != 1 or len(shapes) != 1 or len(devices) != 1:
        raise ValueError(f"collate_pillars: frames disagree (grid cells {sorted(hw)}, pillar "
                         f"shapes {sorted(shapes)}, devices {sorted(devices)})")
    sizes = [b.num_pillars for b in batches]
    total = sum(sizes)
    pillars = torch.cat([b.pillars for b in batches], 0)
    num_points = torch.cat([b.num_points for b in batches], 0)
    rows: List[torch.Tensor] = []
    offset = 0
    for b, n in zip(batches, sizes):    # loop over frames (B), not points
        ci = b.canvas_index
        rows.append(torch.where(ci < n, ci + offset, torch.full_like(ci, total)))
        offset += n
    return pillars, num_points, torch.stack(rows, 0)
