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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

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
_GRASS = np.array([[0.25, 0.42, 0.15], [0.35, 0.45, 0.2], [0.45, 0.42, 0.25], [0.3, 0.35, 0.18]])
#: Tree crown colours: summer greens and autumn yellows, oranges and browns (A2D2 has both).
_CROWNS = np.array([[0.12, 0.35, 0.08], [0.2, 0.42, 0.1], [0.1, 0.28, 0.1], [0.55, 0.5, 0.12],
                    [0.7, 0.45, 0.1], [0.5, 0.28, 0.1], [0.3, 0.4, 0.1]])
_SIGN_COLOURS = ((0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.95, 0.8, 0.1), (0.9, 0.9, 0.9))

#: Ground-truth size ranges (length, width, height) per A2D2 box class, metres (uniform sampling).
SIZE_RANGES: Dict[str, Tuple[Tuple[float, float], Tuple[float, float], Tuple[float, float]]] = {
    "Car": ((3.9, 4.9), (1.75, 1.95), (1.40, 1.65)),
    "VanSUV": ((4.6, 5.3), (1.90, 2.10), (1.75, 2.10)),
    "Truck": ((7.5, 10.5), (2.40, 2.55), (3.00, 3.80)),
    "Pedestrian": ((0.50, 0.90), (0.55, 0.85), (1.55, 1.95)),
    "Cyclist": ((1.60, 1.90), (0.60, 0.80), (1.60, 1.85)),
    "Bicycle": ((1.60, 1.85), (0.50, 0.70), (0.95, 1.15)),
}

_CAR_COLOURS = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.1, 0.1, 0.1],
                         [0.5, 0.5, 0.55], [0.2, 0.45, 0.2], [0.9, 0.75, 0.2], [0.35, 0.2, 0.1]])
_FACADES = np.array([[0.75, 0.68, 0.55], [0.6, 0.35, 0.28], [0.82, 0.8, 0.75], [0.55, 0.55, 0.58],
                     [0.85, 0.75, 0.6], [0.45, 0.4, 0.35]])


@dataclass
class Road:
    """Road geometry in the scene frame. Lateral coordinate ``d = y - y_c(x)`` (metres, left
    positive); the centre line between the two directions is d = 0; ego-direction lanes are
    at d < 0 (driving on the right)."""

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
        """Height (m) of the ground above GROUND_Z at scene y: a crowned road falls off by
        ``camber`` m/m on both sides of the crown line y = y0 (the road centre at x = 0), a
        one-way cross slope falls by ``camber`` per metre towards -y; 0 under the camera (y = 0).
        """
        y = np.asarray(y, dtype=np.float64)
        if self.crown:
            return self.camber * (abs(self.y0) - np.abs(y - self.y0))
        return -self.camber * y

    def ground_planes(self) -> np.ndarray:
        """(K, 3) planes [a, bx, by] (z = a + bx x + by y; the ground is the solid below all of
        them) of :meth:`ground_offset`; the same in the scene frame and in every frame's view frame
        (the ego moves along x only)."""
        c, y0 = self.camber, self.y0
        if not self.crown:
            return np.array([[GROUND_Z, 0.0, -c]])
        a = GROUND_Z + c * abs(y0)
        return np.array([[a + c * y0, 0.0, -c], [a - c * y0, 0.0, c]])

    @property
    def right_edge(self) -> float:
        """d of the right kerb (negative)."""
        return -(self.n_same * self.lane_w + self.park_w + 0.5)

    @property
    def left_edge(self) -> float:
        """d of the left kerb (positive)."""
        return self.n_opp * self.lane_w + 0.5

    def centre_y(self, x):
        """y of the centre line at scene x (array or scalar)."""
        return self.y0 + 0.5 * self.curvature * np.asarray(x) ** 2

    def heading(self, x):
        """Road direction (yaw, radians) at scene x."""
        return np.arctan(self.curvature * np.asarray(x))

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
    """One drawn box of a road user, in the object's box frame (x forward, y left, z up, origin =
    ground-truth box centre)."""

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
    """Static scenery primitives (scene frame). Boxes: centre (B,3), half extents (B,3), yaw (B,),
    class id (B,) uint8, material (B,), colour (B,3) RGB in [0,1], aux (B,) (sidewalks: +1 when the
    road is on the box's +y side, -1 on its -y side). Spheres: centre (S,3), radius (S,), class,
    material, colour."""

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
        """Clutter boxes of frame f in its view frame whose centre lies 0.5..max_x m ahead and
        within ``hfov`` + 10 deg of the optical axis. Returns ((K, 7) float64, K kinds)."""
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


