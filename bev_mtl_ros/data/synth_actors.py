"""Road users of a synthetic scene: their box-part models and their placement.

Part models: vehicles, bicycles, people. Placement: traffic in the lanes, parked cars and bicycles,
pedestrians on the sidewalks and crossing, cyclists.

Every road user moves with a constant velocity; none overlaps another road user, the ego vehicle
or the scenery's footprints in the bird's-eye view at any frame (rejection sampling with a
separating-axis test, :class:`ActorPlacer`). Steps of
:func:`bev_mtl_ros.data.synth_build.build_scene`, in the order of :func:`place_road_users` (the
generator's output depends on the order of the draws).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from bev_mtl_ros.data.synth_layout import FACADE_COLOURS, Street
from bev_mtl_ros.data.synth_scene import (
    CID,
    FRAME_DT,
    GROUND_Z,
    MAT_CLOTH,
    MAT_GLASS,
    MAT_METAL,
    MAT_PAINT,
    MAT_PLAIN,
    MAT_SKIN,
    MAT_TYRE,
    SIZE_RANGES,
    Part,
    SynthObject,
)

_CAR_COLOURS = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.1, 0.1, 0.1],
                         [0.5, 0.5, 0.55], [0.2, 0.45, 0.2], [0.9, 0.75, 0.2], [0.35, 0.2, 0.1]])


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
        cargo_col = tuple(float(c) for c in rng.choice(FACADE_COLOURS[[2, 3, 0]]))
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
    """Return the parts of a bicycle of length l, wheels at box-frame height b, centred at x0.

    Two wheels (hollow square rings of the wheel's diameter, 5 cm tyres), frame tube, handlebar and
    saddle.
    """
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
        Part((x0 + length / 2 - r - 0.05, 0, b + 2 * r + 0.2), (0.03, 0.25, 0.03), bike,
             MAT_METAL, dark),
        Part((x0 - 0.12 * length, 0, b + 2 * r + 0.12), (0.1, 0.06, 0.03), bike, MAT_PLAIN, dark),
        Part((x0 + length / 2 - r - 0.05, 0, b + 1.6 * r), (0.025, 0.025, 0.6 * r + 0.17), bike,
             MAT_PAINT, colour),
    ]


def _person_parts(length: float, w: float, h: float, rng: np.random.Generator,
                  cyclist: bool) -> List[Part]:
    """Return a person of height h as boxes, walking/standing or on a bicycle.

    Two legs (trousers), torso and two arms (top), skin-coloured head and hands, hair; a cyclist
    sits on a bicycle (wheels, frame, handlebar) with a leaning torso and arms reaching to the
    handlebar. Clothing colours vary (dark to bright).
    """
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
    colours = (skin, top, legs, hair)
    if not cyclist:
        return _walker_parts(length, w, h, rng, colours)
    return _rider_parts(length, w, h, rng, colours)


def _walker_parts(length: float, w: float, h: float, rng: np.random.Generator,
                  colours: Tuple[Tuple[float, ...], ...]) -> List[Part]:
    """Return a standing or walking person (random stride) of height h.

    Colours (skin, top, legs, hair) as drawn by :func:`_person_parts`.
    """
    ped = CID["Pedestrian"]
    skin, top, legs, hair = colours
    b = -h / 2
    head = min(0.115, 0.065 * h)
    shoulder_w = min(0.21, w / 2 - 0.02)
    leg_h = 0.47 * h
    torso_h = h - leg_h - 2 * head - 0.04
    stride = float(rng.uniform(-0.12, 0.12)) * min(1.0, length / 0.6)
    hl = min(length / 2 - 0.07, 0.2)
    arm_z = b + leg_h + torso_h / 2 - 0.05
    return [
        Part((float(np.clip(stride, -hl, hl)), 0.09, b + leg_h / 2), (0.07, 0.07, leg_h / 2),
             ped, MAT_CLOTH, legs),
        Part((float(np.clip(-stride, -hl, hl)), -0.09, b + leg_h / 2), (0.07, 0.07, leg_h / 2),
             ped, MAT_CLOTH, legs),
        Part((0, 0, b + leg_h + torso_h / 2), (0.12, shoulder_w - 0.06, torso_h / 2),
             ped, MAT_CLOTH, top),
        Part((float(np.clip(-stride * 0.6, -hl, hl)), shoulder_w - 0.03, arm_z),
             (0.05, 0.04, torso_h / 2 + 0.02), ped, MAT_CLOTH, top),
        Part((float(np.clip(stride * 0.6, -hl, hl)), -(shoulder_w - 0.03), arm_z),
             (0.05, 0.04, torso_h / 2 + 0.02), ped, MAT_CLOTH, top),
        Part((0, 0, h / 2 - head - 0.01), (0.09, 0.08, head), ped, MAT_SKIN, skin),
        Part((-0.015, 0, h / 2 - 0.035), (0.09, 0.085, 0.035), ped, MAT_CLOTH, hair),
    ]


def _rider_parts(length: float, w: float, h: float, rng: np.random.Generator,
                 colours: Tuple[Tuple[float, ...], ...]) -> List[Part]:
    """Return a cyclist of height h on a bicycle of random colour.

    Colours (skin, top, legs, hair) as drawn by :func:`_person_parts`.
    """
    ped = CID["Pedestrian"]
    skin, top, legs, hair = colours
    b = -h / 2
    head = min(0.115, 0.065 * h)
    shoulder_w = min(0.21, w / 2 - 0.02)
    bike_col = tuple(float(c) for c in rng.uniform(0.1, 0.9, 3))
    wheel = min(0.7, 0.42 * h)
    parts = _bicycle_parts(length, wheel, b, bike_col)
    seat_z = b + wheel + 0.15
    torso_h = h / 2 - 2 * head - 0.02 - seat_z
    hand_z = seat_z + 0.04 + 0.6 * torso_h
    return parts + [
        Part((-0.12 * length + 0.05, 0.1, seat_z - 0.2), (0.07, 0.06, 0.25), ped, MAT_CLOTH, legs),
        Part((-0.12 * length + 0.15, -0.1, seat_z - 0.15), (0.07, 0.06, 0.25), ped, MAT_CLOTH,
             legs),
        Part((-0.12 * length + 0.1, 0, seat_z + 0.04 + torso_h / 2),
             (0.14, shoulder_w - 0.05, torso_h / 2), ped, MAT_CLOTH, top),
        Part((0.1 * length + 0.05, 0.18, hand_z), (0.2, 0.04, 0.04), ped, MAT_CLOTH, top),
        Part((0.1 * length + 0.05, -0.18, hand_z), (0.2, 0.04, 0.04), ped, MAT_CLOTH, top),
        Part((-0.12 * length + 0.18, 0, h / 2 - head - 0.01), (0.09, 0.08, head), ped, MAT_SKIN,
             skin),
        Part((-0.12 * length + 0.16, 0, h / 2 - 0.03), (0.1, 0.085, 0.03), ped, MAT_CLOTH, hair),
    ]


# ------------------------------------------------------------------------------- collisions
def _footprint_overlap(pa: np.ndarray, ha: Tuple[float, float], pb: np.ndarray,
                       hb: Tuple[float, float]) -> bool:
    """Tell whether two oriented rectangles overlap at any time (separating-axis test).

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


class ActorPlacer:
    """Places road users without overlaps (the state of the road-user steps).

    Args:
        street: the scene's :class:`~bev_mtl_ros.data.synth_layout.Street`.
        rng: the scene's generator.
        footprints: static footprints road users must not overlap
            (:attr:`~bev_mtl_ros.data.synth_scene.StaticPrimsBuilder.footprints`).
        hfov: horizontal half field of view (radians) for placing road users in view.
    Attributes:
        objects: the placed road users (``oid`` = index).
    """

    def __init__(self, street: Street, rng: np.random.Generator,
                 footprints: List[Tuple[np.ndarray, Tuple[float, float]]], hfov: float) -> None:
        self.street = street
        self.rng = rng
        self.objects: List[SynthObject] = []
        # footprints to keep clear: (poses (T or 1, 4) [x, y, z, yaw], half (length, width))
        self.placed: List[Tuple[np.ndarray, Tuple[float, float]]] = list(footprints)
        # the ego vehicle (A2D2 ego-dimensions: x -1..4 m, y +-1.25 m in the vehicle frame; the
        # camera sits 1.71 m ahead of the vehicle origin) plus a safety margin ahead
        ego_poses = np.zeros((street.n_frames, 4))
        ego_poses[:, 0] = -2.71 + (5.0 + 6.0) / 2 + street.ego_speed * street.times
        self.placed.append((ego_poses, (5.5, 1.6)))
        self.tan_h = np.tan(hfov)

    def try_add(self, obj: SynthObject, need_view: Optional[float] = None) -> bool:
        """Add ``obj`` unless it overlaps or is not in view; return whether added.

        Not added when it overlaps a placed footprint at some frame, or (``need_view`` = a time, s)
        it is not in view, at least 4 m ahead, at that time.
        """
        times, n_frames = self.street.times, self.street.n_frames
        poses = obj.poses(self.street.road, times)
        if need_view is not None:
            f = min(int(round(need_view / FRAME_DT)), n_frames - 1)
            xv = poses[f, 0] - self.street.ego_speed * times[f]
            if not (xv > 4.0 and abs(poses[f, 1]) < 0.95 * xv * self.tan_h):
                return False
        hl = (obj.size[0] / 2 + 0.3, obj.size[1] / 2 + 0.2)
        for p, h in self.placed:
            if _footprint_overlap(poses, hl,
                                  p if p.shape[0] == n_frames else np.repeat(p, n_frames, 0), h):
                return False
        self.placed.append((poses, hl))
        obj.oid = len(self.objects)
        self.objects.append(obj)
        return True

    def size_of(self, cls: str) -> Tuple[float, float, float]:
        """Random (length, width, height) of an A2D2 box class (:data:`SIZE_RANGES`)."""
        return tuple(float(self.rng.uniform(*r))
                     for r in SIZE_RANGES[cls])  # type: ignore[return-value]

    def vehicle_class(self) -> str:
        """Random vehicle class: 65 % Car, 20 % VanSUV, 15 % Truck."""
        u = self.rng.random()
        return "Car" if u < 0.65 else ("VanSUV" if u < 0.85 else "Truck")

    def make_vehicle(self, cls: str, **kw) -> SynthObject:
        """Make a vehicle of class ``cls`` with a random size and paint; ``kw``: its path."""
        rng = self.rng
        l, w, h = self.size_of(cls)
        col = tuple(float(c)
                    for c in _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.8, 1.1))
        col = tuple(min(c, 1.0) for c in col)
        return SynthObject(-1, cls, (l, w, h), parts=_vehicle_parts(cls, l, w, h, col, rng), **kw)


