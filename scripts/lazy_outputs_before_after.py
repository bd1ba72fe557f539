#!/usr/bin/env python3
"""Time the node's lazy outputs before and after issue 24 (item 3) in one process, interleaved.

"Before" is the code of ``bev_mtl_ros/ros/messages.py`` and ``bev_mtl_ros/runtime/postprocess.py``
at ``--before`` (default 37ce634, the commit before the change), read with ``git show`` into a
temporary folder and imported under other names; "after" is the working tree. Both build the same
outputs from the same network outputs: the shipped model (onnxruntime CPU, 1 torch thread) on
the benchmark's A2D2 front-center frame (20k synthetic points, 1920x1208 synthetic image) and on
the first real A2D2 frame of ``test/data/real_a2d2``. Each timed call of one side is followed by
the same call of the other side (the order alternates), so machine load hits both alike.

Items (ms, p50 over ``--frames`` calls each): ``semantic_ids`` (argmax + resize to the image),
``semantic_image`` (mono8 message), ``semantic_overlay`` (rgb8 message; after: coloured at the
network's resolution as ``ros.outputs`` publishes it), ``drivable_image``, ``occupancy_grid``,
``markers``, ``serialize_semantic`` / ``serialize_overlay`` (rclpy serialisation of the two big
messages) and ``all`` (everything the node builds and serialises for one frame with every lazy
output subscribed).

It also reports, over the ten real frames with lidar, the share of full-resolution pixels whose
class id differs between before and after (and, for information, what OpenCV's centre-aligned
``INTER_NEAREST_EXACT`` would change). Usage::

    .venv/bin/python scripts/lazy_outputs_before_after.py --frames 40 --json out/bench/lazy.json
    .venv/bin/python scripts/lazy_outputs_before_after.py --cpu-time   # CPU time per item
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
ITEMS = ("semantic_ids", "semantic_image", "semantic_overlay", "drivable_image",
         "occupancy_grid", "markers", "serialize_semantic", "serialize_overlay", "all")


def load_before(rev: str, workdir: Path) -> Tuple[Any, Any]:
    """Return the (messages, postprocess) modules of commit ``rev``, imported from ``workdir``.

    Relative imports of postprocess.py are made absolute (its siblings are unchanged).
    Raises subprocess.CalledProcessError when ``rev`` or a file does not exist.
    """
    mods = []
    for rel, name in (("bev_mtl_ros/ros/messages.py", "before_messages"),
                      ("bev_mtl_ros/runtime/postprocess.py", "before_postprocess")):
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{rel}"], check=True,
                             capture_output=True, text=True).stdout
        src = (src.replace("from ..", "from bev_mtl_ros.")
               .replace("from .targets", "from bev_mtl_ros.runtime.targets"))
        path = workdir / f"{name}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod          # dataclasses look their module up while defined
        spec.loader.exec_module(mod)
        mods.append(mod)
    return mods[0], mods[1]


def frame_inputs(backend) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Return {name: (points (N, 4) float32, rgb (1208, 1920, 3) uint8)} of the two frames."""
    from bev_mtl_ros.bench.config import SCENARIOS
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    from bev_mtl_ros.data.synth_scan import synthetic_image, synthetic_scan
    n, wh, fov = SCENARIOS["a2d2_front_center"]
    f = A2D2Dataset(str(REPO / "test" / "data" / "real_a2d2")).load_frame(0, load_label=False)
    real = np.concatenate([f.points, f.reflectance[:, None]], 1).astype(np.float32)
    return {"synthetic a2d2_front_center": (synthetic_scan(n, fov), synthetic_image(wh)),
            f"real {f.scene}/{f.frame}": (real, f.image)}


def network(pipe, backend, pts: np.ndarray, rgb: np.ndarray) -> Dict[str, np.ndarray]:
    """Return the shipped network's outputs for one frame (as the pipeline feeds it)."""
    from bev_mtl_ros.runtime.pillarize import pillarize
    batch = pillarize(pts, backend.contract)
    outs = backend.infer(batch.pillars, batch.num_points, batch.canvas_index.unsqueeze(0),
                         pipe.preprocess_image(rgb), torch.ones((1,), dtype=torch.float32))
    return {k: np.asarray(v) for k, v in outs.items()}


