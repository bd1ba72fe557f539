"""Synthetic street scenes for the A2D2-format generator (:mod:`bev_mtl_ros.data.synth`).

A scene is a deterministic function of ``(seed, scene_index, n_frames)`` (numpy ``Generator``
seeded with ``[seed, scene_index]``). All geometry lives in the *scene frame*: the
front-center camera's view frame at frame 0 (x forward, y left, z up, metres; A2D2 convention,
see ``a2d2-format.md``). The ground under the camera is at z = :data:`GROUND_Z` (-1.78 m, as
measured in real A2D2 data); it is not flat: a crowned road falls off by 1-2.5 % on both sides
of the crown line y = y0, or the whole road has a one-way cross slope of up to 2 %
(:meth:`Road.ground_offset`); kerbs are the raised sidewalks. Longitudinal grades are not modelled.

Content
-------
* A street layout (:data:`LAYOUTS`): urban (tall buildings at the sidewalk), suburban (low houses
  set back, hedges, fences, wide verges), country road (one lane each way, guard rails, forest
  edges, few buildings), highway (2-3 lanes each way, guard rails, faster traffic).
* A road whose centre line is ``y_c(x) = y0 + k x^2 / 2`` (k = 0 for a straight road, else
  |k| <= 1/800 1/m: gently curved), lanes of 3.2-3.75 m, driving on the right,
  an optional parking strip on the right, lane markings (solid centre/edge lines, dashed lane
  dividers), raised sidewalks (0.10-0.15 m, 0.03-0.08 m shoulders on fast roads; top =
  "Sidewalk", kerb faces and a 0.2 m top strip along the road = "Curbstone"), grass verges
  ("Nature object"), buildings (boxes).
* Clutter, drawn with its A2D2 label class and listed as hard negatives
  (:attr:`Scene.clutter_boxes`, kinds :data:`CLUTTER_CLASSES`, no label3D box): trees (trunk +
  one to three crown spheres, summer or autumn colours), bushes, hedges, metal fences ("Grid
  structure"), guard rails ("Sidebars"), poles with traffic signs, traffic signals, street
  lights, bollards ("Traffic guide obj.") and trash bins ("Obstacles / trash").
* Road users (A2D2 box classes) with realistic sizes: Car, VanSUV, Truck in lanes (one constant
  speed per lane, oncoming lanes negative) and parked; Pedestrians walking/standing on sidewalks
  and crossing the road; Cyclists at the right road edge; parked bicycles on the sidewalk (class
  "Bicycle": A2D2's label3D boxes bicycles without rider). Every road user moves with a constant
  velocity along its path (a lane: ``x(t) = x0 + vx t``, ``y = y_c(x) + d``, yaw = road heading;
  or a straight line) sampled at 10 Hz; no two road users (nor the ego vehicle, poles, bollards,
  bins and guard rails) overlap in the bird's-eye view at any frame (rejection sampling with a
  separating-axis test). People have legs, torso, arms, head and hair in varied clothing colours.
* The ego vehicle drives straight along +x with a constant speed (0 m/s in ~30 % of the urban and
  suburban scenes: static ego), so the camera/view frame at frame f is the scene frame shifted by
  ``(ego_speed * f * 0.1 s, 0, 0)``; no rotation.
* Lighting: a clear, overcast or low-sun sky (:attr:`Scene.sky`) and an exposure per scene.

Each road user is drawn as a few boxes ("parts", e.g. car body + cabin + wheels) inside its
ground-truth box, so lidar points and label pixels of an object lie inside its box.

Where it is built
-----------------
:func:`bev_mtl_ros.data.synth_build.build_scene` runs the steps in order, all drawing from one
generator: the street (:mod:`~bev_mtl_ros.data.synth_layout`: layout kind, road, ego speed,
sidewalks, buildings), the clutter (:mod:`~bev_mtl_ros.data.synth_clutter`), the road users
(:mod:`~bev_mtl_ros.data.synth_actors`) and the lighting. This module holds what they produce:
the constants, the :class:`Road`, the road users' :class:`SynthObject` and :class:`Part`, the
static scenery (:class:`StaticPrims`, collected by :class:`StaticPrimsBuilder`) and the
:class:`Scene`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from bev_mtl_ros.model.contract import A2D2_SEMANTIC_CLASSES

#: Ground height in the front-center camera view frame (metres).
GROUND_Z = -1.78
#: Frame period of the labelled A2D2 lidar data (10 Hz), seconds.
FRAME_DT = 0.1
#: Semantic class name -> merged class id (index into A2D2_SEMANTIC_CLASSES).
CID: Dict[str, int] = {n: i for i, n in enumerate(A2D2_SEMANTIC_CLASSES)}

# Surface materials (drive texture, shading and lidar reflectance).
(
    MAT_PLAIN,
    MAT_BUILDING,
    MAT_SIDEWALK,
    MAT_GLASS,
    MAT_FOLIAGE,
    MAT_SIGN,
    MAT_PAINT,
    MAT_TYRE,
    MAT_METAL,
    MAT_GRID,
    MAT_SIGNAL,
    MAT_SKIN,
    MAT_CLOTH,
) = range(13)
#: Street layouts (A2D2 drives urban and suburban streets, country roads and highways).
LAYOUTS: Tuple[str, ...] = ("urban", "suburban", "country", "highway")
#: Clutter kinds written to the ``_clutter.json`` sidecar (hard negatives: no label3D box) and the
#: A2D2 semantic class their pixels get.
CLUTTER_CLASSES: Dict[str, str] = {
    "Tree": "Nature object", "Bush": "Nature object", "Hedge": "Nature object", "Pole": "Poles",
    "TrafficSign": "Traffic sign", "TrafficSignal": "Traffic signal", "Fence": "Grid structure",
    "GuardRail": "Sidebars", "Bollard": "Traffic guide obj.", "TrashBin": "Obstacles / trash"}

#: Ground-truth size ranges (length, width, height) per A2D2 box class, metres (uniform sampling).
SIZE_RANGES: Dict[str, Tuple[Tuple[float, float], Tuple[float, float], Tuple[float, float]]] = {
    "Car": ((3.9, 4.9), (1.75, 1.95), (1.40, 1.65)),
    "VanSUV": ((4.6, 5.3), (1.90, 2.10), (1.75, 2.10)),
    "Truck": ((7.5, 10.5), (2.40, 2.55), (3.00, 3.80)),
    "Pedestrian": ((0.50, 0.90), (0.55, 0.85), (1.55, 1.95)),
    "Cyclist": ((1.60, 1.90), (0.60, 0.80), (1.60, 1.85)),
    "Bicycle": ((1.60, 1.85), (0.50, 0.70), (0.95, 1.15)),
}


@dataclass
class Road:
    """Road geometry in the scene frame.

    Lateral coordinate ``d = y - y_c(x)`` (metres, left positive); the centre line between the two
    directions is d = 0; ego-direction lanes are at d < 0 (driving on the right).
    """

    curvature: float
    y0: float
    lane_w: float
    n_same: int
    n_opp: int
    park_w: float
    sidewalk_w: Tuple[float, float]   # (right, left)
    sidewalk_h: float
    verge_w: Tuple[float, float]      # (right, left) grass between sidewalk and buildings
    centre_solid: bool
    dash_phase: float
    camber: float = 0.0
    crown: bool = True
    asphalt: Tuple[float, float, float] = (0.33, 0.33, 0.34)
    grass: Tuple[float, float, float] = (0.25, 0.42, 0.15)

    def ground_offset(self, y):
        """Return the height (m) of the ground above GROUND_Z at scene y.

        A crowned road falls off by ``camber`` m/m on both sides of the crown line y = y0 (the road
        centre at x = 0), a one-way cross slope falls by ``camber`` per metre towards -y; 0 under
        the camera (y = 0).
        """
        y = np.asarray(y, dtype=np.float64)
        if self.crown:
            return self.camber * (abs(self.y0) - np.abs(y - self.y0))
        return -self.camber * y

    def ground_planes(self) -> np.ndarray:
        """Return the (K, 3) planes [a, bx, by] of :meth:`ground_offset`.

        z = a + bx x + by y; the ground is the solid below all of them; the same in the scene frame
        and in every frame's view frame (the ego moves along x only).
        """
        c, y0 = self.camber, self.y0
        if not self.crown:
            return np.array([[GROUND_Z, 0.0, -c]])
        a = GROUND_Z + c * abs(y0)
        return np.array([[a + c * y0, 0.0, -c], [a - c * y0, 0.0, c]])

    @property
    def right_edge(self) -> float:
        """Lateral coordinate d of the right kerb (negative)."""
        return -(self.n_same * self.lane_w + self.park_w + 0.5)

    @property
    def left_edge(self) -> float:
        """Lateral coordinate d of the left kerb (positive)."""
        return self.n_opp * self.lane_w + 0.5

    def centre_y(self, x):
        """Return the y of the centre line at scene x (array or scalar)."""
        return self.y0 + 0.5 * self.curvature * np.asarray(x) ** 2

    def heading(self, x):
        """Road direction (yaw, radians) at scene x."""
        return np.arctan(self.curvature * np.asarray(x))

    def along(self, x, d) -> Tuple[float, float, float]:
        """Scene (x, y, yaw) of the point at road coordinates (x, d) (metres; yaw in radians)."""
        return x, float(self.centre_y(x) + d), float(self.heading(x))

    def ground_class(self, x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Semantic class of the ground plane at scene (x, y).

        Returns:
            (class ids uint8, kind int8) with kind 0 = asphalt, 1 = marking, 2 = sidewalk
            (under the raised sidewalk boxes), 3 = grass.
        """
        d = y - self.centre_y(x)
        cls = np.full(d.shape, CID["Nature object"], dtype=np.uint8)
        kind = np.full(d.shape, 3, dtype=np.int8)
        rr, ll = self.right_edge, self.left_edge
        side = (((d < rr) & (d >= rr - self.sidewalk_w[0]))
                | ((d > ll) & (d <= ll + self.sidewalk_w[1])))
        cls[side] = CID["Sidewalk"]
        kind[side] = 2
        road = (d >= rr) & (d <= ll)
        cls[road] = CID["RD normal street"]
        kind[road] = 0
        hw = 0.075
        u = (x + self.dash_phase) * (1.0 / 9.0)
        dashed_on = (u - np.floor(u)) < (1.0 / 3.0)
        solid = np.zeros(d.shape, dtype=bool)
        dashed = np.zeros(d.shape, dtype=bool)
        cen = np.abs(d) < hw
        if self.centre_solid or self.n_same + self.n_opp <= 2:
            solid |= cen
        else:
            dashed |= cen & dashed_on
        edge_r = -self.n_same * self.lane_w
        solid |= np.abs(d - (edge_r - 0.1)) < hw
        solid |= np.abs(d - (self.n_opp * self.lane_w + 0.1)) < hw
        for j in range(1, self.n_same):
            dashed |= (np.abs(d + j * self.lane_w) < hw) & dashed_on
        for j in range(1, self.n_opp):
            dashed |= (np.abs(d - j * self.lane_w) < hw) & dashed_on
        cls[solid] = CID["Solid line"]
        cls[dashed & ~solid] = CID["Dashed line"]
        kind[solid | dashed] = 1
        return cls, kind


