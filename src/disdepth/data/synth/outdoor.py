"""Random street layouts (KITTI-like, up to 80 m): road with lanes, sidewalks, buildings, cars, poles, trees, sky."""

from __future__ import annotations

import numpy as np

from disdepth.data.synth.camera import rotation
from disdepth.data.synth.primitives import Box, Cylinder, Plane, Primitive, Sphere
from disdepth.data.synth.render import Light, Scene
from disdepth.data.synth.textures import Material, random_color, random_material

F32 = np.float32
CAMERA_HEIGHT = 1.65  # KITTI: the colour cameras are mounted 1.65 m above the road


def _box(center, half, mat: Material, yaw: float = 0.0, shadow: bool = True) -> Box:
    return Box(mat, shadow, center=np.asarray(center, F32), half=np.asarray(half, F32), yaw=float(yaw))


def _car(rng: np.random.Generator, x: float, z: float, yaw: float) -> list[Primitive]:
    """Body, cabin and a dark under-body/wheel block (three boxes)."""
    w, length = rng.uniform(1.6, 1.95), rng.uniform(3.8, 4.8)
    body_h = rng.uniform(0.55, 0.8)
    paint = Material("plain", random_color(rng, 0.1, 0.95, 0.9), random_color(rng, 0.1, 0.5), 1.0, grime=0.1)
    glass = Material("glass", np.array([0.15, 0.18, 0.22], F32), np.array([0.35, 0.4, 0.45], F32), 0.7, grime=0.0)
    tyre = Material("plain", np.array([0.05, 0.05, 0.05], F32), np.array([0.1, 0.1, 0.1], F32), 1.0, grime=0.0)
    c, s = np.cos(yaw), np.sin(yaw)
    cab_len, cab_off = length * rng.uniform(0.45, 0.6), rng.uniform(-0.3, 0.1) * length / 4
    return [
        _box((x, 0.2, z), (w / 2 - 0.05, 0.2, length / 2 - 0.35), tyre, yaw),
        _box((x, 0.35 + body_h / 2, z), (w / 2, body_h / 2, length / 2), paint, yaw),
        _box((x + cab_off * s, 0.35 + body_h + 0.27, z + cab_off * c), (w / 2 - 0.12, 0.27, cab_len / 2), glass, yaw),
    ]


def _side(rng: np.random.Generator, sign: int, curb: float, walk: float) -> list[Primitive]:
    """Sidewalk, building row, poles and trees on one side (sign -1 left, +1 right) of the road."""
    paving = random_material(rng, ("tiles", "noise", "plain"), (0.3, 0.8))
    paving.c1 = random_color(rng, 0.35, 0.7, 0.1)
    walkway = _box((sign * (curb + walk / 2), 0.075, 90.0), (walk / 2, 0.075, 110.0), paving, shadow=False)
    out: list[Primitive] = [walkway]
    z = rng.uniform(-12.0, 0.0)
    while z < 100.0:  # beyond ~100 m nothing has ground truth (80 m cap) and haze hides it
        length = rng.uniform(8.0, 28.0)
        if rng.random() < 0.85:
            depth, height = rng.uniform(8.0, 15.0), rng.uniform(4.0, 24.0)
            x = sign * (curb + walk + rng.uniform(0.0, 3.0) + depth / 2)
            wall = random_color(rng, 0.2, 0.9, 0.5)
            kind = rng.choice(["facade", "facade", "bricks"])
            mat = Material(
                str(kind),
                wall,
                random_color(rng, 0.05, 0.5, 0.4),
                rng.uniform(0.4, 0.8),
                params={
                    "floor": rng.uniform(2.8, 3.6),
                    "spacing": rng.uniform(2.0, 4.0),
                    "win_w": rng.uniform(0.25, 0.6),
                    "win_h": rng.uniform(0.35, 0.65),
                    "ground": rng.uniform(0.0, 2.5),
                },
                grime=float(rng.uniform(0.1, 0.4)),
            )
            if kind == "bricks":
                mat.c2 = (wall * 0.5).astype(F32)
            out.append(_box((x, height / 2, z + length / 2), (depth / 2, height / 2, length / 2), mat))
        z += length + rng.uniform(0.0, 8.0)
    z = rng.uniform(0.0, 15.0)
    pole_mat = Material("plain", random_color(rng, 0.2, 0.6, 0.2), random_color(rng, 0.1, 0.3), 1.0, grime=0.2)
    while z < 90.0:
        x = sign * (curb + rng.uniform(0.4, 0.8))
        if rng.random() < 0.5:
            out.append(Cylinder(pole_mat, center=(x, z), radius=rng.uniform(0.07, 0.14), y0=0.0, y1=rng.uniform(4, 8)))
        else:
            h, r = rng.uniform(1.8, 3.5), rng.uniform(1.2, 2.8)
            bark = Material("noise", random_color(rng, 0.15, 0.35, 0.3), random_color(rng, 0.05, 0.2), 0.3)
            green = np.array([rng.uniform(0.15, 0.45), rng.uniform(0.35, 0.6), rng.uniform(0.05, 0.25)], F32) ** 2
            leaves = Material("noise", green, (green * 0.3).astype(F32), rng.uniform(0.2, 0.6))
            out.append(Cylinder(bark, center=(x, z), radius=rng.uniform(0.12, 0.3), y0=0.0, y1=h + r * 0.5))
            out.append(Sphere(leaves, center=np.array([x, h + r * 0.8, z], F32), radius=r))
        z += rng.uniform(8.0, 30.0)
    return out


