"""The model contract: everything the trained model and the node must agree on.

One dataclass, saved inside every exported ONNX file (metadata key ``bev_mtl_ros.contract``) and
every PyTorch checkpoint (key ``"contract"``), and checked by the node at start-up.

Frames and units
----------------
Points are in the *lidar frame of the model*, which for A2D2 is the front-center camera's **view
frame** (x forward along the optical axis, y left, z up; REP 103 axes), in metres. The ground lies
at about z = -1.78 m in that frame. Yaw is about +z, in radians, 0 along +x, counter-clockwise.

BEV grid
--------
The pillar grid covers ``point_cloud_range`` = (x_min, y_min, z_min, x_max, y_max, z_max) with
square pillars of ``pillar_size`` = (dx, dy) metres. Cell (iy, ix) covers
x in [x_min + ix*dx, x_min + (ix+1)*dx) and y in [y_min + iy*dy, y_min + (iy+1)*dy); the flat cell
index is ``iy * grid_w + ix``. BEV arrays are (H, W) = (grid_h, grid_w) with row = iy, col = ix.
The detection heads run at ``bev_stride`` times coarser cells; the drivable-area head at pillar
resolution.

Default range: x 0 .. 81.92 m, y -40.96 .. 40.96 m. A2D2's front-center camera has a horizontal
half field of view of atan(960 / 1687.3) = 29.6 deg (undistorted ``CamMatrix``), so at 70 m the
frustum is +-39.8 m wide: the default range covers it to 70 m and beyond.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

#: A2D2's 38 merged semantic classes (numbered colour variants such as "Car 1".."Car 4" merged),
#: in order of first appearance in A2D2's ``class_list.json``. Index = semantic class id.
A2D2_SEMANTIC_CLASSES: Tuple[str, ...] = (
    "Car", "Bicycle", "Pedestrian", "Truck", "Small vehicles", "Traffic signal", "Traffic sign",
    "Utility vehicle", "Sidebars", "Speed bumper", "Curbstone", "Solid line", "Irrelevant signs",
    "Road blocks", "Tractor", "Non-drivable street", "Zebra crossing", "Obstacles / trash",
    "Poles",
    "RD restricted area", "Animals", "Grid structure", "Signal corpus", "Drivable cobblestone",
    "Electronic traffic", "Slow drive area", "Nature object", "Parking area", "Sidewalk",
    "Ego car",
    "Painted driv. instr.", "Traffic guide obj.", "Dashed line", "RD normal street", "Sky",
    "Buildings", "Blurred area", "Rain dirt",
)

#: A2D2's 14 ``label3D`` box classes.
A2D2_BOX_CLASSES: Tuple[str, ...] = (
    "Car", "Pedestrian", "Truck", "VanSUV", "Cyclist", "Bus", "MotorBiker", "Bicycle",
    "UtilityVehicle", "Motorcycle", "CaravanTransporter", "Animal", "Trailer", "EmergencyVehicle",
)

#: Default detection classes of the CenterPoint head.
DETECTION_CLASSES: Tuple[str, ...] = ("Car", "Truck", "Pedestrian", "Cyclist")

#: A2D2 box class -> detection class; classes mapped to None are ignored in training and
#: evaluation.
A2D2_BOX_CLASS_MAP: Dict[str, Optional[str]] = {
    "Car": "Car", "VanSUV": "Car", "EmergencyVehicle": "Car",
    "Truck": "Truck", "Bus": "Truck", "UtilityVehicle": "Truck", "CaravanTransporter": "Truck",
    "Trailer": "Truck",
    "Pedestrian": "Pedestrian",
    "Cyclist": "Cyclist", "Bicycle": "Cyclist", "MotorBiker": "Cyclist", "Motorcycle": "Cyclist",
    "Animal": None,
}

#: Semantic classes whose ground counts as drivable in the BEV drivable-area labels.
DRIVABLE_SEMANTIC_CLASSES: Tuple[str, ...] = (
    "RD normal street", "Drivable cobblestone", "Slow drive area", "Parking area",
    "RD restricted area", "Zebra crossing", "Painted driv. instr.", "Solid line", "Dashed line",
)


class ContractError(ValueError):
    """Raised when a contract is malformed or two contracts (model vs. node config) disagree."""


@dataclass
class ModelContract:
    """Everything a trained model and its users must agree on. Serialisable to JSON/YAML.

    Attributes:
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), metres, model lidar frame.
        pillar_size: (dx, dy) pillar footprint in metres.
        max_pillars: pillars kept per frame (the most-populated ones, see runtime.pillarize).
        max_points_per_pillar: points kept per pillar (first ones in input order).
        point_features: per-point input channels, in order; intensity is multiplied by
            ``intensity_scale`` so that the network sees values in [0, 1].
        intensity_scale: factor applied to the raw intensity (A2D2 reflectance is 0..255 -> 1/255).
        image_size: (width, height) of the network's camera input, pixels; both divisible by 32.
        image_mean, image_std: per-channel RGB normalisation applied inside the network to
            images scaled to [0, 1]; default: what the pretrained EfficientNet-Lite0 camera
            encoder expects (TF EfficientNet-Lite: mean 127/255, std 128/255). Models saved with
            the earlier default carry the ImageNet mean / std (0.485, 0.456, 0.406) /
            (0.229, 0.224, 0.225) in their contract.
        detection_classes: names of the CenterPoint heat-map channels.
        box_class_map: A2D2 box class -> detection class (or None to ignore).
        semantic_classes: names of the semantic logits' channels (A2D2's 38 merged classes).
        bev_stride: detection-head cell size in pillars (>= 2 gives a stride-2 backbone).
        semantic_stride: the semantic logits come at ``image_size / semantic_stride``
            (:attr:`semantic_size`): 1, 2 or 4. Users take the argmax there and resize the class
            ids to the camera image (nearest neighbour), which is cheaper than resizing 38
            channels of logits; training upsamples the logits to the label (bilinear) for the
            loss. Contracts saved without it read as 1 (logits at the full network input).
        lidar_only_supported: the network has a defined lidar-only path (camera_valid = 0).
        nominal_camera: (fx, fy, cx, cy, width, height) of the undistorted camera the model was
            trained for (pixels; default A2D2 front_center's ``CamMatrix`` at 1920x1208). Images
            are resized to ``image_size``, so only the field of view matters: the node warns once
            when a camera's focal length (scaled to this width) or aspect ratio differs.
        frame_id: the model lidar frame (ROS frame name): points, ``point_cloud_range``, boxes and
            BEV outputs are in it. A2D2: ``cam_front_center``, the front-center camera's view
            frame.
            The node's default ``target_frame``. Contracts saved without it read as the default.
        version: contract schema version.
    """

    point_cloud_range: Tuple[float, float, float, float, float, float] = (
        0.0, -40.96, -3.0, 81.92, 40.96, 3.0)
    pillar_size: Tuple[float, float] = (0.32, 0.32)
    max_pillars: int = 12000
    max_points_per_pillar: int = 20
    point_features: Tuple[str, ...] = ("x", "y", "z", "intensity")
    intensity_scale: float = 1.0 / 255.0
    image_size: Tuple[int, int] = (512, 320)
    # the EfficientNet-Lite0 ImageNet weights' normalisation, (x*255 - 127) / 128
    # (model/camera_encoder.py LITE_IMAGE_MEAN / LITE_IMAGE_STD)
    image_mean: Tuple[float, float, float] = (127.0 / 255.0, 127.0 / 255.0, 127.0 / 255.0)
    image_std: Tuple[float, float, float] = (128.0 / 255.0, 128.0 / 255.0, 128.0 / 255.0)
    detection_classes: Tuple[str, ...] = DETECTION_CLASSES
    box_class_map: Dict[str,
                        Optional[str]] = (field(default_factory=lambda: dict(A2D2_BOX_CLASS_MAP)))
    semantic_classes: Tuple[str, ...] = A2D2_SEMANTIC_CLASSES
    bev_stride: int = 2
    semantic_stride: int = 1
    lidar_only_supported: bool = True
    nominal_camera: Tuple[float, float, float, float, int, int] = (
        1687.33691, 1783.42847, 965.434141, 684.41936, 1920, 1208)
    frame_id: str = "cam_front_center"
    version: int = 1

    # ------------------------------------------------------------------ derived geometry
    @property
    def grid_size(self) -> Tuple[int, int]:
        """(grid_w, grid_h): number of pillars along x and y."""
        x0, y0, _, x1, y1, _ = self.point_cloud_range
        return (int(round((x1 - x0) / self.pillar_size[0])),
                int(round((y1 - y0) / self.pillar_size[1])))

    @property
    def bev_size(self) -> Tuple[int, int]:
        """(W, H) of the detection-head output grid: grid_size // bev_stride."""
        gw, gh = self.grid_size
        return (gw // self.bev_stride, gh // self.bev_stride)

    @property
    def semantic_size(self) -> Tuple[int, int]:
        """(W, H) of the semantic logits: image_size // semantic_stride."""
        w, h = self.image_size
        return (w // self.semantic_stride, h // self.semantic_stride)

    @property
    def num_decorated_features(self) -> int:
        """Return the channels per point after decoration.

        Raw features + 3 offsets to the pillar mean (x, y, z) + 2 offsets to the pillar centre
        (x, y) (PointPillars, Lang et al. 2019, Sec. 2.1).
        """
        return len(self.point_features) + 5

    # ------------------------------------------------------------------ validation / IO
    def validate(self) -> "ModelContract":
        """Check internal consistency; returns self. Raises ContractError naming the bad field."""
        x0, y0, z0, x1, y1, z1 = self.point_cloud_range
        if not (x1 > x0 and y1 > y0 and z1 > z0):
            raise ContractError("point_cloud_range must have min < max on every axis: "
                                f"{self.point_cloud_range}")
        for name, extent, size in (("x", x1 - x0, self.pillar_size[0]),
                                   ("y", y1 - y0, self.pillar_size[1])):
            n = extent / size
            if size <= 0 or abs(n - round(n)) > 1e-6:
                raise ContractError(f"pillar_size {size} does not divide the {name} range "
                                    f"{extent}")
        gw, gh = self.grid_size
        if (gw % self.bev_stride or gh % self.bev_stride or (gw // self.bev_stride) % 4
                or (gh // self.bev_stride) % 4):
            raise ContractError(f"grid {gw}x{gh} must be divisible by "
                                f"4*bev_stride={4 * self.bev_stride}")
        w, h = self.image_size
        if w % 32 or h % 32:
            raise ContractError(f"image_size {self.image_size} must be divisible by 32")
        if self.semantic_stride not in (1, 2, 4):
            raise ContractError(f"semantic_stride must be 1, 2 or 4, got {self.semantic_stride}")
        if tuple(self.point_features[:3]) != ("x", "y", "z"):
            raise ContractError(f"point_features must start with x, y, z: {self.point_features}")
        if len(self.nominal_camera) != 6 or min(self.nominal_camera) <= 0:
            raise ContractError("nominal_camera must be 6 positive numbers (fx, fy, cx, cy, "
                                f"width, height), got {self.nominal_camera}")
        if not isinstance(self.frame_id, str) or not self.frame_id.strip("/ "):
            raise ContractError(f"frame_id must be a non-empty frame name, got {self.frame_id!r}")
        if self.max_pillars <= 0 or self.max_points_per_pillar <= 0:
            raise ContractError("max_pillars and max_points_per_pillar must be positive")
        unknown = {v for v in self.box_class_map.values()
                   if v is not None} - set(self.detection_classes)
        if unknown:
            raise ContractError("box_class_map maps to unknown detection classes "
                                f"{sorted(unknown)}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))

    def to_json(self) -> str:
        """Compact, key-sorted JSON text (stable: equal contracts give equal text)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelContract":
        """Build from a dict (e.g. parsed JSON/YAML).

        Unknown keys raise ContractError; tuples are restored; the result is validated.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ContractError(f"unknown contract keys: {sorted(unknown)}")
        kw: Dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if isinstance(v, list):
                v = tuple(v)
            kw[f.name] = v
        return cls(**kw).validate()

    @classmethod
    def from_json(cls, text: str) -> "ModelContract":
        """Parse JSON text produced by :meth:`to_json`. Raises ContractError on bad JSON."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ContractError(f"contract is not valid JSON: {e}") from e
        return cls.from_dict(d)

    def save(self, path: str) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        with open(path, "w", encoding="utf-8") as f:
            if str(path).endswith((".yaml", ".yml")):
                import yaml
                yaml.safe_dump(self.to_dict(), f, sort_keys=True)
            else:
                f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str) -> "ModelContract":
        """Read YAML or JSON written by :meth:`save`. Raises OSError or ContractError."""
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
        if str(path).endswith((".yaml", ".yml")):
            import yaml
            return cls.from_dict(yaml.safe_load(text))
        return cls.from_json(text)

    def mismatches(self, other: "ModelContract") -> Dict[str, Tuple[Any, Any]]:
        """Fields whose values differ: {name: (self_value, other_value)}; empty when equal."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}


#: ONNX metadata key under which the contract JSON is stored.
ONNX_CONTRACT_KEY = "bev_mtl_ros.contract"


def contract_from_metadata(meta: Mapping[str, str], path: str) -> ModelContract:
    """Return the contract in an ONNX model's metadata map (key :data:`ONNX_CONTRACT_KEY`).

    ``meta`` as ``onnx`` (``metadata_props``) or onnxruntime (``custom_metadata_map``) give it;
    ``path`` only names the file in errors.

    Raises:
        ContractError: the entry is missing (not exported by bev_mtl_ros) or invalid.
    """
    if ONNX_CONTRACT_KEY not in meta:
        raise ContractError(f"{path} has no '{ONNX_CONTRACT_KEY}' metadata (not exported by "
                            "bev_mtl_ros?)")
    try:
        return ModelContract.from_json(meta[ONNX_CONTRACT_KEY])
    except (ContractError, TypeError) as e:
        raise ContractError(f"{path}: invalid contract metadata: {e}") from e
