"""ESPNetv2 semantic segmentation network (the Cityscapes-pretrained street-scene camera branch).

Mehta, Rastegari, Shapiro, Hajishirzi, "ESPNetv2: A Light-weight, Power Efficient, and General
Purpose Convolutional Neural Network", CVPR 2019. Written from the paper and from the key names
and tensor shapes of the state dicts in ``models/pretrained/`` (authors' EdgeNets release,
``models/pretrained/README.md``), so that those files load with ``strict=True``:

* **EESP unit** (paper Sec. 3.2, Fig. 1c/d): grouped 1x1 reduction to ``n = C_out / K`` channels
  (K = 4 groups), K parallel 3x3 depth-wise *dilated* convolutions (dilation rates from the
  level's receptive-field limit), hierarchical feature fusion (branch k adds branch k-1's output,
  against gridding), concatenation, BatchNorm + PReLU, grouped 1x1 expansion + BatchNorm, identity
  residual and PReLU.
* **Strided EESP with input reinforcement** (Sec. 3.2, Fig. 2): the EESP branch at stride 2 gives
  ``C_out - C_in`` channels, concatenated with a 3x3 stride-2 average pooling of the unit's input;
  the RGB image, average-pooled down to the same resolution, goes through a 3x3 conv and a 1x1 conv
  and is added (input reinforcement); PReLU.
* **Segmentation network** (Sec. 4.2, EdgeNets' variant of the decoder): the ImageNet backbone
  without its stride-32 level and classifier (levels at strides 2, 4, 8, 16), and a bottom-up
  decoder of *efficient pyramid pooling* modules (1x1 projection to 10 channels; one 3x3
  depth-wise conv per scale 2.0, 1.5, 1.0, 0.5, 0.1 of the map; channel shuffle; grouped 3x3 and
  1x1 merge) fused with the encoder's levels through channel-attention-weighted grouped 3x3 convs,
  x2 bilinear upsampling (align_corners=True) between levels; logits at stride 2, upsampled to the
  input. In the multi-task network's head (``model/heads.py``) that last upsampling runs, in eval
  mode, as constant-weight gathers (:func:`resize_bilinear`), so that ONNX Runtime reproduces it
  exactly.

Adaptive average pooling to a size that does not divide the input (the pyramid's 1.5x scale
pooled back to 1x; the 0.1x scale; any odd side) does not export to ONNX. :func:`adaptive_avg_pool`
computes it exactly in another form: separably, per axis, as a sum over a fixed number of
constant-index gathers with constant weights (output cell i averages input indices
floor(i * N / n) .. ceil((i + 1) * N / n) - 1, the definition of PyTorch's adaptive pooling);
when the input is an integer multiple of the output it is a plain ``avg_pool2d``.

Input everywhere: RGB normalised with the ImageNet mean / std (EdgeNets' transforms).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

#: ImageNet RGB mean / std the Cityscapes weights expect (images in [0, 1])
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Cityscapes training-set RGB mean / std (images in [0, 1]): the colour statistics of the images
#: the released weights were trained on (the commonly quoted figures, e.g. PyTorch Lightning
#: Bolts' Cityscapes data module)
CITYSCAPES_MEAN: Tuple[float, float, float] = (0.28689554, 0.32513303, 0.28389177)
CITYSCAPES_STD: Tuple[float, float, float] = (0.18696375, 0.19017339, 0.18720214)


def cityscapes_matched_normalisation(camera_mean: Sequence[float], camera_std: Sequence[float]
                                     ) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Contract ``image_mean`` / ``image_std`` mapping a camera's colours onto Cityscapes'.

    The mapping comes before the weights' ImageNet normalisation. The network computes
    (x - m) / s per channel. With the camera's per-channel pixel mean mu_c and std sigma_c
    (images in [0, 1]), this returns m, s such that
    (x - m) / s = ((x - mu_c) / sigma_c * sigma_cs + mu_cs - mu_in) / sigma_in,
    i.e. the camera's first two colour moments moved onto Cityscapes' (:data:`CITYSCAPES_MEAN` /
    :data:`CITYSCAPES_STD`), then :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` as the weights
    expect: m = mu_c - sigma_c (mu_cs - mu_in) / sigma_cs, s = sigma_c sigma_in / sigma_cs.

    Args: camera_mean, camera_std: three floats each (RGB), std > 0.
    Returns: (image_mean, image_std), three floats each.
    Raises: ValueError for other lengths or a non-positive std.
    """
    mu, sd = [float(v) for v in camera_mean], [float(v) for v in camera_std]
    if len(mu) != 3 or len(sd) != 3 or min(sd) <= 0.0:
        raise ValueError(f"camera colour statistics must be 3 means and 3 positive stds, got "
                         f"{mu}, {sd}")
    mean = tuple(m - s * (mc - mi) / sc for m, s, mc, mi, sc
                 in zip(mu, sd, CITYSCAPES_MEAN, IMAGENET_MEAN, CITYSCAPES_STD))
    std = tuple(s * si / sc for s, si, sc in zip(sd, IMAGENET_STD, CITYSCAPES_STD))
    return mean, std


