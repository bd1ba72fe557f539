"""``bev-mtl-ros train``: train the multi-task network on A2D2-format data (CPU, one GPU, or DDP).

This module holds the training loop and the command; the config (``train/config.py``), the
distributed context (``train/distributed.py``), the network + loss (``train/model_setup.py``),
the optimiser and schedule (``train/optim.py``) and the datasets (``train/dataset.py``) live in
their own modules.

Usage::

    bev-mtl-ros train --data A2D2_DIR --config config/train_default.yaml --out RUN_DIR \
        [--resume] [--epochs N] [--device cpu|cuda|cuda:1] [--cache-dir DIR]
    torchrun --nproc_per_node 4 -m bev_mtl_ros.cli train --data ... --device cuda   # DDP

Config YAML (every key optional; defaults in :data:`DEFAULT_CONFIG`)::

    contract: {...}        # ModelContract overrides (point_cloud_range, pillar_size,
                           # image_size, ...)
    model: {...}           # BevMultiTaskNet widths (see model/network.py DEFAULT_WIDTHS) and
                           # pretrained: bool, freeze_camera_levels: 0..4,
                           # freeze_pretrained_batchnorm: bool (see build_model)
    optimizer: {lr, weight_decay, schedule: onecycle|cosine|constant, pct_start, warmup_epochs,
                grad_clip, betas, lr_scale: {network submodule: factor}}
    loss: {task_weights: {detection, drivable, semantic}, reg_weights: {offset, z, size, rot},
           heatmap_weight, dice_weight, uncertainty: bool,
           semantic_class_weights: null | enet | [S floats], semantic_enet_c}
    augment: {...}         # train/augment.py AugmentConfig
    camera_dropout: 0.1    # probability of training a sample lidar-only (camera_valid = 0)
    real_data: {repeats, crop_scale, box_repeats}   # camera + label frames given with
                           # --real-data: each listed `repeats` times per epoch, random resized
                           # crops, semantic loss only; those with lidar + label3D also listed
                           # `box_repeats` times as full samples (default 0)
    data: {semantic: true} # false: the --data frames' semantic labels are ignored, so the
                           # semantic head learns from the --real-data frames only (synthetic
                           # images teach a head street scenes that real cameras do not show)
    init_from: PATH        # start from this model file's weights (e.g. models/bev_mtl_default.pt:
                           # a fine-tuning stage); fresh optimiser and schedule (--init-from)
    init_exclude: [NAME]   # top-level submodules of the network (e.g. semantic_head) that keep
                           # their fresh initialisation when init_from loads the other weights
    extends: OTHER.yaml    # merge this file over another config (relative path)
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
import itertools
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.runtime.checkpoint import save_checkpoint
from bev_mtl_ros.train.config import (DEFAULT_CONFIG, ConfigError, contract_from_config,
                                      load_config, merge_config, seed_everything)
from bev_mtl_ros.train.augment import AugmentConfig
from bev_mtl_ros.train.dataset import (A2D2TrainDataset, MixedDataset, RealCameraDataset,
                                       TrainDataset, collate_batch)
from bev_mtl_ros.train.distributed import DistContext, resolve_device
from bev_mtl_ros.train.model_setup import (MODEL_INIT_KEYS, TrainModule, build_loss, build_model,
                                           init_weights, unwrap_ddp)
from bev_mtl_ros.train.optim import build_optimizer

#: the training API in one place (``bev_mtl_ros.train.train``), whichever module defines a name
__all__ = ["train", "build_train_set", "make_loader", "recalibrate_batchnorm", "save_model_file",
           "load_training_state", "add_arguments", "main", "DEFAULT_CONFIG", "ConfigError",
           "merge_config", "load_config", "contract_from_config", "seed_everything",
           "DistContext", "resolve_device", "TrainModule", "MODEL_INIT_KEYS", "build_model",
           "build_loss", "build_optimizer", "init_weights"]

LOG = logging.getLogger("bev_mtl_ros.train")


# ------------------------------------------------------------------------------- checkpoints
def save_model_file(path: str, net: nn.Module, contract: ModelContract,
                    extra: Optional[Dict[str, Any]] = None) -> None:
    """Write the model checkpoint atomically.

    ``runtime.checkpoint.save_checkpoint``: contract, widths, state_dict; ``extra`` = training
    state for resume.
    """
    save_checkpoint(path, net, contract, extra=extra)


def load_training_state(path: str) -> Dict[str, Any]:
    """Read ``last.pt``: {"contract", "state_dict", "extra": {optimizer, scheduler, epoch...}}."""
    return torch.load(path, map_location="cpu", weights_only=True)


def recalibrate_batchnorm(net: nn.Module, batches, device: torch.device) -> int:
    """Re-estimate every BatchNorm's running statistics as the exact average over ``batches``.

    BN layers here use momentum 0.01 (CenterPoint's setting), so their running statistics lag the
    weights by ~100 steps; short runs (tests, CPU training) evaluate better after this pass.
    For batch k (0-based) the momentum is set to 1/(k+1), which makes the running value the plain
    mean of the per-batch statistics (works for nn.BatchNorm* and
    model.pillar_net.MaskedBatchNorm1d). ``batches`` yields (inputs, targets, meta) like the
    training loader. Returns the batches used. Only the BatchNorms that train with the network
    are re-estimated: those that stay in eval mode when it trains keep their statistics, the layers
    after them were trained against those (frozen camera levels, ``freeze_camera_levels``; frozen
    statistics, ``FrozenStatisticsBatchNorm2d`` of ``model.freeze_pretrained_batchnorm``).
    """
    was_training = net.training
    net.train()
    bns = [m for m in net.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not bns:
        net.train(was_training)
        return 0
    saved = [m.momentum for m in bns]
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
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.train(was_training)   # every layer back to the network's mode (frozen ones stay in eval)
    return n


# ------------------------------------------------------------------------------- training
def make_loader(train_set: TrainDataset, cfg: Dict[str, Any], sampler=None, seed: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """Return the training DataLoader (collate: ``train.dataset.collate_batch``).

    Workers are NOT persistent: each epoch starts fresh workers that copy the dataset *after*
    ``set_epoch``, so every epoch draws new augmentations (persistent workers would keep the
    epoch-0 copy and repeat the same augmented samples every epoch).
    """
    nw = int(cfg.get("num_workers", 0))
    return DataLoader(train_set, batch_size=int(cfg["batch_size"]), shuffle=sampler is None,
                      sampler=sampler, num_workers=nw, collate_fn=collate_batch, drop_last=False,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False,
                      pin_memory=pin_memory)


@dataclass
class _Run:
    """Everything one call of :func:`train` works with (built by :func:`_build_run`)."""

    cfg: Dict[str, Any]
    contract: ModelContract
    dev: torch.device
    dist_ctx: DistContext
    train_set: TrainDataset
    module: nn.Module              # TrainModule, DDP-wrapped once :func:`_wrap_ddp` ran
    sampler: Optional[DistributedSampler]
    loader: DataLoader
    opt: torch.optim.Optimizer
    sched: Any
    steps_per_epoch: int
    epochs: int
    out_dir: Optional[str]
    last_path: Optional[str]
    start_epoch: int = 0
    steps: int = 0                 # optimiser steps done in this call
    history: List[Dict[str, Any]] = field(default_factory=list)


def _build_run(cfg: Dict[str, Any], train_set: TrainDataset, out_dir: Optional[str], device: str,
               dist_ctx: DistContext) -> _Run:
    """Set up device, threads, seeds, network + loss, sampler, loader, optimiser and schedule.

    Raises ConfigError when the dataset's contract differs from the config's, ``init_exclude``
    is set without ``init_from``, or ``model.freeze_pretrained_batchnorm`` without pretrained
    weights (``model.pretrained`` or ``init_from``) whose statistics it would keep.
    """
    if cfg.get("init_exclude") and not cfg.get("init_from"):
        raise ConfigError("init_exclude needs init_from (the model file whose other weights "
                          "are loaded)")
    model_cfg = dict(cfg.get("model") or {})
    if (model_cfg.get("freeze_pretrained_batchnorm") and not model_cfg.get("pretrained")
            and not cfg.get("init_from")):
        raise ConfigError("model.freeze_pretrained_batchnorm needs pretrained: true or init_from "
                          "(it keeps the loaded weights' BatchNorm statistics)")
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
    train_set.seed = seed
    if cfg.get("init_from"):  # every weight comes from the file: no ImageNet load to overwrite
        model_cfg["pretrained"] = False
    net = build_model(contract, model_cfg)
    if cfg.get("init_from"):
        init_weights(net, contract, str(cfg["init_from"]),
                     exclude=tuple(cfg.get("init_exclude") or ()))
    module = TrainModule(net, build_loss(cfg, train_set)).to(dev)
    epochs = int(cfg["epochs"])
    sampler = (DistributedSampler(train_set, num_replicas=dist_ctx.world_size, rank=dist_ctx.rank,
                                  shuffle=True, seed=seed, drop_last=False)
               if dist_ctx.distributed else None)
    loader = make_loader(train_set, cfg, sampler, seed, pin_memory=dev.type == "cuda")
    steps_per_epoch = max(1, len(loader))
    opt, sched = build_optimizer(module, cfg, steps_per_epoch, epochs)
    return _Run(cfg=cfg, contract=contract, dev=dev, dist_ctx=dist_ctx, train_set=train_set,
                module=module, sampler=sampler, loader=loader, opt=opt, sched=sched,
                steps_per_epoch=steps_per_epoch, epochs=epochs, out_dir=out_dir,
                last_path=os.path.join(out_dir, "last.pt") if out_dir else None)


def _resume(run: _Run) -> None:
    """Load ``run.last_path`` into the run: weights, loss state, optimiser, schedule, history.

    The schedule is restored as saved when its length is unchanged, else the new schedule is
    fast-forwarded to the resumed epoch. Raises ConfigError when the checkpoint's contract differs
    from the config's.
    """
    ck = load_training_state(run.last_path)
    extra = ck.get("extra") or {}
    saved = ModelContract.from_dict(ck["contract"])
    if saved.mismatches(run.contract):
        raise ConfigError(f"{run.last_path}: checkpoint contract differs from the config's: "
                          f"{sorted(saved.mismatches(run.contract))}")
    run.module.net.load_state_dict(ck["state_dict"])
    if extra.get("loss_state"):
        run.module.loss_fn.load_state_dict(extra["loss_state"])
    run.opt.load_state_dict(extra["optimizer"])
    run.start_epoch = int(extra["epoch"]) + 1
    total = run.steps_per_epoch * run.epochs
    saved_sched = extra.get("scheduler") or {}
    if saved_sched.get("total_steps", total) == total and saved_sched:
        run.sched.load_state_dict(saved_sched)
    else:
        # epochs (or data size) changed: position the new schedule where this run would be
        LOG.warning("LR schedule length changed on resume; fast-forwarding the new schedule "
                    "to epoch %d", run.start_epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(min(run.start_epoch * run.steps_per_epoch, total - 1)):
                run.sched.step()
    run.history = list(extra.get("history", []))
    if run.dist_ctx.is_main:
        LOG.info("resumed from %s: continuing with epoch %d", run.last_path, run.start_epoch + 1)


def _wrap_ddp(run: _Run) -> None:
    """Wrap the module in DistributedDataParallel when more than one process trains."""
    if run.dist_ctx.distributed:
        dev = run.dev
        run.module = DistributedDataParallel(
            run.module, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=bool(run.cfg.get("find_unused_parameters", False)))


def _write_config(run: _Run) -> None:
    """Write the resolved config to ``out_dir/config.yaml`` (rank 0, when there is a run dir)."""
    if run.out_dir and run.dist_ctx.is_main:
        os.makedirs(run.out_dir, exist_ok=True)
        with open(os.path.join(run.out_dir, "config.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(run.cfg, f, sort_keys=False)


def _train_step(run: _Run, inputs: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor],
                epoch: int) -> Dict[str, float]:
    """One optimiser step on one batch; returns the loss terms.

    Raises FloatingPointError when the loss is NaN/inf (names the epoch, step and terms).
    """
    dev = run.dev
    inputs = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
    targets = {k: v.to(dev, non_blocking=True) for k, v in targets.items()}
    total, _out, terms = run.module(inputs, targets)
    if not torch.isfinite(total):
        raise FloatingPointError(f"non-finite loss at epoch {epoch + 1}, step {run.steps}: "
                                 f"{terms}")
    run.opt.zero_grad(set_to_none=True)
    total.backward()
    clip = float(run.cfg["optimizer"].get("grad_clip") or 0)
    if clip > 0:
        nn.utils.clip_grad_norm_(run.module.parameters(), clip)
    run.opt.step()
    run.sched.step()
    run.steps += 1
    return terms


def _train_epoch(run: _Run, epoch: int, progress: bool,
                 max_steps: Optional[int]) -> Tuple[int, Dict[str, float], List[float]]:
    """Train one epoch (or until ``max_steps`` steps in total).

    Returns (iterations, summed loss terms, seconds per iteration).
    """
    run.module.train()
    sums: Dict[str, float] = {}
    n = 0
    log_every = max(1, int(run.cfg.get("log_every", 10)))
    it = run.loader
    bar = None
    if progress and run.dist_ctx.is_main:
        from tqdm import tqdm
        bar = it = tqdm(run.loader, desc=f"epoch {epoch + 1}/{run.epochs}", unit="it",
                        mininterval=2.0, dynamic_ncols=True)
    t_iter = time.perf_counter()
    iter_times: List[float] = []
    for inputs, targets, _meta in it:
        terms = _train_step(run, inputs, targets, epoch)
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
            elif run.dist_ctx.is_main:
                LOG.info("epoch %d step %d/%d  %.2f s/it  %s", epoch + 1, n, run.steps_per_epoch,
                         float(np.median(iter_times[-log_every:])), shown)
        if max_steps is not None and run.steps >= max_steps:
            break
    if bar is not None:
        bar.close()
    return n, sums, iter_times


def _save_epoch(run: _Run, epoch: int, rec: Dict[str, Any]) -> None:
    """Log the epoch record; write model.pt, last.pt and a history line (rank 0, with out_dir)."""
    if not run.dist_ctx.is_main:
        return
    LOG.info("epoch %d: %s", epoch + 1,
             json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}))
    if not run.out_dir:
        return
    base = unwrap_ddp(run.module)
    save_model_file(os.path.join(run.out_dir, "model.pt"), base.net, run.contract)
    save_model_file(run.last_path, base.net, run.contract, extra={
        "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(), "epoch": epoch,
        "loss_state": base.loss_fn.state_dict(), "config": run.cfg, "history": run.history})
    with open(os.path.join(run.out_dir, "history.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def _recalibrate(run: _Run) -> None:
    """Re-estimate BatchNorm statistics over ``bn_recalibration_batches`` batches and save."""
    nrecal = int(run.cfg.get("bn_recalibration_batches", 0) or 0)
    if nrecal <= 0 or run.steps <= 0:
        return
    base = unwrap_ddp(run.module)
    used = recalibrate_batchnorm(base.net, itertools.islice(iter(run.loader), nrecal), run.dev)
    if run.dist_ctx.is_main:
        LOG.info("BatchNorm statistics re-estimated over %d batches", used)
        if run.out_dir:
            save_model_file(os.path.join(run.out_dir, "model.pt"), base.net, run.contract)


def train(cfg: Dict[str, Any], train_set: TrainDataset, out_dir: Optional[str],
          device: str = "cpu", resume: bool = False, dist_ctx: Optional[DistContext] = None,
          progress: bool = True, max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Train on ``train_set`` (a :class:`~bev_mtl_ros.train.dataset.TrainDataset`).

    Args:
        cfg: resolved config (see module docstring / :func:`load_config`).
        train_set: dataset whose items collate with ``train.dataset.collate_batch``; must have the
            same contract as ``contract_from_config(cfg)``. Its ``seed`` is set to the config's
            and ``set_epoch`` is called before every epoch.
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
    dist_ctx = dist_ctx or DistContext()
    run = _build_run(cfg, train_set, out_dir, device, dist_ctx)
    if resume and run.last_path and os.path.isfile(run.last_path):
        _resume(run)
    _wrap_ddp(run)
    _write_config(run)
    s_per_iter = float("nan")
    for epoch in range(run.start_epoch, run.epochs):
        if run.sampler is not None:
            run.sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        t_epoch = time.perf_counter()
        n, sums, iter_times = _train_epoch(run, epoch, progress, max_steps)
        means = dist_ctx.all_mean({k: v / max(1, n) for k, v in sums.items()}, run.dev)
        # first iterations include worker start-up: report the median
        s_per_iter = float(np.median(iter_times)) if iter_times else float("nan")
        rec = {"epoch": epoch + 1, "steps": n,
               "lr": max(float(g["lr"]) for g in run.opt.param_groups),
               "epoch_s": time.perf_counter() - t_epoch, "s_per_iter": s_per_iter, **means}
        run.history.append(rec)
        _save_epoch(run, epoch, rec)
        dist_ctx.barrier()
        if max_steps is not None and run.steps >= max_steps:
            break
    _recalibrate(run)
    base = unwrap_ddp(run.module)
    return {"model": base.net, "module": base, "history": run.history, "steps": run.steps,
            "s_per_iter": s_per_iter, "dist": dist_ctx}


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
    parser.add_argument("--init-from", default=None, metavar="MODEL_PT",
                        help="start from this model file's weights with a fresh optimiser, e.g. "
                             "to fine-tune models/bev_mtl_default.pt (config key init_from)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def build_train_set(data: str, cfg: Dict[str, Any], contract: ModelContract,
                    aug: AugmentConfig, cache_dir: str, camera: str = "front_center",
                    real_data: Optional[str] = None) -> Tuple[A2D2TrainDataset, TrainDataset]:
    """Return (the A2D2 set of ``data``, the training set: it, or it mixed with ``real_data``).

    Args:
        data: A2D2-format folder of full training frames (lidar, boxes, camera, labels).
        cfg: resolved config (keys camera_dropout, seed, real_data: {repeats, crop_scale,
            box_repeats}). ``real_data.box_repeats`` > 0 also lists the real frames that have
            lidar and ``label3D`` boxes that many times as full samples (every loss).
        contract: the model contract; aug: augmentation (``aug.enabled`` False = none).
        cache_dir: decoded-frame cache of ``data``.
        camera: A2D2 camera name.
        real_data: folder of real camera + label frames (semantic loss only), or None.
    Raises:
        FileNotFoundError: a folder holds no usable frame.
    """
    ds = A2D2TrainDataset(data, contract, cache_dir=cache_dir, camera=camera,
                          augment=aug if aug.enabled else None,
                          camera_dropout=float(cfg.get("camera_dropout", 0.0)),
                          seed=int(cfg.get("seed", 0)),
                          semantic_labels=bool((cfg.get("data") or {}).get("semantic", True)))
    if not real_data:
        return ds, ds
    rc = cfg.get("real_data") or {}
    real = RealCameraDataset(real_data, contract, repeats=int(rc.get("repeats", 1)),
                             crop_scale=tuple(rc.get("crop_scale", (0.4, 1.0))),
                             camera=camera,
                             augment=aug if aug.enabled else None,
                             seed=int(cfg.get("seed", 0)))
    LOG.info("real camera-only frames from %s: %d frames x %d repeats (semantic loss only)",
             real_data, real.num_frames, real.repeats)
    parts = [ds, real]
    box_repeats = int(rc.get("box_repeats", 0) or 0)
    if box_repeats > 0:
        try:
            boxes = A2D2TrainDataset(real_data, contract, cache_dir=cache_dir, camera=camera,
                                     require=("lidar", "label3D"), repeats=box_repeats,
                                     augment=aug if aug.enabled else None,
                                     camera_dropout=float(cfg.get("camera_dropout", 0.0)),
                                     seed=int(cfg.get("seed", 0)))
        except FileNotFoundError:
            LOG.warning("real_data.box_repeats: no real frame with lidar and label3D in %s",
                        real_data)
        else:
            LOG.info("real lidar + label3D frames from %s: %d frames x %d repeats (all losses)",
                     real_data, boxes.num_frames, boxes.repeats)
            parts.append(boxes)
    return ds, MixedDataset(parts)


def main(args: argparse.Namespace) -> int:
    """Run training from the command line; return 0 on success, 2 on a config/data error."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        if args.epochs is not None:
            cfg["epochs"] = int(args.epochs)
        if args.init_from:
            cfg["init_from"] = args.init_from
        contract = contract_from_config(cfg)
        aug = AugmentConfig.from_dict(cfg.get("augment"))
    except (ConfigError, ValueError, OSError) as e:
        LOG.error("%s", e)
        return 2
    dist_ctx = DistContext()
    try:
        cache = args.cache_dir or cfg.get("cache_dir") or os.path.join(args.out, "cache")
        ds, train_set = build_train_set(args.data, cfg, contract, aug, cache, args.camera,
                                        args.real_data)
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
