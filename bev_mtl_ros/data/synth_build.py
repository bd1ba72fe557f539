"""Build a synthetic street scene (:func:`build_scene`) in named steps.

The steps run in a fixed order, all drawing from one numpy generator seeded with
``[seed, scene index, 7]``; the order of the draws is what makes a scene, so a step must not be
reordered, skipped or made to draw differently without changing every generated file:

1. the street (:func:`~bev_mtl_ros.data.synth_layout.sample_street`): layout kind, road, ego speed;
2. the sidewalks (no draws);
3. per side (right, then left): buildings, then the roadside clutter
   (:func:`~bev_mtl_ros.data.synth_clutter.add_roadside_clutter`);
4. everything static is put on the (cambered) ground
   (:meth:`~bev_mtl_ros.data.synth_scene.StaticPrimsBuilder.finish`, no draws);
5. the road users (:func:`~bev_mtl_ros.data.synth_actors.place_road_users`);
6. the lighting, the start time and the first frame number.

What a scene contains is described in :mod:`bev_mtl_ros.data.synth_scene`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from bev_mtl_ros.data.synth_actors import place_road_users
from bev_mtl_ros.data.synth_clutter import add_roadside_clutter
from bev_mtl_ros.data.synth_layout import add_buildings, add_sidewalks, sample_street
from bev_mtl_ros.data.synth_scene import Scene, StaticPrimsBuilder


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
    street = sample_street(rng, n_frames)
    sb = StaticPrimsBuilder(street.road)
    add_sidewalks(sb, street)
    for side in (-1, 1):
        add_buildings(sb, street, rng, side)
        add_roadside_clutter(sb, street, rng, side)
    static, clutter_boxes, clutter_kinds = sb.finish()
    objects = place_road_users(street, rng, sb.footprints, hfov)
    sky, sun, exposure = _sample_lighting(rng)
    # 2018-08-07 (first A2D2 recording day) + a seed-dependent day/time; scenes 10 min apart
    base = 1533653428 + (int(seed) * 7919 % 365) * 86400 + (int(seed) * 104729 % 36000)
    start_utc = base + index * 600
    first_frame = int(rng.integers(100, 20000))
    return Scene(index=index, seed=seed, n_frames=n_frames, road=street.road, static=static,
                 objects=objects, ego_speed=street.ego_speed, sun=sun, start_utc=int(start_utc),
                 first_frame=first_frame, exposure=exposure, layout=street.layout,
                 clutter_boxes=clutter_boxes, clutter_kinds=clutter_kinds, sky=sky)


def _sample_lighting(rng: np.random.Generator) -> Tuple[str, np.ndarray, float]:
    """Draw the lighting: (sky, (3,) unit vector towards the sun, exposure).

    A clear, overcast or low-sun sky, the sun at 25-70 deg elevation (8-18 deg for a low sun) and a
    random azimuth.
    """
    sky = str(rng.choice(("clear", "overcast", "low_sun"), p=[0.45, 0.4, 0.15]))
    el = np.radians(rng.uniform(25, 70) if sky != "low_sun" else rng.uniform(8, 18))
    az = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    exposure = float(rng.uniform(0.8, 1.15))
    return sky, sun, exposure
