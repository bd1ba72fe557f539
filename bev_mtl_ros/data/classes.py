"""A2D2 semantic classes: label colours <-> merged class ids.

A2D2's ``class_list.json`` (packaged unmodified in ``bev_mtl_ros/data/a2d2/``, CC BY-ND 4.0,
Audi AG) maps 55 RGB colours (``"#ff0000": "Car 1"``) to class names. Numbered variants
("Car 1".."Car 4", "Truck 1".."Truck 3", ...) are instances of one class; merged, there are 38
classes. The merged class id is the index in
:data:`bev_mtl_ros.model.contract.A2D2_SEMANTIC_CLASSES` (order of first appearance in
``class_list.json``).

Label images are converted with a vectorised lookup: each RGB pixel is packed into one 24-bit
integer ``(r << 16) | (g << 8) | b``; the sorted table of the 55 packed colours
(:func:`colour_to_class_id`, usable with ``np.searchsorted``) is expanded once into a dense
2**24-entry uint8 table (255 = unknown colour), so a full 1920x1208 label converts in ~30 ms.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES, DRIVABLE_SEMANTIC_CLASSES

#: Directory holding the packaged, unmodified A2D2 metadata files.
A2D2_META_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "a2d2")
#: Packaged copy of A2D2's ``class_list.json``.
CLASS_LIST_PATH = os.path.join(A2D2_META_DIR, "class_list.json")

#: Number of merged semantic classes (38).
NUM_CLASSES = len(A2D2_SEMANTIC_CLASSES)
#: Value returned for pixels whose colour is not in the class list when ``strict=False``.
UNKNOWN_ID = 255

_VARIANT = re.compile(r"^(.*?)\s+\d+$")


class UnknownColourError(ValueError):
    """A label image holds a colour that is not in ``class_list.json``.

    The message names the file (if given) and the colour(s).
    """


def merged_name(name: str) -> str:
    """Strip an instance number: ``"Car 2" -> "Car"``; names without a number are unchanged."""
    m = _VARIANT.match(name.strip())
    return m.group(1) if m else name.strip()


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack RGB triplets into 24-bit ints.

    Args:
        rgb: (..., 3) integer array (uint8 or any int type), channels R, G, B.
    Returns:
        (...) int32 array ``(r << 16) | (g << 8) | b``.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) RGB array, got shape {rgb.shape}")
    c = rgb.astype(np.int32, copy=False)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _hex_to_rgb(h: str) -> Tuple[int, int, int]:
    h = h.strip().lstrip("#")
    if len(h) != 6:
        raise ValueError(f"bad colour {h!r}")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


class ClassMap:
    """Colour <-> merged-class-id tables built from a ``class_list.json``.

    Attributes:
        colours: (55, 3) uint8 RGB of every colour in file order.
        colour_names: the 55 original names ("Car 1", ...).
        colour_class_ids: (55,) uint8 merged class id of each colour.
        class_id_to_colour: (38, 3) uint8 palette, first colour of each merged class (for
        overlays). sorted_keys / sorted_ids: packed 24-bit colours (sorted, int32) and their class
        ids (uint8).
    Raises:
        ValueError naming the file when a colour or a (merged) class name is unknown.
    """

    def __init__(self, path: str = CLASS_LIST_PATH,
                 class_names: Iterable[str] = A2D2_SEMANTIC_CLASSES):
        self.path = path
        self.class_names = tuple(class_names)
        with open(path, "r", encoding="utf-8") as f:
            table: Dict[str, str] = json.load(f)
        index = {n: i for i, n in enumerate(self.class_names)}
        colours, names, ids = [], [], []
        for hexcol, name in table.items():
            try:
                rgb = _hex_to_rgb(hexcol)
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
            m = merged_name(name)
            if m not in index:
                raise ValueError(f"{path}: class {name!r} (merged {m!r}) is not in the contract's "
                                 "classes")
            colours.append(rgb)
            names.append(name)
            ids.append(index[m])
        self.colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
        self.colour_names = tuple(names)
        self.colour_class_ids = np.asarray(ids, dtype=np.uint8)
        keys = pack_rgb(self.colours)
        order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[order]
        if np.any(np.diff(self.sorted_keys) == 0):
            raise ValueError(f"{path}: duplicate colours")
        self.sorted_ids = self.colour_class_ids[order]
        palette = np.zeros((len(self.class_names), 3), dtype=np.uint8)
        seen = np.zeros(len(self.class_names), dtype=bool)
        for rgb, cid in zip(self.colours, self.colour_class_ids):
            if not seen[cid]:
                palette[cid] = rgb
                seen[cid] = True
        self.class_id_to_colour = palette
        self.class_present = seen

    def dense_lut(self) -> np.ndarray:
        """Return the (2**24,) uint8 table packed colour -> class id (255 = not in the list).

        Built from the sorted keys on first use (16 MiB), ~4x faster than ``np.searchsorted`` on
        full images.
        """
        if getattr(self, "_dense", None) is None:
            lut = np.full(1 << 24, UNKNOWN_ID, dtype=np.uint8)
            lut[self.sorted_keys] = self.sorted_ids
            self._dense = lut
        return self._dense

    def rgb_to_ids(self, label_rgb: np.ndarray, path: Optional[str] = None,
                   strict: bool = True) -> np.ndarray:
        """Convert an RGB label image to merged class ids.

        Args:
            label_rgb: (H, W, 3) uint8 RGB (not BGR) label image.
            path: file name used in error messages.
            strict: raise on unknown colours (default); otherwise unknown pixels get
                :data:`UNKNOWN_ID` (255).
        Returns:
            (H, W) uint8 class ids (index into ``A2D2_SEMANTIC_CLASSES``).
        Raises:
            UnknownColourError naming ``path`` and up to 5 unknown colours (hex) with pixel counts.
            ValueError for a wrong shape.
        """
        a = np.asarray(label_rgb)
        if a.ndim != 3 or a.shape[2] != 3:
            where = f"{path}: " if path else ""
            raise ValueError(f"{where}label image must be (H, W, 3) RGB, got shape {a.shape}")
        keys = pack_rgb(a)
        ids = self.dense_lut()[keys]
        known = ids != UNKNOWN_ID
        if not known.all():
            if strict:
                bad, counts = np.unique(keys[~known], return_counts=True)
                order = np.argsort(-counts)[:5]
                desc = ", ".join(f"#{int(bad[i]):06x} ({int(counts[i])} px)" for i in order)
                more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
                where = path if path else "<label image>"
                raise UnknownColourError(
                    f"{where}: {len(bad)} colour(s) not in class_list.json: {desc}{more}")
            ids = np.where(known, ids, np.uint8(UNKNOWN_ID))
        return ids.astype(np.uint8, copy=False)

    def ids_to_rgb(self, ids: np.ndarray) -> np.ndarray:
        """Map (H, W) class ids to (H, W, 3) uint8 RGB using :attr:`class_id_to_colour`.

        Ids outside 0..37 (e.g. 255) become black.
        """
        ids = np.asarray(ids)
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[: len(self.class_id_to_colour)] = self.class_id_to_colour
        return pal[ids.astype(np.uint8)]


_DEFAULT: Optional[ClassMap] = None


def default_class_map() -> ClassMap:
    """Return the :class:`ClassMap` of the packaged ``class_list.json`` (built once, cached)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ClassMap()
    return _DEFAULT


