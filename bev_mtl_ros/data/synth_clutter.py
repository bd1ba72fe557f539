"""Clutter of a synthetic scene: trees, hedges, fences, guard rails, poles, bollards, bins.

Trees, bushes, forest edges, hedges, fences, guard rails, poles with traffic signs, traffic signals
and street lights, bollards and trash bins, drawn with their A2D2 semantic classes and listed as
hard negatives (kinds of
:data:`~bev_mtl_ros.data.synth_scene.CLUTTER_CLASSES`, no label3D box). Steps of
:func:`bev_mtl_ros.data.synth_build.build_scene`, run per side of the road in the order of
:func:`add_roadside_clutter` (the generator's output depends on the order of the draws).
"""

from __future__ import annotations

import numpy as np

from bev_mtl_ros.data.synth_layout import Street, side_edges
from bev_mtl_ros.data.synth_scene import (
    CID,
    GROUND_Z,
    MAT_FOLIAGE,
    MAT_GRID,
    MAT_METAL,
    MAT_PAINT,
    MAT_PLAIN,
    MAT_SIGN,
    MAT_SIGNAL,
    StaticPrimsBuilder,
)

#: Tree crown colours: summer greens and autumn yellows, oranges and browns (A2D2 has both).
_CROWNS = np.array([[0.12, 0.35, 0.08], [0.2, 0.42, 0.1], [0.1, 0.28, 0.1], [0.55, 0.5, 0.12],
                    [0.7, 0.45, 0.1], [0.5, 0.28, 0.1], [0.3, 0.4, 0.1]])
_SIGN_COLOURS = ((0.8, 0.1, 0.1), (0.1, 0.3, 0.8), (0.95, 0.8, 0.1), (0.9, 0.9, 0.9))


def add_roadside_clutter(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator,
                         side: int) -> None:
    """All clutter of the road's ``side`` (-1 right, +1 left), in the generator's order."""
    add_verge_trees(sb, st, rng, side)
    add_forest_edge(sb, st, rng, side)
    add_hedges_and_fences(sb, st, rng, side)
    add_guard_rails(sb, st, rng, side)
    add_poles(sb, st, rng, side)
    add_bollards_and_bins(sb, st, rng, side)


def add_verge_trees(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator,
                    side: int) -> None:
    """Trees (trunk + one to three crown spheres) in verges wider than 1.2 m, bushes in front."""
    road, layout, x_lo, x_hi = st.road, st.layout, st.x_lo, st.x_hi
    _, _, sw_out, verge = side_edges(road, side)
    x = x_lo + rng.uniform(0, 8)
    tree_gap = (7, 18) if layout != "highway" else (10, 30)
    while verge > 1.2 and x < x_hi:
        dc = sw_out + side * verge / 2
        cx, cy, _ = road.along(x, dc)
        trunk_h = rng.uniform(1.8, 3.0)
        r = min(rng.uniform(1.2, 2.5), verge / 2 + 1.0)
        tw = rng.uniform(0.12, 0.22)
        sb.boxes.append(((cx, cy, GROUND_Z + trunk_h / 2 + 0.3), (tw, tw, trunk_h / 2 + 0.3), 0.0,
                         CID["Nature object"], MAT_PLAIN, (0.35, 0.25, 0.15), 0.0))
        crown_col = tuple(
            float(c) for c in _CROWNS[int(rng.integers(len(_CROWNS)))] * rng.uniform(0.8, 1.2)
        )
        n_sph = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))  # tall crowns: stacked
        for j in range(n_sph):
            sb.spheres.append(((cx, cy, GROUND_Z + trunk_h + 0.7 * r + 1.2 * r * j),
                               r * (1 - 0.15 * j), CID["Nature object"], MAT_FOLIAGE, crown_col))
        top = trunk_h + 1.7 * r + 1.2 * r * (n_sph - 1)
        sb.clutter.append(("Tree", (cx, cy, GROUND_Z + top / 2, 2 * r, 2 * r, top, 0.0)))
        if rng.random() < 0.4:
            br = rng.uniform(0.4, 0.9)
            bx, by, _ = road.along(x + rng.uniform(-3, 3),
                                   sw_out + side * min(br + 0.1, verge / 2))
            sb.spheres.append(
                ((bx, by, GROUND_Z + 0.5 * br), br, CID["Nature object"], MAT_FOLIAGE,
                 tuple(float(c) for c in rng.uniform([0.1, 0.25, 0.05], [0.3, 0.45, 0.12]))))
            sb.clutter.append(
                ("Bush", (bx, by, GROUND_Z + 0.75 * br, 2 * br, 2 * br, 1.5 * br, 0.0)))
        x += rng.uniform(*tree_gap)


