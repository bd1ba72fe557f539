"""Camera -> BEV fusion by cross-attention.

BEV tokens (queries) attend to camera tokens (keys/values).

Idea (in the spirit of TransFusion, Bai et al. 2022, and BEVFormer's spatial cross-attention, Li et
al. 2022, but without a calibrated projection): every stride-4 BEV cell is a query; the camera
tokens of the coarse scales (strides 16 and 32) are keys and values. Without calibration inside the
graph, geometry enters through fixed sine positional encodings (Vaswani et al. 2017, Sec. 3.5;
NeRF-style Fourier features) passed through learned linear maps and *added* to queries and keys:

* Query (BEV cell with centre (x, y) metres in the model lidar frame = camera view frame, x
  forward, y left): azimuth ``a = atan2(y, x)`` encoded as ``[sin(k a), cos(k a)]`` for k =
  1..n_az, plus Fourier features of the normalised x, y and log range.
* Key (camera token with pixel centre (u, v) in the network image): the viewing azimuth of its
  pixel column under a *nominal* pinhole camera centred in the image, ``a = atan2(-(u - W/2), f)``
  with ``f = nominal_fx_over_width * W`` (A2D2 front-center: fx = 1687.3 px for a 1920 px wide
  image, i.e. 0.879 W), encoded with the same ``[sin(k a), cos(k a)]`` basis; plus the elevation
  ``atan2(-(v - H/2), f)``, Fourier features of the normalised (u, v) and a one-hot scale id.
  Because the azimuth bases are shared, ``sum_k sin(k a_q) sin(k a_k) + cos(k a_q) cos(k a_k) =
  sum_k cos(k (a_q - a_k))`` peaks where the BEV cell and the image column look the same way, so
  the learned projections can easily express "attend along my viewing ray". A calibration that
  differs from the nominal one only shifts this prior; the network learns the rest from data.

Block (pre-norm transformer decoder layer without self-attention):
    x = x + g * OutProj(MHA(LN_q(x) W_q + PE_q,  LN_kv(t) W_k + PE_k,  LN_kv(t) W_v))
    x = x + g * FFN(LN_f(x))
with g = [camera_valid > 0.5] per sample; the gate uses ``where`` so that camera_valid = 0 returns
the input **exactly** (the defined lidar-only path), whatever the image holds (NaN included).
Attention is written with MatMul/Softmax when traced, so it exports to ONNX opset >= 13 and
TensorRT; eager PyTorch runs the same function through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .contract import ModelContract

#: A2D2 front-center camera: undistorted fx = 1687.3 px for 1920 px image width.
A2D2_FX_OVER_WIDTH = 1687.3 / 1920.0


def _fourier(v: torch.Tensor, freqs: Sequence[float]) -> torch.Tensor:
    """(N,) -> (N, 2 * len(freqs)): [sin(f v), cos(f v)] for each frequency f."""
    f = torch.tensor(list(freqs), dtype=torch.float64)
    a = v.to(torch.float64).unsqueeze(1) * f.unsqueeze(0)
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def bev_query_encoding(contract: ModelContract, stride: int, n_az: int = 8,
                       n_pos: int = 4) -> torch.Tensor:
    """Return the fixed positional encoding of the BEV cells at ``stride`` pillars per cell.

    Returns (H*W, 2*n_az + 6*n_pos) float32 with (H, W) = (grid_h, grid_w) / stride, row-major
    (flat index iy * W + ix), see the module docstring.
    """
    x0, y0, _, x1, y1, _ = contract.point_cloud_range
    gw, gh = contract.grid_size
    h, w = gh // stride, gw // stride
    dx, dy = (x1 - x0) / w, (y1 - y0) / h
    xs = x0 + (torch.arange(w, dtype=torch.float64) + 0.5) * dx
    ys = y0 + (torch.arange(h, dtype=torch.float64) + 0.5) * dy
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xx, yy = xx.reshape(-1), yy.reshape(-1)
    az = torch.atan2(yy, xx)
    r = torch.hypot(xx, yy)
    r_max = max(math.hypot(a, b) for a in (x0, x1) for b in (y0, y1))
    pos_f = [math.pi * 2 ** j for j in range(n_pos)]
    enc = torch.cat([
        _fourier(az, range(1, n_az + 1)),
        _fourier((xx - x0) / (x1 - x0), pos_f),
        _fourier((yy - y0) / (y1 - y0), pos_f),
        _fourier(torch.log1p(r) / math.log1p(r_max), pos_f),
    ], dim=1)
    return enc.to(torch.float32)


def camera_key_encoding(image_size: Tuple[int, int], strides: Sequence[int],
                        fx_over_width: float = A2D2_FX_OVER_WIDTH,
                        n_az: int = 8, n_pos: int = 4) -> torch.Tensor:
    """Return the fixed positional encoding of the camera tokens of the given strides.

    The scales are concatenated in order. image_size: (W, H) network image size in pixels.
    Returns (sum_s (H/s)(W/s), 2*n_az + 6*n_pos + len(strides)) float32; tokens of each scale
    row-major (flat index row * (W/s) + col).
    """
    wi, hi = int(image_size[0]), int(image_size[1])
    f = fx_over_width * wi
    pos_f = [math.pi * 2 ** j for j in range(n_pos)]
    out = []
    for level, s in enumerate(strides):
        h, w = hi // s, wi // s
        us = (torch.arange(w, dtype=torch.float64) + 0.5) * s
        vs = (torch.arange(h, dtype=torch.float64) + 0.5) * s
        vv, uu = torch.meshgrid(vs, us, indexing="ij")
        uu, vv = uu.reshape(-1), vv.reshape(-1)
        az = torch.atan2(-(uu - wi / 2.0), torch.full_like(uu, f))
        el = torch.atan2(-(vv - hi / 2.0), torch.full_like(vv, f))
        onehot = torch.zeros(uu.shape[0], len(strides), dtype=torch.float64)
        onehot[:, level] = 1.0
        out.append(torch.cat([
            _fourier(az, range(1, n_az + 1)),
            _fourier(el, [2.0 * (j + 1) for j in range(n_pos)]),
            _fourier(uu / wi, pos_f),
            _fourier(vv / hi, pos_f),
            onehot,
        ], dim=1))
    return torch.cat(out, dim=0).to(torch.float32)


class CameraBevFusion(nn.Module):
    """Cross-attention of stride-4 BEV tokens to stride-16/32 camera tokens, gated by camera_valid.

    Constructor:
        contract: the model contract (grid geometry, image size).
        bev_channels: C, channels of the BEV map (kept).
        camera_channels: (C16, C32), channels of the camera maps used as tokens.
        dim: attention width d (split over ``heads``); ffn_dim: hidden width of the FFN.
        bev_stride: stride of the BEV map in pillars (4); camera_strides: (16, 32).
        fx_over_width: nominal focal length / image width for the key encodings.

    Input: bev (B, C, grid_h/4, grid_w/4); cam16 (B, C16, Hi/16, Wi/16); cam32 (B, C32, Hi/32,
        Wi/32); camera_valid (B,) float32 1.0 / 0.0.
    Output: (B, C, grid_h/4, grid_w/4); equal to ``bev`` exactly for samples with camera_valid = 0.
    """

    def __init__(self, contract: ModelContract, bev_channels: int,
                 camera_channels: Tuple[int, int],
                 dim: int = 64, heads: int = 4, ffn_dim: int = 128, bev_stride: int = 4,
                 camera_strides: Tuple[int, int] = (16, 32),
                 fx_over_width: float = A2D2_FX_OVER_WIDTH):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = int(dim), int(heads), int(dim) // int(heads)
        self.scale = 1.0 / math.sqrt(self.head_dim)
        #: eager PyTorch uses F.scaled_dot_product_attention (about 2x faster on CPU); tracing /
        #: ONNX export always uses the explicit MatMul/Softmax form (same function, ~1e-7 apart)
        self.fused_attention = True
        gw, gh = contract.grid_size
        self.bev_hw = (gh // bev_stride, gw // bev_stride)
        self.register_buffer("pe_q_fixed", bev_query_encoding(contract, bev_stride),
                             persistent=False)
        self.register_buffer("pe_k_fixed", camera_key_encoding(contract.image_size, camera_strides,
                                                               fx_over_width),
                             persistent=False)
        c = int(bev_channels)
        self.cam_in = nn.ModuleList([nn.Linear(int(ci), self.dim) for ci in camera_channels])
        self.norm_q = nn.LayerNorm(c)
        self.norm_kv = nn.LayerNorm(self.dim)
        self.norm_ffn = nn.LayerNorm(c)
        self.pe_q = nn.Linear(self.pe_q_fixed.shape[1], self.dim)
        self.pe_k = nn.Linear(self.pe_k_fixed.shape[1], self.dim)
        self.q = nn.Linear(c, self.dim)
        self.k = nn.Linear(self.dim, self.dim)
        self.v = nn.Linear(self.dim, self.dim)
        self.out = nn.Linear(self.dim, c)
        self.ffn = nn.Sequential(nn.Linear(c, int(ffn_dim)), nn.GELU(), nn.Linear(int(ffn_dim), c))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, N, d) -> (B, heads, N, d / heads)."""
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, bev: torch.Tensor, cam16: torch.Tensor, cam32: torch.Tensor,
                camera_valid: torch.Tensor) -> torch.Tensor:
        b, c, h, w = bev.shape
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            n_k = cam16.shape[2] * cam16.shape[3] + cam32.shape[2] * cam32.shape[3]
            if (h, w) != self.bev_hw or n_k != self.pe_k_fixed.shape[0]:
                raise ValueError(f"fusion built for a BEV map {self.bev_hw} and "
                                 f"{self.pe_k_fixed.shape[0]} camera tokens, got {(h, w)} and "
                                 f"{n_k} (does the input match the contract?)")
        # (B, N, C)
        x = bev.flatten(2).transpose(1, 2)
        tokens = torch.cat([proj(m.flatten(2).transpose(1, 2))
                            for proj, m in zip(self.cam_in, (cam16, cam32))],
                           dim=1)                                                # (B, Nk, d)
        t = self.norm_kv(tokens)
        q = self._heads(self.q(self.norm_q(x)) + self.pe_q(self.pe_q_fixed))
        k = self._heads(self.k(t) + self.pe_k(self.pe_k_fixed))
        v = self._heads(self.v(t))
        if self.fused_attention and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            # same math, fused CPU/CUDA kernel (eager only)
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            # (B, h, N, Nk)
            attn = torch.softmax(torch.matmul(q * self.scale, k.transpose(2, 3)), dim=-1)
            o = torch.matmul(attn, v)
        o = o.permute(0, 2, 1, 3).reshape(b, h * w, self.dim)
        gate = (camera_valid.reshape(b, 1, 1) > 0.5)
        x = x + torch.where(gate, self.out(o), 0.0)
        x = x + torch.where(gate, self.ffn(self.norm_ffn(x)), 0.0)
        return x.transpose(1, 2).reshape(b, c, h, w)
