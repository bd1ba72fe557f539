"""Training-time augmentation that keeps lidar, boxes, camera image and labels consistent.

A sample is a dict (see ``train/dataset.py``):
    points   (N, 4) float32 [x, y, z, intensity_raw] in the model lidar frame (= camera view frame)
    boxes    (M, 7) float32 [x, y, z, l, w, h, yaw];  labels (M,) int64
    image    (Hi, Wi, 3) uint8 RGB at the contract's image size, or None
    semantic (Hi, Wi) uint8 class ids (255 = ignore), or None
    drivable (grid_h, grid_w) uint8 {0, 1, 255} BEV label (row = iy, col = ix)

Transforms (applied in this order, each with its own probability / range):

* **Global flip about the x axis** (y -> -y, yaw -> -yaw). In the camera view frame the image
  column is ``col = cx - fx * y / x``, so mirroring y is a horizontal mirror of the image about the
  column ``cx``. The image and semantic label are flipped horizontally together with the points,
  boxes and the BEV label (rows iy -> grid_h - 1 - iy, which needs a y range symmetric about 0;
  otherwise the flip is refused with ValueError). The mirror is about the image centre, not about
  ``cx``: for A2D2's front camera (cx = 976.9 of 1920 px) that is an error of 17 px (0.5 deg
  azimuth), negligible for the fusion, which attends by azimuth.
* **Global scaling** of x, y, z about the origin (the camera centre) by s ~ U(scale_range): box
  centres and sizes scale too. Because the projection ``col = cx - fx*y/x, row = cy - fz*z/x`` is
  invariant to a common scale, the camera image stays exactly consistent; the BEV label grid is
  resampled (nearest, cells that map outside the grid become 255 = ignore).
* **Global rotation about z** by theta ~ U(-rot_deg, rot_deg) (default 0 = off). The camera image
  is NOT rotated (a yaw of the scene cannot be reproduced by an image warp without depth), so the
  camera branch sees objects at an azimuth off by up to theta: keep it small (<= 5 deg) or off.
  Boxes' yaw += theta; the BEV label is resampled like for scaling.
* **Photometric jitter** of the image only: brightness, contrast and saturation factors in
  [1 - j, 1 + j] and hue untouched (labels unaffected).

:func:`fourier_domain_adaptation` (Yang & Soatto 2020) restyles a synthetic image with a real
image's low-frequency spectrum; it is a building block for synthetic-to-real training, measured
and not adopted (models/README.md), not part of :func:`augment_sample`; so is :func:`class_mix`
(ClassMix / DACS), which pastes half of one labelled frame's classes onto another.

Randomness comes only from the ``numpy.random.Generator`` passed in, so runs are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import scipy.fft

from bev_mtl_ros.model.contract import ModelContract

IGNORE = 255


@dataclass
class AugmentConfig:
    """Augmentation settings (all off with ``enabled=False``).

    Attributes:
        flip_prob: probability of the y -> -y flip (with the horizontal image flip).
        scale_range: (min, max) global scale factor; (1, 1) = off.
        rot_deg: max absolute rotation about z in degrees; 0 = off (see module docstring).
        brightness, contrast, saturation: photometric jitter amplitudes j (factor in [1-j, 1+j]).
        photometric_prob: probability of applying the photometric jitter.
    """

    enabled: bool = True
    flip_prob: float = 0.5
    scale_range: Tuple[float, float] = (0.95, 1.05)
    rot_deg: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    photometric_prob: float = 0.8

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "AugmentConfig":
        """Build from a config mapping; unknown keys raise ValueError naming them."""
        d = dict(d or {})
        names = set(cls.__dataclass_fields__)
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}; expected {sorted(names)}")
        if "scale_range" in d:
            d["scale_range"] = tuple(float(v) for v in d["scale_range"])
        return cls(**d)


def _bev_affine_resample(label: np.ndarray, contract: ModelContract, A: np.ndarray) -> np.ndarray:
    """Resample a BEV label grid under the point transform p' = A p (A 2x2 on (x, y)).

    Output cell c' takes the label of the source cell containing A^-1 c' (nearest); cells whose
    source lies outside the grid become IGNORE.
    """
    import cv2
    x0, y0 = contract.point_cloud_range[0], contract.point_cloud_range[1]
    dx, dy = contract.pillar_size
    # pixel (u=col, v=row) <-> metric: x = x0 + (u + .5) dx, y = y0 + (v + .5) dy
    P = np.array([[dx, 0, x0 + 0.5 * dx], [0, dy, y0 + 0.5 * dy], [0, 0, 1]], np.float64)
    Pinv = np.linalg.inv(P)
    Ainv = np.eye(3)
    Ainv[:2, :2] = np.linalg.inv(A)
    M = (Pinv @ Ainv @ P)[:2]  # destination pixel -> source pixel
    h, w = label.shape
    return cv2.warpAffine(label, M, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)


def flip_y(sample: Dict[str, Any], contract: ModelContract) -> Dict[str, Any]:
    """Mirror the sample about the x axis (y -> -y) and flip image and labels horizontally.

    Raises ValueError when the contract's y range is not symmetric about 0 (the BEV rows would not
    map onto themselves).
    """
    y0, y1 = contract.point_cloud_range[1], contract.point_cloud_range[4]
    if abs(y0 + y1) > 1e-6:
        raise ValueError(f"flip needs a y range symmetric about 0, got {y0}..{y1}")
    out = dict(sample)
    pts = sample["points"].copy()
    pts[:, 1] = -pts[:, 1]
    out["points"] = pts
    b = sample["boxes"].copy()
    if len(b):
        b[:, 1] = -b[:, 1]
        b[:, 6] = -b[:, 6]
    out["boxes"] = b
    if sample.get("drivable") is not None:
        out["drivable"] = np.ascontiguousarray(sample["drivable"][::-1])
    if sample.get("image") is not None:
        out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
    if sample.get("semantic") is not None:
        out["semantic"] = np.ascontiguousarray(sample["semantic"][:, ::-1])
    return out


def rotate_scale(sample: Dict[str, Any], contract: ModelContract, theta: float,
                 scale: float) -> Dict[str, Any]:
    """Rotate about z by ``theta`` radians and scale x, y, z by ``scale`` about the origin.

    Points and boxes are transformed exactly; the BEV drivable label is resampled; image and
    semantic label are untouched (exact for scaling, approximate for rotation, see module docs).
    """
    out = dict(sample)
    c, s = math.cos(theta), math.sin(theta)
    R = np.array([[c, -s], [s, c]], np.float64) * scale
    pts = sample["points"].astype(np.float32, copy=True)
    pts[:, :2] = pts[:, :2] @ R.T.astype(np.float32)
    pts[:, 2] *= scale
    out["points"] = pts
    b = sample["boxes"].astype(np.float32, copy=True)
    if len(b):
        b[:, :2] = b[:, :2] @ R.T.astype(np.float32)
        b[:, 2] *= scale
        b[:, 3:6] *= scale
        b[:, 6] = (b[:, 6] + theta + np.pi) % (2 * np.pi) - np.pi
    out["boxes"] = b
    if sample.get("drivable") is not None:
        out["drivable"] = _bev_affine_resample(sample["drivable"], contract, R)
    return out


def photometric(image: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float,
                saturation: float) -> np.ndarray:
    """Apply random brightness/contrast/saturation; (H, W, 3) uint8 RGB in, uint8 out.

    Each factor ~ U(1-j, 1+j); a random order is not needed because each is linear.
    """
    img = image.astype(np.float32)
    if brightness > 0:
        img *= rng.uniform(1 - brightness, 1 + brightness)
    if contrast > 0:
        mean = img.mean()
        img = (img - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    if saturation > 0:
        gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
        img = (img - gray[..., None]) * rng.uniform(1 - saturation, 1
                                                    + saturation) + gray[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def fourier_amplitude(image: np.ndarray) -> np.ndarray:
    """Amplitude spectrum of an image, per channel, for :func:`fourier_domain_adaptation`.

    |real FFT| over the two image axes (scipy.fft.rfft2, float32): (H, W, 3) uint8/float ->
    (H, W // 2 + 1, 3) float32; unshifted, so the lowest frequencies sit at rows 0 and H - 1,
    column 0.
    """
    return np.abs(scipy.fft.rfft2(np.asarray(image, np.float32), axes=(0, 1)))


def fourier_domain_adaptation(image: np.ndarray, target_amplitude: np.ndarray,
                              beta: float) -> np.ndarray:
    """Give ``image`` the low-frequency amplitude spectrum of a target-domain image.

    Fourier Domain Adaptation (Yang & Soatto, CVPR 2020): the amplitudes of the frequencies
    |k_row|, |k_col| <= b, b = floor(beta * min(H, W)), are replaced by the target's; the phase
    (the scene's structure) is kept, so labels stay valid. Global colour, illumination and
    contrast follow the target; beta = 0 still swaps the mean colour (the zero frequency).

    Args:
        image: (H, W, 3) uint8 RGB (source domain, e.g. a synthetic frame).
        target_amplitude: (H, W // 2 + 1, 3) :func:`fourier_amplitude` of a target image of the
            same size.
        beta: window size as a fraction of the shorter side, in [0, 0.5).
    Returns:
        (H, W, 3) uint8 RGB.
    Raises:
        ValueError on a size mismatch or beta outside [0, 0.5).
    """
    h, w = image.shape[:2]
    if target_amplitude.shape != (h, w // 2 + 1) + image.shape[2:]:
        raise ValueError(f"target amplitude {target_amplitude.shape} does not fit an image of "
                         f"{image.shape}")
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"FDA beta must be in [0, 0.5), got {beta}")
    b = int(math.floor(beta * min(h, w)))
    spec = scipy.fft.rfft2(np.asarray(image, np.float32), axes=(0, 1))
    rows = np.unique(np.r_[0:b + 1, h - b:h] % h)
    window = np.ix_(rows, np.arange(b + 1))
    spec[window] *= target_amplitude[window] / np.maximum(np.abs(spec[window]), 1e-6)
    out = scipy.fft.irfft2(spec, s=(h, w), axes=(0, 1))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def class_mix(src_image: np.ndarray, src_label: np.ndarray, dst_image: np.ndarray,
              dst_label: np.ndarray, rng: np.random.Generator,
              ignore: int = 255) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste the pixels of half of the classes of one labelled image onto another.

    ClassMix / DACS cross-domain mixing (Olsson et al., WACV 2021; Tranheden et al., WACV 2021):
    of the classes present in ``src_label`` (``ignore`` excluded), ceil(n / 2) are drawn without
    replacement; their pixels, image and label, replace those of the destination. With a
    synthetic source and a real destination the mixed frame shows synthetic objects over real
    surroundings (and real surroundings around synthetic ones), so the classifier cannot tell the
    class from the domain.

    Args:
        src_image, dst_image: (H, W, C) images of the same shape and dtype (any channel layout).
        src_label, dst_label: (H, W) integer class ids of the same shape.
        rng: random generator (the class draw).
        ignore: the unlabelled id, never drawn (its source pixels are never pasted).
    Returns:
        (image (H, W, C), label (H, W), mask (H, W) bool: the pasted pixels); new arrays.
    Raises:
        ValueError when the shapes do not match.
    """
    if (src_image.shape != dst_image.shape or src_label.shape != dst_label.shape
            or src_label.shape != src_image.shape[:2]):
        raise ValueError(f"class_mix: images {src_image.shape} / {dst_image.shape} and labels "
                         f"{src_label.shape} / {dst_label.shape} do not match")
    present = np.unique(src_label)
    present = present[present != ignore]
    chosen = rng.choice(present, size=(present.size + 1) // 2, replace=False)
    mask = np.isin(src_label, chosen)
    image = np.where(mask[..., None], src_image, dst_image)
    label = np.where(mask, src_label, dst_label)
    return image, label, mask


def augment_sample(sample: Dict[str, Any], contract: ModelContract, cfg: AugmentConfig,
                   rng: np.random.Generator) -> Dict[str, Any]:
    """Apply the configured random augmentation to one sample (dict described in the module docs).

    Returns a new dict (inputs are not modified).
    """
    if not cfg.enabled:
        return sample
    out = sample
    if cfg.flip_prob > 0 and rng.random() < cfg.flip_prob:
        out = flip_y(out, contract)
    lo, hi = cfg.scale_range
    scale = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    theta = math.radians(float(rng.uniform(-cfg.rot_deg, cfg.rot_deg))) if cfg.rot_deg > 0 else 0.0
    if scale != 1.0 or theta != 0.0:
        out = rotate_scale(out, contract, theta, scale)
    if (out.get("image") is not None and cfg.photometric_prob > 0
            and rng.random() < cfg.photometric_prob):
        out = dict(out)
        out["image"] = photometric(out["image"], rng, cfg.brightness, cfg.contrast, cfg.saturation)
    return out
