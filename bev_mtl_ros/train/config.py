"""Training configuration: defaults, YAML loading and merging, the contract it sets, seeding.

The keys and their meaning are listed in the ``bev-mtl-ros train`` module docstring
(``train/train.py``); every key is optional and defaults to :data:`DEFAULT_CONFIG`.
"""

from __future__ import annotations

import copy
import os
import random
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from bev_mtl_ros.model.contract import ModelContract

__all__ = ["DEFAULT_CONFIG", "ConfigError", "merge_config", "load_config", "contract_from_config",
           "seed_everything"]

DEFAULT_CONFIG: Dict[str, Any] = {
    "contract": {},
    "model": {},
    "optimizer": {"lr": 2e-3, "weight_decay": 1e-2, "schedule": "onecycle", "pct_start": 0.15,
                  "warmup_epochs": 0, "grad_clip": 10.0, "betas": [0.9, 0.99]},
    "loss": {"task_weights": {"detection": 1.0, "drivable": 1.0, "semantic": 1.0},
             "reg_weights": {}, "heatmap_weight": 1.0, "dice_weight": 0.0, "uncertainty": False,
             "semantic_class_weights": None, "semantic_enet_c": 1.02},
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
    "init_from": None,
    "init_exclude": [],
    "data": {"semantic": True},
}


class ConfigError(ValueError):
    """A training config key or value is invalid; the message names it."""


def merge_config(base: Dict[str, Any], override: Dict[str, Any], path: str = "",
                 whole: Tuple[str, ...] = ("contract", "model")) -> Dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``.

    The top-level sections named in ``whole`` (by default ``contract`` and ``model``: a config's
    contract and widths are complete, not patches of the defaults) are replaced as a whole, other
    sections merged key by key. Raises ConfigError for an unknown top-level key.
    """
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if not path and k not in base:
            raise ConfigError(f"unknown training config key {k!r}; expected one of {sorted(base)}")
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not (not path and k in whole):
            out[k] = merge_config(out[k], v, path + k + ".", whole)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: Optional[str], _seen: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """Read a training YAML and merge it over :data:`DEFAULT_CONFIG`.

    A top-level ``extends: OTHER.yaml`` (a path relative to this file) merges this file over
    that one instead, e.g. a fine-tuning stage that changes a few keys of the main config; there
    every section merges key by key, ``contract`` and ``model`` too (a child that sets
    ``contract: {image_mean: ...}`` keeps the parent's range and pillar size).

    Raises:
        ConfigError: unreadable YAML, a top level that is not a mapping, an unknown key, an
        ``extends`` chain that loops.
    """
    if not path:
        return copy.deepcopy(DEFAULT_CONFIG)
    import yaml
    real = os.path.realpath(path)
    if real in _seen:
        raise ConfigError(f"{path}: 'extends' loops back to this file")
    with open(path, "r", encoding="utf-8") as f:
        try:
            d = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = d.pop("extends", None)
    if not parent:
        return merge_config(DEFAULT_CONFIG, d)
    base = load_config(os.path.join(os.path.dirname(path), str(parent)), _seen + (real,))
    return merge_config(base, d, whole=())


def contract_from_config(cfg: Dict[str, Any]) -> ModelContract:
    """Return the ModelContract with the config's overrides applied (validated)."""
    base = ModelContract().to_dict()
    base.update(cfg.get("contract") or {})
    return ModelContract.from_dict(base)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
