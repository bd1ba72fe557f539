"""Colour statistics of a camera's images: per-channel mean and standard deviation.

What a pretrained camera encoder's input normalisation is matched against
(``model/espnetv2.py`` :func:`~bev_mtl_ros.model.espnetv2.cityscapes_matched_normalisation`):
A2D2's front camera renders streets brighter and more neutral in colour than the Cityscapes
camera the street-scene weights were trained on. ``bev-mtl-ros colour-stats`` prints the result
as the contract lines of a training config.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

__all__ = ["camera_colour_statistics"]


def camera_colour_statistics(root: str, image_size: Tuple[int, int] = (512, 320),
                             camera: str = "front_center",
                             exclude_scenes: Sequence[str] = ()) -> Dict[str, object]:
    """Per-channel RGB mean and std of the camera images of an A2D2(-format) tree.

    Every frame with a camera image, undistorted (as training and the node see it), resized to
    ``image_size`` (W, H) with cv2 INTER_AREA (as the node's preprocessing), pixels in [0, 1],
    pooled over the frames (float64 sums).

    Args:
        root: A2D2 tree or flat folder (``data/a2d2.py`` :class:`A2D2Dataset`).
        image_size: (W, H) the network's camera input (contract ``image_size``).
        camera: A2D2 camera name.
        exclude_scenes: scene (drive) names left out, e.g. the drives a cross-validation scores.
    Returns:
        {"mean": (3,) floats, "std": (3,) floats, "frames": int, "scenes": sorted scene names}.
    Raises:
        FileNotFoundError when ``root`` holds no frame with a camera image (after the exclusion);
        A2D2FormatError for unreadable images.
    """
    import cv2

    from bev_mtl_ros.data.a2d2 import A2D2Dataset

    reader = A2D2Dataset(root, camera=camera, require=("camera",))
    excluded = set(exclude_scenes)
    keep = [i for i, fr in enumerate(reader.frames) if fr.scene not in excluded]
    if not keep:
        raise FileNotFoundError(f"{root}: no camera frame left after excluding "
                                f"{sorted(exclude_scenes)}")
    s1 = np.zeros(3, np.float64)
    s2 = np.zeros(3, np.float64)
    n = 0
    for i in keep:
        img = reader.load_frame(i, load_label=False).image
        x = cv2.resize(img, tuple(int(v) for v in image_size),
                       interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.float64) / 255.0
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        n += x.shape[0]
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    return {"mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std),
            "frames": len(keep), "scenes": sorted({reader.frames[i].scene for i in keep})}


def add_arguments(parser) -> None:
    """``bev-mtl-ros colour-stats`` options."""
    parser.add_argument("root", help="A2D2(-format) tree or flat folder with camera images")
    parser.add_argument("--image-size", default="512x320",
                        help="network camera input WxH the images are resized to")
    parser.add_argument("--camera", default="front_center")
    parser.add_argument("--exclude-scenes", nargs="*", default=[], metavar="DRIVE",
                        help="scenes (drives) left out, e.g. the drives a cross-validation scores")


def main(args) -> int:
    """Print the camera's colour statistics and the Cityscapes-matched contract normalisation."""
    import sys

    from bev_mtl_ros.model.espnetv2 import cityscapes_matched_normalisation

    try:
        w, h = (int(v) for v in args.image_size.lower().split("x"))
        st = camera_colour_statistics(args.root, (w, h), args.camera, args.exclude_scenes)
    except (ValueError, FileNotFoundError) as e:
        print(f"colour-stats: {e}", file=sys.stderr)
        return 2
    mean, std = cityscapes_matched_normalisation(st["mean"], st["std"])
    fmt = ", ".join
    print(f"# {st['frames']} frames of {len(st['scenes'])} drives ({' '.join(st['scenes'])}), "
          f"{w}x{h}")
    print(f"# camera RGB mean [{fmt(f'{v:.4f}' for v in st['mean'])}], "
          f"std [{fmt(f'{v:.4f}' for v in st['std'])}]")
    print("# contract normalisation mapping them onto Cityscapes' colour statistics:")
    print("contract:")
    print(f"  image_mean: [{fmt(f'{v:.4f}' for v in mean)}]")
    print(f"  image_std: [{fmt(f'{v:.4f}' for v in std)}]")
    return 0