def colour_to_class_id() -> Tuple[np.ndarray, np.ndarray]:
    """Return the lookup table: (sorted packed 24-bit colours int32 (55,), class ids uint8 (55,)).

    Use with ``np.searchsorted``; see :func:`rgb_label_to_ids`.
    """
    cm = default_class_map()
    return cm.sorted_keys, cm.sorted_ids


def rgb_label_to_ids(label_rgb: np.ndarray, path: Optional[str] = None,
                     strict: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB A2D2 label image -> (H, W) uint8 merged class ids.

    Raises :class:`UnknownColourError` naming ``path`` and the unknown colour(s).
    """
    return default_class_map().rgb_to_ids(label_rgb, path=path, strict=strict)


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB overlay colours (first colour of each class)."""
    return default_class_map().ids_to_rgb(ids)


#: (38, 3) uint8 palette: first ``class_list.json`` colour of each merged class.
class_id_to_colour: np.ndarray = default_class_map().class_id_to_colour

#: Merged class ids (into A2D2_SEMANTIC_CLASSES) of the drivable road-surface classes.
DRIVABLE_CLASS_IDS: Tuple[int, ...] = tuple(A2D2_SEMANTIC_CLASSES.index(n)
                                            for n in DRIVABLE_SEMANTIC_CLASSES)


def drivable_lut() -> np.ndarray:
    """(256,) bool: True for class ids in :data:`DRIVABLE_CLASS_IDS`."""
    lut = np.zeros(256, dtype=bool)
    lut[list(DRIVABLE_CLASS_IDS)] = True
    return lut


#: Eight coarse groups of A2D2's merged classes, used to report real-data semantics in a way that
#: survives A2D2's fine label distinctions (``Solid line`` vs ``RD normal street``...). Group id =
#: position in this mapping. Merged classes not listed here (``Ego car``, ``Blurred area``,
#: ``Rain dirt``) are ignored when scoring.
COARSE_GROUPS: Dict[str, Tuple[str, ...]] = {
    "drivable": ("RD normal street", "Drivable cobblestone", "Slow drive area", "Parking area",
                 "RD restricted area", "Zebra crossing", "Painted driv. instr.", "Solid line",
                 "Dashed line", "Speed bumper"),
    "other flat": ("Sidewalk", "Non-drivable street", "Curbstone"),
    "vehicle": ("Car", "Truck", "Small vehicles", "Utility vehicle", "Tractor"),
    "human+bike": ("Pedestrian", "Bicycle"),
    "object/sign/pole": ("Traffic signal", "Traffic sign", "Sidebars", "Irrelevant signs",
                         "Road blocks",
                         "Obstacles / trash", "Poles", "Grid structure", "Signal corpus",
                         "Electronic traffic", "Traffic guide obj.", "Animals"),
    "nature": ("Nature object",),
    "sky": ("Sky",),
    "building": ("Buildings",),
}
#: Merged classes that belong to no coarse group (not scored on the coarse level).
COARSE_IGNORED: Tuple[str, ...] = ("Ego car", "Blurred area", "Rain dirt")
#: Coarse group names, index = coarse group id.
COARSE_GROUP_NAMES: Tuple[str, ...] = tuple(COARSE_GROUPS)


def coarse_group_lut(class_names: Iterable[str] = A2D2_SEMANTIC_CLASSES) -> np.ndarray:
    """Return the (256,) uint8 table semantic class id -> coarse group id.

    Index: semantic class id (index into ``class_names``); value: coarse group id (index into
    :data:`COARSE_GROUP_NAMES`); 255 for ignored classes, ids beyond the class list and the
    ignore id 255 itself.

    Raises:
        ValueError when a class name is neither in a group nor in :data:`COARSE_IGNORED` (a
        contract with classes the grouping does not know).
    """
    group_of = {c: g for g, members in enumerate(COARSE_GROUPS.values()) for c in members}
    lut = np.full(256, UNKNOWN_ID, dtype=np.uint8)
    for i, name in enumerate(class_names):
        if name in group_of:
            lut[i] = group_of[name]
        elif name not in COARSE_IGNORED:
            raise ValueError(f"semantic class {name!r} has no coarse group "
                             "(classes.COARSE_GROUPS)")
    return lut


#: Categories of a lidar point by the semantic class of its pixel, used to judge a detection
#: by the points inside its box (``train/metrics.py::detection_point_categories``) and the
#: observed BEV drivable ground truth (``data/drivable.py::observed_drivable_labels``).
#: ``clutter`` is the static scene a detector must not fire on (vegetation, buildings, poles,
#: signs, barriers, kerbs, pavements); ``vehicle`` the coarse vehicle group (A2D2's 3D labels miss
#: some parked vehicles, so detections on them are counted apart); ``person_bike`` people and
#: bicycles; ``road`` the road surface. Classes in no category (Sky, Ego car, Blurred area,
#: Rain dirt, Animals) and the unlabelled id 255 do not vote.
POINT_CATEGORIES: Dict[str, Tuple[str, ...]] = {
    "clutter": ("Nature object", "Buildings", "Poles", "Traffic signal", "Traffic sign",
                "Sidebars", "Curbstone", "Sidewalk", "Non-drivable street", "Irrelevant signs",
                "Road blocks", "Obstacles / trash", "Grid structure", "Signal corpus",
                "Electronic traffic", "Traffic guide obj."),
    "vehicle": COARSE_GROUPS["vehicle"],
    "person_bike": COARSE_GROUPS["human+bike"],
    "road": DRIVABLE_SEMANTIC_CLASSES + ("Speed bumper",),
}
#: Category names, index = category id of :func:`point_category_lut`.
POINT_CATEGORY_NAMES: Tuple[str, ...] = tuple(POINT_CATEGORIES)
#: Ground-level classes that are not drivable: the negatives of the observed BEV drivable ground
#: truth (pavements, kerbs, verges and vegetation at ground level).
GROUND_NOT_DRIVABLE_CLASSES: Tuple[str, ...] = ("Sidewalk", "Non-drivable street", "Curbstone",
                                                "Nature object")
#: Merged class ids of :data:`GROUND_NOT_DRIVABLE_CLASSES`.
GROUND_NOT_DRIVABLE_CLASS_IDS: Tuple[int, ...] = tuple(A2D2_SEMANTIC_CLASSES.index(n)
                                                       for n in GROUND_NOT_DRIVABLE_CLASSES)


def point_category_lut() -> np.ndarray:
    """Return the (256,) uint8 table A2D2 merged class id -> point category id.

    Value: index into :data:`POINT_CATEGORY_NAMES`; 255 for classes in no category, ids beyond
    the 38 classes and the unlabelled id 255.
    """
    lut = np.full(256, UNKNOWN_ID, dtype=np.uint8)
    for g, members in enumerate(POINT_CATEGORIES.values()):
        lut[[A2D2_SEMANTIC_CLASSES.index(c) for c in members]] = g
    return lut
