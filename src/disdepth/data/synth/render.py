"""Shading and sensing: Lambertian lighting with shadow maps, sky and haze, tone mapping, sensor effects.

Shadows use shadow maps rather than one shadow ray per pixel and primitive: the casters are ray cast
once from each light (a 150-degree downward pinhole for a ceiling light, an orthographic grid for the
sun) with the same culled tracer, then every lit pixel does one projected, bilinearly filtered (PCF)
lookup. That keeps the cost nearly independent of the number of objects, which is what lets a scene
render in a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from disdepth.data.synth.camera import View, rotation
from disdepth.data.synth.primitives import Primitive, stack_corners, trace
from disdepth.data.synth.textures import albedo, noise


@dataclass
class Light:
    """``point``: position (3,) metres, falloff distance; ``sun``: direction (3,) towards the sun."""

    kind: str
    vector: np.ndarray
    color: np.ndarray
    falloff: float = 4.0


@dataclass
class Scene:
    prims: list[Primitive]
    lights: list[Light]
    ambient: np.ndarray  # (3,) irradiance that reaches every surface
    position: np.ndarray  # (3,) camera centre, world metres
    rot: np.ndarray  # (3, 3) world-from-camera
    min_depth: float = 1e-3  # valid ground truth range (metres); outside it depth = 0, valid = False
    max_depth: float = 10.0
    sky: dict | None = None  # {"zenith": (3,), "horizon": (3,), "clouds": float}; None: every ray hits
    fog: float = 0.0  # haze distance (metres) of exp(-dist / fog); 0 = no haze
    exposure: float = 0.85  # 97th percentile of lit luminance after tone mapping
    extras: dict = field(default_factory=dict)


@dataclass
class Rendered:
    """Render result. image (3, H, W) float32 [0, 1]; depth (H, W) float32 metres (0 = invalid);
    valid (H, W) bool; z (H, W) float32 raw z-depth (inf on sky); pid (H, W) int16 primitive (-1 sky)."""

    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    z: np.ndarray
    pid: np.ndarray
    dirs: np.ndarray  # (3, H, W) world ray directions (camera-frame z = 1)


def _point_shadow(prims, corners, casters, light_pos, p, own, size: int = 128, fov_deg: float = 150.0):
    """Visibility (n,) in [0, 1] of points ``p`` (3, n) from a point light (downward shadow map)."""
    f = (size / 2) / np.tan(np.radians(fov_deg / 2))
    k = (f, f, (size - 1) / 2, (size - 1) / 2)
    lview = View.pinhole(light_pos, rotation(0.0, -np.pi / 2), k, (size, size))
    tmap, idmap = trace(prims, lview, casters, corners)
    q = lview.rot.T.astype(np.float32) @ (p - lview.origin[:, None])
    z = q[2]
    uu, vv = f * q[0] / z + k[2], f * q[1] / z + k[3]
    return _pcf(tmap, idmap, uu, vv, z, own, ok=z > 0.05)


def _sun_shadow(prims, corners, casters, sun, p, own, receivers, max_texels: int = 256):
    """Visibility (n,) of points ``p`` (3, n) under a directional light (orthographic shadow map).

    The map covers only the receivers (bool (n,): visible surfaces within range), so its texels are
    spent where the camera looks; casters outside that footprint cannot shadow anything we see.
    """
    vis = np.ones(p.shape[1], np.float32)
    bounded = corners[casters][~np.isnan(corners[casters, 0, 0])]
    if bounded.size == 0 or not receivers.any():
        return vis
    d = (-sun / np.linalg.norm(sun)).astype(np.float32)
    e1 = np.cross([0.0, 1.0, 0.0], d)
    e1 = (e1 / np.linalg.norm(e1)).astype(np.float32)
    e2 = np.cross(d, e1).astype(np.float32)
    pr = p[:, receivers]
    a, b = e1 @ pr, e2 @ pr
    s_min = min(float((bounded.reshape(-1, 3) @ d).min()), float((d @ pr).min())) - 1.0
    res = max(0.1, float(a.max() - a.min()) / max_texels, float(b.max() - b.min()) / max_texels)
    lo = float(a.min()) * e1 + float(b.min()) * e2 + s_min * d
    shape = (int((b.max() - b.min()) / res) + 2, int((a.max() - a.min()) / res) + 2)
    lview = View.orthographic(d, lo, e1, e2, res, shape)
    tmap, idmap = trace(prims, lview, casters, corners)
    rel = p - lo[:, None]
    return _pcf(tmap, idmap, (e1 @ rel) / res, (e2 @ rel) / res, d @ rel, own, ok=receivers)


def _pcf(tmap, idmap, uu, vv, z, own, ok):
    """Bilinear percentage-closer filtering of a shadow map; a convex primitive never shadows itself.

    Branch-free on purpose: clipped indices and 1-D ``take`` gathers are several times faster in NumPy
    than boolean selection and 2-D fancy indexing on incoherent masks.
    """
    h, w = tmap.shape
    j0, i0 = np.floor(uu), np.floor(vv)  # NaN (behind the light) fails every comparison below
    ok = ok & (j0 >= 0) & (j0 < w - 1) & (i0 >= 0) & (i0 < h - 1)
    j0, i0 = np.nan_to_num(j0), np.nan_to_num(i0)
    fu, fv = uu - j0, vv - i0
    base = np.clip(i0, 0, h - 2).astype(np.intp) * w + np.clip(j0, 0, w - 2).astype(np.intp)
    tflat, iflat = tmap.ravel(), idmap.ravel()
    limit = z - (0.03 + 0.01 * z)  # depth bias grows with distance (map texels grow too)
    occ = np.zeros(z.shape, np.float32)
    for off, wgt in ((0, (1 - fu) * (1 - fv)), (1, fu * (1 - fv)), (w, (1 - fu) * fv), (w + 1, fu * fv)):
        occ += wgt * ((tflat.take(base + off) < limit) & (iflat.take(base + off) != own))
    return 1.0 - occ * ok


def _sky(dirs: np.ndarray, sky: dict) -> np.ndarray:
    """Sky colour (3, n) for world directions (3, n): horizon-to-zenith gradient with noise clouds."""
    n = dirs / np.linalg.norm(dirs, axis=0, keepdims=True)
    e = np.clip(n[1], 0.0, 1.0)
    col = sky["horizon"][:, None] + (sky["zenith"] - sky["horizon"])[:, None] * np.sqrt(e)[None]
    if sky.get("clouds", 0) > 0:
        y = np.maximum(n[1], 0.02)
        c = noise(n[0] / y * 2.0 + sky.get("offset", 0.0), n[2] / y * 2.0, 8)
        c = np.clip((c - (1 - sky["clouds"])) * 3.0, 0, 1) * np.clip(n[1] * 8, 0, 1)
        col = col + (np.float32(0.95) - col) * c[None]
    return col


def render(scene: Scene, height: int, width: int, k: tuple[float, float, float, float]) -> Rendered:
    """Ray cast ``scene`` into an (H, W) image with pinhole intrinsics ``k`` = (fx, fy, cx, cy) pixels."""
    with np.errstate(all="ignore"):  # inf/NaN on misses are expected; one context instead of hundreds
        return _render(scene, height, width, k)


def _render(scene: Scene, height: int, width: int, k: tuple[float, float, float, float]) -> Rendered:
    view = View.pinhole(scene.position, scene.rot, k, (height, width))
    corners = stack_corners(scene.prims)
    z, pid = trace(scene.prims, view, corners=corners)
    flat_pid = pid.ravel()
    # Work in primitive order: one sort, then every primitive's pixels are a contiguous slice (no scatters).
    order = np.argsort(flat_pid, kind="stable")
    counts = np.bincount(flat_pid + 1, minlength=len(scene.prims) + 1)
    hit = order[counts[0] :]  # flat pixel indices of hits, grouped by primitive
    bounds = np.cumsum(counts) - counts[0]
    dirs = view.dirs.reshape(3, -1).take(hit, axis=1)
    zh = z.ravel().take(hit)
    p = view.origin[:, None] + dirs * zh[None]
    normal = np.empty_like(p)
    alb = np.empty_like(p)
    for i, prim in enumerate(scene.prims):
        a, b = bounds[i], bounds[i + 1]
        if a == b:
            continue
        n_i, u_i, v_i, face = prim.surface(p[:, a:b])
        normal[:, a:b] = n_i
        mats = getattr(prim, "face_materials", None)
        if mats is None:
            alb[:, a:b] = albedo(prim.material, u_i, v_i, face)
            continue
        for f in range(len(mats)):
            idx = np.flatnonzero(face == f)  # faces are spatially coherent: cheap selections
            if idx.size:
                alb[:, a + idx] = albedo(mats[f], u_i.take(idx), v_i.take(idx), face.take(idx))
    # Ambient from a sky/ceiling hemisphere: surfaces facing up get a little more than those facing down.
    irr = scene.ambient[:, None] * (0.75 + 0.25 * normal[1])[None]
    casters = [i for i, prim in enumerate(scene.prims) if prim.casts_shadow]
    # Shadow lookups on every second row and column (soft PCF shadows lose nothing visible), upsampled.
    zs, own_s = z[::2, ::2], pid[::2, ::2]
    ps = (view.origin[:, None, None] + view.dirs[:, ::2, ::2] * np.where(own_s >= 0, zs, 0)[None]).reshape(3, -1)
    for light in scene.lights:
        if light.kind == "point":
            # Lambert with a soft inverse-square falloff, written with in-place ops (fewer temporaries).
            lx, ly, lz = light.vector[0] - p[0], light.vector[1] - p[1], light.vector[2] - p[2]
            d2 = lx * lx
            d2 += ly * ly
            d2 += lz * lz
            lit = normal[0] * lx
            lit += normal[1] * ly
            lit += normal[2] * lz
            np.maximum(lit, 0.0, out=lit)
            lit /= np.sqrt(d2) * (1.0 + d2 * np.float32(1.0 / light.falloff**2))
        else:
            sun = light.vector / np.linalg.norm(light.vector)
            lit = np.maximum(sun[0] * normal[0] + sun[1] * normal[1] + sun[2] * normal[2], 0.0)
        if casters:
            if light.kind == "point":
                vis = _point_shadow(scene.prims, corners, casters, light.vector, ps, own_s.ravel())
            else:
                receivers = ((own_s >= 0) & (zs < scene.max_depth)).ravel()
                vis = _sun_shadow(scene.prims, corners, casters, sun, ps, own_s.ravel(), receivers)
            vis = np.repeat(np.repeat(vis.reshape(zs.shape), 2, 0), 2, 1)[:height, :width]
            lit *= vis.ravel().take(hit)
        irr += light.color[:, None] * lit[None]
    color = alb * irr
    # Tone map: fixed-percentile exposure (absolute brightness carries no depth), then display gamma.
    lum = color[:, ::7].mean(0)  # a strided subset is plenty for a percentile
    scale = scene.exposure / max(float(np.percentile(lum, 97)) if lum.size else 1.0, 1e-3)
    color = np.sqrt(np.clip(color * scale, 0.0, 1.0))  # display gamma 2 (a sqrt is ~10x cheaper than a pow)
    if scene.fog > 0:
        # Aerial perspective on the ray length (not z): far surfaces fade towards the horizon colour.
        dist = zh * np.sqrt(dirs[0] * dirs[0] + dirs[1] * dirs[1] + dirs[2] * dirs[2])
        a = np.exp(-dist / scene.fog)[None]
        color = color * a + np.sqrt(scene.sky["horizon"])[:, None] * (1 - a)
    image = np.empty((3, height * width), np.float32)
    if scene.sky is not None:
        miss = np.flatnonzero(flat_pid < 0)
        image[:, miss] = np.sqrt(np.clip(_sky(view.dirs.reshape(3, -1).take(miss, axis=1), scene.sky), 0, 1))
    else:
        image[:] = 0.0
    image[:, hit] = color
    valid = (z > scene.min_depth) & (z < scene.max_depth)
    depth = np.where(valid, z, 0.0).astype(np.float32)
    return Rendered(image.reshape(3, height, width), depth, valid, z, pid, view.dirs)


def lidar_mask(
    dirs: np.ndarray,
    valid: np.ndarray,
    density: float,
    rng: np.random.Generator,
    n_lines: int = 64,
    top_deg: float = 2.0,
    bottom_deg: float = -24.8,
) -> np.ndarray:
    """LiDAR-like sparse subset (H, W) bool of ``valid``: ``n_lines`` scan lines, then azimuth subsampling.

    A scan line at elevation e (HDL-64E: +2 to -24.8 degrees, KITTI's Velodyne) marks the first pixel
    row of each column whose ray elevation passes it; each line is then thinned at a regular azimuth
    stride so the kept fraction of *all* image pixels is ``density`` (KITTI raw: ~4-5%).

    Args:
        dirs: (3, H, W) world ray directions (y up). valid: (H, W) bool dense ground truth.
    """
    elev = np.degrees(np.arctan2(dirs[1], np.hypot(dirs[0], dirs[2])))
    line = np.round((top_deg - elev) * (n_lines - 1) / (top_deg - bottom_deg))
    new_line = np.zeros_like(valid)
    new_line[1:] = line[1:] != line[:-1]
    new_line[0] = True
    mask = new_line & (line >= 0) & (line < n_lines) & valid
    count = int(mask.sum())
    if count == 0:
        return mask
    keep = density * valid.size / count
    if keep < 1.0:
        # Regular stride 1/keep across columns with a random phase per line (the laser's firing offset).
        phase = rng.uniform(0, 1.0 / keep, n_lines)
        lid = np.clip(line, 0, n_lines - 1).astype(np.intp)
        col = np.arange(valid.shape[1])[None, :] + phase[lid]
        mask &= np.floor(col * keep) != np.floor((col - 1) * keep)
    return mask


def sensor_effects(
    depth: np.ndarray, valid: np.ndarray, rng: np.random.Generator, noise_k: float = 0.0, holes: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Optional structured-light style corruption of (H, W) ``depth`` metres / ``valid``.

    Args:
        noise_k: Gaussian noise std = noise_k * depth^2 (Kinect v1: about 0.0015-0.003 per metre).
        holes: fraction of pixels dropped, in blobs (upsampled coarse noise), as on shiny/dark surfaces.
    """
    depth, valid = depth.copy(), valid.copy()
    if noise_k > 0:
        depth = np.where(valid, depth + rng.standard_normal(depth.shape).astype(np.float32) * noise_k * depth**2, 0)
        valid &= depth > 0
    if holes > 0:
        h, w = depth.shape
        coarse = rng.random((h // 8 + 1, w // 8 + 1))
        blob = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w] < holes
        valid &= ~blob
    return np.where(valid, depth, 0.0).astype(np.float32), valid
