"""2D BEV backbone and neck over the pillar canvas (PointPillars / SECOND-style).

After Lang et al. 2019 Sec. 2.2 and Yan et al. 2018: a top-down path at strides 2 and 4 relative
to the pillar grid and an upsample + concatenate neck back to stride 2, then resampled to
``contract.bev_stride``.

The camera fusion (``model/fusion.py``) runs on the stride-4 map between :class:`BevBackbone` and
:class:`BevNeck`, where the BEV tokens are 16x fewer than pillars.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> ReLU.

    Input: (B, c_in, H, W). Output: (B, c_out, H / stride, W / stride).
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
    )


def deconv_bn_relu(c_in: int, c_out: int, factor: int = 2) -> nn.Sequential:
    """ConvTranspose2d (kernel = stride = factor) -> BatchNorm2d -> ReLU.

    Input: (B, c_in, H, W). Output: (B, c_out, H * factor, W * factor).
    """
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, factor, stride=factor, bias=False),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
    )


class BevBackbone(nn.Module):
    """Top-down BEV CNN with two stages.

    Constructor:
        in_channels: pillar feature channels C_p.
        channels: (C2, C4) output channels of the stride-2 and stride-4 stages.
        blocks: (n2, n4) extra 3x3 conv blocks after each stage's strided conv.

    Input: canvas (B, C_p, grid_h, grid_w).
    Output: (f2, f4) with f2 (B, C2, grid_h/2, grid_w/2) and f4 (B, C4, grid_h/4, grid_w/4).
    """

    def __init__(self, in_channels: int, channels: Tuple[int, int] = (48, 96),
                 blocks: Tuple[int, int] = (1, 2)):
        super().__init__()
        c2, c4 = int(channels[0]), int(channels[1])
        self.out_channels = (c2, c4)
        self.stage2 = nn.Sequential(conv_bn_relu(in_channels, c2, stride=2),
                                    *[conv_bn_relu(c2, c2) for _ in range(int(blocks[0]))])
        self.stage4 = nn.Sequential(conv_bn_relu(c2, c4, stride=2),
                                    *[conv_bn_relu(c4, c4) for _ in range(int(blocks[1]))])

    def forward(self, canvas: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f2 = self.stage2(canvas)
        f4 = self.stage4(f2)
        return f2, f4


class BevNeck(nn.Module):
    """Upsample, concatenate, mix and resample the stride-2 and stride-4 maps.

    Upsample the (fused) stride-4 map, concatenate with the stride-2 map, mix with a 1x1 conv,
    and resample to the detection stride.

    Constructor:
        channels: (C2, C4) input channels at strides 2 and 4.
        up_channels: channels of the upsampled stride-4 branch.
        out_channels: C_n, channels of the neck output.
        bev_stride: detection stride in pillars (1, 2 or 4; ``contract.bev_stride``).

    Input: f2 (B, C2, H/2, W/2), f4 (B, C4, H/4, W/4) with (H, W) = (grid_h, grid_w).
    Output: (n2, det) with n2 (B, C_n, H/2, W/2) the stride-2 features (used by the drivable head)
    and det (B, C_n, H/bev_stride, W/bev_stride) the detection features (``det is n2`` for stride
    2). Raises ValueError for an unsupported bev_stride.
    """

    def __init__(self, channels: Tuple[int, int], up_channels: int = 48, out_channels: int = 64,
                 bev_stride: int = 2):
        super().__init__()
        c2, c4 = int(channels[0]), int(channels[1])
        if bev_stride not in (1, 2, 4):
            raise ValueError("contract.bev_stride must be 1, 2 or 4 for this backbone, got "
                             f"{bev_stride}")
        self.bev_stride = int(bev_stride)
        self.out_channels = int(out_channels)
        self.up = deconv_bn_relu(c4, up_channels, 2)
        self.mix = conv_bn_relu(c2 + up_channels, out_channels, kernel=1)
        if bev_stride == 1:
            self.resample: nn.Module = deconv_bn_relu(out_channels, out_channels, 2)
        elif bev_stride == 4:
            self.resample = conv_bn_relu(out_channels, out_channels, stride=2)
        else:
            self.resample = nn.Identity()

    def forward(self, f2: torch.Tensor, f4: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        n2 = self.mix(torch.cat([f2, self.up(f4)], dim=1))
        return n2, self.resample(n2)
