"""In-process stages of one benchmark scenario, each timed on its own (see the package docstring).

Each ``time_*`` function fills the scenario's ``stages`` dict (``st``) and/or the scenario dict
(``s``) with latency summaries (:func:`~bev_mtl_ros.bench.timing.summarize_ms`) or
``{"error": ...}`` where a stage fails at run time.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import numpy as np

from bev_mtl_ros.bench.config import BenchConfig
from bev_mtl_ros.bench.references import compare_pillars, naive_pillarize, spconv_reference
from bev_mtl_ros.bench.timing import summarize_ms, time_stage

__all__ = ["make_pipeline", "time_conversions", "time_pillarize",
           "time_network", "time_postprocess", "time_messages", "time_lazy_outputs",
           "time_pipeline", "LAZY_OUTPUT_ITEMS"]

#: what :func:`time_lazy_outputs` times, in the order the table prints it (stage keys
#: ``lazy_<item>``)
LAZY_OUTPUT_ITEMS = ("semantic_ids", "semantic_image", "semantic_overlay", "drivable_image",
                     "occupancy_grid", "markers", "markers_20_boxes", "serialize_semantic",
                     "serialize_overlay", "serialize_drivable", "serialize_grid",
                     "serialize_markers", "all")


def make_pipeline(backend):
    """Return the node's pipeline; torch's thread count is left as the benchmark set it."""
    from bev_mtl_ros.ros.params import default_postprocess_config
    from bev_mtl_ros.runtime.pipeline import PerceptionPipeline
    post = default_postprocess_config(backend.contract.detection_classes)
    return PerceptionPipeline(backend, post, torch_threads=None)


def time_conversions(st: Dict[str, Any], pts: np.ndarray, img: np.ndarray, contract,
                     cfg: BenchConfig) -> None:
    """Time PointCloud2 -> numpy and Image -> numpy (+ resize to the network input).

    ``image_resize`` is the node's resize to the network input alone
    (:func:`~bev_mtl_ros.runtime.pipeline.resize_to_input`) and ``image_resize_inter_area``
    OpenCV's INTER_AREA to the same size, the resize it replaced, timed in the same run.
    """
    import cv2

    from bev_mtl_ros.ros.conversions import cloud_to_msg, cloud_to_xyzi, image_to_msg, image_to_rgb
    from bev_mtl_ros.runtime.pipeline import resize_to_input
    n_pts = int(pts.shape[0])
    cmsg = cloud_to_msg({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2],
                         "intensity": pts[:, 3],
                         "lidar_id": np.zeros(n_pts, np.uint8),
                         "t": np.zeros(n_pts, np.float32)})
    imsg = image_to_msg(img, "rgb8")
    size = tuple(contract.image_size)
    st["cloud_to_numpy"] = time_stage(lambda: cloud_to_xyzi(cmsg), cfg.frames, cfg.warmup)
    st["image_to_numpy"] = time_stage(lambda: resize_to_input(image_to_rgb(imsg), size),
                                      cfg.frames, cfg.warmup)
    st["image_resize"] = time_stage(lambda: resize_to_input(img, size), cfg.frames, cfg.warmup)
    st["image_resize_inter_area"] = time_stage(
        lambda: cv2.resize(img, size, interpolation=cv2.INTER_AREA), cfg.frames, cfg.warmup)


def time_pillarize(s: Dict[str, Any], pts: np.ndarray, contract, cfg: BenchConfig, dev: str):
    """Time ``runtime.pillarize`` and, with ``cfg.reference``, compare it with the references.

    Fills ``s["stages"]["pillarize"]``, ``s["pillar_stats"]`` and ``s["pillarize_reference"]``;
    returns the frame's PillarBatch.
    """
    from bev_mtl_ros.runtime.pillarize import pillarize
    batch = pillarize(pts, contract, device=dev)
    s["stages"]["pillarize"] = time_stage(lambda: pillarize(pts, contract, device=dev),
                                          cfg.frames, cfg.warmup, dev)
    s["pillar_stats"] = batch.stats.as_dict()
    if cfg.reference:
        mine = {"coords": batch.coords.cpu().numpy(), "num_points": batch.num_points.cpu().numpy(),
                "pillars": batch.pillars.cpu().numpy()}
        ref: Dict[str, Any] = {}
        t0 = time.perf_counter()
        naive = naive_pillarize(pts, contract)
        ref["naive_python_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        ref["naive_vs_runtime"] = compare_pillars(mine, naive)
        ref.update(spconv_reference(pts, contract, mine, batch.stats.pillars_dropped, cfg, dev))
        s["pillarize_reference"] = ref
    return batch


def time_network(st: Dict[str, Any], backends: Dict[str, Any], inputs,
                 cfg: BenchConfig) -> Optional[Dict[str, Any]]:
    """Time one forward pass per backend (with the ratio to the fastest p50).

    Returns the first backend's outputs that could be computed (None when every backend failed).
    """
    net: Dict[str, Any] = {}
    outputs = None
    for label, be in backends.items():
        try:
            net[label] = time_stage(lambda: be.infer(*inputs), cfg.frames, cfg.warmup,
                                    "cuda" if "cuda" in label.lower() or "Tensorrt" in label
                                    or "CUDA" in label else "cpu")
            if outputs is None:
                outputs = be.infer(*inputs)
        except Exception as e:
            net[label] = {"error": f"{type(e).__name__}: {e}"}
    fastest = min((v["p50"] for v in net.values() if "p50" in v), default=None)
    for v in net.values():
        if "p50" in v and fastest:
            v["ratio_to_fastest"] = round(v["p50"] / fastest, 2)
    st["network"] = net
    return outputs


def time_postprocess(st: Dict[str, Any], s: Dict[str, Any], outputs, img: np.ndarray, contract,
                     cfg: BenchConfig):
    """Time decode + NMS, the dense masks and the lazy outputs; return the frame's results.

    Returns (detections, drivable mask, semantic ids at the image's size); the lazy outputs'
    rows come from :func:`time_lazy_outputs`.
    """
    from bev_mtl_ros.ros.params import default_postprocess_config
    from bev_mtl_ros.runtime.postprocess import decode_detections, drivable_mask, semantic_ids
    pcfg = default_postprocess_config(contract.detection_classes)
    st["postprocess_decode_nms"] = time_stage(lambda: decode_detections(outputs, contract, pcfg),
                                              cfg.frames, cfg.warmup)
    st["postprocess_masks"] = time_stage(
        lambda: (drivable_mask(outputs["drivable"]),
                 semantic_ids(outputs["semantic"], out_size=(img.shape[1], img.shape[0]))),
        cfg.frames, cfg.warmup)
    dets = decode_detections(outputs, contract, pcfg)
    s["detections_decoded"] = int(len(dets.scores))
    drv = drivable_mask(outputs["drivable"])
    sem = semantic_ids(outputs["semantic"], out_size=(img.shape[1], img.shape[0]))
    time_lazy_outputs(st, outputs, dets, drv, img, contract, cfg)
    return dets, drv, sem


def time_messages(st: Dict[str, Any], dets, drv: np.ndarray, sem: np.ndarray, img: np.ndarray,
                  contract, cfg: BenchConfig) -> None:
    """Time building the node's output messages (detections, markers, masks, grid, overlay)."""
    from std_msgs.msg import Header

    from bev_mtl_ros.ros import messages as M
    hdr = Header(frame_id="cam_front_center")
    names = list(contract.detection_classes)

    def build():
        M.detections_to_msg(dets.boxes, dets.scores, dets.labels, names, hdr)
        M.detections_to_markers(dets.boxes, dets.scores, dets.labels, names, hdr)
        M.drivable_to_image(drv, hdr)
        M.drivable_to_occupancy_grid(drv, contract.point_cloud_range, contract.pillar_size, hdr)
        M.semantic_to_image(sem, hdr)
        M.semantic_overlay(img, sem, hdr)
    st["build_messages"] = time_stage(build, cfg.frames, cfg.warmup)


def time_lazy_outputs(st: Dict[str, Any], outputs, dets, drv: np.ndarray, img: np.ndarray,
                      contract, cfg: BenchConfig) -> None:
    """Time each lazy output of the node alone and all together: stages ``lazy_<item>``.

    Items (:data:`LAZY_OUTPUT_ITEMS`), each built exactly as ``ros.outputs.NodeOutputs`` and the
    pipeline build it for one frame:

    * ``semantic_ids`` - argmax of the network's semantic logits at the network's resolution +
      nearest resize of the ids to the camera image (``runtime.postprocess.semantic_ids`` and
      ``resize_ids``; the pipeline runs them only when ``~/semantic`` or ``~/semantic/color`` is
      subscribed);
    * ``semantic_image`` / ``semantic_overlay`` - mono8 ids / rgb8 colour overlay at the camera's
      size (``ros.messages``; the overlay coloured at the network's resolution and scaled, as
      ``ros.outputs`` publishes it);
    * ``drivable_image`` / ``occupancy_grid`` - the BEV mask as mono8 / nav_msgs/OccupancyGrid;
    * ``markers`` - MarkerArray of the frame's detections; ``markers_20_boxes`` - the same for 20
      fixed boxes of the first class (a busy street; the synthetic scans give few detections);
    * ``serialize_*`` - ``rclpy.serialization.serialize_message`` of each message: the Python ->
      C conversion and CDR serialisation that ``publish`` also does (an upper bound on the
      publisher's share: it makes one more copy, into a Python ``bytes``; the DDS transport
      itself is in the end-to-end rows);
    * ``all`` - every item above in one go: the per-frame cost of the lazy outputs.

    Args:
        st: the scenario's stages (gets ``lazy_<item>``: latency summary, ms, per item, and
            ``lazy_detections``: the number of detections of the frame).
        outputs: one backend's network outputs (``semantic`` (1, S, Hs, Ws) logits).
        dets: the frame's decoded :class:`Detections`; drv: (grid_h, grid_w) uint8 mask.
        img: (H, W, 3) uint8 RGB camera image (sets the full resolution).
        contract: the model contract; cfg: frames and warm-up.
    """
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from bev_mtl_ros.ros import messages as M
    from bev_mtl_ros.runtime.postprocess import resize_ids, semantic_ids
    hdr = Header(frame_id="cam_front_center")
    names = list(contract.detection_classes)
    size = (img.shape[1], img.shape[0])
    sem_net = semantic_ids(outputs["semantic"])
    sem = resize_ids(sem_net, size)
    boxes20 = np.zeros((20, 7), np.float32)
    boxes20[:, 0] = np.arange(20) * 3.0 + 5.0      # x forward, metres
    boxes20[:, 3:6] = (4.5, 1.9, 1.6)              # a car's length, width, height
    build = {
        "semantic_ids": lambda: resize_ids(semantic_ids(outputs["semantic"]), size),
        "semantic_image": lambda: M.semantic_to_image(sem, hdr),
        "semantic_overlay": lambda: M.semantic_overlay(img, sem_net, hdr, upsample=True),
        "drivable_image": lambda: M.drivable_to_image(drv, hdr),
        "occupancy_grid": lambda: M.drivable_to_occupancy_grid(
            drv, contract.point_cloud_range, contract.pillar_size, hdr),
        "markers": lambda: M.detections_to_markers(dets.boxes, dets.scores, dets.labels, names,
                                                   hdr),
        "markers_20_boxes": lambda: M.detections_to_markers(boxes20, np.full(20, 0.5, np.float32),
                                                            np.zeros(20, np.int64), names, hdr),
    }
    serial = {"serialize_semantic": "semantic_image", "serialize_overlay": "semantic_overlay",
              "serialize_drivable": "drivable_image", "serialize_grid": "occupancy_grid",
              "serialize_markers": "markers"}
    msgs = {key: build[key]() for key in serial.values()}

    def everything():
        ids_net = semantic_ids(outputs["semantic"])
        for m in (M.semantic_to_image(resize_ids(ids_net, size), hdr),
                  M.semantic_overlay(img, ids_net, hdr, upsample=True),
                  M.drivable_to_image(drv, hdr),
                  M.drivable_to_occupancy_grid(drv, contract.point_cloud_range,
                                               contract.pillar_size, hdr),
                  M.detections_to_markers(dets.boxes, dets.scores, dets.labels, names, hdr)):
            serialize_message(m)

    st["lazy_detections"] = int(len(dets.scores))
    for k, fn in build.items():
        st[f"lazy_{k}"] = time_stage(fn, cfg.frames, cfg.warmup)
    for k, key in serial.items():
        st[f"lazy_{k}"] = time_stage(lambda m=msgs[key]: serialize_message(m), cfg.frames,
                                     cfg.warmup)
    st["lazy_all"] = time_stage(everything, cfg.frames, cfg.warmup)


def time_pipeline(s: Dict[str, Any], backend, pts: np.ndarray, img: np.ndarray,
                  cfg: BenchConfig) -> None:
    """Time the node's whole in-process pipeline per step, with and without the semantic mask."""
    try:
        pipe = make_pipeline(backend)
    except Exception as e:
        s["pipeline_in_process"] = {"error": f"{type(e).__name__}: {e}"}
        return
    for key, semantic in (("pipeline_in_process", True),
                          ("pipeline_in_process_no_semantic", False)):
        try:
            tims: Dict[str, List[float]] = {}
            for k in range(cfg.warmup + cfg.frames):
                r = pipe(pts, img, semantic=semantic)
                if k >= cfg.warmup:
                    for kk, vv in r.timings_ms.items():
                        tims.setdefault(kk, []).append(float(vv))
            s[key] = {k: summarize_ms(v) for k, v in tims.items()}
        except Exception as e:
            s[key] = {"error": f"{type(e).__name__}: {e}"}
