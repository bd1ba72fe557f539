"""The GPU check (scripts/gpu_check.py, issue 14) on the CPU: its report, and that it needs no ROS.

The script must run on a bare CUDA machine without rclpy or PyYAML, so both tests that run it do so
in a child process whose ``sitecustomize`` (first on ``PYTHONPATH``) installs an import blocker:
any attempt to import rclpy, yaml, ROS message/launch packages, scipy, matplotlib or rosbags raises
ImportError and is logged to a file the test reads back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bev_mtl_ros.data.synth_scan import synthetic_scan
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.model.network import DeployWrapper
from bev_mtl_ros.runtime.backends import OUTPUT_NAMES
from bev_mtl_ros.runtime.checkpoint import load_checkpoint
from bev_mtl_ros.runtime.pillarize import pillarize
from bev_mtl_ros.runtime.pipeline import TIMING_KEYS

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "gpu_check.py"

BLOCKER = '''
import importlib.abc, os, sys
BLOCKED = {"rclpy", "yaml", "sensor_msgs", "std_msgs", "vision_msgs", "builtin_interfaces",
           "geometry_msgs", "ament_index_python", "rosbags", "scipy", "matplotlib"}
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in BLOCKED or top.startswith(("rosidl", "launch", "rclpy")):
            with open(os.environ["BEV_BLOCKED_LOG"], "a") as f:
                f.write(name + "\\n")
            raise ImportError(f"{name} is blocked: the GPU check must run without ROS and PyYAML")
        return None
sys.meta_path.insert(0, _Blocker())
'''


@pytest.fixture
def blocked_env(tmp_path):
    """Environment for a child Python with the import blocker; returns (env, log path)."""
    site = tmp_path / "blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "blocked.log"
    log.write_text("")
    env = dict(os.environ, PYTHONPATH=str(site), BEV_BLOCKED_LOG=str(log))
    return env, log


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_imports_without_ros_or_yaml(blocked_env):
    env, log = blocked_env
    env["PYTHONPATH"] += os.pathsep + str(REPO_ROOT)
    code = ("import json, runpy, sys, os\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='gpu_check')\n"
            "print('ATTEMPTS', json.dumps(open(os.environ['BEV_BLOCKED_LOG']).read().split()))\n"
            "print('LOADED', json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'yaml'))))\n"
            "try:\n    import rclpy\nexcept ImportError:\n    print('PROBE_BLOCKED')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    assert json.loads(lines["ATTEMPTS"]) == []          # nothing even tried to import them
    assert json.loads(lines["LOADED"]) == []
    assert "PROBE_BLOCKED" in res.stdout                 # the blocker was active
    assert log.read_text().split() == ["rclpy"]          # ... and logged only the probe


def test_make_gpu_check_on_cpu(blocked_env, tmp_path):
    env, log = blocked_env
    out = tmp_path / "report.json"
    cmd = ["make", "-s", "gpu-check", "DEVICE=cpu", f"GPU_CHECK_PYTHON={sys.executable}",
           f"GPU_CHECK_OUT={out}", "GPU_CHECK_ARGS=--frames 3 --warmup 1 --clouds 2"]
    res = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert log.read_text() == ""
    r = json.loads(out.read_text())
    assert r["schema"] == "bev_mtl_ros.gpu_check/1" and r["device"] == "cpu"
    assert r["passed"] is True and r["failures"] == [] and r["errors"] == {}
    assert r["environment"]["ros_or_yaml_loaded"] == []

    # models: read from the files / built with the package's constructors, nothing hard-coded
    _net, shipped, _ = load_checkpoint(str(REPO_ROOT / "models" / "bev_mtl_default.pt"))
    assert r["models"]["shipped"]["grid_size"] == list(shipped.grid_size)
    assert r["models"]["shipped"]["image_size"] == list(shipped.image_size)
    assert r["models"]["default_width"]["grid_size"] == list(ModelContract().grid_size)

    # pillarization parity: 2 contracts x 2 scenarios (20k, 120k points), both clouds each
    pp = r["pillarize_parity"]
    assert {(p["contract_of"], p["points"]) for p in pp} == {
        (m, n) for m in ("shipped", "default_width") for n in (20_000, 120_000)}
    for p in pp:
        assert p["passed"] and p["same_pillars"] and p["max_abs_diff"] == 0.0
        assert len(p["pillars"]) == 2 and min(p["pillars"]) > 0 and p["atol"] == 1e-5

    # head parity: onnxruntime CPU vs PyTorch CPU on every head, camera on and off; FP16 skipped
    bp = {(b["variant"], b.get("camera_valid")): b for b in r["backend_parity"]}
    for cam in (1.0, 0.0):
        b = bp[("onnxruntime cpu fp32", cam)]
        assert b["passed"] and set(b["heads"]) == set(OUTPUT_NAMES)
        assert all(0.0 <= h["error"] <= b["tolerance"] == 1e-4 for h in b["heads"].values())
        assert b["semantic_argmax_agreement"] > 0.99
    assert bp[("pytorch fp16 autocast", None)]["result"] == "skipped: CUDA only"

    # timing: every model x variant x scenario, every stage, 3 frames, positive
    rows = {(t["model"], t["variant"], t["scenario"]): t for t in r["timing"]}
    assert set(rows) == {(m, v, s) for m, v in (("shipped", "pytorch cpu fp32"),
                                                ("default_width", "pytorch cpu fp32"),
                                                ("shipped", "onnxruntime cpu fp32"))
                         for s in ("a2d2_front_center", "lidar360_64beam")}
    for t in rows.values():
        st = t["stages_ms"]
        assert set(st) == set(TIMING_KEYS) and all(st[k]["n"] == 3 for k in TIMING_KEYS)
        assert all(st[k]["p50"] > 0 for k in TIMING_KEYS)
        assert st["total"]["p50"] >= st["network"]["p50"]
        assert t["image_size"] == [1920, 1208] and min(t["pillars"]) > 0
    assert r["verdict"]["a2d2_front_center"]["target_met"] is None     # judged on CUDA only

    # what a CPU cannot run is reported as such
    assert r["acceleration"]["result"].startswith("skipped")
    for prov in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        assert r["onnxruntime_gpu"][prov].startswith("not available")
    table = out.with_suffix(".md").read_text()
    assert "PASSED" in table and "lidar360_64beam" in table


def test_comparisons_detect_differences():
    gc = _load_script()
    c = ModelContract()
    pts = synthetic_scan(5000, "front", seed=3)
    a, b = pillarize(pts, c), pillarize(pts, c)
    ok = gc.compare_pillars(a, b)
    assert ok["passed"] and ok["same_pillars"] and ok["max_abs_diff"] == 0.0

    b.pillars[0, 0, 3] += 2e-5                      # one intensity off by 2e-5 > 1e-5
    bad = gc.compare_pillars(a, b)
    assert not bad["passed"] and bad["same_pillars"]
    assert bad["max_abs_diff"] == pytest.approx(2e-5, rel=0.05)

    moved = pillarize(pts, c)
    moved.num_points[5] -= 1                                    # a pillar lost a point
    res = gc.compare_pillars(a, moved)
    assert not res["passed"] and res["mismatch"] == "num_points differs in 1 rows"

    rng = np.random.default_rng(0)
    ref = {k: rng.normal(size=(1, 3, 8, 8)).astype(np.float32) for k in OUTPUT_NAMES}
    ref["semantic"] *= 20.0                                     # logits: scale 20 -> relative
    got = {k: torch.from_numpy(v.copy()) for k, v in ref.items()}
    assert gc.compare_heads(ref, got, 1e-4)["passed"]
    got["semantic"][0, 0, 0, 0] += 0.5                          # 0.5 / ~60 > 1e-3
    res = gc.compare_heads(ref, got, 1e-3)
    assert not res["passed"] and res["worst_head"] == "semantic"
    assert [k for k, h in res["heads"].items() if not h["passed"]] == ["semantic"]
    assert gc.compare_heads(ref, got, 1e-2)["passed"]

    assert gc.exit_code({"failures": []}) == 0
    assert gc.exit_code({"failures": ["pillarize shipped: num_points differs"]}) == 1


def test_padded_static_inputs_give_the_same_outputs():
    """The premise of the CUDA-graph / compiled variants, checked on the CPU.

    Padding a frame to max_pillars (fill_static) leaves every output head unchanged.
    """
    gc = _load_script()
    net, contract, _ = load_checkpoint(str(REPO_ROOT / "models" / "bev_mtl_default.pt"))
    wrapper = DeployWrapper(net).eval()
    b = pillarize(synthetic_scan(20_000, "front", seed=1), contract)
    wi, hi = contract.image_size
    image = torch.rand((1, 3, hi, wi), generator=torch.Generator().manual_seed(0))
    frame = (b.pillars, b.num_points, b.canvas_index.unsqueeze(0), image, torch.ones(1))
    static = gc.static_inputs(contract, torch.device("cpu"))
    static[1].fill_(3)                                 # stale counts of an earlier, larger frame
    gc.fill_static(static, *frame)
    assert static[0].shape[0] == contract.max_pillars > b.num_pillars
    assert int(static[1][b.num_pillars:].abs().sum()) == 0
    with torch.inference_mode():
        ref, got = wrapper(*frame), wrapper(*static)
    for name, r, g in zip(OUTPUT_NAMES, ref, got):
        assert torch.allclose(r, g, rtol=1e-5, atol=1e-6), name
    with pytest.raises(gc.BackendError, match="exceed max_pillars"):
        gc.fill_static(static, torch.zeros((contract.max_pillars + 1, 1, 1)), *frame[1:])