def place_road_users(street: Street, rng: np.random.Generator,
                     footprints: List[Tuple[np.ndarray, Tuple[float, float]]],
                     hfov: float) -> List[SynthObject]:
    """Place all road users of a scene, in the generator's order; returns them (oid = index)."""
    pl = ActorPlacer(street, rng, footprints, hfov)
    add_lane_traffic(pl)
    add_parked_cars(pl)
    add_parked_bicycles(pl)
    add_sidewalk_pedestrians(pl)
    add_crossing_pedestrians(pl)
    add_cyclists(pl)
    return pl.objects


def add_lane_traffic(pl: ActorPlacer) -> None:
    """Add cars, vans and trucks in every lane.

    One speed per lane (oncoming lanes negative), more vehicles in longer scenes.
    """
    rng, road, T, ego_speed = pl.rng, pl.street.road, pl.street.T, pl.street.ego_speed
    lane_w, n_same, n_opp = road.lane_w, road.n_same, road.n_opp
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
                obj = pl.make_vehicle(pl.vehicle_class(), kind="road", z_base=GROUND_Z, x0=x0,
                                      vx=v, d=d, reverse=direction < 0)
                if pl.try_add(obj, need_view=ts):
                    break


def add_parked_cars(pl: ActorPlacer) -> None:
    """Parked cars and vans on the parking strip (when the road has one)."""
    rng, road, x_end = pl.rng, pl.street.road, pl.street.x_end
    lane_w, n_same = road.lane_w, road.n_same
    if road.park_w <= 0:
        return
    x = -10.0 + rng.uniform(0, 4)
    d = -(n_same * lane_w) - road.park_w / 2 - 0.2
    while x < x_end + 90:
        if rng.random() < 0.55:
            obj = pl.make_vehicle("Car" if rng.random() < 0.75 else "VanSUV", kind="road",
                                  z_base=GROUND_Z, x0=x, vx=0.0, d=d,
                                  reverse=bool(rng.random() < 0.2))
            pl.try_add(obj)
        x += rng.uniform(5.5, 8.0)


