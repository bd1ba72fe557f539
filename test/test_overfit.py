"""A tiny network overfits one hand-made frame.

The whole training path (pillarize -> targets -> network -> MultiTaskLoss -> AdamW) can learn,
and the heat-map peak lands on the box's cell.

150 optimiser steps of the tiny network: ~5 s on 2 idle cores.
"""

import math

import numpy as np
import pytest
import torch

from bev_mtl_ros.model.network import TINY_WIDTHS  # noqa: E402
from bev_mtl_ros.train import train as T  # noqa: E402
from bev_mtl_ros.train.dataset import InMemoryDataset, collate_batch  # noqa: E402

CFG = {
    "contract": {"point_cloud_range": [0.0, -10.24, -3.0, 20.48, 10.24, 3.0],
                 "pillar_size": [0.32, 0.32],
                 "image_size": [64, 32], "max_pillars": 2000, "max_points_per_pillar": 8},
    "model": dict(TINY_WIDTHS),
    "batch_size": 1, "epochs": 1, "seed": 0, "threads": 1,
    "optimizer": {"lr": 1e-2, "schedule": "constant", "weight_decay": 0.0},
    "augment": {"enabled": False},
}
BOX = np.array([12.3, 2.9, -1.0, 4.2, 1.8, 1.5, 0.4], np.float32)  # Car


def one_frame(contract):
    """Build a ground plane (z = -1.7) with a car-shaped point blob.

    Also a 2-class drivable split and a simple sky/road semantic image.
    """
    rng = np.random.default_rng(0)
    g = np.c_[rng.uniform(0, 20.4, 3000), rng.uniform(-10.2, 10.2, 3000), np.full(3000, -1.7),
              np.full(3000, 20.0)]
    # points on the box surface (box frame -> lidar frame)
    u = rng.uniform(-0.5, 0.5, (800, 3)) * BOX[3:6]
    c, s = math.cos(BOX[6]), math.sin(BOX[6])
    car = np.c_[BOX[0] + c * u[:, 0] - s * u[:, 1], BOX[1] + s * u[:, 0] + c * u[:, 1],
                BOX[2] + u[:, 2], np.full(800, 200.0)]
    pts = np.concatenate([g, car]).astype(np.float32)
    gw, gh = contract.grid_size
    drivable = np.zeros((gh, gw), np.uint8)
    drivable[: gh // 2] = 1  # y < 0 drivable
    drivable[:, :4] = 255
    wi, hi = contract.image_size
    semantic = np.full((hi, wi), 33, np.uint8)  # RD normal street
    semantic[: hi // 2] = 34  # Sky
    image = np.zeros((hi, wi, 3), np.uint8)
    image[: hi // 2] = (120, 160, 230)
    image[hi // 2:] = (90, 90, 90)
    return {"points": pts, "boxes": BOX[None], "labels": np.array([0]), "image": image,
            "semantic": semantic, "drivable": drivable, "key": "overfit"}


@pytest.fixture
def one_thread():
    """Use 1 torch thread here, restored for the rest of the suite.

    torch's thread count is process-wide.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # robust on a shared machine (OpenMP spin-waits with 2 threads)
    yield
    torch.set_num_threads(n)


def test_tiny_model_overfits_one_frame(one_thread):
    cfg = T.merge_config(T.DEFAULT_CONFIG, CFG)
    contract = T.contract_from_config(cfg)
    T.seed_everything(0)
    ds = InMemoryDataset([one_frame(contract)], contract)
    inputs, targets, _ = collate_batch([ds[0]])
    module = T.TrainModule(T.build_model(contract, cfg["model"]), T.build_loss(cfg))
    opt, sched = T.build_optimizer(module, cfg, steps_per_epoch=150, epochs=1)
    module.train()
    losses = []
    for _ in range(150):
        total, _out, terms = module(inputs, targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        sched.step()
        losses.append(terms)
    first, last = losses[0]["total"], np.mean([t["total"] for t in losses[-5:]])
    assert last <= 0.1 * first, f"loss fell only from {first:.3f} to {last:.3f}"
    for term in ("heatmap", "drivable", "semantic"):
        assert losses[-1][term] < 0.5 * losses[0][term], term
    # BN momentum is 0.01: re-estimate the running statistics on the frame before evaluating
    assert T.recalibrate_batchnorm(module.net, [(inputs, targets, None)], torch.device("cpu")) == 1
    module.eval()
    with torch.no_grad():
        out = module.net(inputs["pillars"], inputs["num_points"], inputs["canvas_index"],
                         inputs["image"], inputs["camera_valid"])
    hm = torch.sigmoid(out["heatmap"][0])
    k, iy, ix = np.unravel_index(int(torch.argmax(hm)), tuple(hm.shape))
    cell = contract.pillar_size[0] * contract.bev_stride
    x0, y0 = contract.point_cloud_range[:2]
    assert (k, iy, ix) == (0, int((BOX[1] - y0) // cell), int((BOX[0] - x0) // cell))
    assert float(hm.max()) > 0.3  # initial prior: sigmoid(-2.19) = 0.1
    _, eval_terms = module.loss_fn(out, targets)
    assert eval_terms["total"] <= 0.1 * first, eval_terms


def test_lr_scale_per_submodule():
    """optimizer.lr_scale: the camera encoder's groups follow the schedule.

    They run at 0.25 x the others' learning rate.
    """
    cfg = T.merge_config(T.DEFAULT_CONFIG,
                         {**CFG, "optimizer": {**CFG.get("optimizer", {}), "lr": 1e-3,
                                               "lr_scale": {"camera": 0.25}}})
    contract = T.contract_from_config(cfg)
    module = T.TrainModule(T.build_model(contract, cfg["model"]), T.build_loss(cfg))
    opt, sched = T.build_optimizer(module, cfg, steps_per_epoch=10, epochs=2)
    cam = {id(p) for p in module.net.camera.parameters()}
    for _ in range(5):
        opt.step()
        sched.step()
    lrs = {}
    for g in opt.param_groups:
        is_cam = {id(p) in cam for p in g["params"]}
        assert len(is_cam) == 1
        lrs.setdefault(is_cam.pop(), set()).add(round(g["lr"], 12))
    (cam_lr,), (other_lr,) = lrs[True], lrs[False]
    assert cam_lr == pytest.approx(0.25 * other_lr)
    bad = T.merge_config(cfg, {"optimizer": {"lr_scale": {"kamera": 0.5}}})
    with pytest.raises(T.ConfigError, match="kamera"):
        T.build_optimizer(module, bad, steps_per_epoch=10, epochs=2)
