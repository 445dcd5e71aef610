"""Procedural materials: albedo (3, n) in [0, 1] from surface texture coordinates ``u, v`` (metres).

Textures repeat at a fixed size in metres, so their image-space frequency grows with distance and
foreshortening: a texture gradient cue that a depth model can learn. Colours are drawn at random per
scene so that colour alone does not say how far a surface is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_TILE = 256
_NOISE: np.ndarray | None = None
_WHITE: np.ndarray | None = None


def _tiles() -> tuple[np.ndarray, np.ndarray]:
    """Tileable smooth noise (3 octaves of FFT-blurred white noise) and white noise, (256*256,) flat, in [0, 1]."""
    global _NOISE, _WHITE
    if _NOISE is None:
        rng = np.random.default_rng(12345)  # fixed: the tiles are part of the renderer, not of a sample
        f = np.fft.fftfreq(_TILE)
        r2 = f[:, None] ** 2 + f[None, :] ** 2
        out = np.zeros((_TILE, _TILE))
        for sigma, amp in ((12.0, 1.0), (3.0, 0.5), (1.0, 0.2)):
            white = np.fft.fft2(rng.standard_normal((_TILE, _TILE)))
            out += amp * np.real(np.fft.ifft2(white * np.exp(-2 * (np.pi * sigma) ** 2 * r2))) * sigma
        out = (out - out.min()) / (out.max() - out.min())
        _NOISE = out.astype(np.float32).ravel()
        _WHITE = rng.random(_TILE * _TILE, dtype=np.float32)
    return _NOISE, _WHITE  # type: ignore[return-value]


def noise(u: np.ndarray, v: np.ndarray, per_metre: float = 16.0) -> np.ndarray:
    """Smooth value noise in [0, 1] at (u, v) metres; ``per_metre`` texels per metre (features ~12 texels)."""
    tile, _ = _tiles()
    # One flat gather: 1-D ``take`` is several times faster than 2-D fancy indexing.
    return tile.take((((v * per_metre).astype(np.int32) & 255) << 8) | ((u * per_metre).astype(np.int32) & 255))


def cell_hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) value per integer cell (i, j): per-plank, per-brick, per-window variation."""
    _, white = _tiles()
    return white.take((((i.astype(np.int32) * 7) & 255) << 8) | ((j.astype(np.int32) * 13 + 5) & 255))


@dataclass
class Material:
    """A procedural surface.

    Attributes:
        kind: plain | checker | stripes | noise | wood | tiles | bricks | facade | street | glass.
        c1, c2: (3,) RGB in [0, 1]: base and secondary colour.
        scale: pattern period in metres.
        params: kind-specific numbers (street: road half width, lane width; facade: floor height...).
        decals: rectangles drawn over the texture: (face, u0, u1, v0, v1, Material) (doors, windows).
    """

    kind: str = "plain"
    c1: np.ndarray = field(default_factory=lambda: np.full(3, 0.6, np.float32))
    c2: np.ndarray = field(default_factory=lambda: np.full(3, 0.3, np.float32))
    scale: float = 0.5
    params: dict = field(default_factory=dict)
    decals: list = field(default_factory=list)
    grime: float = 0.25  # strength of the low-frequency dirt that breaks up flat colours