# ------------------------------------------------------------------------------------- parts
def _vehicle_parts(cls: str, length: float, w: float, h: float, colour,
                   rng: np.random.Generator) -> List[Part]:
    """Body/cabin/wheel boxes of a vehicle of size (l, w, h), centred on its box."""
    car = CID["Truck"] if cls == "Truck" else CID["Car"]
    dark = (0.08, 0.08, 0.08)
    glass = (0.15, 0.2, 0.25)
    b = -h / 2
    parts: List[Part] = []
    if cls == "Truck":
        cab_l = 2.2
        parts.append(Part((length / 2 - cab_l / 2, 0, b + 0.45 + (0.85 * h - 0.45) / 2),
                          (cab_l / 2, w / 2, (0.85 * h - 0.45) / 2), car, MAT_PAINT, colour))
        parts.append(Part((length / 2 - 0.05, 0, b + 0.55 * h), (0.05, w / 2 - 0.1, 0.15 * h), car,
                          MAT_GLASS, glass))
        cargo_l = length - cab_l - 0.2
        cargo_col = tuple(float(c) for c in rng.choice(_FACADES[[2, 3, 0]]))
        parts.append(Part((-length / 2 + cargo_l / 2, 0, b + 0.9 + (h - 0.9) / 2),
                          (cargo_l / 2, w / 2, (h - 0.9) / 2), car, MAT_PLAIN, cargo_col))
        parts.append(Part((-0.1, 0, b + 0.45), (length / 2 - 0.3, w / 2 - 0.05, 0.45), car,
                          MAT_TYRE, dark))
        return parts
    body_h = (0.6 if cls == "VanSUV" else 0.55) * h
    cab_l = (0.75 if cls == "VanSUV" else 0.5) * length
    cab_x = (-0.08 if cls == "VanSUV" else -0.06) * length
    parts.append(Part((0, 0, b + 0.15 + (body_h - 0.15) / 2),
                      (length / 2, w / 2, (body_h - 0.15) / 2), car, MAT_PAINT, colour))
    parts.append(Part((cab_x, 0, b + body_h + (h - body_h) / 2),
                      (cab_l / 2, 0.46 * w, (h - body_h) / 2), car, MAT_GLASS, glass))
    for ax in (0.32 * length, -0.32 * length):
        parts.append(Part((ax, 0, b + 0.32), (0.32, 0.49 * w, 0.32), car, MAT_TYRE, dark))
    return parts


def _bicycle_parts(length: float, h_wheel: float, b: float, colour, x0: float = 0.0) -> List[Part]:
    """Two wheels (hollow square rings of the wheel's diameter, 5 cm tyres), frame tube, handlebar
    and saddle of a bicycle of length l whose wheels stand at box-frame height b, centred at x0."""
    bike = CID["Bicycle"]
    r = h_wheel / 2
    dark = (0.06, 0.06, 0.06)
    tyre = 0.03
    parts: List[Part] = []
    for wx in (x0 + length / 2 - r, x0 - length / 2 + r):
        parts += [
            Part((wx, 0, b + tyre), (r, 0.03, tyre), bike, MAT_TYRE, dark),
            Part((wx, 0, b + 2 * r - tyre), (r, 0.03, tyre), bike, MAT_TYRE, dark),
            Part((wx - r + tyre, 0, b + r), (tyre, 0.03, r - 2 * tyre), bike, MAT_TYRE, dark),
            Part((wx + r - tyre, 0, b + r), (tyre, 0.03, r - 2 * tyre), bike, MAT_TYRE, dark),
        ]
    return parts + [
        Part((x0, 0, b + 1.25 * r), (length / 2 - r, 0.025, 0.04), bike, MAT_PAINT, colour),
        Part(
            (x0 + length / 2 - r - 0.05, 0, b + 2 * r + 0.2), (0.03, 0.25, 0.03),
            bike, MAT_METAL, dark
        ),
        Part((x0 - 0.12 * length, 0, b + 2 * r + 0.12), (0.1, 0.06, 0.03), bike, MAT_PLAIN, dark),
        Part(
            (x0 + length / 2 - r - 0.05, 0, b + 1.6 * r),
            (0.025, 0.025, 0.6 * r + 0.17),
            bike,
            MAT_PAINT,
            colour,
        ),
    ]


