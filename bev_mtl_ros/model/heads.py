"""Task heads: CenterPoint detection, BEV drivable area, image semantic segmentation (FPN).

* :class:`CenterPointHead` -- CenterPoint (Yin et al. 2021, "Center-based 3D Object Detection and
  Tracking") on the detection-stride BEV map: per-class heat map logits (bias initialised to
  -log((1 - pi) / pi) = -2.19 for pi = 0.1, the focal-loss prior of RetinaNet, Lin et al. 2017,
  Sec. 4.1, as CenterNet/CenterPoint do), sub-cell offset, z, log size (l, w, h) and (sin, cos)
  yaw.
* :class:`DrivableHead` -- one logit per pillar cell, from the stride-2 neck features (upsampled)
  plus a 1x1 skip from the pillar canvas.
* :class:`SemanticFPNHead` -- Panoptic-FPN-style semantic branch (Kirillov et al. 2019; FPN, Lin et
  al. 2017): lateral 1x1 convs, top-down nearest upsampling and sums over strides 32 -> 4, a 3x3
  conv at stride 4, a 1x1 classifier and bilinear upsampling to the input image size.
* :class:`ESPNetV2SemanticHead` -- the Cityscapes-pretrained ESPNetv2 segmentation decoder (Mehta
  et al. 2019) over the ESPNetv2 camera encoder, its classifier initialised per A2D2 class from
  the nearest Cityscapes class (:data:`A2D2_NEAREST_CITYSCAPES`).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bev_backbone import conv_bn_relu, deconv_bn_relu
from .contract import A2D2_SEMANTIC_CLASSES
from .espnetv2 import CITYSCAPES_CLASSES, ESPNetV2Decoder, resize_bilinear

#: heat-map bias init: -log((1 - 0.1) / 0.1)
HEATMAP_PRIOR_BIAS = -2.19

#: regression outputs of the CenterPoint head and their channel counts
REGRESSION_CHANNELS: Tuple[Tuple[str, int], ...] = (("offset", 2), ("z", 1), ("size", 3),
                                                    ("rot", 2))


class CenterPointHead(nn.Module):
    """CenterPoint detection head: a shared 3x3 conv, then a heat-map and a regression branch.

    Each branch is 1x1 conv + ReLU + 1x1 conv; the 3x3 context comes from the shared conv, to
    keep the stride-2 cost low on CPU.

    Constructor:
        in_channels: C_in of the detection feature map; num_classes: K; channels: hidden width.

    Input: (B, C_in, Hb, Wb) detection features, (Hb, Wb) = contract.bev_size[::-1].
    Output: dict heatmap (B, K, Hb, Wb) logits; offset (B, 2, Hb, Wb) sub-cell offset in cells
        (x, y), target in [0, 1); z (B, 1, Hb, Wb) box centre z in metres; size (B, 3, Hb, Wb)
        log(l, w, h) in log metres; rot (B, 2, Hb, Wb) (sin yaw, cos yaw).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 32):
        super().__init__()
        self.shared = conv_bn_relu(in_channels, channels)
        n_reg = sum(n for _, n in REGRESSION_CHANNELS)
        self.heatmap = nn.Sequential(conv_bn_relu(channels, channels, kernel=1),
                                     nn.Conv2d(channels, num_classes, 1))
        self.regression = nn.Sequential(conv_bn_relu(channels, channels, kernel=1),
                                        nn.Conv2d(channels, n_reg, 1))
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_PRIOR_BIAS)
        nn.init.normal_(self.regression[-1].weight, std=1e-3)
        nn.init.zeros_(self.regression[-1].bias)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.shared(x)
        out = {"heatmap": self.heatmap(x)}
        reg = self.regression(x)
        start = 0
        for name, n in REGRESSION_CHANNELS:
            out[name] = reg[:, start:start + n]
            start += n
        return out


class DrivableHead(nn.Module):
    """BEV drivable-area logits at pillar resolution.

    Constructor:
        neck_channels: C_n of the stride-2 neck map; pillar_channels: C_p of the pillar canvas;
        channels: hidden width.

    Input: n2 (B, C_n, grid_h/2, grid_w/2), canvas (B, C_p, grid_h, grid_w).
    Output: (B, 1, grid_h, grid_w) logits (drivable = sigmoid > 0.5).
    """

    def __init__(self, neck_channels: int, pillar_channels: int, channels: int = 16):
        super().__init__()
        self.up = deconv_bn_relu(neck_channels, channels, 2)
        self.skip = nn.Conv2d(pillar_channels, channels, 1)
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, n2: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.up(n2) + self.skip(canvas)))


