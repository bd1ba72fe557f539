"""Pillarization references the benchmark checks ``runtime.pillarize`` against.

A naive dict-based numpy/Python implementation written here (always), and spconv's
``PointToVoxel`` when importable (an optional third-party package, installed on demand with
``pip install --target build/bench-spconv spconv``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from bev_mtl_ros.bench.config import DEFAULT_SPCONV_PATH, REPO_ROOT, BenchConfig
from bev_mtl_ros.bench.timing import time_stage

__all__ = ["naive_pillarize", "compare_pillars", "spconv_voxelizer", "spconv_reference"]


def naive_pillarize(points: np.ndarray, contract) -> Dict[str, np.ndarray]:
    """Straightforward reference pillarization with a Python dict (slow; for checking).

    Same rules as ``runtime.pillarize`` (PointPillars, Lang et al. 2019, Sec. 2.1): points with
    finite x,y,z,intensity inside ``point_cloud_range`` (min <= v < max); cell
    ``floor((v - min) / size)`` in float32 arithmetic; the ``max_pillars`` most-populated pillars
    kept (ties: lower flat index), sorted by flat index; the first ``max_points_per_pillar`` points
    of each pillar in input order; decoration [x, y, z, i*scale, x-x_mean, y-y_mean, z-z_mean,
    x-x_centre, y-y_centre] with the mean over kept points.

    Returns {coords (P,2) int64 (iy, ix), num_points (P,) int32, pillars (P, M, F) float32}.
    """
    x0, y0, z0, x1, y1, z1 = (np.float32(v) for v in contract.point_cloud_range)
    dx, dy = (np.float32(v) for v in contract.pillar_size)
    gw, gh = contract.grid_size
    M = contract.max_points_per_pillar
    cells: Dict[int, List[int]] = {}
    count: Dict[int, int] = {}
    pts = np.asarray(points, np.float32)
    for i in range(len(pts)):
        x, y, z, it = pts[i, 0], pts[i, 1], pts[i, 2], pts[i, 3]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z) and np.isfinite(it)):
            continue
        if not (x0 <= x < x1 and y0 <= y < y1 and z0 <= z < z1):
            continue
        ix = min(max(int(np.floor(np.float32(x - x0) / dx)), 0), gw - 1)
        iy = min(max(int(np.floor(np.float32(y - y0) / dy)), 0), gh - 1)
        key = iy * gw + ix
        count[key] = count.get(key, 0) + 1
        lst = cells.setdefault(key, [])
        if len(lst) < M:
            lst.append(i)
    keys = sorted(count, key=lambda k: (-count[k], k))[: contract.max_pillars]
    keys.sort()
    F = contract.num_decorated_features
    out = np.zeros((len(keys), M, F), np.float32)
    coords = np.zeros((len(keys), 2), np.int64)
    num = np.zeros(len(keys), np.int32)
    for p, key in enumerate(keys):
        idx = cells[key]
        iy, ix = divmod(key, gw)
        sel = pts[idx, :4].copy()
        mean = sel[:, :3].mean(0)
        cx, cy = x0 + (ix + 0.5) * dx, y0 + (iy + 0.5) * dy
        out[p, : len(idx), :4] = sel
        out[p, : len(idx), 3] *= np.float32(contract.intensity_scale)
        out[p, : len(idx), 4:7] = sel[:, :3] - mean
        out[p, : len(idx), 7] = sel[:, 0] - cx
        out[p, : len(idx), 8] = sel[:, 1] - cy
        coords[p] = (iy, ix)
        num[p] = len(idx)
    return {"coords": coords, "num_points": num, "pillars": out}


def compare_pillars(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray],
                    atol: float = 1e-4) -> Dict[str, Any]:
    """Compare two pillarizations (any pillar order).

    Each given as {coords (P,2) (iy,ix), num_points (P,), [pillars (P,M,F)]}. Returns
    {same_pillars, same_counts, max_abs_diff, pillars_a, pillars_b}.
    """
    ka = {tuple(c): i for i, c in enumerate(np.asarray(a["coords"]).tolist())}
    kb = {tuple(c): i for i, c in enumerate(np.asarray(b["coords"]).tolist())}
    same = set(ka) == set(kb)
    common = sorted(set(ka) & set(kb))
    ia = np.array([ka[k] for k in common], np.int64)
    ib = np.array([kb[k] for k in common], np.int64)
    counts_equal = (bool(np.array_equal(np.asarray(a["num_points"])[ia],
                                        np.asarray(b["num_points"])[ib])) if common else same)
    res: Dict[str, Any] = {"same_pillars": bool(same), "same_counts": counts_equal,
                           "pillars_a": len(ka), "pillars_b": len(kb), "common": len(common)}
    if "pillars" in a and "pillars" in b and common:
        pa, pb = np.asarray(a["pillars"])[ia], np.asarray(b["pillars"])[ib]
        f = min(pa.shape[-1], pb.shape[-1])
        res["max_abs_diff"] = float(np.abs(pa[..., :f] - pb[..., :f]).max())
        res["same_values"] = res["max_abs_diff"] <= atol
    return res


def spconv_voxelizer(contract, spconv_path: Optional[str], device: str):
    """Return (spconv's ``PointToVoxel`` configured like the contract, description).

    One z-slab = pillars. (None, reason) when spconv (optional) cannot be imported.
    """
    if spconv_path:
        p = Path(spconv_path)
        p = p if p.is_absolute() else REPO_ROOT / p
        if p.is_dir() and str(p) not in sys.path:
            # appended: the venv's own packages (numpy, lark) keep priority
            sys.path.append(str(p))
    try:
        import torch
        from spconv.pytorch.utils import PointToVoxel
    except Exception as e:  # ImportError, or a broken binary
        return (None, f"spconv not importable ({type(e).__name__}: {e}); install: pip install "
                      f"--target {DEFAULT_SPCONV_PATH} spconv")
    x0, y0, z0, x1, y1, z1 = contract.point_cloud_range
    dx, dy = contract.pillar_size
    gen = PointToVoxel(vsize_xyz=[dx, dy, z1 - z0], coors_range_xyz=[x0, y0, z0, x1, y1, z1],
                       num_point_features=4, max_num_voxels=contract.max_pillars,
                       max_num_points_per_voxel=contract.max_points_per_pillar,
                       device=torch.device(device))
    import spconv
    return gen, f"spconv {getattr(spconv, '__version__', '?')} PointToVoxel"


def spconv_reference(pts: np.ndarray, contract, mine: Dict[str, np.ndarray],
                     pillars_dropped: int, cfg: BenchConfig, dev: str) -> Dict[str, Any]:
    """Time spconv's PointToVoxel on the same cloud and compare its pillars with ours.

    Returns {"spconv": description, ["spconv_ms": summary, "spconv_vs_runtime": comparison]}.
    """
    import torch
    try:
        gen, desc = spconv_voxelizer(contract, cfg.spconv_path, dev)
    except Exception as e:   # e.g. a CPU-only spconv asked for CUDA
        return {"spconv": f"spconv unusable on {dev}: {type(e).__name__}: {e}"}
    if gen is None:
        return {"spconv": desc}
    try:
        tp = torch.from_numpy(pts).to(dev)
        out: Dict[str, Any] = {"spconv": desc,
                               "spconv_ms": time_stage(lambda: gen(tp), cfg.frames, cfg.warmup,
                                                       dev)}
        vox, coors, nump = gen(tp)
        vox = vox.cpu().numpy().copy()
        vox[..., 3] *= np.float32(contract.intensity_scale)   # spconv keeps the raw features
        sp = {"coords": coors[:, 1:].cpu().numpy().astype(np.int64),  # (z, y, x) -> (y, x)
              "num_points": nump.cpu().numpy(), "pillars": vox}     # (P, M, 4): x, y, z, intensity
        cmp = compare_pillars(mine, sp)
        cmp["note"] = ("spconv keeps the first max_pillars voxels in point order, "
                       "runtime.pillarize the most-populated; sets agree only when no pillar is "
                       "dropped"
                       if pillars_dropped else "no pillar dropped: sets must agree")
        out["spconv_vs_runtime"] = cmp
        return out
    except Exception as e:
        return {"spconv": f"{desc}: failed ({type(e).__name__}: {e})"}
