"""Registering a semantic label image to its camera image (A2D2's labels can be offset).

Some of A2D2's semantic label images do not sit on their camera images: in the four real frames of
``test/data/real_a2d2`` the label fits best moved by (+16, +9), (-15, +7), (-1, +4) and
(-28, +37) px at 1920x1208 (``test/data/real_a2d2/README.md``), which at the network's 512x320 is
more than the width of a pole. Trained on as they are, such labels put pole pixels on
the sky and sky pixels on the pole.

:func:`label_offset` estimates the translation that best lays the label's class borders onto
the image's intensity edges (an exhaustive search over integer shifts, scored by the mean
gradient magnitude under the shifted borders: a direct edge-alignment registration); it is a
whole-image translation, so it cannot undo a label drawn for another instant with near objects
moved more than far ones. :func:`shift_label` applies it, filling what is uncovered with the
ignore id.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from bev_mtl_ros.data.classes import UNKNOWN_ID

#: The unlabelled id of a decoded A2D2 label (the class decoder's): never a border, fills shifts.
IGNORE = UNKNOWN_ID


def _class_borders(label: np.ndarray) -> np.ndarray:
    """Return (H, W) bool: both pixels of every pair of neighbours with two ids (not ignore)."""
    s = np.asarray(label)
    b = np.zeros(s.shape, bool)
    right = (s[:, 1:] != s[:, :-1]) & (s[:, 1:] != IGNORE) & (s[:, :-1] != IGNORE)
    down = (s[1:] != s[:-1]) & (s[1:] != IGNORE) & (s[:-1] != IGNORE)
    b[:, 1:] |= right
    b[:, :-1] |= right
    b[1:] |= down
    b[:-1] |= down
    return b


def label_offset(image: np.ndarray, label: np.ndarray, max_shift: int = 48,
                 scale: float = 1.0) -> Tuple[int, int, float]:
    """Estimate the shift (dx, dy) that moves ``label`` onto ``image``'s edges.

    The image is converted to grey, resized by ``scale`` (INTER_AREA), smoothed (Gaussian,
    sigma 1 px) and its Sobel gradient magnitude taken; the label's class borders (resized
    nearest) are shifted by every integer (dx, dy) within ``max_shift * scale`` px and scored by
    the mean gradient magnitude under them: the cross-correlation of the border mask with the
    magnitude, all shifts at once by FFT. The best shift is returned in full-resolution pixels (a
    multiple of 1 / ``scale``). About 0.5 s for a 1920x1208 frame.

    Args:
        image: (H, W, 3) uint8 RGB camera image.
        label: (H, W) integer class ids of the same size (``IGNORE`` = 255 borders are skipped).
        max_shift: largest |dx|, |dy| searched, full-resolution pixels.
        scale: working resolution relative to the input (0 < scale <= 1); below 1 the search
            is faster but can settle on another optimum.
    Returns:
        (dx, dy, gain): the label moved by +dx columns and +dy rows fits best; gain = score at
        the best shift / score at (0, 0) (1.0 = no better fit found).
    Raises:
        ValueError on a size mismatch, a bad scale or a label with no class border.
    """
    import cv2
    import scipy.signal
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"label_offset: image {image.shape[:2]} and label {label.shape[:2]} "
                         "differ in size")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"label_offset: scale must be in (0, 1], got {scale}")
    h, w = label.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    grey = cv2.GaussianBlur(cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(
        np.float32), (0, 0), 1.0)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    small = cv2.resize(np.asarray(label, np.uint8), size, interpolation=cv2.INTER_NEAREST)
    r = max(1, int(round(max_shift * scale)))
    border = _class_borders(small)
    border[:r + 1] = border[-r - 1:] = False
    border[:, :r + 1] = border[:, -r - 1:] = False
    count = int(border.sum())
    if count == 0:
        raise ValueError("label_offset: the label has no class border away from the image edge")
    # score(dy, dx) = sum_p border[p] * mag[p + (dy, dx)]: a convolution of mag with the
    # flipped mask, whose zero lag sits at (H' - 1, W' - 1) of the full output
    full = scipy.signal.fftconvolve(mag, border[::-1, ::-1].astype(np.float32), mode="full")
    hh, ww = mag.shape
    score = full[hh - 1 - r:hh + r, ww - 1 - r:ww + r] / count      # row i: dy = i - r
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    base = score[r, r]
    gain = float(score[i, j] / base) if base > 0 else 1.0
    return (int(round((j - r) / scale)), int(round((i - r) / scale)), gain)


def register_label(image: np.ndarray, label: np.ndarray, max_shift: int = 48,
                   min_gain: float = 1.02,
                   scale: float = 1.0) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Return ``label`` moved onto ``image`` by :func:`label_offset`, and the shift applied.

    The label is left as it is, shift (0, 0), when the best shift lies on the border of the
    search window (the fit is not a translation within reach: e.g. a label drawn for another
    instant) or improves the edge score by less than ``min_gain``.

    Args:
        image: (H, W, 3) uint8 RGB. label: (H, W) class ids of the same size.
        max_shift: search window, full-resolution pixels. min_gain: smallest accepted gain.
        scale: working resolution of :func:`label_offset`.
    Returns:
        (label (H, W), (dx, dy)).
    Raises:
        ValueError as :func:`label_offset`.
    """
    dx, dy, gain = label_offset(image, label, max_shift, scale)
    if max(abs(dx), abs(dy)) >= max_shift or gain < min_gain:
        return label, (0, 0)
    return shift_label(label, dx, dy), (dx, dy)


def shift_label(label: np.ndarray, dx: int, dy: int, fill: int = IGNORE) -> np.ndarray:
    """Return ``label`` moved by +dx columns and +dy rows; uncovered pixels get ``fill``.

    Args:
        label: (H, W) class ids (any integer dtype; the result has the same dtype).
        dx, dy: integer shift in pixels (right and down positive).
        fill: id of the pixels the shift uncovers (default the ignore id 255).
    """
    out = np.full_like(label, fill)
    h, w = label.shape[:2]
    dx, dy = int(dx), int(dy)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = label[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out
