"""Torch datasets for training on A2D2-format data, and the batch collation.

Pipeline per sample::

    A2D2Dataset.load_frame  ->  decoded "raw sample" (cached as .npz)  ->  augment (train only)
        ->  pillarize + detection targets  ->  collate_batch  ->  (inputs, targets, meta)

Raw sample (what is cached, one ``.npz`` per frame; see :func:`raw_sample_from_frame`):
    points   (N, 4) float32 [x, y, z, reflectance 0..255], model lidar frame (camera view frame), m
    image    (Hi, Wi, 3) uint8 RGB resized to ``contract.image_size`` as the node resizes it
             (``runtime.pipeline.resize_to_input``), or absent
    semantic (Hi, Wi) uint8 class ids resized nearest (255 = ignore / unlabelled), or absent
    boxes    (M, 7) float32 [x, y, z, l, w, h, yaw]; labels (M,) int64 detection class index
             (A2D2 box classes mapped through ``contract.box_class_map``; None/unknown -> dropped)
    drivable (grid_h, grid_w) uint8 {0, 1, 255} BEV drivable label (``data/drivable.py``)

Batch (see :func:`collate_batch`):
    inputs:  pillars (sumP, M, F) f32, num_points (sumP,) int32, canvas_index (B, H*W) int64,
             image (B, 3, Hi, Wi) f32 [0, 1], camera_valid (B,) f32
    targets: heatmap (B, K, Hb, Wb), indices (B, Mx), mask (B, Mx), offset (B, Mx, 2), z (B, Mx,
             1), size (B, Mx, 3), rot (B, Mx, 2)  [the keys of ``model.losses``],
             det_valid (B,) f32 (0 = the sample has no lidar/box labels: no detection loss),
             drivable (B, grid_h, grid_w) int64, semantic (B, Hi, Wi) int64
    meta:    list of dicts: key (scene/frame), boxes, labels (ground truth after augmentation)

The cache makes every epoch after the first read only small npz files (images already at the
network's size): decoding A2D2's 1920x1208 PNGs + undistortion dominates the first epoch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.runtime.pipeline import resize_to_input
from bev_mtl_ros.train.augment import AugmentConfig, augment_sample

LOG = logging.getLogger(__name__)
IGNORE = 255

#: the detection targets of ``runtime.targets.build_targets`` that ``model.losses`` reads
LOSS_TARGET_KEYS = ("heatmap", "indices", "mask", "offset", "z", "size", "rot")


# ---------------------------------------------------------------------------------- raw samples
def map_box_classes(box_classes: Sequence[str],
                    contract: ModelContract) -> Tuple[np.ndarray, np.ndarray]:
    """A2D2 box class names -> (keep mask (M,) bool, label (M,) int64 detection-class index).

    Classes mapped to None or missing from ``contract.box_class_map`` (also tried directly against
    ``contract.detection_classes``) are dropped (keep False).
    """
    idx = {n: i for i, n in enumerate(contract.detection_classes)}
    keep = np.zeros(len(box_classes), bool)
    lab = np.full(len(box_classes), -1, np.int64)
    for i, c in enumerate(box_classes):
        det = contract.box_class_map.get(c, c if c in idx else None)
        if det is not None and det in idx:
            keep[i], lab[i] = True, idx[det]
    return keep, lab[keep]


def semantic_id_map(contract: ModelContract) -> Optional[np.ndarray]:
    """Return a LUT (256,) uint8 from A2D2 merged class ids to the contract's semantic class ids.

    By name; classes the contract lacks -> 255. None when they are identical.
    """
    from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES
    if tuple(contract.semantic_classes) == tuple(A2D2_SEMANTIC_CLASSES):
        return None
    lut = np.full(256, IGNORE, np.uint8)
    idx = {n: i for i, n in enumerate(contract.semantic_classes)}
    for i, n in enumerate(A2D2_SEMANTIC_CLASSES):
        if n in idx:
            lut[i] = idx[n]
    return lut


def compute_drivable_label(frame: Any, contract: ModelContract) -> np.ndarray:
    """Return the BEV drivable label (grid_h, grid_w) uint8 {0, 1, 255} of an A2D2Frame.

    Computed by ``data/drivable.py``.

    All cells 255 (ignored in the loss) when the frame has no semantic label.
    """
    gw, gh = contract.grid_size
    if frame.semantic is None:
        return np.full((gh, gw), IGNORE, np.uint8)
    from bev_mtl_ros.data.drivable import frame_drivable_labels
    lab = frame_drivable_labels(frame, contract)
    if lab is None:
        return np.full((gh, gw), IGNORE, np.uint8)
    lab = np.asarray(lab)
    if lab.shape != (gh, gw):
        raise ValueError(f"drivable label shape {lab.shape} != grid (h, w) = {(gh, gw)}")
    return lab.astype(np.uint8)


def raw_sample_from_frame(frame: Any, contract: ModelContract) -> Dict[str, np.ndarray]:
    """Decode an ``A2D2Frame`` into a raw sample at the network's image size (see module docs)."""
    import cv2
    w, h = contract.image_size
    points = np.concatenate([np.asarray(frame.points, np.float32).reshape(-1, 3),
                             np.asarray(frame.reflectance, np.float32).reshape(-1, 1)], axis=1)
    keep, labels = map_box_classes(list(frame.box_classes), contract)
    out: Dict[str, np.ndarray] = {
        "points": points,
        "boxes": np.asarray(frame.boxes, np.float32).reshape(-1, 7)[keep],
        "labels": labels,
        "drivable": compute_drivable_label(frame, contract),
    }
    if frame.image is not None:
        out["image"] = resize_to_input(frame.image, (w, h))
    if frame.semantic is not None:
        sem = cv2.resize(np.asarray(frame.semantic, np.uint8), (w, h),
                         interpolation=cv2.INTER_NEAREST)
        lut = semantic_id_map(contract)
        out["semantic"] = lut[sem] if lut is not None else sem
    return out


