"""The multi-task network.

Pillars -> PFN -> pillar scatter -> BEV backbone -> camera cross-attention fusion -> neck ->
CenterPoint / drivable-area heads, and camera encoder -> semantic head (FPN or ESPNetv2 decoder).

One graph, one forward, raw outputs (logits). :class:`DeployWrapper` fixes the output order and
applies the sigmoids; it is what ONNX export and the PyTorch backend both run, so both backends
give the same numbers.

Widths: every constructor argument except the contract is a *width* (channels / blocks / heads),
stored in ``net.widths`` (a plain dict) so a checkpoint can rebuild the exact architecture with
``BevMultiTaskNet(contract, **widths)``. The ``camera_encoder`` width names the camera encoder
(:data:`CAMERA_ENCODERS`): ``"efficientnet_lite0"`` for new models (``"efficientnet_lite1"`` /
``"_lite2"`` for comparisons; ``camera_channels`` / ``camera_blocks`` are then unused),
``"espnetv2_s1.5"`` for the Cityscapes-pretrained ESPNetv2 (model/espnetv2.py; needs ImageNet
mean / std in the contract), ``"plain"`` for the small VGG-like one. The ``semantic_head`` width
names the semantic head: ``"fpn"`` (:class:`SemanticFPNHead`, any encoder), ``"espnetv2"``
(:class:`ESPNetV2SemanticHead`, the pretrained ESPNetv2 decoder; ESPNetv2 encoders only) or
``"espnetv2_s4"`` (the same decoder with its last stage at stride 4, cheaper).
Widths saved before a key existed mean what the network was then: :func:`widths_from_saved`
fills in ``camera_encoder="plain"`` and ``semantic_head="fpn"`` when a checkpoint is read.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn as nn

from .bev_backbone import BevBackbone, BevNeck
from .camera_encoder import (ESPNETV2_VARIANTS, LITE_VARIANTS, CameraEncoder,
                             EfficientNetLiteEncoder, ESPNetV2Encoder)
from .contract import ModelContract
from .fusion import A2D2_FX_OVER_WIDTH, CameraBevFusion
from .heads import CenterPointHead, DrivableHead, ESPNetV2SemanticHead, SemanticFPNHead
from .pillar_net import PillarFeatureNet, PillarScatter

#: input names (and order) of the deployed graph
INPUT_NAMES: Tuple[str, ...] = ("pillars", "num_points", "canvas_index", "image", "camera_valid")
#: output names (and order) of the deployed graph; heatmap and drivable are probabilities there
OUTPUT_NAMES: Tuple[str, ...] = ("heatmap", "offset", "z", "size", "rot", "drivable", "semantic")

#: default widths: the EfficientNet-Lite0 camera encoder (2.96 M of the 3.2 M parameters; its
#: channels 24/40/112/320 enter the fusion (strides 16, 32 -> fusion_dim) and the FPN semantic head
#: (-> fpn_channels, 48: as fast as 32 within noise, 64 costs ~10 ms more) at 512x320. Measured
#: with bench.encoder_sizes (1 thread, loaded 2-core machine): in-process pipeline p50 ~62 ms
#: (onnxruntime), training step (batch 4, frozen stem + stride-4 level) ~1.5 s (bench/README.md).
#: The plain encoder's widths (camera_channels, camera_blocks) apply to "plain" only.
DEFAULT_WIDTHS: Dict[str, Any] = dict(
    camera_encoder="efficientnet_lite0",
    pfn_channels=32,
    bev_channels=(32, 80),
    bev_blocks=(0, 2),
    neck_up_channels=32,
    neck_channels=48,
    camera_channels=(16, 32, 64, 96, 128),
    camera_blocks=1,
    fusion_dim=32,
    fusion_heads=2,
    fusion_ffn=128,
    fx_over_width=A2D2_FX_OVER_WIDTH,
    head_channels=32,
    drivable_channels=16,
    fpn_channels=48,
    semantic_head="fpn",
)

#: a tiny preset for unit tests (seconds on CPU at any grid)
TINY_WIDTHS: Dict[str, Any] = dict(
    camera_encoder="plain",
    pfn_channels=8,
    bev_channels=(8, 16),
    bev_blocks=(1, 1),
    neck_up_channels=8,
    neck_channels=8,
    camera_channels=(4, 8, 8, 16, 16),
    camera_blocks=0,
    fusion_dim=8,
    fusion_heads=2,
    fusion_ffn=16,
    fx_over_width=A2D2_FX_OVER_WIDTH,
    head_channels=8,
    drivable_channels=4,
    fpn_channels=8,
    semantic_head="fpn",
)


#: camera encoders by name (the ``camera_encoder`` width); see model/camera_encoder.py
CAMERA_ENCODERS: Tuple[str, ...] = (*LITE_VARIANTS, *ESPNETV2_VARIANTS, "plain")
#: the encoder of widths saved before they named one (checkpoints / ONNX metadata without the key)
LEGACY_CAMERA_ENCODER = "plain"
#: the ESPNetv2 decoder heads by name, with the stride of their last stage (ESPNetv2 encoders only)
ESPNETV2_HEADS: Dict[str, int] = {"espnetv2": 2, "espnetv2_s4": 4}
#: semantic heads by name (the ``semantic_head`` width)
SEMANTIC_HEADS: Tuple[str, ...] = ("fpn", *ESPNETV2_HEADS)
#: the semantic head of widths saved before they named one
LEGACY_SEMANTIC_HEAD = "fpn"


def _plain(v: Any) -> Any:
    """Tuples -> lists recursively (JSON / weights_only-safe)."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def widths_from_saved(widths: Dict[str, Any]) -> Dict[str, Any]:
    """Turn widths read from a checkpoint into constructor widths.

    Returns a copy, with ``camera_encoder`` set to :data:`LEGACY_CAMERA_ENCODER` and
    ``semantic_head`` to :data:`LEGACY_SEMANTIC_HEAD` when absent (saved before they existed).
    """
    out = dict(widths or {})
    out.setdefault("camera_encoder", LEGACY_CAMERA_ENCODER)
    out.setdefault("semantic_head", LEGACY_SEMANTIC_HEAD)
    return out