def _person_parts(length: float, w: float, h: float, rng: np.random.Generator,
                  cyclist: bool) -> List[Part]:
    """A person of height h as boxes: two legs (trousers), torso and two arms (top), skin-coloured
    head and hands, hair; a cyclist sits on a bicycle (wheels, frame, handlebar) with a leaning
    torso and arms reaching to the handlebar. Clothing colours vary (dark to bright)."""
    ped = CID["Pedestrian"]
    skins = ((0.87, 0.7, 0.58), (0.72, 0.53, 0.4), (0.48, 0.33, 0.24), (0.95, 0.8, 0.7))
    skin = skins[int(rng.integers(len(skins)))]
    dark = rng.random() < 0.45
    top = tuple(
        float(c) for c in (rng.uniform(0.03, 0.25, 3) if dark else rng.uniform(0.1, 0.95, 3))
    )
    legs = tuple(
        float(c)
        for c in (rng.uniform(0.03, 0.2, 3) if rng.random() < 0.6 else rng.uniform(0.1, 0.6, 3))
    )
    hair = tuple(float(c) for c in rng.uniform(0.03, 0.45) * np.array([1.0, 0.8, 0.6]))
    b = -h / 2
    head = min(0.115, 0.065 * h)
    shoulder_w = min(0.21, w / 2 - 0.02)
    if not cyclist:
        leg_h = 0.47 * h
        torso_h = h - leg_h - 2 * head - 0.04
        stride = float(rng.uniform(-0.12, 0.12)) * min(1.0, length / 0.6)
        hl = min(length / 2 - 0.07, 0.2)
        parts = [
            Part(
                (float(np.clip(stride, -hl, hl)), 0.09, b + leg_h / 2),
                (0.07, 0.07, leg_h / 2),
                ped,
                MAT_CLOTH,
                legs,
            ),
            Part(
                (float(np.clip(-stride, -hl, hl)), -0.09, b + leg_h / 2),
                (0.07, 0.07, leg_h / 2),
                ped,
                MAT_CLOTH,
                legs,
            ),
            Part(
                (0, 0, b + leg_h + torso_h / 2),
                (0.12, shoulder_w - 0.06, torso_h / 2),
                ped,
                MAT_CLOTH,
                top,
            ),
            Part(
                (
                    float(np.clip(-stride * 0.6, -hl, hl)),
                    shoulder_w - 0.03,
                    b + leg_h + torso_h / 2 - 0.05,
                ),
                (0.05, 0.04, torso_h / 2 + 0.02),
                ped,
                MAT_CLOTH,
                top,
            ),
            Part(
                (
                    float(np.clip(stride * 0.6, -hl, hl)),
                    -(shoulder_w - 0.03),
                    b + leg_h + torso_h / 2 - 0.05,
                ),
                (0.05, 0.04, torso_h / 2 + 0.02),
                ped,
                MAT_CLOTH,
                top,
            ),
            Part((0, 0, h / 2 - head - 0.01), (0.09, 0.08, head), ped, MAT_SKIN, skin),
            Part((-0.015, 0, h / 2 - 0.035), (0.09, 0.085, 0.035), ped, MAT_CLOTH, hair),
        ]
        return parts
    bike_col = tuple(float(c) for c in rng.uniform(0.1, 0.9, 3))
    wheel = min(0.7, 0.42 * h)
    parts = _bicycle_parts(length, wheel, b, bike_col)
    seat_z = b + wheel + 0.15
    torso_h = h / 2 - 2 * head - 0.02 - seat_z
    return parts + [
        Part((-0.12 * length + 0.05, 0.1, seat_z - 0.2), (0.07, 0.06, 0.25), ped, MAT_CLOTH, legs),
        Part((-0.12 * length + 0.15, -0.1, seat_z - 0.15), (0.07, 0.06, 0.25), ped, MAT_CLOTH,
             legs),
        Part(
            (-0.12 * length + 0.1, 0, seat_z + 0.04 + torso_h / 2),
            (0.14, shoulder_w - 0.05, torso_h / 2),
            ped,
            MAT_CLOTH,
            top,
        ),
        Part(
            (0.1 * length + 0.05, 0.18, seat_z + 0.04 + 0.6 * torso_h),
            (0.2, 0.04, 0.04),
            ped,
            MAT_CLOTH,
            top,
        ),
        Part(
            (0.1 * length + 0.05, -0.18, seat_z + 0.04 + 0.6 * torso_h),
            (0.2, 0.04, 0.04),
            ped,
            MAT_CLOTH,
            top,
        ),
        Part((-0.12 * length + 0.18, 0, h / 2 - head - 0.01), (0.09, 0.08, head), ped, MAT_SKIN,
             skin),
        Part((-0.12 * length + 0.16, 0, h / 2 - 0.03), (0.1, 0.085, 0.03), ped, MAT_CLOTH, hair),
    ]


# ------------------------------------------------------------------------------- collisions
def _footprint_overlap(pa: np.ndarray, ha: Tuple[float, float], pb: np.ndarray,
                       hb: Tuple[float, float]) -> bool:
    """True when two oriented rectangles overlap at any time (separating-axis test).

    pa, pb: (T, >=4) poses [x, y, z, yaw]; ha, hb: half (length, width) in metres.
    """
    ca, sa = np.cos(pa[:, 3]), np.sin(pa[:, 3])
    cb, sb = np.cos(pb[:, 3]), np.sin(pb[:, 3])
    dx, dy = pb[:, 0] - pa[:, 0], pb[:, 1] - pa[:, 1]
    axes = [(ca, sa), (-sa, ca), (cb, sb), (-sb, cb)]
    sep = np.zeros(pa.shape[0], dtype=bool)
    for ux, uy in axes:
        ra = ha[0] * np.abs(ca * ux + sa * uy) + ha[1] * np.abs(-sa * ux + ca * uy)
        rb = hb[0] * np.abs(cb * ux + sb * uy) + hb[1] * np.abs(-sb * ux + cb * uy)
        sep |= np.abs(dx * ux + dy * uy) > ra + rb
    return bool(np.any(~sep))