def contract_cache_tag(contract: ModelContract) -> str:
    """Short hash of the contract fields that change a cached raw sample."""
    key = repr((contract.point_cloud_range, contract.pillar_size, contract.image_size,
                contract.detection_classes,
                sorted((k, v or "") for k, v in contract.box_class_map.items()),
                contract.semantic_classes, 2))  # format 2: images by resize_to_input
    return hashlib.sha1(key.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------- tensors
def targets_to_tensors(t: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Convert ``runtime.targets.build_targets``'s numpy dict to the tensors the loss reads.

    Returns {heatmap (K, Hb, Wb) f32, indices (Mx,) int64, mask (Mx,) f32, offset (Mx, 2) f32,
    z (Mx, 1) f32, size (Mx, 3) f32, rot (Mx, 2) f32} (:data:`LOSS_TARGET_KEYS`); the counters
    and per-object labels of ``build_targets`` are not used by the loss and are left out.
    """
    out = {k: torch.from_numpy(np.asarray(t[k])) for k in LOSS_TARGET_KEYS}
    out["heatmap"] = out["heatmap"].float()
    out["indices"] = out["indices"].long()
    out["mask"] = out["mask"].float()
    for k in ("offset", "z", "size", "rot"):
        out[k] = out[k].float()
    return out


def sample_to_tensors(sample: Dict[str, Any], contract: ModelContract) -> Dict[str, Any]:
    """Pillarize the points, build detection targets, convert image/labels: one collatable item."""
    from bev_mtl_ros.runtime.pillarize import pillarize
    from bev_mtl_ros.runtime.targets import build_targets
    w, h = contract.image_size
    gw, gh = contract.grid_size
    pb = pillarize(np.ascontiguousarray(sample["points"], dtype=np.float32), contract)
    boxes = np.asarray(sample["boxes"], np.float32).reshape(-1, 7)
    labels = np.asarray(sample["labels"], np.int64).reshape(-1)
    tg = targets_to_tensors(build_targets(boxes, labels, contract))
    img = sample.get("image")
    camera_valid = img is not None and not sample.get("camera_dropped", False)
    if camera_valid:
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
    else:
        image = torch.zeros(3, h, w)
    sem = sample.get("semantic")
    if sem is None or not camera_valid:
        semantic = torch.full((h, w), IGNORE, dtype=torch.int64)
    else:
        semantic = torch.from_numpy(np.ascontiguousarray(sem)).long()
    drv = sample.get("drivable")
    drivable = (torch.from_numpy(np.ascontiguousarray(drv)).long() if drv is not None
                else torch.full((gh, gw), IGNORE, dtype=torch.int64))
    return {"pillar_batch": pb, "image": image, "camera_valid": float(camera_valid), "targets": tg,
            "semantic": semantic, "drivable": drivable,
            "det_valid": 0.0 if sample.get("camera_only", False) else 1.0,
            "meta": {"key": sample.get("key", ""), "boxes": boxes, "labels": labels}}


def _pad_stack(tensors: List[torch.Tensor]) -> torch.Tensor:
    """Stack along a new batch dim, zero-padding the first dim to the longest (object lists)."""
    n = max(int(t.shape[0]) for t in tensors)
    out = tensors[0].new_zeros((len(tensors), n) + tuple(tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def collate_batch(items: List[Dict[str, Any]]):
    """Collate :func:`sample_to_tensors` items -> (inputs, targets, meta) (see module docs)."""
    from bev_mtl_ros.runtime.pillarize import collate_pillars
    pillars, num_points, canvas_index = collate_pillars([it["pillar_batch"] for it in items])
    inputs = {"pillars": pillars, "num_points": num_points, "canvas_index": canvas_index,
              "image": torch.stack([it["image"] for it in items]),
              "camera_valid": torch.tensor([it["camera_valid"] for it in items],
                                           dtype=torch.float32)}
    targets: Dict[str, torch.Tensor] = {}
    for k in items[0]["targets"]:
        vals = [it["targets"][k] for it in items]
        targets[k] = torch.stack(vals) if k == "heatmap" else _pad_stack(vals)
    targets["drivable"] = torch.stack([it["drivable"] for it in items])
    targets["det_valid"] = torch.tensor([it["det_valid"] for it in items], dtype=torch.float32)
    targets["semantic"] = torch.stack([it["semantic"] for it in items])
    return inputs, targets, [it["meta"] for it in items]


# ---------------------------------------------------------------------------------- datasets
class TrainDataset(Dataset):
    """Base of every training dataset: what ``train.train.train`` uses besides indexing.

    Items are :func:`sample_to_tensors` dicts (collated by :func:`collate_batch`).

    Attributes:
        contract: the model contract every item is built for.
        seed: base seed of the per-item random streams (augmentation, camera dropout, crops);
            ``train`` sets it to the config's seed.
    """

    contract: ModelContract
    seed: int

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of epoch ``epoch`` (``train`` calls it once per epoch)."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Dict[str, Any]:
        raise NotImplementedError


class RawSampleDataset(TrainDataset):
    """Training dataset over raw samples (base class; see :class:`A2D2TrainDataset`).

    Args:
        contract: the model contract.
        augment: AugmentConfig or None (no augmentation).
        camera_dropout: probability of dropping the camera (camera_valid = 0, semantic ignored) so
            the lidar-only path is trained too.
        seed: base seed; each item draws from ``default_rng((seed, epoch, index))`` ->
        reproducible.
        semantic_labels: False = every pixel's semantic label is ignored (255), so these samples
            train every head but the semantic one (config ``data: {semantic: false}``).
    """

    def __init__(self, contract: ModelContract, augment: Optional[AugmentConfig] = None,
                 camera_dropout: float = 0.0, seed: int = 0, semantic_labels: bool = True):
        self.contract = contract
        self.augment = augment
        self.semantic_labels = bool(semantic_labels)
        self.camera_dropout = float(camera_dropout)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation random stream (call once per epoch)."""
        self.epoch = int(epoch)

    def raw(self, i: int) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> Dict[str, Any]:
        sample = dict(self.raw(i))
        if not self.semantic_labels:
            sample.pop("semantic", None)
        if self.augment is not None or self.camera_dropout > 0:
            rng = np.random.default_rng((self.seed, self.epoch, int(i)))
            if self.augment is not None:
                sample = augment_sample(sample, self.contract, self.augment, rng)
            if self.camera_dropout > 0 and rng.random() < self.camera_dropout:
                sample["camera_dropped"] = True
        return sample_to_tensors(sample, self.contract)


class InMemoryDataset(RawSampleDataset):
    """Raw samples held in memory (tests, small synthetic sets)."""

    def __init__(self, samples: Sequence[Dict[str, Any]], contract: ModelContract, **kw):
        super().__init__(contract, **kw)
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, i: int) -> Dict[str, Any]:
        return self.samples[i]


class A2D2TrainDataset(RawSampleDataset):
    """Frames of an A2D2(-format) directory as training samples, with an npz cache.

    Args:
        root: A2D2-format directory (see ``data/a2d2.py``).
        contract: model contract (image size, grid, classes).
        cache_dir: where decoded raw samples are cached
            (``<cache_dir>/<contract tag>/<scene>_<frame>.npz``); None = no cache.
        camera: A2D2 camera name.
        require: modalities a frame must have to be listed (:class:`A2D2Dataset`); real A2D2
            frames used as full samples need ``("lidar", "label3D")``: a real lidar frame
            without its ``label3D`` file would teach that every vehicle is background.
        repeats: the dataset lists every frame this many times (a few real frames among
            thousands of synthetic ones).
        augment, camera_dropout, seed: see :class:`RawSampleDataset`.
    Raises FileNotFoundError (from A2D2Dataset) when root holds no frames.
    """

    def __init__(self, root: str, contract: ModelContract, cache_dir: Optional[str] = None,
                 camera: str = "front_center", require: Sequence[str] = ("lidar",),
                 repeats: int = 1, **kw):
        super().__init__(contract, **kw)
        from bev_mtl_ros.data.a2d2 import A2D2Dataset
        self.reader = A2D2Dataset(root, camera=camera, require=tuple(require))
        self.repeats = max(1, int(repeats))
        self.cache_dir = (os.path.join(cache_dir, contract_cache_tag(contract)) if cache_dir
                          else None)
        if self.cache_dir:
            os.makedirs(self.cache_dir, exist_ok=True)

    @property
    def num_frames(self) -> int:
        """Number of distinct frames (``len(self)`` = frames x repeats)."""
        return len(self.reader)

    def __len__(self) -> int:
        return len(self.reader) * self.repeats

    def _cache_path(self, i: int) -> Optional[str]:
        if not self.cache_dir:
            return None
        rec = self.reader.frames[i]
        name = f"{rec.scene}_{rec.frame}".replace(os.sep, "_")
        return os.path.join(self.cache_dir, name + ".npz")

    def raw(self, i: int) -> Dict[str, Any]:
        i = int(i) % len(self.reader)
        path = self._cache_path(i)
        if path and os.path.isfile(path):
            try:
                with np.load(path) as z:
                    d = {k: z[k] for k in z.files}
                d["key"] = self.reader.frames[i].key
                return d
            except (OSError, ValueError, zlib.error, EOFError) as e:  # torn write: rebuild
                LOG.warning("cache file %s unreadable (%s); rebuilding", path, e)
        d = raw_sample_from_frame(self.reader.load_frame(i), self.contract)
        if path:
            tmp = f"{path}.{os.getpid()}.tmp.npz"
            np.savez(tmp, **d)
            os.replace(tmp, path)
        d["key"] = self.reader.frames[i].key
        return d

    def warm_cache(self, progress: bool = True) -> None:
        """Decode every frame into the cache once (done by rank 0 before training)."""
        it = range(len(self.reader))
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="caching frames", unit="frame")
        for i in it:
            path = self._cache_path(i)
            if path is None or not os.path.isfile(path):
                self.raw(i)


