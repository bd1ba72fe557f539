"""DistributedDataParallel training on CPU: 2 processes with gloo, a few steps, equal weights.

Both ranks run ``bev_mtl_ros.train.train.train`` with the environment torchrun would set
(MASTER_ADDR=127.0.0.1, a free MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK). Each rank sees a
different shard (DistributedSampler), so equal final weights prove the gradients were averaged.
"""

import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp

from bev_mtl_ros.model.network import TINY_WIDTHS  # noqa: E402
from bev_mtl_ros.train import train as T  # noqa: E402
from bev_mtl_ros.train.augment import AugmentConfig  # noqa: E402
from bev_mtl_ros.train.dataset import InMemoryDataset  # noqa: E402

CFG = {
    "contract": {"point_cloud_range": [0.0, -5.12, -3.0, 10.24, 5.12, 3.0],
                 "pillar_size": [0.32, 0.32],
                 "image_size": [64, 32], "max_pillars": 400, "max_points_per_pillar": 8},
    "model": dict(TINY_WIDTHS),
    "batch_size": 2, "epochs": 2, "seed": 3, "num_workers": 0, "threads": 1,
    "optimizer": {"lr": 1e-2, "schedule": "constant"},
    "loss": {"uncertainty": True},
    "camera_dropout": 0.3,
}
MAX_STEPS = 3


def make_samples(contract, n=8, seed=0):
    rng = np.random.default_rng(seed)
    gw, gh = contract.grid_size
    wi, hi = contract.image_size
    out = []
    for i in range(n):
        pts = np.c_[rng.uniform(0, 10, 600), rng.uniform(-5, 5, 600), rng.uniform(-2, 1, 600),
                    rng.uniform(0, 255, 600)].astype(np.float32)
        box = (np.array([[rng.uniform(2, 8), rng.uniform(-3, 3), -1.0, 4.0, 1.8, 1.5,
                          rng.uniform(-3, 3)]], np.float32))
        out.append({"points": pts, "boxes": box, "labels": np.array([i % 2], np.int64),
                    "image": rng.integers(0, 256, (hi, wi, 3), dtype=np.uint8),
                    "semantic": rng.integers(0, 38, (hi, wi), dtype=np.uint8),
                    "drivable": rng.choice(np.array([0, 1, 255], np.uint8), size=(gh, gw)),
                    "key": f"s{i}"})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    cfg = T.merge_config(T.DEFAULT_CONFIG, CFG)
    contract = T.contract_from_config(cfg)
    ds = InMemoryDataset(make_samples(contract), contract, augment=AugmentConfig(rot_deg=3.0),
                         camera_dropout=cfg["camera_dropout"])
    ctx = T.DistContext()
    try:
        res = T.train(cfg, ds, out_dir if rank == 0 else None, device="cpu", dist_ctx=ctx,
                      progress=False, max_steps=MAX_STEPS)
        # parameters only: DDP broadcasts buffers (BN running stats) from rank 0 at each forward,
        # so after the last local forward they legitimately differ; rank 0 writes the checkpoint
        state = {k: v.detach().clone() for k, v in res["module"].named_parameters()}
        torch.save({"state": state, "steps": res["steps"]},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        ctx.close()


def test_ddp_two_cpu_ranks_end_with_equal_weights(tmp_path):
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["steps"] == r1["steps"] == MAX_STEPS
    cfg = T.merge_config(T.DEFAULT_CONFIG, CFG)
    contract = T.contract_from_config(cfg)
    T.seed_everything(cfg["seed"])
    init = (dict(T.TrainModule(T.build_model(contract, cfg["model"]),
                               T.build_loss(cfg)).named_parameters()))
    changed = 0
    for k, v0 in r0["state"].items():
        assert torch.equal(v0, r1["state"][k]), f"rank 0 and rank 1 differ in {k}"
        if not torch.equal(v0, init[k]):
            changed += 1
    float_params = len(init)
    assert changed > float_params // 2, (f"only {changed}/{float_params} tensors changed from the "
                                         "initial weights")
    assert not torch.equal(r0["state"]["loss_fn.uncertainty.log_vars"],
                           init["loss_fn.uncertainty.log_vars"])
    # only rank 0 wrote the run directory
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "last.pt").is_file()
