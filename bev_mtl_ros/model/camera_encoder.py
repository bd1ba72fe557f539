"""Small camera CNN giving multi-scale features at strides 4, 8, 16 and 32.

A plain VGG/ResNet-stem-like stack of 3x3 conv + BatchNorm + ReLU blocks (one strided conv and
``blocks`` unstrided ones per stage), sized for a 2-core CPU. The [0, 1] RGB input is normalised
with the contract's ``image_mean`` / ``image_std`` inside the network, so every backend feeds the same
raw image.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn as nn

from .bev_backbone import conv_bn_relu


class CameraEncoder(nn.Module):
    """Multi-scale camera backbone.

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
            raise ValueError(f"camera channels must be (C_stem, C4, C8, C16, C32), got {tuple(channels)}")
        cs, c4, c8, c16, c32 = (int(c) for c in channels)
        self.out_channels = (c4, c8, c16, c32)
        self.register_buffer("mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.stem = conv_bn_relu(3, cs, stride=2)

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(conv_bn_relu(c_in, c_out, stride=2), *[conv_bn_relu(c_out, c_out) for _ in range(blocks)])

        self.s4 = stage(cs, c4)
        self.s8 = stage(c4, c8)
        self.s16 = stage(c8, c16)
        self.s32 = stage(c16, c32)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = ((image - self.mean) * self.inv_std).contiguous(memory_format=torch.channels_last)
        c4 = self.s4(self.stem(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        return c4, c8, c16, c32