def _mix(c1: np.ndarray, c2: np.ndarray, w: np.ndarray) -> np.ndarray:
    return c1[:, None] + (c2 - c1)[:, None] * w[None, :]


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def albedo(mat: Material, u: np.ndarray, v: np.ndarray, face: np.ndarray | None = None) -> np.ndarray:
    """Albedo (3, n) for texture coordinates ``u, v`` (n,) metres; ``face`` (n,) selects decals."""
    k, s, p = mat.kind, mat.scale, mat.params
    if k == "checker":
        w = (np.floor(u / s) + np.floor(v / s)) % 2
    elif k == "stripes":
        w = (np.floor(u / s) % 2) * 0.8 + 0.2 * noise(u, v, 40)
    elif k == "noise":
        w = noise(u, v, 12.0 / s)
    elif k == "wood":
        plank = np.floor(v / s)
        grain = np.sin((u * 9.0 + 6.0 * noise(u * 0.3, plank * 3.1 + v * 0.1, 16)) * 6.0) * 0.5 + 0.5
        w = 0.35 * grain + 0.5 * cell_hash(plank, np.floor(u / (4 * s)))
        w = np.where(_frac(v / s) < 0.04, 1.0, w)  # dark gaps between planks
    elif k == "tiles":
        w = 0.25 * cell_hash(np.floor(u / s), np.floor(v / s))
        w = np.where((_frac(u / s) < 0.05) | (_frac(v / s) < 0.05), 1.0, w)  # grout
    elif k == "bricks":
        row = np.floor(v / (0.4 * s))
        col = np.floor(u / s + 0.5 * (row % 2))
        w = 0.4 * cell_hash(row, col)
        w = np.where((_frac(v / (0.4 * s)) < 0.12) | (_frac(u / s + 0.5 * (row % 2)) < 0.05), 1.0, w)
    elif k == "facade":
        fh, sx, wf, hf = p.get("floor", 3.2), p.get("spacing", 3.0), p.get("win_w", 0.5), p.get("win_h", 0.55)
        fu, fv = _frac(u / sx), _frac(v / fh)
        window = (np.abs(fu - 0.5) < wf / 2) & (np.abs(fv - 0.5) < hf / 2) & (v > p.get("ground", 0.0))
        w = np.where(window, 0.7 + 0.3 * cell_hash(np.floor(u / sx), np.floor(v / fh)), 0.15 * noise(u, v, 8))
    elif k == "street":
        half, lane, shoulder = p["road_half"], p["lane"], p.get("shoulder", 0.25)
        x = u - p.get("x0", 0.0)
        on_road = np.abs(x) < half
        # Dashed lane lines (3 m of every 9 m) between lanes, solid edge lines near the curb.
        lane_pos = _frac((x + half) / lane + 0.5) - 0.5
        dashed = (np.abs(lane_pos) * lane < 0.07) & (_frac(v / 9.0) < 0.33) & (np.abs(x) < half - 0.5)
        edge = np.abs(np.abs(x) - (half - shoulder)) < 0.07
        grass = noise(u, v, 6)
        w = np.where(on_road, 0.25 * noise(u, v, 24), 2.0 + grass)  # >=2 codes the verge
        out = np.where(w[None] >= 2, _mix(p["verge1"], p["verge2"], grass), _mix(mat.c1, mat.c2, w))
        out = np.where((on_road & (dashed | edge))[None], p.get("paint", np.float32([0.9, 0.9, 0.85]))[:, None], out)
        return out.astype(np.float32)
    elif k == "glass":
        w = 0.5 * noise(u, v, 6) + 0.5 * (np.abs(_frac(u / s) - 0.5) < 0.03)
    else:
        w = 0.1 * noise(u, v, 10)
    out = _mix(mat.c1, mat.c2, w)
    if mat.grime:
        out *= 1.0 - mat.grime * noise(u * 0.31 + 17.0, v * 0.29 + 5.0, 8)
    for face_id, u0, u1, v0, v1, dmat in mat.decals:
        inside = (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
        if face is not None:
            inside &= face == face_id
        if inside.any():
            out[:, inside] = albedo(dmat, u[inside] - u0, v[inside] - v0)
    return out.astype(np.float32)


def random_color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.9, sat: float = 0.6) -> np.ndarray:
    """A random linear-light RGB (3,): display brightness in [lo, hi], saturation up to ``sat``.

    Chosen in display (gamma) space, where "brightness" and "saturation" mean what a person sees, then
    linearised (squared: the renderer's display gamma is 2) because shading works in linear light.
    """
    grey = rng.uniform(lo, hi)
    tint = rng.uniform(-1, 1, 3) * sat * rng.uniform(0.3, 1.0) * 2 * min(grey, 1 - grey)
    return (np.clip(grey + tint, 0.02, 1.0) ** 2).astype(np.float32)


def random_material(
    rng: np.random.Generator, kinds: tuple[str, ...], scale: tuple[float, float] = (0.2, 1.0)
) -> Material:
    """A material of a random kind from ``kinds`` with random colours and period."""
    kind = str(rng.choice(kinds))
    c1 = random_color(rng)
    c2 = np.clip(c1 * rng.uniform(0.4, 0.8) + random_color(rng) * rng.uniform(0, 0.3), 0, 1).astype(np.float32)
    return Material(kind, c1, c2, float(rng.uniform(*scale)), grime=float(rng.uniform(0.0, 0.35)))