class RealCameraDataset(RawSampleDataset):
    """Camera + semantic-label frames without lidar as semantic-only training samples.

    Such as the real A2D2 frames in ``test/data/real_a2d2``.

    Each item is one frame under a random resized crop (area fraction ~ U(crop_scale), aspect
    ratio of the network input, uniform position), resized to ``contract.image_size``, then the
    usual augmentation (horizontal flip with the (empty) cloud, photometric jitter). The cloud is
    empty, there are no boxes and the drivable label is all ignore; the sample is marked
    ``camera_only`` so the detection loss skips it (``det_valid`` = 0 in the batch). The camera
    is never dropped. Frames are decoded (undistorted, as the A2D2 reader returns them) and
    resized to ``work_scale`` x the network input size; up to ``preload_limit`` frames (a few
    committed real frames) are decoded once and held in memory, a larger set (a full A2D2
    semantic split: ~41k frames, ~2.5 MB each at the default work size) is decoded on access
    instead (about 0.1 s per frame; the training loader's workers overlap it with the step).

    Args:
        root: folder of A2D2-format frames with camera and label (flat folder or A2D2 tree).
        contract: model contract (image size, semantic classes).
        repeats: the dataset lists every frame this many times (oversampling a few real frames
            against thousands of synthetic ones).
        crop_scale: (min, max) fraction of the image area kept by the crop.
        work_scale: stored resolution relative to ``contract.image_size`` (>= 1).
        preload_limit: hold the decoded frames in memory when there are at most this many.
        camera, augment, seed: see :class:`A2D2TrainDataset` / :class:`RawSampleDataset`.
    Raises:
        FileNotFoundError when ``root`` holds no frame with both camera and label.
    """

    def __init__(self, root: str, contract: ModelContract, repeats: int = 1,
                 crop_scale: Tuple[float, float] = (0.4, 1.0), work_scale: float = 2.0,
                 camera: str = "front_center", preload_limit: int = 256, **kw):
        kw.pop("camera_dropout", None)
        super().__init__(contract, camera_dropout=0.0, **kw)
        from bev_mtl_ros.data.a2d2 import A2D2Dataset
        self.reader = A2D2Dataset(root, camera=camera, require=("camera", "label"))
        if not len(self.reader):
            raise FileNotFoundError(f"{root}: no frame with both a camera image and a label")
        self.repeats = max(1, int(repeats))
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        w, h = contract.image_size
        self.work_size = (int(round(w * work_scale)), int(round(h * work_scale)))
        self.lut = semantic_id_map(contract)
        self.keys: List[str] = [fr.key for fr in self.reader.frames]
        self.preloaded: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None
        if len(self.reader) <= int(preload_limit):
            self.preloaded = [self._decode(k) for k in range(len(self.reader))]

    @property
    def num_frames(self) -> int:
        """Number of distinct frames (``len(self)`` = frames x repeats)."""
        return len(self.keys)

    def _decode(self, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Return frame ``k`` at the work size: (H, W, 3) uint8 RGB, (H, W) uint8 class ids."""
        import cv2
        f = self.reader.load_frame(k)
        sem = np.asarray(f.semantic, np.uint8)
        image = resize_to_input(f.image, self.work_size)
        sem = cv2.resize(sem, self.work_size, interpolation=cv2.INTER_NEAREST)
        return image, self.contract_ids(sem)

    def contract_ids(self, sem: np.ndarray) -> np.ndarray:
        """Map decoded A2D2 class ids (uint8, any shape) to the contract's semantic class ids."""
        return self.lut[sem] if self.lut is not None else sem

    def __len__(self) -> int:
        return self.num_frames * self.repeats

    def _sample(self, i: int, rng: Optional[np.random.Generator]) -> Dict[str, Any]:
        import cv2
        k = int(i) % self.num_frames
        img, sem = self.preloaded[k] if self.preloaded is not None else self._decode(k)
        w, h = self.contract.image_size
        H, W = sem.shape
        if rng is not None:
            frac = float(rng.uniform(*self.crop_scale))
            cw, ch = max(8, int(round(W * np.sqrt(frac)))), max(8, int(round(H * np.sqrt(frac))))
            x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
            img, sem = img[y0:y0 + ch, x0:x0 + cw], sem[y0:y0 + ch, x0:x0 + cw]
        return {"points": np.zeros((0, 4), np.float32), "boxes": np.zeros((0, 7), np.float32),
                "labels": np.zeros(0, np.int64), "drivable": None, "camera_only": True,
                "image": resize_to_input(np.ascontiguousarray(img), (w, h)),
                "semantic": cv2.resize(sem, (w, h), interpolation=cv2.INTER_NEAREST),
                "key": self.keys[k]}

    def raw(self, i: int) -> Dict[str, Any]:
        """Return the whole frame at the network's input size (no crop)."""
        return self._sample(i, None)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, int(i), 1))
        sample = self._sample(i, rng)
        if self.augment is not None:
            sample = augment_sample(sample, self.contract, self.augment, rng)
        return sample_to_tensors(sample, self.contract)