class BevMultiTaskNet(nn.Module):
    """Lidar-camera multi-task network.

    Constructor: ``BevMultiTaskNet(contract, **widths)``, widths as in :data:`DEFAULT_WIDTHS`
    (unknown keys raise TypeError). ``net.widths`` holds the full, JSON-compatible widths dict.

    forward(pillars, num_points, canvas_index, image, camera_valid):
        pillars (P, M, F) float32, decorated points (F = contract.num_decorated_features), all
            frames of the batch concatenated; num_points (P,) int32/int64;
        canvas_index (B, grid_h*grid_w) int64, pillar index per BEV cell, P = empty cell;
        image (B, 3, Hi, Wi) float32 RGB in [0, 1], (Wi, Hi) = contract.image_size;
        camera_valid (B,) float32, 1.0 = camera image usable, 0.0 = lidar-only for that sample.
    Returns dict of raw tensors: heatmap (B, K, Hb, Wb) logits; offset (B, 2, Hb, Wb) cells;
        z (B, 1, Hb, Wb) m; size (B, 3, Hb, Wb) log m; rot (B, 2, Hb, Wb) (sin, cos);
        drivable (B, 1, grid_h, grid_w) logits; semantic (B, S, Hs, Ws) logits,
        (Ws, Hs) = contract.semantic_size (the image size / contract.semantic_stride);
        (Wb, Hb) = contract.bev_size.
    With camera_valid = 0 the fusion is an exact identity: detection and drivable outputs do not
    depend on the image at all.
    """

    def __init__(self, contract: ModelContract, **widths: Any):
        super().__init__()
        unknown = set(widths) - set(DEFAULT_WIDTHS)
        if unknown:
            raise TypeError(f"unknown BevMultiTaskNet widths: {sorted(unknown)}")
        w = dict(DEFAULT_WIDTHS)
        w.update(widths)
        self.widths: Dict[str, Any] = {k: _plain(v) for k, v in w.items()}
        self.contract = contract.validate()
        gw, gh = contract.grid_size
        self.pfn = PillarFeatureNet(contract.num_decorated_features, w["pfn_channels"])
        self.scatter = PillarScatter(contract.grid_size)
        self.backbone = BevBackbone(w["pfn_channels"], tuple(w["bev_channels"]),
                                    tuple(w["bev_blocks"]))
        if w["camera_encoder"] in LITE_VARIANTS:
            self.camera = EfficientNetLiteEncoder(w["camera_encoder"], contract.image_mean,
                                                  contract.image_std)
        elif w["camera_encoder"] in ESPNETV2_VARIANTS:
            self.camera = ESPNetV2Encoder(w["camera_encoder"], contract.image_mean,
                                          contract.image_std)
        elif w["camera_encoder"] == "plain":
            self.camera = CameraEncoder(tuple(w["camera_channels"]), contract.image_mean,
                                        contract.image_std, int(w["camera_blocks"]))
        else:
            raise ValueError(f"unknown camera_encoder {w['camera_encoder']!r}; "
                             f"expected one of {CAMERA_ENCODERS}")
        c4, c8, c16, c32 = self.camera.out_channels
        self.fusion = CameraBevFusion(contract, self.backbone.out_channels[1], (c16, c32),
                                      dim=w["fusion_dim"],
                                      heads=w["fusion_heads"], ffn_dim=w["fusion_ffn"],
                                      fx_over_width=float(w["fx_over_width"]))
        self.neck = BevNeck(self.backbone.out_channels, w["neck_up_channels"], w["neck_channels"],
                            contract.bev_stride)
        self.det_head = CenterPointHead(w["neck_channels"], len(contract.detection_classes),
                                        w["head_channels"])
        self.drivable_head = DrivableHead(w["neck_channels"], w["pfn_channels"],
                                          w["drivable_channels"])
        if w["semantic_head"] == "fpn":
            self.semantic_head = SemanticFPNHead(self.camera.out_channels,
                                                 len(contract.semantic_classes),
                                                 w["fpn_channels"], contract.semantic_size)
        elif w["semantic_head"] in ESPNETV2_HEADS and isinstance(self.camera, ESPNetV2Encoder):
            self.semantic_head = ESPNetV2SemanticHead(
                (self.camera.stride2_channels, c4, c8, c16), len(contract.semantic_classes),
                contract.semantic_size, ESPNETV2_HEADS[w["semantic_head"]])
        else:
            raise ValueError(f"semantic_head {w['semantic_head']!r} with camera_encoder "
                             f"{w['camera_encoder']!r}: expected one of {SEMANTIC_HEADS}, "
                             f"{tuple(ESPNETV2_HEADS)} only with an ESPNetv2 encoder "
                             f"{tuple(ESPNETV2_VARIANTS)}")
        # Channels-last (NHWC) conv weights: oneDNN's fast path on CPU (about 10-15 % per forward
        # and training step here); the pillar scatter already yields an NHWC canvas. No effect on
        # the numbers or on the ONNX graph.
        self.to(memory_format=torch.channels_last)

    @classmethod
    def tiny(cls, contract: ModelContract) -> "BevMultiTaskNet":
        """Build a very small network for tests (same graph, :data:`TINY_WIDTHS`)."""
        return cls(contract, **TINY_WIDTHS)

    def forward(self, pillars: torch.Tensor, num_points: torch.Tensor, canvas_index: torch.Tensor,
                image: torch.Tensor, camera_valid: torch.Tensor) -> Dict[str, torch.Tensor]:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            self._check_inputs(canvas_index, image, camera_valid)
        pf = self.pfn(pillars, num_points)
        canvas = self.scatter(pf, canvas_index)
        f2, f4 = self.backbone(canvas)
        cams = self.camera(image)
        f4 = self.fusion(f4, cams[2], cams[3], camera_valid)
        n2, det = self.neck(f2, f4)
        out = self.det_head(det)
        out["drivable"] = self.drivable_head(n2, canvas)
        # the FPN takes the four levels; the ESPNetv2 head also the encoder's stride-2 level
        out["semantic"] = self.semantic_head(cams if self.widths["semantic_head"] in ESPNETV2_HEADS
                                             else cams[:4])
        return out

    def _check_inputs(self, canvas_index: torch.Tensor, image: torch.Tensor,
                      camera_valid: torch.Tensor) -> None:
        """Raise ValueError naming the input whose shape does not match the contract."""
        wi, hi = self.contract.image_size
        b = canvas_index.shape[0] if canvas_index.dim() == 2 else -1
        if tuple(image.shape) != (b, 3, hi, wi):
            raise ValueError(f"image must be (B={b}, 3, {hi}, {wi}) per the contract, got "
                             f"{tuple(image.shape)}")
        if tuple(camera_valid.shape) != (b,):
            raise ValueError(f"camera_valid must be (B={b},), got {tuple(camera_valid.shape)}")

    def num_parameters(self) -> int:
        """Return the number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class DeployWrapper(nn.Module):
    """Deployment view of a :class:`BevMultiTaskNet`, used by ONNX export and the PyTorch backend.

    Same inputs (:data:`INPUT_NAMES`), outputs as a tuple in :data:`OUTPUT_NAMES` order, with
    sigmoid applied to ``heatmap`` and ``drivable`` (probabilities in [0, 1]); the others raw.
    """

    def __init__(self, net: BevMultiTaskNet):
        super().__init__()
        self.net = net

    def forward(self, pillars: torch.Tensor, num_points: torch.Tensor, canvas_index: torch.Tensor,
                image: torch.Tensor, camera_valid: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.net(pillars, num_points, canvas_index, image, camera_valid)
        out["heatmap"] = torch.sigmoid(out["heatmap"])
        out["drivable"] = torch.sigmoid(out["drivable"])
        return tuple(out[k] for k in OUTPUT_NAMES)


def random_inputs(contract: ModelContract, num_pillars: int, batch: int = 1, seed: int = 0,
                  camera_valid: Sequence[float] = None) -> Tuple[torch.Tensor, ...]:
    """Synthetic network inputs for tests, export checks and benchmarks (not for training).

    Pillars of ``batch`` frames at distinct random cells (num_pillars per frame), points uniform in
    each pillar with 1..M valid points, decorated as runtime.pillarize does; image uniform in [0,
    1]. Returns (pillars (B*P, M, F) f32, num_points (B*P,) int32, canvas_index (B, H*W) int64,
    image (B, 3, Hi, Wi) f32, camera_valid (B,) f32).
    """
    g = torch.Generator().manual_seed(int(seed))
    gw, gh = contract.grid_size
    m = contract.max_points_per_pillar
    x0, y0, z0, x1, y1, z1 = contract.point_cloud_range
    dx, dy = contract.pillar_size
    n_cells = gw * gh
    if num_pillars > n_cells:
        raise ValueError(f"num_pillars {num_pillars} exceeds the grid's {n_cells} cells")
    total = batch * num_pillars
    canvas = torch.full((batch, n_cells), total, dtype=torch.int64)
    pillars, counts = [], []
    for b in range(batch):
        cells = torch.randperm(n_cells, generator=g)[:num_pillars]
        canvas[b, cells] = torch.arange(num_pillars, dtype=torch.int64) + b * num_pillars
        iy, ix = cells // gw, cells % gw
        n = torch.randint(1, m + 1, (num_pillars,), generator=g)
        u = torch.rand(num_pillars, m, 4, generator=g)
        xs = x0 + (ix.unsqueeze(1) + u[..., 0]) * dx
        ys = y0 + (iy.unsqueeze(1) + u[..., 1]) * dy
        zs = z0 + u[..., 2] * (z1 - z0)
        it = u[..., 3]
        valid = (torch.arange(m).unsqueeze(0) < n.unsqueeze(1)).float()
        xyz = torch.stack([xs, ys, zs], dim=2) * valid.unsqueeze(2)
        mean = xyz.sum(1, keepdim=True) / n.view(-1, 1, 1).float()
        centre = torch.stack([x0 + (ix.float() + 0.5) * dx, y0
                              + (iy.float() + 0.5) * dy], dim=1).unsqueeze(1)
        feats = (torch.cat([xyz, it.unsqueeze(2), xyz - mean, xyz[..., :2] - centre], dim=2)
                 * valid.unsqueeze(2))
        pillars.append(feats)
        counts.append(n.to(torch.int32))
    wi, hi = contract.image_size
    image = torch.rand(batch, 3, hi, wi, generator=g)
    cv = (torch.ones(batch) if camera_valid is None
          else torch.tensor(list(camera_valid), dtype=torch.float32))
    return torch.cat(pillars).float(), torch.cat(counts), canvas, image, cv