class SemanticFPNHead(nn.Module):
    """FPN decoder over camera strides 4/8/16/32 giving per-pixel class logits.

    Constructor:
        in_channels: (C4, C8, C16, C32) camera feature channels; num_classes: S; channels: FPN
        width; image_size: (Wo, Ho) size of the logits (contract.semantic_size: the network
        image size divided by contract.semantic_stride).

    Input: (c4, c8, c16, c32), c_s (B, C_s, Hi/s, Wi/s).
    Output: (B, S, Ho, Wo) logits, bilinearly upsampled (align_corners=False) from stride 4.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 32,
                 image_size: Tuple[int, int] = (512, 320)):
        super().__init__()
        self.image_hw = (int(image_size[1]), int(image_size[0]))
        self.lateral = nn.ModuleList([nn.Conv2d(int(c), channels, 1) for c in in_channels])
        self.smooth = conv_bn_relu(channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        p = self.lateral[-1](feats[-1])
        for lat, f in zip(list(self.lateral)[-2::-1], list(feats)[-2::-1]):
            p = lat(f) + F.interpolate(p, scale_factor=2.0, mode="nearest")
        logits = self.classifier(self.smooth(p))
        return F.interpolate(logits, size=self.image_hw, mode="bilinear", align_corners=False)


#: nearest Cityscapes class (model/espnetv2.py CITYSCAPES_CLASSES) of each A2D2 merged class, to
#: initialise the ESPNetv2 head's classifier from the Cityscapes one. Judgement calls: guard rails
#: (Sidebars), road blocks, grids and obstacles -> fence (Cityscapes labels such objects fence or
#: void); delineators (Traffic guide obj.) -> pole; signal housings -> traffic light; small
#: vehicles (A2D2: motorbikes, scooters) -> motorcycle; utility vehicles and tractors -> truck;
#: A2D2's painted markings and drivable surfaces -> road; curbs and non-drivable street ->
#: sidewalk; the ego car's bonnet, blurred areas, rain dirt and animals (void in Cityscapes) ->
#: the weights' background output.
A2D2_NEAREST_CITYSCAPES: Dict[str, str] = {
    "Car": "car", "Bicycle": "bicycle", "Pedestrian": "person", "Truck": "truck",
    "Small vehicles": "motorcycle", "Traffic signal": "traffic light",
    "Traffic sign": "traffic sign", "Utility vehicle": "truck", "Sidebars": "fence",
    "Speed bumper": "road", "Curbstone": "sidewalk", "Solid line": "road",
    "Irrelevant signs": "traffic sign", "Road blocks": "fence", "Tractor": "truck",
    "Non-drivable street": "sidewalk", "Zebra crossing": "road", "Obstacles / trash": "fence",
    "Poles": "pole", "RD restricted area": "road", "Animals": "background",
    "Grid structure": "fence", "Signal corpus": "traffic light", "Drivable cobblestone": "road",
    "Electronic traffic": "traffic sign", "Slow drive area": "road",
    "Nature object": "vegetation", "Parking area": "road", "Sidewalk": "sidewalk",
    "Ego car": "background", "Painted driv. instr.": "road", "Traffic guide obj.": "pole",
    "Dashed line": "road", "RD normal street": "road", "Sky": "sky", "Buildings": "building",
    "Blurred area": "background", "Rain dirt": "background",
}
#: where several A2D2 classes share a Cityscapes class, the one that keeps its logit; the others
#: get :data:`SECONDARY_BIAS_OFFSET` added to their bias so that ties break towards it (an
#: untrained head then predicts "RD normal street" on roads, not the first road-like class id)
PRIMARY_A2D2_CLASSES: Tuple[str, ...] = (
    "Car", "Bicycle", "Pedestrian", "Truck", "Small vehicles", "Traffic signal", "Traffic sign",
    "Sidebars", "Poles", "Nature object", "Sidewalk", "Ego car", "RD normal street", "Sky",
    "Buildings")
#: bias offset (logit) of a non-primary A2D2 class against its primary one: e^-1 = 0.37 x its
#: probability at initialisation
SECONDARY_BIAS_OFFSET = -1.0


class ESPNetV2SemanticHead(ESPNetV2Decoder):
    """The ESPNetv2 segmentation decoder as the semantic head ("espnetv2" or "espnetv2_s4").

    The bottom-up decoder of the Cityscapes-pretrained ESPNetv2 (model/espnetv2.py
    :class:`ESPNetV2Decoder`, Mehta et al. 2019) over the ESPNetv2 encoder's strides 2, 4, 8 and
    16 (its stride-32 level is not used), with a classifier for the contract's classes; logits
    bilinearly upsampled (align_corners=True, as trained) from stride ``last_stride`` to
    ``image_size``. "espnetv2_s4" is ``last_stride`` 4: the decoder's last stage at stride 4
    (:class:`ESPNetV2Decoder`), the same weights at about a third of the decoder's cost.

    Constructor:
        encoder_channels: (C2, C4, C8, C16) of the ESPNetv2 backbone; num_classes: S;
        image_size: (Wo, Ho) size of the logits (contract.semantic_size); last_stride: 2 or 4.

    Input: the ESPNetv2 encoder's output (c4, c8, c16, c32, c2), c_s (B, C_s, Hi/s, Wi/s).
    Output: (B, S, Ho, Wo) logits.

    :meth:`load_cityscapes_decoder` loads the pretrained decoder and maps its classifier.
    """

    def __init__(self, encoder_channels: Sequence[int], num_classes: int,
                 image_size: Tuple[int, int] = (512, 320), last_stride: int = 2):
        super().__init__(encoder_channels, num_classes, last_stride)
        self.image_hw = (int(image_size[1]), int(image_size[0]))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        c4, c8, c16, _, c2 = feats
        return resize_bilinear(self.decode(c2, c4, c8, c16), self.image_hw, not self.training)

    def load_cityscapes_decoder(self, state: Dict[str, torch.Tensor],
                                class_names: Sequence[str] = A2D2_SEMANTIC_CLASSES) -> None:
        """Load the decoder tensors of a Cityscapes ESPNetv2 state dict; map its classifier.

        ``state``: the file's non-``base_net`` keys (``bu_dec_l1.*`` ...), with a 20-class
        classifier (:data:`CITYSCAPES_CLASSES`). Each of ``class_names`` (the contract's
        semantic classes, one per output) gets the weight row and bias of its nearest Cityscapes
        class (:data:`A2D2_NEAREST_CITYSCAPES`), non-primary ones (:data:`PRIMARY_A2D2_CLASSES`)
        with :data:`SECONDARY_BIAS_OFFSET` added to the bias.

        Raises ValueError when ``class_names`` does not match the head's outputs or names a class
        without a nearest Cityscapes class; RuntimeError (``load_state_dict``) for missing keys or
        wrong shapes.
        """
        names = tuple(class_names)
        if len(names) != self.classifier.out_channels:
            raise ValueError(f"{len(names)} class names for a head of "
                             f"{self.classifier.out_channels} classes")
        unknown = [n for n in names if n not in A2D2_NEAREST_CITYSCAPES]
        if unknown:
            raise ValueError(f"no nearest Cityscapes class for {unknown} "
                             "(heads.A2D2_NEAREST_CITYSCAPES)")
        cls_key = "bu_dec_l4.merge_layer.3"
        w_src, b_src = state[f"{cls_key}.weight"], state[f"{cls_key}.bias"]
        if w_src.shape[0] != len(CITYSCAPES_CLASSES):
            raise ValueError(f"Cityscapes classifier has {w_src.shape[0]} outputs, expected "
                             f"{len(CITYSCAPES_CLASSES)}")
        rows = torch.tensor([CITYSCAPES_CLASSES.index(A2D2_NEAREST_CITYSCAPES[n]) for n in names])
        offset = torch.tensor([0.0 if n in PRIMARY_A2D2_CLASSES else SECONDARY_BIAS_OFFSET
                               for n in names], dtype=b_src.dtype)
        new = dict(state)
        new[f"{cls_key}.weight"] = w_src[rows].clone()
        new[f"{cls_key}.bias"] = b_src[rows] + offset
        self.load_state_dict(new, strict=True)