class MixedDataset(TrainDataset):
    """Several datasets with one contract, listed one after the other (like ``ConcatDataset``).

    ``seed`` and :meth:`set_epoch` are forwarded to each part.

    Raises:
        ValueError when the parts' contracts differ or no part is given.
    """

    def __init__(self, parts: Sequence[RawSampleDataset]):
        if not parts:
            raise ValueError("MixedDataset needs at least one dataset")
        self.parts = list(parts)
        self.contract = self.parts[0].contract
        for p in self.parts[1:]:
            if p.contract.mismatches(self.contract):
                raise ValueError("datasets differ in contract: "
                                 f"{sorted(p.contract.mismatches(self.contract))}")
        self._ends = np.cumsum([len(p) for p in self.parts])

    @property
    def seed(self) -> int:
        """Base seed of the parts (the same for all of them once set here)."""
        return self.parts[0].seed

    @seed.setter
    def seed(self, value: int) -> None:
        for p in self.parts:
            p.seed = int(value)

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s random stream in every part."""
        for p in self.parts:
            p.set_epoch(epoch)

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, i: int) -> Dict[str, Any]:
        if not 0 <= int(i) < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self._ends, int(i), side="right"))
        start = int(self._ends[k - 1]) if k else 0
        return self.parts[k][int(i) - start]


def semantic_pixel_counts(dataset: TrainDataset, num_classes: int,
                          frames_per_part: int = 200) -> np.ndarray:
    """Return the expected labelled pixels per semantic class in one epoch of ``dataset``.

    Each part (the dataset itself, or each part of a :class:`MixedDataset`) is sampled at up to
    ``frames_per_part`` evenly spaced distinct frames (uncropped labels at the network input
    size, :meth:`RawSampleDataset.raw`); their mean histogram is scaled by the part's length, so
    repeats count as often as an epoch draws them. Pixels labelled 255 (ignore) or >=
    ``num_classes`` are not counted.

    Returns:
        (num_classes,) float64 pixel counts (for ``model.losses.enet_class_weights``).
    Raises:
        TypeError when a part is not a :class:`RawSampleDataset`.
    """
    parts = dataset.parts if isinstance(dataset, MixedDataset) else [dataset]
    total = np.zeros(int(num_classes), np.float64)
    for part in parts:
        if not isinstance(part, RawSampleDataset):
            raise TypeError(f"semantic_pixel_counts: {type(part).__name__} has no raw samples")
        distinct = (part.num_frames if isinstance(part, (RealCameraDataset, A2D2TrainDataset))
                    else len(part))
        picks = np.unique(np.linspace(0, distinct - 1, min(distinct, frames_per_part)).astype(int))
        hist = np.zeros(int(num_classes), np.float64)
        for i in picks:
            sem = part.raw(int(i)).get("semantic")
            if sem is not None:
                sem = np.asarray(sem).ravel()
                hist += np.bincount(sem[sem < num_classes], minlength=num_classes)[:num_classes]
        total += hist / max(1, len(picks)) * len(part)
    return total
