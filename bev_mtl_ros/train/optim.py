"""Optimiser and learning-rate schedule of a training run (config section ``optimizer``).

AdamW over parameter groups (learning-rate factor per network submodule, no weight decay on
biases, norms and the uncertainty log-variances) and one of three schedules stepped once per
iteration: ``onecycle`` (``OneCycleLR``), ``cosine`` (linear warm-up, cosine decay to 1 %) or
``constant``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn

from bev_mtl_ros.train.config import ConfigError
from bev_mtl_ros.train.model_setup import unwrap_ddp

__all__ = ["build_optimizer", "build_schedule", "parameter_groups"]


def parameter_groups(module: nn.Module, oc: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Split the trainable parameters of a TrainModule (or its DDP wrapper) into AdamW groups.

    One group per (learning-rate factor, no weight decay) pair, in sorted order; the factor comes
    from ``oc["lr_scale"]`` by network submodule (``module.net.<name>``), weight decay is 0 for
    parameters with ndim <= 1. Each group: {"params", "lr": factor x ``oc["lr"]``,
    "weight_decay"}. Raises ConfigError for an ``lr_scale`` name that is not a submodule of the
    network.
    """
    lr = float(oc["lr"])
    scales = {str(k): float(v) for k, v in (oc.get("lr_scale") or {}).items()}
    net_children = {n for n, _ in unwrap_ddp(module).net.named_children()}
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
    return [{"params": ps, "lr": lr * scale, "weight_decay": 0.0 if no_decay else wd}
            for (scale, no_decay), ps in sorted(groups.items(), key=lambda kv: kv[0])]


def build_schedule(opt: torch.optim.Optimizer, oc: Dict[str, Any], steps_per_epoch: int,
                   epochs: int):
    """Return the LR scheduler of ``oc["schedule"]`` over ``steps_per_epoch * epochs`` steps.

    ``onecycle`` peaks at each group's learning rate after ``pct_start`` of the run (at least 2
    warm-up steps; runs under 4 steps use ``constant``); ``cosine`` warms up linearly over
    ``warmup_epochs`` and decays to 1 %. Raises ConfigError for another name.
    """
    total = max(1, steps_per_epoch * epochs)
    sched_name = oc.get("schedule", "onecycle")
    if sched_name == "onecycle" and total < 4:
        sched_name = "constant"  # too short for a warm-up phase
    if sched_name == "onecycle":
        max_lrs = [g["lr"] for g in opt.param_groups]
        pct = min(0.9, max(float(oc.get("pct_start", 0.15)), 2.0 / total))  # >= 2 warm-up steps
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lrs, total_steps=total,
                                                   pct_start=pct,
                                                   div_factor=10.0, final_div_factor=100.0)
    if sched_name == "cosine":
        warm = int(round(float(oc.get("warmup_epochs", 0)) * steps_per_epoch))

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            t = (step - warm) / max(1, total - warm)
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return torch.optim.lr_scheduler.LambdaLR(opt, f)
    if sched_name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    raise ConfigError(f"optimizer.schedule {sched_name!r}: use onecycle, cosine or constant")


def build_optimizer(module: nn.Module, cfg: Dict[str, Any], steps_per_epoch: int,
                    epochs: int) -> Tuple[torch.optim.Optimizer, Any]:
    """Return (AdamW, LR scheduler) for a :class:`TrainModule` (or its DDP wrapper).

    No weight decay on biases, norms and the uncertainty log-variances
    (:func:`parameter_groups`); schedule from :func:`build_schedule`.

    ``optimizer.lr_scale`` ({network submodule name: factor}, e.g. ``{camera: 0.3}``) gives the
    parameters of those submodules of the network (``module.net.<name>``) a learning rate of
    factor x ``lr`` throughout the schedule: the usual lower rate for an ImageNet-pretrained
    backbone being fine-tuned. Raises ConfigError for a name that is not a submodule of the
    network, or an unknown schedule.
    """
    oc = cfg["optimizer"]
    param_groups = parameter_groups(module, oc)
    opt = torch.optim.AdamW(param_groups, lr=float(oc["lr"]),
                            betas=tuple(oc.get("betas", (0.9, 0.999))))
    return opt, build_schedule(opt, oc, steps_per_epoch, epochs)