def builders(M, P, after: bool, outs, dets, drv, rgb, contract) -> Dict[str, Callable[[], Any]]:
    """Return {item: zero-argument call} of one side (``M``/``P``: its messages/postprocess)."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header
    hdr = Header(frame_id="cam_front_center")
    names = list(contract.detection_classes)
    size = (rgb.shape[1], rgb.shape[0])
    net = P.semantic_ids(outs["semantic"])
    sem = P.semantic_ids(outs["semantic"], out_size=size)

    def overlay(ids_net, ids_full):
        if after:
            return M.semantic_overlay(rgb, ids_net, hdr, upsample=True)
        return M.semantic_overlay(rgb, ids_full, hdr)

    def markers():
        return M.detections_to_markers(dets.boxes, dets.scores, dets.labels, names, hdr)

    def grid():
        return M.drivable_to_occupancy_grid(drv, contract.point_cloud_range,
                                            contract.pillar_size, hdr)
    sem_msg, ov_msg = M.semantic_to_image(sem, hdr), overlay(net, sem)

    def everything():
        ids_net = P.semantic_ids(outs["semantic"])
        ids = cv2.resize(ids_net, size, interpolation=cv2.INTER_NEAREST)
        for m in (M.semantic_to_image(ids, hdr), overlay(ids_net, ids),
                  M.drivable_to_image(drv, hdr), grid(), markers()):
            serialize_message(m)
    return {"semantic_ids": lambda: P.semantic_ids(outs["semantic"], out_size=size),
            "semantic_image": lambda: M.semantic_to_image(sem, hdr),
            "semantic_overlay": lambda: overlay(net, sem),
            "drivable_image": lambda: M.drivable_to_image(drv, hdr),
            "occupancy_grid": grid, "markers": markers,
            "serialize_semantic": lambda: serialize_message(sem_msg),
            "serialize_overlay": lambda: serialize_message(ov_msg),
            "all": everything}


def time_pair(before: Callable[[], Any], after: Callable[[], Any], frames: int,
              clock: Callable[[], float]) -> Tuple[List[float], List[float]]:
    """Call both ``frames`` times, alternating which goes first; return their ms lists.

    ``clock``: ``time.perf_counter`` (wall) or ``time.thread_time`` (this thread's CPU time).
    """
    tb, ta = [], []
    for fn in (before, after, before, after):   # warm-up
        fn()
    for k in range(frames):
        for fn, acc in ((before, tb), (after, ta))[:: 1 if k % 2 == 0 else -1]:
            t0 = clock()
            fn()
            acc.append((clock() - t0) * 1e3)
    return tb, ta


def id_shares(pipe, backend, P_before) -> Dict[str, float]:
    """Return the mean share of differing full-resolution ids over the ten real lidar frames.

    ``after_vs_before``: the working tree's pipeline ids vs the before-commit ``semantic_ids``;
    ``nearest_exact_vs_before``: cv2.INTER_NEAREST_EXACT instead of INTER_NEAREST (not used).
    """
    from bev_mtl_ros.data.a2d2 import A2D2Dataset
    ds = A2D2Dataset(str(REPO / "test" / "data" / "real_a2d2"))
    after, exact = [], []
    for i in range(len(ds)):
        f = ds.load_frame(i, load_label=False)
        pts = np.concatenate([f.points, f.reflectance[:, None]], 1).astype(np.float32)
        logits = network(pipe, backend, pts, f.image)["semantic"]
        size = (f.image.shape[1], f.image.shape[0])
        ref = P_before.semantic_ids(logits, out_size=size)
        after.append(float(np.mean(pipe(pts, f.image).semantic != ref)))
        ex = cv2.resize(P_before.semantic_ids(logits), size,
                        interpolation=cv2.INTER_NEAREST_EXACT)
        exact.append(float(np.mean(ex != ref)))
    return {"frames": len(after), "after_vs_before": float(np.mean(after)),
            "after_vs_before_max": float(np.max(after)),
            "nearest_exact_vs_before": float(np.mean(exact)),
            "nearest_exact_vs_before_max": float(np.max(exact))}


def main(argv=None) -> int:
    """Run the comparison; print a Markdown table per frame; 0 = done."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="37ce634", help="commit of the 'before' code")
    ap.add_argument("--frames", type=int, default=40, help="timed calls per item and side")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time this thread's CPU time (time.thread_time) with OpenCV on one "
                         "thread instead of the wall clock with OpenCV's default threads: the "
                         "work itself, less sensitive to other processes on a loaded machine")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    clock = time.perf_counter
    if args.cpu_time:
        cv2.setNumThreads(1)
        clock = time.thread_time
    from bev_mtl_ros.ros import messages as M_after
    from bev_mtl_ros.runtime import postprocess as P_after
    from bev_mtl_ros.runtime.backends import create_backend
    from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
    from bev_mtl_ros.ros.params import default_postprocess_config
    with tempfile.TemporaryDirectory() as tmp:
        M_before, P_before = load_before(args.before, Path(tmp))
    backend = create_backend(str(REPO / "models" / "bev_mtl_default.onnx"),
                             backend="onnxruntime", device="cpu")
    contract = backend.contract
    post = default_postprocess_config(contract.detection_classes)
    pipe = PerceptionPipeline(backend, post, torch_threads=None)
    res: Dict[str, Any] = {"before": args.before, "frames": args.frames,
                           "clock": "thread CPU time, OpenCV 1 thread" if args.cpu_time
                           else "wall clock, OpenCV default threads",
                           "loadavg_start": [round(v, 2) for v in os.getloadavg()], "tables": {}}
    for name, (pts, rgb) in frame_inputs(backend).items():
        outs = network(pipe, backend, pts, rgb)
        dets = P_after.decode_detections(outs, contract, post)
        drv = P_after.drivable_mask(outs["drivable"])
        b = builders(M_before, P_before, False, outs, dets, drv, rgb, contract)
        a = builders(M_after, P_after, True, outs, dets, drv, rgb, contract)
        table = {}
        for item in ITEMS:
            tb, ta = time_pair(b[item], a[item], args.frames, clock)
            table[item] = {"before_p50": round(float(np.median(tb)), 2),
                           "after_p50": round(float(np.median(ta)), 2)}
        res["tables"][name] = {"detections": int(len(dets.scores)), "items": table}
        print(f"\n{name}: {rgb.shape[1]}x{rgb.shape[0]}, {len(dets.scores)} detections, "
              f"semantic logits {tuple(outs['semantic'].shape)}; {res['clock']}")
        print("| item | before p50 ms | after p50 ms |\n|---|---:|---:|")
        for item, v in table.items():
            print(f"| {item} | {v['before_p50']:.2f} | {v['after_p50']:.2f} |")
    res["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    res["id_shares"] = id_shares(pipe, backend, P_before)
    print(f"\nload average at start {res['loadavg_start']}, at end {res['loadavg_end']}")
    print(f"share of differing ids (real frames): {res['id_shares']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
