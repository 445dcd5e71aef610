"""Depth colour maps and contact sheets (RGB | depth) without matplotlib."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Rainbow anchors (dark blue -> cyan -> green -> yellow -> red -> dark red), linearly interpolated.
_ANCHORS = np.array(
    [
        [0.19, 0.07, 0.23],
        [0.25, 0.35, 0.85],
        [0.10, 0.70, 0.90],
        [0.20, 0.90, 0.55],
        [0.65, 0.95, 0.20],
        [0.98, 0.75, 0.15],
        [0.95, 0.35, 0.08],
        [0.50, 0.03, 0.01],
    ],
    np.float32,
)
_KNOTS = np.linspace(0, 1, len(_ANCHORS))
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _KNOTS, _ANCHORS[:, c]) for c in range(3)], 1)


def colorize_depth(
    depth: np.ndarray, valid: np.ndarray | None = None, max_depth: float | None = None, dilate: int = 0
) -> np.ndarray:
    """Colour (H, W, 3) uint8 for depth (H, W) metres: near = red, far = blue, invalid = black.

    Uses inverse depth (near detail is what matters) normalised to the 2nd-98th percentile.
    ``dilate`` > 0 grows sparse (LiDAR) points into visible squares of that radius in pixels.
    """
    valid = depth > 0 if valid is None else valid & (depth > 0)
    if max_depth is not None:
        valid &= depth <= max_depth
    d = depth.astype(np.float32)
    if dilate > 0:
        # Max-pool of inverse depth spreads each point over its neighbourhood (nearest point wins).
        inv = np.where(valid, 1.0 / np.maximum(d, 1e-6), 0.0)
        pad = np.pad(inv, dilate)
        h, w = d.shape
        inv = np.max([pad[i : i + h, j : j + w] for i in range(2 * dilate + 1) for j in range(2 * dilate + 1)], axis=0)
        valid = inv > 0
        d = np.where(valid, 1.0 / np.maximum(inv, 1e-6), 0.0)
    out = np.zeros((*d.shape, 3), np.uint8)
    if valid.any():
        inv = 1.0 / d[valid]
        lo, hi = np.percentile(inv, [2, 98])
        x = np.clip((inv - lo) / max(hi - lo, 1e-6), 0, 1)
        out[valid] = (_LUT[(x * 255).astype(int)] * 255).astype(np.uint8)
    return out


def contact_sheet(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: str | Path,
    columns: int = 1,
    gap: int = 4,
    dilate: int = 0,
    palette: bool = False,
) -> Path:
    """Write a PNG: each row is RGB | depth colour map; ``rows`` holds (image (3,H,W) [0,1], depth (H,W), valid).

    With ``columns`` > 1 the (RGB | depth) pairs are laid out in that many columns; ``palette`` saves
    a 256-colour PNG (about 3x smaller, for pictures kept in the repository).
    """
    tiles = []
    for image, depth, valid in rows:
        rgb = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
        tiles.append(
            np.concatenate(
                [rgb, np.full((rgb.shape[0], gap, 3), 255, np.uint8), colorize_depth(depth, valid, dilate=dilate)], 1
            )
        )
    h, w = tiles[0].shape[:2]
    n_rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((n_rows * (h + gap) - gap, columns * (w + 2 * gap) - 2 * gap, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + 2 * gap) : c * (w + 2 * gap) + w] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(sheet)
    if palette:
        img = img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
    return path
