"""Street layout of a synthetic scene: kind, road, ego speed, sidewalks and buildings.

The layout kind, the road's cross-section and curve, the ego speed, the raised sidewalks and the
buildings.

Steps of :func:`bev_mtl_ros.data.synth_build.build_scene`; every function draws from the scene's
generator in a fixed order (the output of the generator depends on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from bev_mtl_ros.data.synth_scene import (
    CID,
    FRAME_DT,
    GROUND_Z,
    LAYOUTS,
    MAT_BUILDING,
    MAT_SIDEWALK,
    Road,
    StaticPrimsBuilder,
)

#: Grass verge colours.
_GRASS = np.array([[0.25, 0.42, 0.15], [0.35, 0.45, 0.2], [0.45, 0.42, 0.25], [0.3, 0.35, 0.18]])
#: Facade colours of buildings (also the cargo boxes of trucks).
FACADE_COLOURS = np.array([[0.75, 0.68, 0.55], [0.6, 0.35, 0.28], [0.82, 0.8, 0.75],
                           [0.55, 0.55, 0.58], [0.85, 0.75, 0.6], [0.45, 0.4, 0.35]])


@dataclass
class Street:
    """What the later steps build on (scene frame, metres, seconds).

    Attributes:
        layout: one of :data:`LAYOUTS`; fast: country road or highway.
        road: the :class:`Road`. ego_speed: m/s along +x (0 = static ego).
        n_frames: frames (10 Hz); T: duration (s) = (n_frames - 1) * FRAME_DT; times: (n_frames,)
            frame times (s); x_end: ego x at the last frame.
        x_lo, x_hi: x range the scenery is placed in.
    """

    layout: str
    fast: bool
    road: Road
    ego_speed: float
    n_frames: int
    T: float
    times: np.ndarray
    x_end: float
    x_lo: float
    x_hi: float


def sample_street(rng: np.random.Generator, n_frames: int) -> Street:
    """Draw the layout kind, the road and the ego speed.

    A2D2 drives German urban and suburban streets, country roads and highways.
    """
    T = (n_frames - 1) * FRAME_DT
    times = np.arange(n_frames) * FRAME_DT
    layout = str(rng.choice(LAYOUTS, p=[0.4, 0.3, 0.18, 0.12]))
    fast = layout in ("country", "highway")
    road = _sample_road(rng, layout, fast)
    ego_speed = 0.0 if (rng.random() < 0.3 and not fast) else float(
        rng.uniform(4.0, 12.0) if not fast else rng.uniform(12.0, 25.0))
    x_end = ego_speed * T
    x_lo, x_hi = -30.0, x_end + 170.0
    return Street(layout=layout, fast=fast, road=road, ego_speed=ego_speed, n_frames=n_frames, T=T,
                  times=times, x_end=x_end, x_lo=x_lo, x_hi=x_hi)


def _sample_road(rng: np.random.Generator, layout: str, fast: bool) -> Road:
    """Draw the road.

    Curve, lanes (the ego in one of its own lanes), parking strip, sidewalks, verges, markings,
    camber and colours.
    """
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
    return Road(
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


def side_edges(road: Road, side: int) -> Tuple[int, float, float, float]:
    """Return the lateral coordinates of the road's ``side`` (-1 right, +1 left).

    (index 0 right / 1 left, d of the kerb, d of the sidewalk's outer edge, verge width).
    """
    si = 0 if side < 0 else 1
    edge = road.right_edge if side < 0 else road.left_edge
    sw_out = edge + side * road.sidewalk_w[si]
    verge = road.verge_w[si]
    return si, edge, sw_out, verge


def add_sidewalks(sb: StaticPrimsBuilder, st: Street) -> None:
    """Add the raised sidewalks on both sides.

    In segments following the curve (200 m when straight, 10 m when curved).
    """
    road, fast, x_lo, x_hi = st.road, st.fast, st.x_lo, st.x_hi
    seg = 200.0 if road.curvature == 0.0 else 10.0
    sw_h = road.sidewalk_h
    sw_col = (0.62, 0.6, 0.58) if not fast else (0.45, 0.44, 0.4)
    for side in (-1, 1):
        w = road.sidewalk_w[0] if side < 0 else road.sidewalk_w[1]
        edge = road.right_edge if side < 0 else road.left_edge
        dc = edge + side * w / 2
        x = x_lo
        while x < x_hi:
            xc = x + seg / 2
            cx, cy, yaw = road.along(xc, dc)
            sb.boxes.append(((cx, cy, GROUND_Z + sw_h / 2), (seg / 2 + 0.05, w / 2, sw_h / 2),
                             yaw, CID["Sidewalk"], MAT_SIDEWALK, sw_col, float(-side)))
            x += seg


def add_buildings(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator, side: int) -> None:
    """Add buildings along ``side`` (-1 right, +1 left) behind the verge, or none.

    One draw decides; likely in towns, rare on country roads and highways.
    """
    road, layout, x_lo, x_hi = st.road, st.layout, st.x_lo, st.x_hi
    _, _, sw_out, verge = side_edges(road, side)
    p_build = {"urban": 0.95, "suburban": 0.75, "country": 0.2, "highway": 0.05}[layout]
    has_buildings = rng.random() < p_build
    x = x_lo + rng.uniform(0, 10)
    while has_buildings and x < x_hi:
        L = rng.uniform(8, 30) if layout == "urban" else rng.uniform(8, 16)
        depth = rng.uniform(8, 15)
        H = rng.uniform(5, 22) if layout == "urban" else rng.uniform(4, 9)
        setback = verge + rng.uniform(0, 1.0) + (rng.uniform(2, 8) if layout != "urban" else 0.0)
        dc = sw_out + side * (setback + depth / 2)
        cx, cy, yaw = road.along(x + L / 2, dc)
        col = tuple(float(c) for c in rng.choice(FACADE_COLOURS) * rng.uniform(0.85, 1.1))
        sb.boxes.append(((cx, cy, GROUND_Z + H / 2), (L / 2, depth / 2, H / 2), yaw,
                         CID["Buildings"], MAT_BUILDING, col, 0.0))
        x += L + (rng.uniform(2, 10) if (rng.random() < 0.5 or layout != "urban") else 0.0)