def add_forest_edge(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator,
                    side: int) -> None:
    """Add a forest edge beyond the verge on country roads and highways (in 60 % of them)."""
    road, fast, x_lo, x_hi = st.road, st.fast, st.x_lo, st.x_hi
    _, _, sw_out, verge = side_edges(road, side)
    if not (fast and rng.random() < 0.6):
        return
    x = x_lo + rng.uniform(0, 4)
    while x < x_hi:
        r = rng.uniform(2.0, 4.0)
        cx, cy, _ = road.along(x, sw_out + side * (verge + r + rng.uniform(0, 3)))
        col = tuple(
            float(c) for c in _CROWNS[int(rng.integers(len(_CROWNS)))] * rng.uniform(0.6, 1.0)
        )
        z = GROUND_Z + rng.uniform(1.5, 4.0) + r
        sb.spheres.append(((cx, cy, z), r, CID["Nature object"], MAT_FOLIAGE, col))
        sb.boxes.append(((cx, cy, GROUND_Z + (z - GROUND_Z) / 2), (0.2, 0.2, (z - GROUND_Z) / 2),
                         0.0, CID["Nature object"], MAT_PLAIN, (0.3, 0.22, 0.14), 0.0))
        sb.clutter.append(("Tree", (cx, cy, GROUND_Z + (z + r - GROUND_Z) / 2, 2 * r, 2 * r,
                                    z + r - GROUND_Z, 0.0)))
        x += rng.uniform(2.5, 6.0)


def add_hedges_and_fences(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator,
                          side: int) -> None:
    """Add hedges or fences along the outer edge of the sidewalk.

    On suburban and country roads, else in 30 % of the streets.
    """
    road, layout, x_lo, x_hi = st.road, st.layout, st.x_lo, st.x_hi
    _, _, sw_out, _ = side_edges(road, side)
    if not (layout in ("suburban", "country") or rng.random() < 0.3):
        return
    x = x_lo + rng.uniform(0, 15)
    while x < x_hi:
        L = rng.uniform(5, 25)
        hedge = rng.random() < 0.6
        if hedge:
            hh, hw = rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.0)
            cx, cy, yaw = road.along(x + L / 2, sw_out + side * (hw / 2 + 0.05))
            sb.add_box((cx, cy, GROUND_Z + hh / 2), (L / 2, hw / 2, hh / 2), yaw, "Nature object",
                       MAT_FOLIAGE, tuple(rng.uniform([0.08, 0.2, 0.04], [0.2, 0.4, 0.1])),
                       kind="Hedge")
        else:
            fh = rng.uniform(1.0, 2.0)
            cx, cy, yaw = road.along(x + L / 2, sw_out + side * 0.1)
            sb.add_box((cx, cy, GROUND_Z + fh / 2), (L / 2, 0.03, fh / 2), yaw, "Grid structure",
                       MAT_GRID, tuple(rng.uniform(0.2, 0.5, 3)), kind="Fence")
        x += L + rng.uniform(3, 25)


def add_guard_rails(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator,
                    side: int) -> None:
    """Guard rails (Sidebars) on posts at the road edge of country roads and highways."""
    road, fast, x_lo, x_hi = st.road, st.fast, st.x_lo, st.x_hi
    _, edge, _, _ = side_edges(road, side)
    sw_h = road.sidewalk_h
    if not fast:
        return
    x = x_lo + rng.uniform(0, 5)
    while x < x_hi:
        L = 12.0
        cx, cy, yaw = road.along(x + L / 2, edge + side * 0.6)
        sb.add_box((cx, cy, GROUND_Z + sw_h + 0.6), (L / 2, 0.05, 0.17), yaw, "Sidebars",
                   MAT_METAL, (0.7, 0.7, 0.72), kind="GuardRail")
        sb.footprints.append((np.array([[cx, cy, 0.0, yaw]]), (L / 2, 0.2)))
        for px in (x + 1.0, x + 5.0, x + 9.0):
            qx, qy, _ = road.along(px, edge + side * 0.65)
            sb.boxes.append(((qx, qy, GROUND_Z + sw_h + 0.3), (0.05, 0.05, 0.45), yaw,
                             CID["Sidebars"], MAT_METAL, (0.6, 0.6, 0.62), 0.0))
        x += L