# ---------------------------------------------------------------------------------- builder
def build_scene(seed: int, index: int, n_frames: int, hfov: float = np.radians(29.6)) -> Scene:
    """Build scene ``index`` of a run with ``seed`` lasting ``n_frames`` frames (10 Hz).

    Deterministic: the same (seed, index, n_frames) gives the same scene.

    Args:
        seed: run seed (non-negative int).
        index: scene index within the run.
        n_frames: number of frames (>= 1); the amount of traffic grows with the duration so
            that every frame has road users in view.
        hfov: horizontal half field of view (radians) used to place road users in view.
    Raises:
        ValueError for n_frames < 1 or a negative seed/index.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and scene index must be >= 0, got {seed}, {index}")
    rng = np.random.default_rng([int(seed), int(index), 7])
    T = (n_frames - 1) * FRAME_DT
    times = np.arange(n_frames) * FRAME_DT

    # ---- layout (A2D2 drives German urban and suburban streets, country roads and highways)
    layout = str(rng.choice(LAYOUTS, p=[0.4, 0.3, 0.18, 0.12]))
    fast = layout in ("country", "highway")
    # ---- road
    curved = rng.random() < 0.6
    k = float(rng.uniform(1 / 3000, 1 / 800) * rng.choice([-1, 1])) if curved else 0.0
    n_same = (
        int(rng.integers(2, 4))
        if layout == "highway"
        else (1 if layout == "country" else int(rng.integers(1, 3)))
    )
    n_opp = (
        n_same if layout == "highway" else (1 if layout == "country" else int(rng.integers(1, 3)))
    )
    lane_w = float(rng.uniform(3.2, 3.6)) if layout != "highway" else float(rng.uniform(3.5, 3.75))
    ego_lane = int(rng.integers(0, n_same))
    d_ego = -(ego_lane + 0.5) * lane_w
    crown = bool(rng.random() < 0.7)
    road = Road(
        curvature=k,
        y0=-d_ego,
        lane_w=lane_w,
        n_same=n_same,
        n_opp=n_opp,
        park_w=2.2 if (layout in ("urban", "suburban") and rng.random() < 0.5) else 0.0,
        sidewalk_w=(
            (float(rng.uniform(1.2, 2.0)), float(rng.uniform(1.2, 2.0)))
            if fast
            else (float(rng.uniform(2.5, 4.0)), float(rng.uniform(2.5, 4.0)))
        ),
        sidewalk_h=float(rng.uniform(0.10, 0.15)) if not fast else float(rng.uniform(0.03, 0.08)),
        verge_w=(
            (float(rng.uniform(0.5, 4.0)), float(rng.uniform(0.5, 4.0)))
            if layout == "urban"
            else (float(rng.uniform(3.0, 9.0)), float(rng.uniform(3.0, 9.0)))
        ),
        centre_solid=bool(rng.random() < 0.5),
        dash_phase=float(rng.uniform(0, 9)),
        camber=float(rng.uniform(0.01, 0.025)) if crown else float(rng.uniform(-0.02, 0.02)),
        crown=crown,
        asphalt=tuple(float(v) for v in rng.uniform(0.27, 0.5) * rng.uniform(0.97, 1.03, 3)),
        grass=tuple(
            float(v) for v in _GRASS[int(rng.integers(len(_GRASS)))] * rng.uniform(0.85, 1.15)
        ),
    )
    ego_speed = 0.0 if (rng.random() < 0.3 and not fast) else float(
        rng.uniform(4.0, 12.0) if not fast else rng.uniform(12.0, 25.0))
    x_end = ego_speed * T
    x_lo, x_hi = -30.0, x_end + 170.0

    boxes: List[Tuple] = []     # (c(3), h(3), yaw, cls, mat, col(3), aux)
    spheres: List[Tuple] = []   # (c(3), r, cls, mat, col(3))
    clutter: List[Tuple[str, Tuple[float, ...]]] = (
        []
    )  # (kind, [x, y, z, l, w, h, yaw]) hard negatives

    def along(x: float, d: float) -> Tuple[float, float, float]:
        """Scene (x, y, yaw) of the point at road coordinates (x, d)."""
        return x, float(road.centre_y(x) + d), float(road.heading(x))

    def add_box(c, h, yaw, cls_name, mat, col, aux=0.0, kind=None):
        boxes.append(
            (
                tuple(float(v) for v in c),
                tuple(float(v) for v in h),
                float(yaw),
                CID[cls_name],
                mat,
                tuple(float(v) for v in col),
                float(aux),
            )
        )
        if kind is not None:
            clutter.append((kind, (c[0], c[1], c[2], 2 * h[0], 2 * h[1], 2 * h[2], float(yaw))))

    # ---- sidewalks (segments following the curve)
    seg = 200.0 if k == 0.0 else 10.0
    sw_h = road.sidewalk_h
    sw_col = (0.62, 0.6, 0.58) if not fast else (0.45, 0.44, 0.4)
    for side in (-1, 1):
        w = road.sidewalk_w[0] if side < 0 else road.sidewalk_w[1]
        edge = road.right_edge if side < 0 else road.left_edge
        dc = edge + side * w / 2
        x = x_lo
        while x < x_hi:
            xc = x + seg / 2
            cx, cy, yaw = along(xc, dc)
            boxes.append(((cx, cy, GROUND_Z + sw_h / 2), (seg / 2 + 0.05, w / 2, sw_h / 2), yaw,
                          CID["Sidewalk"], MAT_SIDEWALK, sw_col, float(-side)))
            x += seg

    # ---- buildings, trees, bushes, hedges, fences, poles, signs, signals, bollards, bins
    # footprints for collision checks
    static_fp: List[Tuple[np.ndarray, Tuple[float, float]]] = []
    p_build = {"urban": 0.95, "suburban": 0.75, "country": 0.2, "highway": 0.05}[layout]
    for side in (-1, 1):
        si = 0 if side < 0 else 1
        edge = road.right_edge if side < 0 else road.left_edge
        sw_out = edge + side * road.sidewalk_w[si]
        verge = road.verge_w[si]
        has_buildings = rng.random() < p_build
        x = x_lo + rng.uniform(0, 10)
        while has_buildings and x < x_hi:
            L = rng.uniform(8, 30) if layout == "urban" else rng.uniform(8, 16)
            depth = rng.uniform(8, 15)
            H = rng.uniform(5, 22) if layout == "urban" else rng.uniform(4, 9)
            setback = (
                verge + rng.uniform(0, 1.0) + (rng.uniform(2, 8) if layout != "urban" else 0.0)
            )
            dc = sw_out + side * (setback + depth / 2)
            cx, cy, yaw = along(x + L / 2, dc)
            col = tuple(float(c) for c in rng.choice(_FACADES) * rng.uniform(0.85, 1.1))
            boxes.append(((cx, cy, GROUND_Z + H / 2), (L / 2, depth / 2, H / 2), yaw,
                          CID["Buildings"], MAT_BUILDING, col, 0.0))
            x += L + (rng.uniform(2, 10) if (rng.random() < 0.5 or layout != "urban") else 0.0)
        # trees in the verge (trunk + crown), bushes in front of them
        x = x_lo + rng.uniform(0, 8)
        tree_gap = (7, 18) if layout != "highway" else (10, 30)
        while verge > 1.2 and x < x_hi:
            dc = sw_out + side * verge / 2
            cx, cy, _ = along(x, dc)
            trunk_h = rng.uniform(1.8, 3.0)
            r = min(rng.uniform(1.2, 2.5), verge / 2 + 1.0)
            tw = rng.uniform(0.12, 0.22)
            boxes.append(((cx, cy, GROUND_Z + trunk_h / 2 + 0.3), (tw, tw, trunk_h / 2 + 0.3), 0.0,
                          CID["Nature object"], MAT_PLAIN, (0.35, 0.25, 0.15), 0.0))
            crown_col = tuple(
                float(c) for c in _CROWNS[int(rng.integers(len(_CROWNS)))] * rng.uniform(0.8, 1.2)
            )
            n_sph = (
                1 if rng.random() < 0.7 else int(rng.integers(2, 4))
            )  # tall crowns: stacked spheres
            for j in range(n_sph):
                spheres.append(
                    (
                        (cx, cy, GROUND_Z + trunk_h + 0.7 * r + 1.2 * r * j),
                        r * (1 - 0.15 * j),
                        CID["Nature object"],
                        MAT_FOLIAGE,
                        crown_col,
                    )
                )
            top = trunk_h + 1.7 * r + 1.2 * r * (n_sph - 1)
            clutter.append(("Tree", (cx, cy, GROUND_Z + top / 2, 2 * r, 2 * r, top, 0.0)))
            if rng.random() < 0.4:
                br = rng.uniform(0.4, 0.9)
                bx, by, _ = along(x + rng.uniform(-3, 3), sw_out + side * min(br + 0.1, verge / 2))
                spheres.append(
                    (
                        (bx, by, GROUND_Z + 0.5 * br),
                        br,
                        CID["Nature object"],
                        MAT_FOLIAGE,
                        tuple(float(c) for c in rng.uniform([0.1, 0.25, 0.05], [0.3, 0.45, 0.12])),
                    )
                )
                clutter.append(
                    ("Bush", (bx, by, GROUND_Z + 0.75 * br, 2 * br, 2 * br, 1.5 * br, 0.0))
                )
            x += rng.uniform(*tree_gap)
        # a forest edge beyond the verge on country roads and highways
        if fast and rng.random() < 0.6:
            x = x_lo + rng.uniform(0, 4)
            while x < x_hi:
                r = rng.uniform(2.0, 4.0)
                cx, cy, _ = along(x, sw_out + side * (verge + r + rng.uniform(0, 3)))
                col = tuple(
                    float(c)
                    for c in _CROWNS[int(rng.integers(len(_CROWNS)))] * rng.uniform(0.6, 1.0)
                )
                z = GROUND_Z + rng.uniform(1.5, 4.0) + r
                spheres.append(((cx, cy, z), r, CID["Nature object"], MAT_FOLIAGE, col))
                boxes.append(
                    (
                        (cx, cy, GROUND_Z + (z - GROUND_Z) / 2),
                        (0.2, 0.2, (z - GROUND_Z) / 2),
                        0.0,
                        CID["Nature object"],
                        MAT_PLAIN,
                        (0.3, 0.22, 0.14),
                        0.0,
                    )
                )
                clutter.append(
                    (
                        "Tree",
                        (
                            cx,
                            cy,
                            GROUND_Z + (z + r - GROUND_Z) / 2,
                            2 * r,
                            2 * r,
                            z + r - GROUND_Z,
                            0.0,
                        ),
                    )
                )
                x += rng.uniform(2.5, 6.0)
        # hedges or fences along the outer edge of the sidewalk
        if layout in ("suburban", "country") or rng.random() < 0.3:
            x = x_lo + rng.uniform(0, 15)
            while x < x_hi:
                L = rng.uniform(5, 25)
                hedge = rng.random() < 0.6
                if hedge:
                    hh, hw = rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.0)
                    cx, cy, yaw = along(x + L / 2, sw_out + side * (hw / 2 + 0.05))
                    add_box(
                        (cx, cy, GROUND_Z + hh / 2),
                        (L / 2, hw / 2, hh / 2),
                        yaw,
                        "Nature object",
                        MAT_FOLIAGE,
                        tuple(rng.uniform([0.08, 0.2, 0.04], [0.2, 0.4, 0.1])),
                        kind="Hedge",
                    )
                else:
                    fh = rng.uniform(1.0, 2.0)
                    cx, cy, yaw = along(x + L / 2, sw_out + side * 0.1)
                    add_box(
                        (cx, cy, GROUND_Z + fh / 2),
                        (L / 2, 0.03, fh / 2),
                        yaw,
                        "Grid structure",
                        MAT_GRID,
                        tuple(rng.uniform(0.2, 0.5, 3)),
                        kind="Fence",
                    )
                x += L + rng.uniform(3, 25)
        # guard rails (Sidebars) on country roads and highways, at the road edge
        if fast:
            x = x_lo + rng.uniform(0, 5)
            while x < x_hi:
                L = 12.0
                cx, cy, yaw = along(x + L / 2, edge + side * 0.6)
                add_box(
                    (cx, cy, GROUND_Z + sw_h + 0.6),
                    (L / 2, 0.05, 0.17),
                    yaw,
                    "Sidebars",
                    MAT_METAL,
                    (0.7, 0.7, 0.72),
                    kind="GuardRail",
                )
                static_fp.append((np.array([[cx, cy, 0.0, yaw]]), (L / 2, 0.2)))
                for px in (x + 1.0, x + 5.0, x + 9.0):
                    qx, qy, _ = along(px, edge + side * 0.65)
                    boxes.append(
                        (
                            (qx, qy, GROUND_Z + sw_h + 0.3),
                            (0.05, 0.05, 0.45),
                            yaw,
                            CID["Sidebars"],
                            MAT_METAL,
                            (0.6, 0.6, 0.62),
                            0.0,
                        )
                    )
                x += L
        # poles near the kerb: street lights, signs, traffic signals
        x = x_lo + rng.uniform(0, 20)
        pole_gap = (15, 35) if layout == "urban" else (25, 50)
        while x < x_hi:
            dc = edge + side * 0.5
            cx, cy, yaw = along(x, dc)
            z0 = GROUND_Z + sw_h
            u = rng.random()
            face = 0.0 if side < 0 else np.pi
            if u < 0.5:                      # pole with a traffic sign facing oncoming traffic
                ph = rng.uniform(2.6, 3.5)
                add_box(
                    (cx, cy, z0 + ph / 2),
                    (0.04, 0.04, ph / 2),
                    yaw,
                    "Poles",
                    MAT_METAL,
                    (0.55, 0.55, 0.55),
                    kind="Pole",
                )
                sr = rng.uniform(0.3, 0.42)
                add_box(
                    (cx + (-0.06 if side < 0 else 0.06), cy, z0 + ph - sr),
                    (0.02, sr, sr),
                    yaw + face,
                    "Traffic sign",
                    MAT_SIGN,
                    _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))],
                    kind="TrafficSign",
                )
            elif u < 0.7 and layout != "highway":   # traffic signal
                ph = rng.uniform(3.0, 4.0)
                add_box(
                    (cx, cy, z0 + ph / 2),
                    (0.07, 0.07, ph / 2),
                    yaw,
                    "Poles",
                    MAT_METAL,
                    (0.3, 0.3, 0.3),
                    kind="Pole",
                )
                add_box(
                    (cx + (-0.15 if side < 0 else 0.15), cy, z0 + ph - 0.5),
                    (0.12, 0.16, 0.45),
                    yaw + face,
                    "Traffic signal",
                    MAT_SIGNAL,
                    (0.1, 0.1, 0.1),
                    kind="TrafficSignal",
                )
            else:                            # street light
                ph = rng.uniform(5.0, 9.0)
                add_box(
                    (cx, cy, z0 + ph / 2),
                    (0.08, 0.08, ph / 2),
                    yaw,
                    "Poles",
                    MAT_METAL,
                    (0.55, 0.55, 0.55),
                    kind="Pole",
                )
            static_fp.append((np.array([[cx, cy, 0.0, yaw]]), (0.3, 0.3)))
            x += rng.uniform(*pole_gap)
        # bollards and trash bins on the sidewalk (urban / suburban)
        if not fast:
            x = x_lo + rng.uniform(0, 20)
            while x < x_hi:
                z0 = GROUND_Z + sw_h
                if rng.random() < 0.5:
                    for j in range(int(rng.integers(2, 6))):
                        cx, cy, yaw = along(x + 1.5 * j, edge + side * 0.35)
                        add_box(
                            (cx, cy, z0 + 0.45),
                            (0.08, 0.08, 0.45),
                            yaw,
                            "Traffic guide obj.",
                            MAT_PAINT,
                            (0.75, 0.72, 0.68),
                            kind="Bollard",
                        )
                        static_fp.append((np.array([[cx, cy, 0.0, yaw]]), (0.2, 0.2)))
                else:
                    cx, cy, yaw = along(x, sw_out - side * 0.5)
                    add_box(
                        (cx, cy, z0 + 0.55),
                        (0.3, 0.3, 0.55),
                        yaw,
                        "Obstacles / trash",
                        MAT_PLAIN,
                        tuple(rng.uniform(0.1, 0.6, 3)),
                        kind="TrashBin",
                    )
                    static_fp.append((np.array([[cx, cy, 0.0, yaw]]), (0.45, 0.45)))
                x += rng.uniform(10, 40)

    # ground that is not flat: everything standing on the ground follows the camber and reaches
    # 0.4 m below its nominal base so no gap opens where the ground falls away
    for i, (c, h, yaw, cl, mat, col, aux) in enumerate(boxes):
        off = float(road.ground_offset(c[1]))
        bottom = c[2] - h[2]
        if bottom <= GROUND_Z + 0.2:
            boxes[i] = (
                (c[0], c[1], c[2] + off - 0.2),
                (h[0], h[1], h[2] + 0.2),
                yaw,
                cl,
                mat,
                col,
                aux,
            )
        else:
            boxes[i] = ((c[0], c[1], c[2] + off), h, yaw, cl, mat, col, aux)
    spheres = [((c[0], c[1], c[2] + float(road.ground_offset(c[1]))), r, cl, mat, col)
               for c, r, cl, mat, col in spheres]
    clutter = [
        (kd, (b[0], b[1], b[2] + float(road.ground_offset(b[1]))) + tuple(b[3:]))
        for kd, b in clutter
    ]

    def stack(rows, idx, shape, dtype=np.float64):
        if not rows:
            return np.zeros(tuple(0 if n < 0 else n for n in shape), dtype=dtype)
        return np.asarray([r[idx] for r in rows], dtype=dtype).reshape(shape)

    static = StaticPrims(
        box_c=stack(boxes, 0, (-1, 3)), box_h=stack(boxes, 1, (-1, 3)),
        box_yaw=stack(boxes, 2, (-1,)),
        box_cls=stack(boxes, 3, (-1,), np.uint8), box_mat=stack(boxes, 4, (-1,), np.int16),
        box_col=stack(boxes, 5, (-1, 3), np.float32), box_aux=stack(boxes, 6, (-1,), np.float32),
        sph_c=stack(spheres, 0, (-1, 3)), sph_r=stack(spheres, 1, (-1,)),
        sph_cls=stack(spheres, 2, (-1,), np.uint8),
        sph_mat=stack(spheres, 3, (-1,), np.int16), sph_col=stack(spheres, 4, (-1, 3), np.float32))
    clutter_boxes = (np.array([b for _, b in clutter], dtype=np.float64).reshape(-1, 7))
    clutter_kinds = [kd for kd, _ in clutter]

    # ---- road users
    objects: List[SynthObject] = []
    placed: List[Tuple[np.ndarray, Tuple[float, float]]] = list(static_fp)
    # the ego vehicle (A2D2 ego-dimensions: x -1..4 m, y +-1.25 m in the vehicle frame; the camera
    # sits 1.71 m ahead of the vehicle origin) plus a safety margin ahead
    ego_poses = np.zeros((n_frames, 4))
    ego_poses[:, 0] = -2.71 + (5.0 + 6.0) / 2 + ego_speed * times
    placed.append((ego_poses, (5.5, 1.6)))
    tan_h = np.tan(hfov)

    def try_add(obj: SynthObject, need_view: Optional[float] = None) -> bool:
        poses = obj.poses(road, times)
        if need_view is not None:
            f = min(int(round(need_view / FRAME_DT)), n_frames - 1)
            xv = poses[f, 0] - ego_speed * times[f]
            if not (xv > 4.0 and abs(poses[f, 1]) < 0.95 * xv * tan_h):
                return False
        hl = (obj.size[0] / 2 + 0.3, obj.size[1] / 2 + 0.2)
        for p, h in placed:
            if _footprint_overlap(poses, hl,
                                  p if p.shape[0] == n_frames else np.repeat(p, n_frames, 0), h):
                return False
        placed.append((poses, hl))
        obj.oid = len(objects)
        objects.append(obj)
        return True

    def size_of(cls: str) -> Tuple[float, float, float]:
        return tuple(float(rng.uniform(*r))
                     for r in SIZE_RANGES[cls])  # type: ignore[return-value]

    def vehicle_class() -> str:
        u = rng.random()
        return "Car" if u < 0.65 else ("VanSUV" if u < 0.85 else "Truck")

    def make_vehicle(cls: str, **kw) -> SynthObject:
        l, w, h = size_of(cls)
        col = tuple(float(c)
                    for c in _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.8, 1.1))
        col = tuple(min(c, 1.0) for c in col)
        return SynthObject(-1, cls, (l, w, h), parts=_vehicle_parts(cls, l, w, h, col, rng), **kw)

    scale = 1.0 + T / 5.0
    lanes = [(-(j + 0.5) * lane_w, +1)
             for j in range(n_same)] + [((j + 0.5) * lane_w, -1) for j in range(n_opp)]
    for d, direction in lanes:
        if direction > 0:
            v = (max(0.0, ego_speed + rng.uniform(-3, 4)) if ego_speed > 0
                 else (0.0 if rng.random() < 0.3 else rng.uniform(3, 12)))
        else:
            v = -rng.uniform(5, 14)
        n = rng.poisson(1.6 * scale) + 1
        for _ in range(n):
            for _attempt in range(8):
                ts = rng.uniform(0, T) if T > 0 else 0.0
                xv = rng.uniform(6, 80)
                x0 = xv + ego_speed * ts - v * ts
                obj = make_vehicle(vehicle_class(), kind="road", z_base=GROUND_Z, x0=x0, vx=v, d=d,
                                   reverse=direction < 0)
                if try_add(obj, need_view=ts):
                    break
    # parked cars
    if road.park_w > 0:
        x = -10.0 + rng.uniform(0, 4)
        d = -(n_same * lane_w) - road.park_w / 2 - 0.2
        while x < x_end + 90:
            if rng.random() < 0.55:
                obj = make_vehicle("Car" if rng.random() < 0.75 else "VanSUV", kind="road",
                                   z_base=GROUND_Z,
                                   x0=x, vx=0.0, d=d, reverse=bool(rng.random() < 0.2))
                try_add(obj)
            x += rng.uniform(5.5, 8.0)
    # parked bicycles on the sidewalk near the kerb: A2D2's label3D has a "Bicycle" class for
    # bicycles without rider, so they are boxed road users (not clutter)
    if not fast:
        for side in (-1, 1):
            edge = road.right_edge if side < 0 else road.left_edge
            for _ in range(int(rng.poisson(1.0))):
                xb = rng.uniform(5, x_end + 60)
                for j in range(int(rng.integers(1, 4))):
                    l, w, h = size_of("Bicycle")
                    px, py, yaw = along(xb + 0.8 * j, edge + side * 1.0)
                    col = tuple(float(c) for c in rng.uniform(0.05, 0.9, 3))
                    obj = SynthObject(
                        -1,
                        "Bicycle",
                        (l, w, h),
                        kind="line",
                        z_base=GROUND_Z + road.sidewalk_h,
                        p0=(px, py),
                        yaw=float(yaw + np.pi / 2 * side + rng.uniform(-0.3, 0.3)),
                        parts=_bicycle_parts(l, min(0.7, h - 0.25), -h / 2, col),
                    )
                    try_add(obj)
    # pedestrians on the sidewalks
    for side in (-1, 1):
        si = 0 if side < 0 else 1
        edge = road.right_edge if side < 0 else road.left_edge
        n = rng.poisson((0.5 if fast else 1.6) * (1 + T / 8.0)) + (1 if side < 0 else 0)
        for _ in range(n):
            for _attempt in range(12):
                cls = "Pedestrian"
                l, w, h = size_of(cls)
                ts = rng.uniform(0, T) if T > 0 else 0.0
                xv = rng.uniform(5, 45)
                speed = 0.0 if rng.random() < 0.2 else rng.uniform(0.8, 1.7) * rng.choice([-1, 1])
                d = edge + side * rng.uniform(0.6, road.sidewalk_w[si] - 0.5)
                x0 = xv + ego_speed * ts - speed * ts
                if speed == 0.0:
                    px, py, _ = along(x0, d)
                    obj = SynthObject(-1, cls, (l, w, h), kind="line",
                                      z_base=GROUND_Z + road.sidewalk_h,
                                      p0=(px, py), yaw=float(rng.uniform(-np.pi, np.pi)),
                                      parts=_person_parts(l, w, h, rng, False))
                else:
                    obj = SynthObject(-1, cls, (l, w, h), kind="road",
                                      z_base=GROUND_Z + road.sidewalk_h,
                                      x0=x0, vx=speed, d=d, reverse=speed < 0,
                                      parts=_person_parts(l, w, h, rng, False))
                if try_add(obj, need_view=ts):
                    break
    # pedestrians crossing the road
    for _ in range(rng.poisson(0.4 * (1 + T / 10.0))):
        for _attempt in range(8):
            l, w, h = size_of("Pedestrian")
            ts = rng.uniform(0, T) if T > 0 else 0.0
            xw = ego_speed * ts + rng.uniform(12, 45)
            direction = rng.choice([-1, 1])
            speed = rng.uniform(1.0, 1.6)
            y_at_ts = float(road.centre_y(xw)) + rng.uniform(road.right_edge, road.left_edge)
            obj = SynthObject(-1, "Pedestrian", (l, w, h), kind="line", z_base=GROUND_Z,
                              p0=(float(xw), y_at_ts - direction * speed * ts),
                              v=(0.0, float(direction * speed)),
                              yaw=float(direction * np.pi / 2),
                              parts=_person_parts(l, w, h, rng, False))
            if try_add(obj, need_view=ts):
                break
    # cyclists at the right edge of the rightmost lane (own direction) or of the oncoming side
    for _ in range(rng.poisson(1.2 * (1 + T / 5.0))):
        for _attempt in range(8):
            l, w, h = size_of("Cyclist")
            ts = rng.uniform(0, T) if T > 0 else 0.0
            own = rng.random() < 0.6
            v = rng.uniform(3, 7) * (1 if own else -1)
            d = (-(n_same * lane_w) + 0.6) if own else (n_opp * lane_w - 0.6)
            xv = rng.uniform(6, 60)
            x0 = xv + ego_speed * ts - v * ts
            obj = SynthObject(-1, "Cyclist", (l, w, h), kind="road", z_base=GROUND_Z, x0=x0, vx=v,
                              d=d, reverse=not own, parts=_person_parts(l, w, h, rng, True))
            if try_add(obj, need_view=ts):
                break

    # lighting: random sun direction (elevation 25-70 deg) and exposure per scene
    sky = str(rng.choice(("clear", "overcast", "low_sun"), p=[0.45, 0.4, 0.15]))
    el = np.radians(rng.uniform(25, 70) if sky != "low_sun" else rng.uniform(8, 18))
    az = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    exposure = float(rng.uniform(0.8, 1.15))
    # 2018-08-07 (first A2D2 recording day) + a seed-dependent day/time; scenes 10 min apart
    base = 1533653428 + (int(seed) * 7919 % 365) * 86400 + (int(seed) * 104729 % 36000)
    start_utc = base + index * 600
    first_frame = int(rng.integers(100, 20000))
    return Scene(
        index=index,
        seed=seed,
        n_frames=n_frames,
        road=road,
        static=static,
        objects=objects,
        ego_speed=ego_speed,
        sun=sun,
        start_utc=int(start_utc),
        first_frame=first_frame,
        exposure=exposure,
        layout=layout,
        clutter_boxes=clutter_boxes,
        clutter_kinds=clutter_kinds,
        sky=sky,
    )