def outdoor_scene(rng: np.random.Generator) -> Scene:
    """A random straight street seen from a car's roof camera; sky pixels have no depth."""
    lanes, lane = int(rng.integers(2, 5)), rng.uniform(3.0, 3.7)
    half = lanes * lane / 2
    asphalt = random_color(rng, 0.15, 0.4, 0.1)
    ground = Material(
        "street",
        asphalt,
        (asphalt * 0.6).astype(F32),
        1.0,
        params={
            "road_half": half,
            "lane": lane,
            "verge1": random_color(rng, 0.2, 0.5, 0.6),
            "verge2": random_color(rng, 0.1, 0.3, 0.5),
        },
    )
    prims: list[Primitive] = [Plane(ground, height=0.0)]
    for sign in (-1, 1):
        prims += _side(rng, sign, half, rng.uniform(1.5, 4.0))
    cam_lane = int(rng.integers(lanes))
    cam_x = -half + lane * (cam_lane + 0.5) + rng.uniform(-0.3, 0.3)
    # Cars: in the lanes (both directions), parked at the curbs; none overlapping the ego car.
    for _ in range(int(rng.integers(2, 10))):
        if rng.random() < 0.3:
            x, yaw = rng.choice([-1, 1]) * (half - 1.1), rng.uniform(-0.05, 0.05)
        else:
            k = int(rng.integers(lanes))
            x, yaw = -half + lane * (k + 0.5) + rng.uniform(-0.4, 0.4), rng.uniform(-0.08, 0.08)
        z = rng.uniform(5.0, 75.0)
        if abs(x - cam_x) < 2.0 and z < 8.0:
            continue
        prims += _car(rng, x, z, yaw + (np.pi if rng.random() < 0.3 else 0.0))
    cam = np.array([cam_x, CAMERA_HEIGHT + rng.uniform(-0.05, 0.05), 0.0], F32)
    rot = rotation(np.radians(rng.uniform(-5, 5)), np.radians(rng.uniform(-2, 2)), np.radians(rng.uniform(-1, 1)))
    elev, azim = np.radians(rng.uniform(20, 65)), rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)], F32)
    zenith_display = np.array([rng.uniform(0.2, 0.45), rng.uniform(0.4, 0.6), rng.uniform(0.7, 0.95)])
    zenith = (zenith_display**2).astype(F32)
    horizon = (np.clip(zenith_display + rng.uniform(0.1, 0.3), 0, 1) ** 2).astype(F32)
    sky = {"zenith": zenith, "horizon": horizon, "clouds": float(rng.uniform(0.0, 0.6)), "offset": rng.uniform(0, 50)}
    lights = [Light("sun", sun, (np.array([1.0, 0.95, 0.85]) * rng.uniform(0.8, 1.2)).astype(F32))]
    ambient = (horizon * rng.uniform(0.3, 0.6)).astype(F32)
    return Scene(
        prims,
        lights,
        ambient,
        cam,
        rot,
        min_depth=1e-3,
        max_depth=80.0,
        sky=sky,
        fog=float(rng.uniform(150, 600)),
        exposure=float(rng.uniform(0.6, 0.85)),
    )