def add_poles(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator, side: int) -> None:
    """Add poles near the kerb.

    Traffic signs facing oncoming traffic, traffic signals (not on highways) and street lights.
    """
    road, layout, x_lo, x_hi = st.road, st.layout, st.x_lo, st.x_hi
    _, edge, _, _ = side_edges(road, side)
    sw_h = road.sidewalk_h
    x = x_lo + rng.uniform(0, 20)
    pole_gap = (15, 35) if layout == "urban" else (25, 50)
    while x < x_hi:
        dc = edge + side * 0.5
        cx, cy, yaw = road.along(x, dc)
        z0 = GROUND_Z + sw_h
        u = rng.random()
        face = 0.0 if side < 0 else np.pi
        if u < 0.5:                      # pole with a traffic sign facing oncoming traffic
            ph = rng.uniform(2.6, 3.5)
            sb.add_box((cx, cy, z0 + ph / 2), (0.04, 0.04, ph / 2), yaw, "Poles", MAT_METAL,
                       (0.55, 0.55, 0.55), kind="Pole")
            sr = rng.uniform(0.3, 0.42)
            sb.add_box((cx + (-0.06 if side < 0 else 0.06), cy, z0 + ph - sr), (0.02, sr, sr),
                       yaw + face, "Traffic sign", MAT_SIGN,
                       _SIGN_COLOURS[rng.integers(len(_SIGN_COLOURS))], kind="TrafficSign")
        elif u < 0.7 and layout != "highway":   # traffic signal
            ph = rng.uniform(3.0, 4.0)
            sb.add_box((cx, cy, z0 + ph / 2), (0.07, 0.07, ph / 2), yaw, "Poles", MAT_METAL,
                       (0.3, 0.3, 0.3), kind="Pole")
            sb.add_box((cx + (-0.15 if side < 0 else 0.15), cy, z0 + ph - 0.5),
                       (0.12, 0.16, 0.45), yaw + face, "Traffic signal", MAT_SIGNAL,
                       (0.1, 0.1, 0.1), kind="TrafficSignal")
        else:                            # street light
            ph = rng.uniform(5.0, 9.0)
            sb.add_box((cx, cy, z0 + ph / 2), (0.08, 0.08, ph / 2), yaw, "Poles", MAT_METAL,
                       (0.55, 0.55, 0.55), kind="Pole")
        sb.footprints.append((np.array([[cx, cy, 0.0, yaw]]), (0.3, 0.3)))
        x += rng.uniform(*pole_gap)


def add_bollards_and_bins(sb: StaticPrimsBuilder, st: Street, rng: np.random.Generator,
                          side: int) -> None:
    """Rows of bollards and trash bins on the sidewalk (urban and suburban streets)."""
    road, fast, x_lo, x_hi = st.road, st.fast, st.x_lo, st.x_hi
    _, edge, sw_out, _ = side_edges(road, side)
    sw_h = road.sidewalk_h
    if fast:
        return
    x = x_lo + rng.uniform(0, 20)
    while x < x_hi:
        z0 = GROUND_Z + sw_h
        if rng.random() < 0.5:
            for j in range(int(rng.integers(2, 6))):
                cx, cy, yaw = road.along(x + 1.5 * j, edge + side * 0.35)
                sb.add_box((cx, cy, z0 + 0.45), (0.08, 0.08, 0.45), yaw, "Traffic guide obj.",
                           MAT_PAINT, (0.75, 0.72, 0.68), kind="Bollard")
                sb.footprints.append((np.array([[cx, cy, 0.0, yaw]]), (0.2, 0.2)))
        else:
            cx, cy, yaw = road.along(x, sw_out - side * 0.5)
            sb.add_box((cx, cy, z0 + 0.55), (0.3, 0.3, 0.55), yaw, "Obstacles / trash", MAT_PLAIN,
                       tuple(rng.uniform(0.1, 0.6, 3)), kind="TrashBin")
            sb.footprints.append((np.array([[cx, cy, 0.0, yaw]]), (0.45, 0.45)))
        x += rng.uniform(10, 40)
