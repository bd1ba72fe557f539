"""``bev-mtl-ros bench``: per-stage latency benchmark anyone can rerun.

Issue 7: "FPS claims that don't reproduce".

Stages, each timed separately over ``--frames`` frames after ``--warmup`` frames (p50 / p95 / max,
ms):

* ``cloud_to_numpy`` / ``image_to_numpy`` — rclpy PointCloud2 / Image -> numpy
  (``ros.conversions.cloud_to_xyzi`` / ``image_to_rgb`` + resize to the network input);
* ``pillarize`` — ``runtime.pillarize`` on the chosen device, compared with a reference
  implementation: spconv's ``PointToVoxel`` when importable (``--spconv-path``), and always a naive
  dict-based numpy/Python reference written here; both must yield the same pillars;
* ``network[<backend>]`` — one forward pass: onnxruntime with every available execution provider,
  FP32 and FP16 where supported, and PyTorch eager, side by side, with the ratio to the fastest;
* ``network_profile`` — where the network's time goes on the CPU: onnxruntime's profiler with the
  node's session settings, kernel time per network module (camera encoder, semantic head,
  fusion, ...) and per operator type (``network_profile``; ``--no-network-profile`` skips it);
* ``postprocess`` — heat-map peak decoding + NMS and the masks (``runtime.postprocess``);
* ``build_messages`` — Detection3DArray/MarkerArray/mask Images (the node's message builders);
* ``lazy_<item>`` — each lazy output of the node on its own (semantic ids, mono8 mask, colour
  overlay, drivable image, grid, markers, their serialisation) and all together
  (``stages.time_lazy_outputs``);
* ``end_to_end_dds`` — cloud (+ image) published by this process -> detections received from the
  node running as a separate process over DDS (closed loop: next frame after the answer).
* ``rate_replay`` — cloud + image published open loop at ``--rate-hz`` for ``--rate-seconds``
  with every output of the node subscribed, quiet and with one core kept busy: frames in / out
  per output, skipped frames, latency p50 / p95 per output, node CPU time per frame.

The node's camera is a rectified one by default; ``--raw-camera`` publishes the image distorted
with A2D2's front-center lens and a CameraInfo of that lens, so that the node undistorts every
frame (the end-to-end and 10 Hz rows).

Input sizes: A2D2 front-center (20k points, 1920x1208 image), a 360-degree 64-beam scan (120k
points), and a scaling series 10k -> 200k points. Clouds are synthetic scans of a ground plane
with box-shaped obstacles (same generator for every backend, fixed seed).

Peak host memory (``resource.getrusage`` ru_maxrss) and, on CUDA, peak device memory
(``torch.cuda.max_memory_allocated``) are reported. Output: a text table and ``--json OUT``.

Modules: ``config`` (scenarios, options), ``timing`` (latency summaries, memory), ``models`` (the
model and backends timed), ``references`` (naive and spconv pillarization), ``stages`` (the
in-process stages), ``end_to_end`` (through the node over DDS), ``rate_replay`` (open loop at
10 Hz, every output; ``encoder_sizes``: a separate script), ``network_profile`` (onnxruntime's
profile per module), ``run`` (the whole run),
``report`` (overhead figures, the table), ``command`` (the command line). This package re-exports
their public names.
"""

from bev_mtl_ros.bench.command import add_arguments, main
from bev_mtl_ros.bench.config import (DEFAULT_MODEL, DEFAULT_SPCONV_PATH, REPO_ROOT,
                                      SCALING_POINTS, SCENARIOS, BenchConfig)
from bev_mtl_ros.bench.end_to_end import bench_end_to_end
from bev_mtl_ros.bench.models import (backend_variants, ensure_model, export_random_model,
                                      make_backend, network_inputs)
from bev_mtl_ros.bench.references import (compare_pillars, naive_pillarize, spconv_reference,
                                          spconv_voxelizer)
from bev_mtl_ros.bench.network_profile import profile_network
from bev_mtl_ros.bench.rate_replay import bench_rate_replay, rate_section, rate_table_lines
from bev_mtl_ros.bench.report import OVERHEAD_TARGET_MS, format_table, node_overhead
from bev_mtl_ros.bench.run import machine_info, run_benchmark
from bev_mtl_ros.bench.timing import cuda_device_used_mb, peak_rss_mb, summarize_ms, time_stage

__all__ = ["add_arguments", "main", "DEFAULT_MODEL", "DEFAULT_SPCONV_PATH", "REPO_ROOT",
           "SCALING_POINTS", "SCENARIOS", "BenchConfig", "bench_end_to_end", "backend_variants",
           "ensure_model", "export_random_model", "make_backend", "network_inputs",
           "compare_pillars", "naive_pillarize", "spconv_reference", "spconv_voxelizer",
           "profile_network", "bench_rate_replay", "rate_section", "rate_table_lines",
           "OVERHEAD_TARGET_MS", "format_table", "node_overhead", "machine_info",
           "run_benchmark", "cuda_device_used_mb", "peak_rss_mb", "summarize_ms", "time_stage"]
