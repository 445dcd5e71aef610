"""Random indoor layouts (NYU-like, 0.5-10 m): a textured room, furniture, doors/windows, ceiling lights."""

from __future__ import annotations

import numpy as np

from disdepth.data.synth.camera import rotation
from disdepth.data.synth.primitives import Box, Cylinder, Primitive, Sphere
from disdepth.data.synth.render import Light, Scene
from disdepth.data.synth.textures import Material, random_color, random_material

F32 = np.float32
FURNITURE_KINDS = ("plain", "plain", "wood", "noise", "stripes", "checker")


def _box(center, half, mat: Material, yaw: float = 0.0) -> Box:
    return Box(mat, center=np.asarray(center, F32), half=np.asarray(half, F32), yaw=float(yaw))


def _room_materials(rng: np.random.Generator, size: np.ndarray) -> list[Material]:
    """Six face materials (-x, +x, floor, ceiling, -z, +z) with doors, windows and pictures on the walls."""
    floor = random_material(rng, ("wood", "tiles", "checker", "noise", "plain"), (0.15, 0.6))
    ceiling = Material("noise", random_color(rng, 0.7, 0.95, 0.1), random_color(rng, 0.6, 0.9, 0.1), 1.0, grime=0.05)
    wall = random_material(rng, ("plain", "plain", "noise", "stripes", "bricks"), (0.15, 0.6))
    accent = rng.random() < 0.35  # one wall in a different finish
    mats = [floor if i == 2 else ceiling if i == 3 else Material(**vars(wall)) for i in range(6)]
    for face in (0, 1, 4, 5):
        mats[face].decals = []
        if accent and face == 5:
            mats[face] = random_material(rng, ("plain", "noise", "stripes", "bricks"), (0.15, 0.6))
        width = size[2] if face < 2 else size[0]  # the wall's horizontal extent
        for _ in range(int(rng.integers(0, 3))):
            kind = rng.choice(["door", "window", "picture"])
            if kind == "door":
                w, h, v0 = 0.9, 2.05, 0.0
                dmat = random_material(rng, ("wood", "plain"), (0.1, 0.3))
            elif kind == "window":
                w, h, v0 = rng.uniform(0.8, 2.0), rng.uniform(1.0, 1.5), rng.uniform(0.8, 1.0)
                dmat = Material("glass", random_color(rng, 0.75, 1.0, 0.2), random_color(rng, 0.5, 0.8, 0.3), w / 2)
            else:
                w, h, v0 = rng.uniform(0.3, 1.2), rng.uniform(0.3, 0.9), rng.uniform(1.2, 1.6)
                dmat = random_material(rng, ("noise", "stripes", "checker"), (0.05, 0.2))
            if w + 0.2 < width:
                u0 = rng.uniform(0.1, width - w - 0.1)
                mats[face].decals.append((face, u0, u0 + w, v0, v0 + h, dmat))
    return mats


