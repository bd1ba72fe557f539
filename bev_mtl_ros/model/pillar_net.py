"""Pillar feature net and pillar scatter (PointPillars).

Lang et al. 2019, "PointPillars: Fast Encoders for Object Detection from Point Clouds", Sec. 2.1.

* :class:`PillarFeatureNet` -- a one-layer PointNet applied to every point of every pillar
  (linear -> BatchNorm -> ReLU) followed by a max over the points of the pillar. Padded point slots
  (index >= ``num_points``) are masked out of the max and out of the BatchNorm statistics (the
  BatchNorm is folded into the linear layer, see the class docstring).
* :class:`PillarScatter` -- writes the pillar features onto the dense BEV canvas. It is implemented
  as a *Gather* from the pillar features with one zero row appended (canvas index value ``P`` =
  empty cell), never as ScatterND, so that it exports to ONNX and runs on onnxruntime CPU/CUDA and
  TensorRT.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def _exporting() -> bool:
    """Return True while tracing / exporting (Python-side input checks are skipped then)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


class PillarFeatureNet(nn.Module):
    """PointPillars' PointNet over the decorated points of each pillar.

    Constructor:
        in_features: decorated features per point F (``contract.num_decorated_features``, 9).
        out_channels: pillar feature channels C.

    Input:
        pillars (P, M, F) float32, zero-padded points of each pillar (see runtime.pillarize);
        num_points (P,) int32/int64, number of real points of each pillar (1..M).
    Output: (P, C) float32 pillar features, >= 0.

    Padded slots are set to -inf before the max over points, so the result is exactly
    relu(max over the real points): padding never changes a pillar's feature, and a pillar with
    ``num_points = 0`` gets an all-zero feature.

    BatchNorm (``self.norm``, a standard BatchNorm1d holding gamma, beta and running statistics) is
    folded into the linear layer: y = (W x - mu) * gamma / sqrt(var + eps) + beta = W' x + b'. In
    training, mu and var are the batch statistics of the *valid points only*, obtained exactly from
    the 9-dimensional inputs (mu = W mean(x), var_c = w_c^T Cov(x) w_c), so padding never enters
    the statistics and the (P*M, C) tensor is touched once; gradients flow through the statistics
    as in ordinary BatchNorm. In eval mode the running statistics are used; W' and b' are constants
    of the exported graph (MatMul -> Where -> ReduceMax -> Add -> Relu).
    """

    def __init__(self, in_features: int, out_channels: int):
        super().__init__()
        self.in_features = int(in_features)
        self.out_channels = int(out_channels)
        self.linear = nn.Linear(self.in_features, self.out_channels, bias=False)
        self.norm = nn.BatchNorm1d(self.out_channels, eps=1e-3, momentum=0.01)

    def _folded(self, x: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(W', b') of the linear layer with the BatchNorm folded in. x (N, F), valid (N,) bool."""
        w = self.linear.weight                                                           # (C, F)
        bn = self.norm
        if self.training:
            xv = x[valid]
            n = xv.shape[0]
            if n >= 2:
                mu_x = xv.mean(0)
                xc = xv - mu_x
                cov = xc.t() @ xc / n                                                    # (F, F)
                mean = w @ mu_x                                                          # (C,)
                var = ((w @ cov) * w).sum(1).clamp_min(0.0)                              # (C,)
                with torch.no_grad():
                    # momentum None = cumulative average, as in nn.BatchNorm1d
                    m = (bn.momentum if bn.momentum is not None
                         else 1.0 / (float(bn.num_batches_tracked) + 1.0))
                    bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    bn.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
                    bn.num_batches_tracked.add_(1)
            else:   # too few points for batch statistics
                mean, var = bn.running_mean, bn.running_var
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = bn.weight * torch.rsqrt(var + bn.eps)                                    # (C,)
        return w * scale.unsqueeze(1), bn.bias - mean * scale

    def forward(self, pillars: torch.Tensor, num_points: torch.Tensor) -> torch.Tensor:
        if not _exporting():
            if pillars.dim() != 3 or pillars.shape[2] != self.in_features:
                raise ValueError(f"pillars must be (P, M, {self.in_features}), got "
                                 f"{tuple(pillars.shape)}")
            if num_points.shape != pillars.shape[:1]:
                raise ValueError(f"num_points must be ({pillars.shape[0]},), got "
                                 f"{tuple(num_points.shape)}")
        p, m, f = pillars.shape
        # M is static in the exported graph: a constant slot index (no Shape -> Range chain).
        slots = torch.arange(int(m), device=pillars.device, dtype=torch.int64)
        valid = slots.unsqueeze(0) < num_points.to(torch.int64).unsqueeze(1)        # (P, M) bool
        x = pillars.reshape(-1, f)
        w, b = self._folded(x, valid.reshape(-1))
        # The bias is constant over the points of a pillar and relu is monotonic, so
        # relu(max_j(W' x_j + b')) = relu(max_j(W' x_j) + b'): the (P, M, C) tensor is written once
        # by the matmul, padded slots are set to -inf, reduced, and the bias/ReLU act on (P, C)
        # only.
        x = torch.matmul(x, w.t()).reshape(p, m, self.out_channels)
        x = torch.where(valid.unsqueeze(2), x, float("-inf"))
        return F.relu(torch.amax(x, dim=1) + b)                                         # (P, C)


class PillarScatter(nn.Module):
    """Dense BEV canvas from pillar features by a Gather (no ScatterND).

    Constructor:
        grid_size: (grid_w, grid_h) pillars along x and y (``contract.grid_size``).

    Input:
        features (P, C) float32 pillar features (all frames of the batch concatenated);
        canvas_index (B, grid_h * grid_w) int64, flat cell ``iy * grid_w + ix`` -> pillar index
        into ``features``, value ``P`` for an empty cell.
    Output: (B, C, grid_h, grid_w) float32, zero at empty cells.
    """

    def __init__(self, grid_size: Tuple[int, int]):
        super().__init__()
        self.grid_w, self.grid_h = int(grid_size[0]), int(grid_size[1])

    def forward(self, features: torch.Tensor, canvas_index: torch.Tensor) -> torch.Tensor:
        if not _exporting():
            if canvas_index.dim() != 2 or canvas_index.shape[1] != self.grid_w * self.grid_h:
                raise ValueError(f"canvas_index must be (B, {self.grid_h * self.grid_w}), "
                                 f"got {tuple(canvas_index.shape)}")
            if canvas_index.numel() and (int(canvas_index.min()) < 0
                                         or int(canvas_index.max()) > features.shape[0]):
                raise ValueError(f"canvas_index values must lie in [0, P={features.shape[0]}]")
        b = canvas_index.shape[0]
        c = features.shape[1]
        table = torch.cat([features, features.new_zeros((1, c))], dim=0)               # (P+1, C)
        flat = canvas_index.reshape(-1).to(torch.int64)
        # (B*H*W, C)
        canvas = table.index_select(0, flat)
        # (B, C, H, W) view in channels-last memory layout (no copy): row gathers are contiguous,
        # and the first BEV convolution runs about 4x faster on CPU (oneDNN prefers NHWC).
        return canvas.reshape(b, self.grid_h, self.grid_w, c).permute(0, 3, 1, 2)