#: Cityscapes' 19 training classes in trainId order, then the weights' background output
CITYSCAPES_CLASSES: Tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle", "background")

#: backbone widths per width multiplier s: (level1 stride 2, level2 stride 4, level3 stride 8,
#: level4 stride 16); paper Table 1 (EdgeNets' configuration of the released models)
ESPNETV2_CHANNELS: Dict[float, Tuple[int, int, int, int]] = {
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
#: EESP units after the strided unit of level 3 (stride 8) and level 4 (stride 16)
LEVEL_REPEATS: Tuple[int, int] = (3, 7)
#: receptive-field limit (largest effective 3x3-dilated kernel) of the strided units of levels
#: 2, 3, 4 and of the units of levels 3 and 4; later levels have smaller maps, smaller limits
RECEPTIVE_LIMITS: Dict[str, int] = {"level2_0": 13, "level3_0": 11, "level3": 9,
                                    "level4_0": 9, "level4": 7}
#: parallel branches (groups) K of every EESP unit
EESP_BRANCHES = 4
#: decoder widths of the released segmentation models (after the pyramid modules of strides 16,
#: 8, 4) and the pyramid's projection width
DECODER_CHANNELS: Tuple[int, int, int] = (64, 48, 32)
PYRAMID_PROJECTION = 10
#: the efficient pyramid pooling's scales, largest first
PYRAMID_SCALES: Tuple[float, ...] = (2.0, 1.5, 1.0, 0.5, 0.1)


# ------------------------------------------------------------------------------ exact pooling

def _pool_taps(n_in: int, n_out: int) -> Tuple[List[List[int]], List[List[float]]]:
    """Gather indices and weights of 1-D adaptive average pooling n_in -> n_out.

    Output cell i averages inputs floor(i * n_in / n_out) .. ceil((i + 1) * n_in / n_out) - 1
    (PyTorch's adaptive pooling windows). Returns (index, weight), each a list of L lists of
    n_out entries, L = the longest window; shorter windows repeat their last index with weight 0.
    """
    starts = [(i * n_in) // n_out for i in range(n_out)]
    ends = [-((-(i + 1) * n_in) // n_out) for i in range(n_out)]
    taps = max(e - s for s, e in zip(starts, ends))
    index, weight = [], []
    for j in range(taps):
        index.append([min(s + j, e - 1) for s, e in zip(starts, ends)])
        weight.append([1.0 / (e - s) if s + j < e else 0.0 for s, e in zip(starts, ends)])
    return index, weight


def _take(x: torch.Tensor, dim: int, index: List[int]) -> torch.Tensor:
    """``x`` at the constant indices ``index`` along ``dim`` (ONNX: Gather).

    In PyTorch along the last axis ``torch.gather`` with an expanded index (~10x faster there
    than ``index_select`` on CPU), ``index_select`` elsewhere and when exporting (ONNX Gather;
    GatherElements with its full-size index is ~3x slower in ONNX Runtime). Both select the same
    values: exact.
    """
    idx = torch.tensor(index, dtype=torch.int64, device=x.device)
    if dim != x.dim() - 1 or torch.onnx.is_in_onnx_export():
        # ONNX Gather along any axis is fast in ONNX Runtime; selection is exact either way
        return torch.index_select(x, dim, idx)
    shape = [1] * x.dim()
    shape[dim] = len(index)
    out_shape = list(x.shape)
    out_shape[dim] = len(index)
    return torch.gather(x, dim, idx.view(shape).expand(out_shape))


def _pool_axis(x: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    """Adaptive average pooling of ``x`` along ``dim`` to ``n_out`` by constant-index gathers."""
    n_in = int(x.shape[dim])
    if n_in == n_out:
        return x
    index, weight = _pool_taps(n_in, n_out)
    shape = [1] * x.dim()
    shape[dim] = n_out
    out = None
    for idx, wt in zip(index, weight):
        term = _take(x, dim, idx) * torch.tensor(wt, dtype=x.dtype, device=x.device).view(shape)
        out = term if out is None else out + term
    return out


def _lerp_taps(n_in: int, n_out: int) -> Tuple[List[int], List[int], List[float], List[float]]:
    """Taps of 1-D linear interpolation n_in -> n_out with align_corners=True.

    Output i samples input coordinate u = i (n_in - 1) / (n_out - 1) (0 when n_out == 1), computed
    in float64: out[i] = (1 - f) x[floor(u)] + f x[min(floor(u) + 1, n_in - 1)], f = u - floor(u).
    Returns (index0, index1, weight0, weight1), n_out entries each.
    """
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    i0, i1, w0, w1 = [], [], [], []
    for i in range(n_out):
        u = i * scale
        lo = min(int(math.floor(u)), n_in - 1)
        frac = u - lo
        i0.append(lo)
        i1.append(min(lo + 1, n_in - 1))
        w0.append(1.0 - frac)
        w1.append(frac)
    return i0, i1, w0, w1


def _lerp_axis(x: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    """Linear interpolation (align_corners=True) of ``x`` along ``dim`` by constant gathers."""
    n_in = int(x.shape[dim])
    if n_in == n_out:
        return x
    i0, i1, w0, w1 = _lerp_taps(n_in, n_out)
    shape = [1] * x.dim()
    shape[dim] = n_out

    def weight(v: list) -> torch.Tensor:
        return torch.tensor(v, dtype=x.dtype, device=x.device).view(shape)

    return _take(x, dim, i0) * weight(w0) + _take(x, dim, i1) * weight(w1)


def resize_bilinear(x: torch.Tensor, size: Tuple[int, int], exact: bool = True) -> torch.Tensor:
    """Bilinear resize with align_corners=True.

    Input (B, C, H, W) float; size (h, w). Output (B, C, h, w).

    ``exact`` (the decoder's final upsampling to the input size, in eval mode / ONNX export):
    separable constant-weight gathers, so that the exported graph (Gather, Mul, Add with constant
    weights) computes exactly what PyTorch computes. ONNX Runtime's Resize differs from PyTorch's
    kernel by up to ~2e-5 of the value range (sampling coordinates rounded differently); on the
    final logits that alone took the semantic output to the export's 1e-4 parity limit (measured
    at 512x320, random image: 9.0e-5 to 1.0e-4 with ``F.interpolate`` everywhere, 5.8e-5 with
    the final upsampling exact, 1.5e-5 with every resize exact; ONNX Runtime 1 thread: every
    resize exact costs ~45 ms per frame, the final one ~10-25 ms). ``exact=False``:
    ``F.interpolate`` (ONNX Resize), the same function (sampling coordinates in float32 there,
    float64 here: ~1e-6 relative apart), faster forward and backward.
    """
    if not exact:
        return F.interpolate(x, (int(size[0]), int(size[1])), mode="bilinear",
                             align_corners=True)
    # the last axis first: its gathers are the slower ones, and run on fewer rows when upsampling
    return _lerp_axis(_lerp_axis(x, 3, int(size[1])), 2, int(size[0]))


def adaptive_avg_pool(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Exact, ONNX-exportable equivalent of ``F.adaptive_avg_pool2d(x, size)``.

    Input (B, C, H, W) float; size (h, w) ints >= 1. Output (B, C, h, w). When H and W are
    integer multiples of h and w: ``avg_pool2d`` with kernel = stride = the ratio (the same
    windows); otherwise separable constant-index gathers (:func:`_pool_taps`), equal to the
    adaptive pooling up to float summation order (~1e-7 relative). Sizes are fixed when traced.
    """
    h_in, w_in = int(x.shape[-2]), int(x.shape[-1])
    h, w = int(size[0]), int(size[1])
    if h_in % h == 0 and w_in % w == 0:
        kh, kw = h_in // h, w_in // w
        return x if kh == kw == 1 else F.avg_pool2d(x, (kh, kw), (kh, kw))
    return _pool_axis(_pool_axis(x, 2, h), 3, w)


# ------------------------------------------------------------------------------ building blocks
# Two naming schemes, as in the released state dicts: the backbone's ``conv`` / ``bn`` / ``act``
# attributes, the decoder's ``cbr`` / ``br`` Sequentials.

class ConvBnPrelu(nn.Module):
    """Conv2d ('same' padding, no bias) -> BatchNorm2d -> PReLU (per channel), backbone naming.

    Input (B, c_in, H, W) -> output (B, c_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvBn(nn.Module):
    """Conv2d ('same' padding, no bias) -> BatchNorm2d, backbone naming."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BnPrelu(nn.Module):
    """BatchNorm2d -> PReLU, backbone naming."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class DilatedDepthwise(nn.Module):
    """3x3 depth-wise conv with dilation d ('same' padding d), stride 1 or 2, no bias."""

    def __init__(self, channels: int, dilation: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride, dilation, dilation=dilation,
                              groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def eesp_dilations(limit: int, branches: int = EESP_BRANCHES) -> Tuple[int, ...]:
    """Dilation rates of an EESP unit's branches for receptive-field limit ``limit``.

    Branch k would have an effective kernel 3 + 2k (dilation k + 1); kernels beyond ``limit``
    fall back to 3 (dilation 1); sorted ascending so hierarchical fusion adds small receptive
    fields into larger ones (paper Sec. 3.2). E.g. limit 9 -> (1, 2, 3, 4), 7 -> (1, 1, 2, 3).
    """
    kernels = sorted(3 + 2 * k if 3 + 2 * k <= limit else 3 for k in range(branches))
    return tuple((k - 1) // 2 for k in kernels)


class EESP(nn.Module):
    """Extremely Efficient Spatial Pyramid unit (paper Sec. 3.2, Fig. 1d).

    Constructor: c_in, c_out channels (c_out divisible by ``branches``); stride 1 or 2;
    limit: receptive-field limit (:func:`eesp_dilations`); branches: K.

    Input (B, c_in, H, W). Output (B, c_out, H / stride, W / stride): at stride 1,
    PReLU(expansion + input) (the residual when c_in == c_out); at stride 2 the expansion alone,
    before any activation (:class:`StridedEESP` concatenates and activates it).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, limit: int = 7,
                 branches: int = EESP_BRANCHES):
        super().__init__()
        if c_out % branches:
            raise ValueError(f"EESP output channels {c_out} not divisible by {branches} branches")
        n = c_out // branches
        self.stride = int(stride)
        self.proj_1x1 = ConvBnPrelu(c_in, n, 1, groups=branches)
        self.spp_dw = nn.ModuleList([DilatedDepthwise(n, d, stride)
                                     for d in eesp_dilations(limit, branches)])
        self.conv_1x1_exp = ConvBn(c_out, c_out, 1, groups=branches)
        self.br_after_cat = BnPrelu(c_out)
        self.module_act = nn.PReLU(c_out)  # unused at stride 2 (present in the weights)
        self.residual = self.stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        outs = [self.spp_dw[0](reduced)]
        for branch in list(self.spp_dw)[1:]:
            outs.append(branch(reduced) + outs[-1])  # hierarchical feature fusion
        y = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
        if self.stride == 2:
            return y
        return self.module_act(y + x if self.residual else y)


class StridedEESP(nn.Module):
    """Strided EESP with input reinforcement (paper Sec. 3.2, Fig. 2): halves the resolution.

    Constructor: c_in, c_out (c_out > c_in, c_out - c_in divisible by 4); limit: the EESP
    branch's receptive-field limit; reinforce: add the image branch.

    forward(x, image): x (B, c_in, H, W); image (B, 3, H / 2, W / 2) or None: the normalised RGB
    image already average-pooled to the output resolution (:meth:`ESPNetV2Backbone.forward`).
    Output (B, c_out, H / 2, W / 2) = PReLU(concat(avgpool3x3s2(x), EESP_s2(x)) [+ conv(image)]).
    """

    def __init__(self, c_in: int, c_out: int, limit: int, reinforce: bool = True):
        super().__init__()
        self.eesp = EESP(c_in, c_out - c_in, stride=2, limit=limit)
        self.inp_reinf = (nn.Sequential(ConvBnPrelu(3, 3, 3), ConvBn(3, c_out, 1))
                          if reinforce else None)
        self.act = nn.PReLU(c_out)

    def forward(self, x: torch.Tensor, image: torch.Tensor = None) -> torch.Tensor:
        y = torch.cat([F.avg_pool2d(x, 3, 2, 1), self.eesp(x)], 1)
        if self.inp_reinf is not None and image is not None:
            y = y + self.inp_reinf(image)
        return self.act(y)


def image_pyramid(image: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """Average-pool the image (3x3, stride 2, padding 1) 1..levels times.

    Input (B, 3, H, W). Returns [stride 2, stride 4, ..., stride 2**levels] maps, each side
    ceil(previous / 2): the resolutions of the backbone's levels.
    """
    out, x = [], image
    for _ in range(levels):
        x = F.avg_pool2d(x, 3, 2, 1)
        out.append(x)
    return out


class ESPNetV2Backbone(nn.Module):
    """ESPNetv2 backbone up to stride 16 (the segmentation network's ``base_net``).

    Constructor: s, the width multiplier (a key of :data:`ESPNETV2_CHANNELS`; ValueError else).

    Input: normalised RGB (B, 3, H, W), H and W divisible by 16.
    Output: tuple (l1, l2, l3, l4), l_k (B, C_k, H / 2**k, W / 2**k), C = ``channels``
    ((32, 96, 192, 384) for s = 1.5).
    """

    def __init__(self, s: float = 1.5):
        super().__init__()
        if s not in ESPNETV2_CHANNELS:
            raise ValueError(f"ESPNetv2 width s={s} not supported; expected one of "
                             f"{sorted(ESPNETV2_CHANNELS)}")
        c1, c2, c3, c4 = ESPNETV2_CHANNELS[s]
        self.channels = (c1, c2, c3, c4)
        lim = RECEPTIVE_LIMITS
        self.level1 = ConvBnPrelu(3, c1, 3, stride=2)
        self.level2_0 = StridedEESP(c1, c2, lim["level2_0"])
        self.level3_0 = StridedEESP(c2, c3, lim["level3_0"])
        self.level3 = nn.ModuleList([EESP(c3, c3, 1, lim["level3"])
                                     for _ in range(LEVEL_REPEATS[0])])
        self.level4_0 = StridedEESP(c3, c4, lim["level4_0"])
        self.level4 = nn.ModuleList([EESP(c4, c4, 1, lim["level4"])
                                     for _ in range(LEVEL_REPEATS[1])])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.forward_with_pyramid(x, image_pyramid(x, 4))

    def forward_with_pyramid(self, x: torch.Tensor, pyramid: Sequence[torch.Tensor]
                             ) -> Tuple[torch.Tensor, ...]:
        """Forward with the image pyramid of :func:`image_pyramid` (at least 4 levels) given."""
        l1 = self.level1(x)
        l2 = self.level2_0(l1, pyramid[1])
        l3 = self.level3_0(l2, pyramid[2])
        for unit in self.level3:
            l3 = unit(l3)
        l4 = self.level4_0(l3, pyramid[3])
        for unit in self.level4:
            l4 = unit(l4)
        return l1, l2, l3, l4


# ------------------------------------------------------------------------------ decoder

class DecConvBnPrelu(nn.Module):
    """Conv2d ('same', no bias) -> BatchNorm2d -> PReLU as one ``cbr`` Sequential (decoder)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1):
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), nn.PReLU(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class DecBnPrelu(nn.Module):
    """BatchNorm2d -> PReLU as one ``br`` Sequential (decoder)."""

    def __init__(self, channels: int):
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


class ChannelShuffle(nn.Module):
    """Channel shuffle (ShuffleNet, Zhang et al. 2018) with ``groups`` groups.

    (B, G * n, H, W) viewed as (B, G, n, H, W), transposed to (B, n, G, H, W), flattened back:
    the output interleaves one channel of each group.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = int(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return (x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2)
                .reshape(b, c, h, w))


class EfficientPyramidPool(nn.Module):
    """Efficient pyramid pooling of the ESPNetv2 segmentation decoder.

    1x1 projection (BN, PReLU) to ``proj`` channels; per scale s in :data:`PYRAMID_SCALES` the map
    resized to (max(ceil(H s), 5), max(ceil(W s), 5)) (bilinear, align_corners=True, up; adaptive
    average pooling, :func:`adaptive_avg_pool`, down), a 3x3 depth-wise conv, and resized back
    (adaptive pooling after an upscale, bilinear after a downscale); scale 1 is the conv alone.
    The scales' maps concatenated -> BN + PReLU -> channel shuffle (one group per scale) -> 3x3
    conv grouped per projected channel (BN, PReLU) -> 1x1 conv to ``c_out`` -> BN + PReLU unless
    ``last`` (then the 1x1 conv has a bias: the classifier).

    Input (B, c_in, H, W). Output (B, c_out, H, W).
    """

    def __init__(self, c_in: int, proj: int, c_out: int, last: bool = False):
        super().__init__()
        n = len(PYRAMID_SCALES)
        self.scales = PYRAMID_SCALES
        self.projection_layer = DecConvBnPrelu(c_in, proj, 1)
        self.stages = nn.ModuleList([nn.Conv2d(proj, proj, 3, 1, 1, groups=proj, bias=False)
                                     for _ in range(n)])
        self.merge_layer = nn.Sequential(DecBnPrelu(proj * n), ChannelShuffle(n),
                                         DecConvBnPrelu(proj * n, proj, 3, groups=proj),
                                         nn.Conv2d(proj, c_out, 1, bias=last))
        self.br = None if last else DecBnPrelu(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        maps = []
        for s, stage in zip(self.scales, self.stages):
            hs, ws = max(int(math.ceil(h * s)), 5), max(int(math.ceil(w * s)), 5)
            if s > 1.0:
                y = adaptive_avg_pool(stage(resize_bilinear(x, (hs, ws), False)), (h, w))
            elif s < 1.0:
                y = stage(adaptive_avg_pool(x, (hs, ws)))
                y = resize_bilinear(y, (h, w), False)
            else:
                y = stage(x)
            maps.append(y)
        y = self.merge_layer(torch.cat(maps, 1))
        return y if self.br is None else self.br(y)


class AttentionMerge(nn.Module):
    """Encoder-to-decoder merge of the segmentation decoder ("efficient PW conv").

    A 3x3 conv grouped by gcd(c_in, c_out) (BN, PReLU), multiplied by per-channel weights
    sigmoid(W_1x1 . global-average-pool(x)) (channel attention).

    Input (B, c_in, H, W). Output (B, c_out, H, W).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                      nn.Conv2d(c_in, c_out, 1, bias=False), nn.Sigmoid())
        self.expansion_layer = DecConvBnPrelu(c_in, c_out, 3, groups=math.gcd(c_in, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear upsampling, align_corners=True (as the decoder was trained)."""
    return resize_bilinear(x, (2 * int(x.shape[-2]), 2 * int(x.shape[-1])), False)


class ESPNetV2Decoder(nn.Module):
    """Bottom-up ESPNetv2 segmentation decoder over backbone levels at strides 2, 4, 8, 16.

    Constructor: encoder_channels (C1, C2, C3, C4) of :class:`ESPNetV2Backbone`; num_classes K;
    last_stride: 2 (as released) or 4. Module names are those of the released weights
    (``bu_dec_l1`` ... ``bu_br_l4``); the classifier is ``bu_dec_l4.merge_layer[3]`` (a 1x1 conv
    10 -> K with bias).

    decode(l1, l2, l3, l4): l_k (B, C_k, H / 2**k, W / 2**k) -> logits (B, K, H / s, W / s),
    s = last_stride. With ``last_stride`` 4 the last stage (pyramid pooling and classifier) runs
    at stride 4 instead of 2, on the same weights: the stride-4 decoder output is not upsampled,
    and the stride-2 encoder level is 2x2 average-pooled before its merge. That stage is about
    two thirds of the decoder's cost at stride 2 (its 2x pyramid scale works at the input's
    resolution); the zero-shot Cityscapes figures of both are in models/README.md.
    """

    def __init__(self, encoder_channels: Sequence[int], num_classes: int, last_stride: int = 2):
        super().__init__()
        if last_stride not in (2, 4):
            raise ValueError(f"ESPNetv2 decoder last_stride must be 2 or 4, got {last_stride}")
        self.last_stride = int(last_stride)
        c1, c2, c3, c4 = (int(c) for c in encoder_channels)
        d1, d2, d3 = DECODER_CHANNELS
        p = PYRAMID_PROJECTION
        self.bu_dec_l1 = EfficientPyramidPool(c4, p, d1)
        self.bu_dec_l2 = EfficientPyramidPool(d1, p, d2)
        self.bu_dec_l3 = EfficientPyramidPool(d2, p, d3)
        self.bu_dec_l4 = EfficientPyramidPool(d3, p, int(num_classes), last=True)
        self.merge_enc_dec_l2 = AttentionMerge(c3, d1)
        self.merge_enc_dec_l3 = AttentionMerge(c2, d2)
        self.merge_enc_dec_l4 = AttentionMerge(c1, d3)
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(d1), nn.PReLU(d1))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(d2), nn.PReLU(d2))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(d3), nn.PReLU(d3))

    @property
    def classifier(self) -> nn.Conv2d:
        """The final 1x1 conv (10 -> K, with bias)."""
        return self.bu_dec_l4.merge_layer[3]

    def decode(self, l1: torch.Tensor, l2: torch.Tensor, l3: torch.Tensor,
               l4: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H / s, W / s), s = ``last_stride``, from the four backbone levels."""
        y = self.bu_dec_l1(l4)
        y = self.bu_dec_l2(self.bu_br_l2(_upsample2(y) + self.merge_enc_dec_l2(l3)))
        y = self.bu_dec_l3(self.bu_br_l3(_upsample2(y) + self.merge_enc_dec_l3(l2)))
        if self.last_stride == 4:
            return self.bu_dec_l4(self.bu_br_l4(y + self.merge_enc_dec_l4(F.avg_pool2d(l1, 2))))
        return self.bu_dec_l4(self.bu_br_l4(_upsample2(y) + self.merge_enc_dec_l4(l1)))


class ESPNetV2Segmentation(ESPNetV2Decoder):
    """The whole ESPNetv2 segmentation network, as released for Cityscapes.

    Constructor: s (width multiplier, :data:`ESPNETV2_CHANNELS`); num_classes (20 for the
    Cityscapes weights: :data:`CITYSCAPES_CLASSES`); last_stride (:class:`ESPNetV2Decoder`; 2 as
    released). State-dict keys ``base_net.*`` and the
    decoder's; ``load_state_dict(torch.load(<espnetv2_s_1.5_city_1024x512.pth>), strict=True)``.

    Input: RGB (B, 3, H, W) normalised with :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` (no
    normalisation inside), H and W divisible by 16. Output: logits (B, K, H, W) (bilinear,
    align_corners=True, from stride ``last_stride``).
    """

    def __init__(self, s: float = 1.5, num_classes: int = len(CITYSCAPES_CLASSES),
                 last_stride: int = 2):
        if s not in ESPNETV2_CHANNELS:
            raise ValueError(f"ESPNetv2 width s={s} not supported; expected one of "
                             f"{sorted(ESPNETV2_CHANNELS)}")
        super().__init__(ESPNETV2_CHANNELS[s], num_classes, last_stride)
        self.base_net = ESPNetV2Backbone(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 16 or x.shape[-1] % 16:
            raise ValueError(f"ESPNetv2 input sides must be multiples of 16, got "
                             f"{tuple(x.shape[-2:])}")
        logits = self.decode(*self.base_net(x))
        # not exported by the project (the multi-task head is): the plain, faster resize
        return resize_bilinear(logits, (int(x.shape[-2]), int(x.shape[-1])), False)