@dataclass
class Part:
    """One drawn box of a road user, in the object's box frame.

    x forward, y left, z up, origin = ground-truth box centre.
    """

    offset: Tuple[float, float, float]
    half: Tuple[float, float, float]
    cls: int
    mat: int
    colour: Tuple[float, float, float]


@dataclass
class SynthObject:
    """A road user with a constant-velocity path.

    ``kind == "road"``: x(t) = x0 + vx t, y = y_c(x) + d, yaw = road heading (+pi when
    ``reverse``). ``kind == "line"``: (x, y)(t) = p0 + v t, constant ``yaw``. ``z_base`` is the
    height of the surface it stands on (ground or sidewalk top); box centre z = z_base + h/2.
    """

    oid: int
    cls: str
    size: Tuple[float, float, float]
    kind: str
    z_base: float
    x0: float = 0.0
    vx: float = 0.0
    d: float = 0.0
    reverse: bool = False
    p0: Tuple[float, float] = (0.0, 0.0)
    v: Tuple[float, float] = (0.0, 0.0)
    yaw: float = 0.0
    parts: List[Part] = field(default_factory=list)

    def poses(self, road: Road, t: np.ndarray) -> np.ndarray:
        """(T, 4) float64 [x, y, z, yaw] of the box centre at times t (s), scene frame."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        out = np.zeros((t.size, 4))
        if self.kind == "road":
            x = self.x0 + self.vx * t
            out[:, 0] = x
            out[:, 1] = road.centre_y(x) + self.d
            out[:, 3] = road.heading(x) + (np.pi if self.reverse else 0.0)
        else:
            out[:, 0] = self.p0[0] + self.v[0] * t
            out[:, 1] = self.p0[1] + self.v[1] * t
            out[:, 3] = self.yaw
        out[:, 2] = self.z_base + self.size[2] / 2 + road.ground_offset(out[:, 1])
        out[:, 3] = np.arctan2(np.sin(out[:, 3]), np.cos(out[:, 3]))
        return out


@dataclass
class StaticPrims:
    """Static scenery primitives (scene frame).

    Boxes: centre (B,3), half extents (B,3), yaw (B,), class id (B,) uint8, material (B,), colour
    (B,3) RGB in [0,1], aux (B,) (sidewalks: +1 when the road is on the box's +y side, -1 on its -y
    side). Spheres: centre (S,3), radius (S,), class, material, colour.
    """

    box_c: np.ndarray
    box_h: np.ndarray
    box_yaw: np.ndarray
    box_cls: np.ndarray
    box_mat: np.ndarray
    box_col: np.ndarray
    box_aux: np.ndarray
    sph_c: np.ndarray
    sph_r: np.ndarray
    sph_cls: np.ndarray
    sph_mat: np.ndarray
    sph_col: np.ndarray


@dataclass
class Scene:
    """A complete synthetic scene: road, static scenery, road users and ego motion.

    Attributes:
        index, seed: what it was built from. n_frames: frames (10 Hz).
        road: :class:`Road`. static: :class:`StaticPrims`. objects: road users.
        ego_speed: m/s along +x (0 = static ego).
        sun: (3,) unit vector towards the sun (scene frame). exposure: image brightness gain.
        start_utc: scene start, seconds since the Unix epoch (UTC); names the scene folder.
        first_frame: A2D2 frame number of frame 0 (9 digits in file names).
        layout: one of :data:`LAYOUTS`. clutter_boxes: (C, 7) float64 [x, y, z, l, w, h, yaw] scene
        frame of the static clutter (hard negatives for detection); clutter_kinds: C keys of
        :data:`CLUTTER_CLASSES`. sky: "clear", "overcast" or "low_sun".
    """

    index: int
    seed: int
    n_frames: int
    road: Road
    static: StaticPrims
    objects: List[SynthObject]
    ego_speed: float
    sun: np.ndarray
    start_utc: int
    first_frame: int
    exposure: float = 1.0
    layout: str = "urban"
    clutter_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    clutter_kinds: List[str] = field(default_factory=list)
    sky: str = "clear"

    def clutter_in_view(
        self, f: int, hfov: float, max_x: float = 100.0
    ) -> Tuple[np.ndarray, List[str]]:
        """Return the clutter boxes ahead in frame f's view frame.

        Those whose centre lies 0.5..max_x m ahead and within ``hfov`` + 10 deg of the optical
        axis. Returns ((K, 7) float64, K kinds).
        """
        b = self.clutter_boxes.copy()
        b[:, :3] -= self.ego_position(f)
        ok = (
            (b[:, 0] > 0.5)
            & (b[:, 0] < max_x)
            & (np.abs(np.arctan2(b[:, 1], b[:, 0])) < hfov + np.radians(10))
        )
        return b[ok], [k for k, o in zip(self.clutter_kinds, ok) if o]

    def time(self, f: int) -> float:
        """Time of frame f in seconds from the scene start."""
        return f * FRAME_DT

    def ego_position(self, f: int) -> np.ndarray:
        """(3,) camera origin at frame f in the scene frame."""
        return np.array([self.ego_speed * self.time(f), 0.0, 0.0])

    def object_poses(self, f: int) -> np.ndarray:
        """(M, 4) [x, y, z, yaw] of every road user at frame f, scene frame."""
        t = np.array([self.time(f)])
        if not self.objects:
            return np.zeros((0, 4))
        return np.concatenate([o.poses(self.road, t) for o in self.objects], axis=0)


def _stack(rows, idx, shape, dtype=np.float64):
    """Field ``idx`` of every row, as an array of ``shape`` (-1 = any) and ``dtype``."""
    if not rows:
        return np.zeros(tuple(0 if n < 0 else n for n in shape), dtype=dtype)
    return np.asarray([r[idx] for r in rows], dtype=dtype).reshape(shape)


class StaticPrimsBuilder:
    """Collects the static scenery of a scene while it is built (scene frame, metres).

    Attributes:
        road: the scene's :class:`Road`.
        boxes: rows (c (3), h (3) half extents, yaw, class id, material, colour (3), aux).
        spheres: rows (c (3), r, class id, material, colour (3)).
        clutter: rows (kind, (x, y, z, l, w, h, yaw)): hard negatives, kinds of
            :data:`CLUTTER_CLASSES`.
        footprints: (poses (1, 4) [x, y, 0, yaw], half (length, width)) of the scenery road
            users must not overlap (guard rails, poles, bollards, bins).
    """

    def __init__(self, road: Road) -> None:
        self.road = road
        self.boxes: List[Tuple] = []
        self.spheres: List[Tuple] = []
        self.clutter: List[Tuple[str, Tuple[float, ...]]] = []
        self.footprints: List[Tuple[np.ndarray, Tuple[float, float]]] = []

    def add_box(self, c, h, yaw, cls_name, mat, col, aux=0.0, kind=None) -> None:
        """Add a box of class ``cls_name`` (listed as clutter of ``kind`` unless None)."""
        self.boxes.append((tuple(float(v) for v in c), tuple(float(v) for v in h), float(yaw),
                           CID[cls_name], mat, tuple(float(v) for v in col), float(aux)))
        if kind is not None:
            self.clutter.append(
                (kind, (c[0], c[1], c[2], 2 * h[0], 2 * h[1], 2 * h[2], float(yaw))))

    def finish(self) -> Tuple[StaticPrims, np.ndarray, List[str]]:
        """Put everything on the (non-flat) ground and stack it (call once: boxes are moved).

        Returns:
            (:class:`StaticPrims`, clutter boxes (C, 7) float64 [x, y, z, l, w, h, yaw], C kinds).
        """
        road, boxes = self.road, self.boxes
        # ground that is not flat: everything standing on the ground follows the camber and
        # reaches 0.4 m below its nominal base so no gap opens where the ground falls away
        for i, (c, h, yaw, cl, mat, col, aux) in enumerate(boxes):
            off = float(road.ground_offset(c[1]))
            bottom = c[2] - h[2]
            if bottom <= GROUND_Z + 0.2:
                boxes[i] = ((c[0], c[1], c[2] + off - 0.2), (h[0], h[1], h[2] + 0.2), yaw, cl, mat,
                            col, aux)
            else:
                boxes[i] = ((c[0], c[1], c[2] + off), h, yaw, cl, mat, col, aux)
        spheres = [((c[0], c[1], c[2] + float(road.ground_offset(c[1]))), r, cl, mat, col)
                   for c, r, cl, mat, col in self.spheres]
        clutter = [
            (kd, (b[0], b[1], b[2] + float(road.ground_offset(b[1]))) + tuple(b[3:]))
            for kd, b in self.clutter
        ]
        static = StaticPrims(
            box_c=_stack(boxes, 0, (-1, 3)), box_h=_stack(boxes, 1, (-1, 3)),
            box_yaw=_stack(boxes, 2, (-1,)),
            box_cls=_stack(boxes, 3, (-1,), np.uint8), box_mat=_stack(boxes, 4, (-1,), np.int16),
            box_col=_stack(boxes, 5, (-1, 3), np.float32),
            box_aux=_stack(boxes, 6, (-1,), np.float32),
            sph_c=_stack(spheres, 0, (-1, 3)), sph_r=_stack(spheres, 1, (-1,)),
            sph_cls=_stack(spheres, 2, (-1,), np.uint8),
            sph_mat=_stack(spheres, 3, (-1,), np.int16),
            sph_col=_stack(spheres, 4, (-1, 3), np.float32))
        clutter_boxes = (np.array([b for _, b in clutter], dtype=np.float64).reshape(-1, 7))
        clutter_kinds = [kd for kd, _ in clutter]
        return static, clutter_boxes, clutter_kinds