def add_parked_bicycles(pl: ActorPlacer) -> None:
    """Add parked bicycles on the sidewalk near the kerb (not on fast roads).

    A2D2's label3D has a "Bicycle" class for bicycles without rider, so they are boxed road users
    (not clutter).
    """
    rng, road, fast, x_end = pl.rng, pl.street.road, pl.street.fast, pl.street.x_end
    if fast:
        return
    for side in (-1, 1):
        edge = road.right_edge if side < 0 else road.left_edge
        for _ in range(int(rng.poisson(1.0))):
            xb = rng.uniform(5, x_end + 60)
            for j in range(int(rng.integers(1, 4))):
                l, w, h = pl.size_of("Bicycle")
                px, py, yaw = road.along(xb + 0.8 * j, edge + side * 1.0)
                col = tuple(float(c) for c in rng.uniform(0.05, 0.9, 3))
                obj = SynthObject(-1, "Bicycle", (l, w, h), kind="line",
                                  z_base=GROUND_Z + road.sidewalk_h, p0=(px, py),
                                  yaw=float(yaw + np.pi / 2 * side + rng.uniform(-0.3, 0.3)),
                                  parts=_bicycle_parts(l, min(0.7, h - 0.25), -h / 2, col))
                pl.try_add(obj)


def add_sidewalk_pedestrians(pl: ActorPlacer) -> None:
    """Pedestrians walking or standing on both sidewalks (at least one on the right)."""
    rng, road, fast, T, ego_speed = (pl.rng, pl.street.road, pl.street.fast, pl.street.T,
                                     pl.street.ego_speed)
    for side in (-1, 1):
        si = 0 if side < 0 else 1
        edge = road.right_edge if side < 0 else road.left_edge
        n = rng.poisson((0.5 if fast else 1.6) * (1 + T / 8.0)) + (1 if side < 0 else 0)
        for _ in range(n):
            for _attempt in range(12):
                cls = "Pedestrian"
                l, w, h = pl.size_of(cls)
                ts = rng.uniform(0, T) if T > 0 else 0.0
                xv = rng.uniform(5, 45)
                speed = 0.0 if rng.random() < 0.2 else rng.uniform(0.8, 1.7) * rng.choice([-1, 1])
                d = edge + side * rng.uniform(0.6, road.sidewalk_w[si] - 0.5)
                x0 = xv + ego_speed * ts - speed * ts
                if speed == 0.0:
                    px, py, _ = road.along(x0, d)
                    obj = SynthObject(-1, cls, (l, w, h), kind="line",
                                      z_base=GROUND_Z + road.sidewalk_h,
                                      p0=(px, py), yaw=float(rng.uniform(-np.pi, np.pi)),
                                      parts=_person_parts(l, w, h, rng, False))
                else:
                    obj = SynthObject(-1, cls, (l, w, h), kind="road",
                                      z_base=GROUND_Z + road.sidewalk_h,
                                      x0=x0, vx=speed, d=d, reverse=speed < 0,
                                      parts=_person_parts(l, w, h, rng, False))
                if pl.try_add(obj, need_view=ts):
                    break