def _furniture(rng: np.random.Generator, size: np.ndarray, cam: np.ndarray, wall_mat: Material) -> list[Primitive]:
    """3-10 objects standing on the floor, none within ~0.9 m of the camera."""
    hx, hz = size[0] / 2, size[2] / 2
    out: list[Primitive] = []
    for _ in range(int(rng.integers(3, 11))):
        kind = rng.choice(
            ["cabinet", "table", "bed", "cylinder", "sphere", "lamp", "partition"],
            p=[0.2, 0.2, 0.15, 0.15, 0.12, 0.08, 0.1],
        )
        mat = random_material(rng, FURNITURE_KINDS, (0.05, 0.4))
        yaw = rng.choice([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
        x, z = rng.uniform(-hx + 0.3, hx - 0.3), rng.uniform(-hz + 0.3, hz - 0.3)
        if kind in ("cabinet", "partition"):
            # Against a random wall, aligned with it.
            w, d = (
                (rng.uniform(0.6, 2.0), rng.uniform(0.35, 0.6))
                if kind == "cabinet"
                else (rng.uniform(0.1, 0.3), rng.uniform(0.8, 2.0))
            )
            h = rng.uniform(0.6, 2.2) if kind == "cabinet" else size[1]
            side = rng.integers(4)
            yaw = 0.0
            if side == 0:
                x, half = -hx + d / 2, (d / 2, h / 2, w / 2)
            elif side == 1:
                x, half = hx - d / 2, (d / 2, h / 2, w / 2)
            elif side == 2:
                z, half = hz - d / 2, (w / 2, h / 2, d / 2)
            else:
                z, half = -hz + d / 2, (w / 2, h / 2, d / 2)
            reach = np.hypot(*half[::2])
            if np.hypot(x - cam[0], z - cam[2]) < reach + 0.9:
                continue
            out.append(_box((x, h / 2, z), half, wall_mat if kind == "partition" else mat))
            continue
        if np.hypot(x - cam[0], z - cam[2]) < 1.6:
            continue
        if kind == "table":
            w, d, h = rng.uniform(0.6, 1.6), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.8)
            out.append(_box((x, h - 0.02, z), (w / 2, 0.02, d / 2), mat, yaw))
            c, s = np.cos(yaw), np.sin(yaw)
            for sx in (-1, 1):
                for sz in (-1, 1):
                    lx, lz = sx * (w / 2 - 0.05), sz * (d / 2 - 0.05)
                    out.append(
                        _box(
                            (x + lx * c + lz * s, (h - 0.04) / 2, z - lx * s + lz * c),
                            (0.025, (h - 0.04) / 2, 0.025),
                            mat,
                            yaw,
                        )
                    )
            if rng.random() < 0.5:
                r = rng.uniform(0.06, 0.15)
                out.append(Sphere(random_material(rng, FURNITURE_KINDS), center=np.array([x, h + r, z], F32), radius=r))
        elif kind == "bed":
            w, d, h = rng.uniform(0.9, 2.0), rng.uniform(1.0, 2.1), rng.uniform(0.35, 0.7)
            out.append(_box((x, h / 2, z), (w / 2, h / 2, d / 2), mat, yaw))
        elif kind == "cylinder":
            r, h = rng.uniform(0.1, 0.4), rng.uniform(0.3, 1.3)
            out.append(Cylinder(mat, center=(x, z), radius=r, y0=0.0, y1=h))
        elif kind == "sphere":
            r = rng.uniform(0.12, 0.45)
            out.append(Sphere(mat, center=np.array([x, r, z], F32), radius=r))
        else:  # floor lamp: pole and globe
            h = rng.uniform(1.2, 1.8)
            out.append(Cylinder(mat, center=(x, z), radius=0.025, y0=0.0, y1=h))
            shade = Material("plain", random_color(rng, 0.7, 1.0, 0.3), random_color(rng, 0.6, 0.9), 0.2)
            out.append(Sphere(shade, center=np.array([x, h + 0.15, z], F32), radius=0.18))
    return out


def indoor_scene(rng: np.random.Generator) -> Scene:
    """A random room seen from inside; all geometry within ~10 m of the camera (NYU's range)."""
    size = np.array([rng.uniform(2.8, 6.5), rng.uniform(2.4, 3.2), rng.uniform(3.0, 8.0)], F32)
    hx, hz = size[0] / 2, size[2] / 2
    back = -hz + 0.4  # camera in the back third of the room, looking in
    cam = np.array(
        [rng.uniform(-hx + 0.5, hx - 0.5), rng.uniform(1.0, 1.7), rng.uniform(back, back + 0.3 * size[2])], F32
    )
    target = np.array([rng.uniform(-hx, hx), rng.uniform(0.3 * hz, hz)])
    yaw = np.arctan2(target[0] - cam[0], target[1] - cam[2]) + rng.uniform(-0.3, 0.3)
    rot = rotation(yaw, np.radians(rng.uniform(-25, 5)), np.radians(rng.uniform(-3, 3)))
    mats = _room_materials(rng, size)
    room = Box(
        mats[4],
        center=np.array([0, size[1] / 2, 0], F32),
        half=size / 2,
        inside=True,
        casts_shadow=False,
        face_materials=mats,
    )
    prims: list[Primitive] = [room, *_furniture(rng, size, cam, mats[0])]
    lights = []
    for _ in range(int(rng.integers(1, 3))):
        pos = np.array([rng.uniform(-hx + 0.3, hx - 0.3), size[1] - 0.15, rng.uniform(-hz + 0.3, hz - 0.3)], F32)
        color = (random_color(rng, 0.8, 1.0, 0.25) * rng.uniform(0.6, 1.2)).astype(F32)
        lights.append(Light("point", pos, color, float(rng.uniform(2.5, 5.0))))
    ambient = (random_color(rng, 0.7, 1.0, 0.2) * rng.uniform(0.1, 0.3)).astype(F32)
    exposure = float(rng.uniform(0.55, 0.85))
    return Scene(prims, lights, ambient, cam, rot, min_depth=1e-3, max_depth=10.0, exposure=exposure)
