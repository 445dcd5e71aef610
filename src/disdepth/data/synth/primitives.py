"""Analytic ray-primitive intersections and the nearest-hit tracer.

Every ``hit(o, d, inv)`` takes ray origins ``o`` and directions ``d`` as (3, ...) arrays or (3,)
constants that broadcast against each other, and returns the ray parameter ``t`` (inf on a miss,
only ``t > EPS`` counts). With the pinhole convention of :mod:`.camera`, ``t`` is z-depth in metres.
Floating-point warnings (0 * inf, sqrt of a negative discriminant on a miss) are expected; they are
silenced once per :func:`trace` call rather than per primitive.

Every ``surface(p)`` takes hit points (3, n) and returns outward normals (3, n), texture coordinates
``u, v`` (n,) in metres, and a face index (n,) int8 used by per-face materials and decals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from disdepth.data.synth.camera import View
from disdepth.data.synth.textures import Material

EPS = 1e-4
INF = np.float32(np.inf)
_SIGNS = np.array([[(a >> i) & 1 for i in range(3)] for a in range(8)], np.float32) * 2 - 1  # (8, 3)


def _yaw_axes(yaw: float) -> tuple[float, float]:
    return float(np.cos(yaw)), float(np.sin(yaw))


@dataclass
class Primitive:
    material: Material
    casts_shadow: bool = True

    def corners(self) -> np.ndarray | None:
        """(8, 3) world bounding-box corners for culling (bit i of the row = + side of axis i)."""
        return None


@dataclass
class Plane(Primitive):
    """Infinite horizontal plane y = ``height`` (floor, road, ground); texture coords are world (x, z)."""

    height: float = 0.0
    casts_shadow: bool = False
    up: bool = True  # normal direction: +y for a floor seen from above, -y for a ceiling

    def hit(self, o, d, inv):
        t = (self.height - o[1]) * inv[1]
        return np.where(t > EPS, t, INF)

    def surface(self, p):
        n = np.zeros_like(p)
        n[1] = 1.0 if self.up else -1.0
        return n, p[0], p[2], np.zeros(p.shape[1], np.int8)


@dataclass
class Box(Primitive):
    """Box with centre (3,), half sizes (3,) and a yaw (radians about +y). Faces 0..5 = -x +x -y +y -z +z."""

    center: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    half: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    yaw: float = 0.0
    inside: bool = False  # True for a room: rays start inside and we want the exit (walls, floor, ceiling)
    face_materials: list[Material] | None = None  # per face 0..5 (room: walls, floor, ceiling differ)

    def corners(self):
        if self.inside:
            return None
        c, s = _yaw_axes(self.yaw)
        local = _SIGNS * self.half
        x = local[:, 0] * c + local[:, 2] * s
        z = -local[:, 0] * s + local[:, 2] * c
        return np.stack([x, local[:, 1], z], 1) + self.center

    def _local(self, o, d, inv):
        """Ray in the box frame: local axes are x' = (c, 0, -s), y, z' = (s, 0, c)."""
        px, py, pz = o[0] - self.center[0], o[1] - self.center[1], o[2] - self.center[2]
        if self.yaw == 0.0:
            return (px, py, pz), inv
        c, s = _yaw_axes(self.yaw)
        lo = (px * c - pz * s, py, px * s + pz * c)
        li = (1.0 / (d[0] * c - d[2] * s), inv[1], 1.0 / (d[0] * s + d[2] * c))
        return lo, li

    def hit(self, o, d, inv):
        lo, li = self._local(o, d, inv)
        h = self.half
        ta = [(-h[i] - lo[i]) * li[i] for i in range(3)]
        tb = [(h[i] - lo[i]) * li[i] for i in range(3)]
        if self.inside:
            t = np.minimum(np.minimum(np.maximum(ta[0], tb[0]), np.maximum(ta[1], tb[1])), np.maximum(ta[2], tb[2]))
            return np.where(t > EPS, t, INF)
        tn = np.maximum(np.maximum(np.minimum(ta[0], tb[0]), np.minimum(ta[1], tb[1])), np.minimum(ta[2], tb[2]))
        tf = np.minimum(np.minimum(np.maximum(ta[0], tb[0]), np.maximum(ta[1], tb[1])), np.maximum(ta[2], tb[2]))
        return np.where((tn <= tf) & (tn > EPS), tn, INF)

    def surface(self, p):
        c, s = _yaw_axes(self.yaw)
        px, py, pz = p[0] - self.center[0], p[1] - self.center[1], p[2] - self.center[2]
        lx, lz = (px, pz) if self.yaw == 0.0 else (px * c - pz * s, px * s + pz * c)
        h = self.half
        # The face a point lies on is the axis where it is relatively furthest out (comparisons, no argmax).
        ax, ay, az = np.abs(lx) * (1 / h[0]), np.abs(py) * (1 / h[1]), np.abs(lz) * (1 / h[2])
        on_x = (ax >= ay) & (ax >= az)
        on_y = ~on_x & (ay >= az)
        on_z = ~(on_x | on_y)
        coord = np.where(on_x, lx, np.where(on_y, py, lz))
        positive = coord > 0
        face = (on_y.astype(np.int8) * 2 + on_z.astype(np.int8) * 4 + positive).astype(np.int8)
        sign = positive.astype(np.float32) * 2 - 1
        if self.inside:
            sign = -sign  # room surfaces face inwards
        nlx, nly, nlz = on_x * sign, on_y * sign, on_z * sign
        n = np.stack([nlx * c + nlz * s, nly, -nlx * s + nlz * c]) if self.yaw else np.stack([nlx, nly, nlz])
        # Texture (u, v) from the box's low corner: horizontal then vertical on sides; (x', z') on floors/tops.
        sx, sy, sz = lx + h[0], py + h[1], lz + h[2]
        u = np.where(on_x, sz, sx)
        v = np.where(on_y, sz, sy)
        return n, u, v, face


@dataclass
class Sphere(Primitive):
    center: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    radius: float = 1.0
    inside: bool = False  # test scenes: camera inside, hit the far side

    def corners(self):
        return None if self.inside else _SIGNS * self.radius + self.center

    def hit(self, o, d, inv):
        ox, oy, oz = o[0] - self.center[0], o[1] - self.center[1], o[2] - self.center[2]
        a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        b = d[0] * ox + d[1] * oy + d[2] * oz
        cc = ox * ox + oy * oy + oz * oz - self.radius**2
        disc = b * b - a * cc
        sq = np.sqrt(disc)
        t0, t1 = (-b - sq) / a, (-b + sq) / a
        t = np.where(t0 > EPS, t0, t1)
        return np.where((disc >= 0) & (t > EPS), t, INF)

    def surface(self, p):
        n = (p - self.center[:, None]) / self.radius
        if self.inside:
            n = -n
        u = np.arctan2(n[0], n[2]) * self.radius
        return n, u, p[1] - self.center[1], np.zeros(p.shape[1], np.int8)


@dataclass
class Cylinder(Primitive):
    """Vertical capped cylinder: axis through (x, z) = ``center``, from ``y0`` to ``y1``."""

    center: tuple[float, float] = (0.0, 0.0)
    radius: float = 0.1
    y0: float = 0.0
    y1: float = 1.0

    def corners(self):
        lo = np.array([self.center[0] - self.radius, self.y0, self.center[1] - self.radius], np.float32)
        hi = np.array([self.center[0] + self.radius, self.y1, self.center[1] + self.radius], np.float32)
        return lo + (_SIGNS + 1) / 2 * (hi - lo)

    def hit(self, o, d, inv):
        ox, oz = o[0] - self.center[0], o[2] - self.center[1]
        a = d[0] * d[0] + d[2] * d[2]
        b = d[0] * ox + d[2] * oz
        cc = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * cc
        t = (-b - np.sqrt(disc)) / a
        y = o[1] + t * d[1]
        side = np.where((disc >= 0) & (t > EPS) & (y >= self.y0) & (y <= self.y1), t, INF)
        # Caps: whichever end plane faces the ray origin.
        ty = np.where(o[1] > self.y1, (self.y1 - o[1]) * inv[1], (self.y0 - o[1]) * inv[1])
        cx, cz = ox + ty * d[0], oz + ty * d[2]
        cap = np.where((ty > EPS) & (cx * cx + cz * cz <= self.radius**2), ty, INF)
        return np.minimum(side, cap)

    def surface(self, p):
        rx, rz = p[0] - self.center[0], p[2] - self.center[1]
        on_cap = (p[1] >= self.y1 - 1e-3) | (p[1] <= self.y0 + 1e-3)
        n = np.stack([rx / self.radius, np.zeros_like(rx), rz / self.radius])
        n[:, on_cap] = 0.0
        n[1, on_cap] = np.where(p[1, on_cap] > self.y0 + 1e-3, 1.0, -1.0)
        u = np.where(on_cap, rx, np.arctan2(rx, rz) * self.radius)
        v = np.where(on_cap, rz, p[1] - self.y0)
        return n, u, v, on_cap.astype(np.int8)


def stack_corners(prims: list[Primitive]) -> np.ndarray:
    """(P, 8, 3) bounding corners of every primitive; NaN for unbounded ones (planes, rooms)."""
    out = np.full((len(prims), 8, 3), np.nan, np.float32)
    for i, prim in enumerate(prims):
        c = prim.corners()
        if c is not None:
            out[i] = c
    return out


def trace(
    prims: list[Primitive], view: View, ids: list[int] | None = None, corners: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of every ray of ``view`` among ``prims`` (only the indices ``ids`` if given).

    Each primitive is only tested on the rays in its screen rectangle (:meth:`View.rects`), so small
    or distant objects cost little; primitives go near to far, and one is skipped when every ray in its
    rectangle already hit something nearer than its nearest corner (occlusion culling).
    ``corners`` (from :func:`stack_corners`) may be passed to reuse them.

    Returns:
        t: (H, W) float32 ray parameter of the nearest hit (z-depth for pinhole views), inf on a miss.
        pid: (H, W) int16 index into ``prims`` of the primitive hit, -1 on a miss.
    """
    h, w = view.shape
    t = np.full((h, w), INF, np.float32)
    pid = np.full((h, w), -1, np.int16)
    ids = list(range(len(prims))) if ids is None else list(ids)
    if not ids:
        return t, pid
    corners = stack_corners(prims) if corners is None else corners
    with np.errstate(all="ignore"):
        _trace_into(prims, view, ids, corners, t, pid)
    return t, pid


def _trace_into(prims, view, ids, corners, t, pid) -> None:
    rects, t_near = view.rects(corners[ids])
    for k in np.argsort(t_near, kind="stable").tolist():
        i, (v0, v1, u0, u1) = ids[k], rects[k].tolist()
        if v0 >= v1 or u0 >= u1:
            continue
        tv = t[v0:v1, u0:u1]
        if t_near[k] > 0 and tv.max() < t_near[k]:
            continue
        o = view.origin if view.origin.ndim == 1 else view.origin[:, v0:v1, u0:u1]
        d = view.dirs if view.dirs.ndim == 1 else view.dirs[:, v0:v1, u0:u1]
        inv = view.inv if view.inv.ndim == 1 else view.inv[:, v0:v1, u0:u1]
        ti = prims[i].hit(o, d, inv)
        pv = pid[v0:v1, u0:u1]  # tv and pv are views: updated in place
        better = ti < tv
        np.copyto(tv, ti, where=better)
        np.copyto(pv, i, where=better)