def add_crossing_pedestrians(pl: ActorPlacer) -> None:
    """Pedestrians crossing the road."""
    rng, road, T, ego_speed = pl.rng, pl.street.road, pl.street.T, pl.street.ego_speed
    for _ in range(rng.poisson(0.4 * (1 + T / 10.0))):
        for _attempt in range(8):
            l, w, h = pl.size_of("Pedestrian")
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
            if pl.try_add(obj, need_view=ts):
                break


def add_cyclists(pl: ActorPlacer) -> None:
    """Cyclists at the right edge of the rightmost lane (own direction) or of the oncoming side."""
    rng, T, ego_speed = pl.rng, pl.street.T, pl.street.ego_speed
    lane_w, n_same, n_opp = pl.street.road.lane_w, pl.street.road.n_same, pl.street.road.n_opp
    for _ in range(rng.poisson(1.2 * (1 + T / 5.0))):
        for _attempt in range(8):
            l, w, h = pl.size_of("Cyclist")
            ts = rng.uniform(0, T) if T > 0 else 0.0
            own = rng.random() < 0.6
            v = rng.uniform(3, 7) * (1 if own else -1)
            d = (-(n_same * lane_w) + 0.6) if own else (n_opp * lane_w - 0.6)
            xv = rng.uniform(6, 60)
            x0 = xv + ego_speed * ts - v * ts
            obj = SynthObject(-1, "Cyclist", (l, w, h), kind="road", z_base=GROUND_Z, x0=x0, vx=v,
                              d=d, reverse=not own, parts=_person_parts(l, w, h, rng, True))
            if pl.try_add(obj, need_view=ts):
                break
