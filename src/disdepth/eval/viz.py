"""Depth visualisation without matplotlib: a perceptual colour map and RGB | prediction | GT | error panels."""

from __future__ import annotations

import numpy as np
import torch

# Google's Turbo colour map sampled at 11 evenly spaced points (Mikhailov 2019); linear interpolation between
# them keeps it perceptually ordered, which is what a depth map needs (near = warm... far = cool is reversed below).
_TURBO_ANCHORS = np.array(
    [
        [0.190, 0.072, 0.232], [0.276, 0.421, 0.891], [0.158, 0.736, 0.923], [0.110, 0.934, 0.673],
        [0.464, 0.997, 0.317], [0.787, 0.946, 0.172], [0.985, 0.798, 0.215], [0.988, 0.550, 0.135],
        [0.875, 0.299, 0.036], [0.665, 0.106, 0.012], [0.480, 0.016, 0.011],
    ],
    dtype=np.float32,
)  # fmt: skip


def colorize(
    depth: np.ndarray, vmin: float | None = None, vmax: float | None = None, valid: np.ndarray | None = None
) -> np.ndarray:
    """Map depth (H, W) metres to uint8 RGB (H, W, 3): near = red, far = blue; invalid pixels black.

    ``vmin``/``vmax`` default to the 2nd/98th percentile of the valid depths.
    """
    depth = np.asarray(depth, dtype=np.float32)
    mask = np.isfinite(depth) & (depth > 0) if valid is None else np.asarray(valid, dtype=bool)
    values = depth[mask]
    if vmin is None:
        vmin = float(np.percentile(values, 2)) if values.size else 0.0
    if vmax is None:
        vmax = float(np.percentile(values, 98)) if values.size else 1.0
    t = np.clip((depth - vmin) / max(vmax - vmin, 1e-6), 0.0, 1.0)
    t = 1.0 - t  # near = warm colours
    pos = t * (len(_TURBO_ANCHORS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_TURBO_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _TURBO_ANCHORS[lo] * (1 - frac) + _TURBO_ANCHORS[lo + 1] * frac
    rgb[~mask] = 0.0
    return (rgb * 255).round().astype(np.uint8)


def denormalize(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, H, W) normalised tensor -> uint8 (H, W, 3) RGB."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * s + m).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def depth_panel(
    image: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    title: str = "",
    unit: str = "m",
) -> np.ndarray:
    """RGB | prediction | ground truth | abs-rel error, side by side, one shared depth range, with a caption strip
    under the tiles that names them, the model (``title``) and the colour range in ``unit``:
    (H + caption, k*W, 3) uint8."""
    tiles = [image]
    if gt is not None:
        valid = (gt > 0) if valid is None else valid
        ref = gt[valid] if valid.any() else pred.ravel()
        vmin, vmax = float(np.percentile(ref, 2)), float(np.percentile(ref, 98))
        tiles += [colorize(pred, vmin, vmax, np.ones_like(valid)), colorize(gt, vmin, vmax, valid)]
        err = np.where(valid, np.abs(pred - gt) / np.maximum(gt, 1e-6), 0.0)
        tiles.append(colorize(1.0 - np.clip(err / 0.5, 0, 1), 0.0, 1.0, valid))  # red = 50%+ error
        range_text = f"prediction {vmin:.2f}-{vmax:.2f} {unit}"
        names = ["RGB", range_text, "ground truth (same colours)", "|error|/gt, red >= 50%"]
    else:
        tiles.append(colorize(pred, valid=np.ones(pred.shape, dtype=bool)))
        names = ["RGB", "prediction"]
    panel = np.concatenate(tiles, axis=1)
    return np.concatenate([panel, _caption(panel.shape[1], image.shape[1], names, title)], axis=0)


def _caption(width: int, tile_width: int, names: list[str], title: str) -> np.ndarray:
    """A white strip (h, width, 3) with each tile's name under it (near = red, far = blue) and the title."""
    from PIL import Image, ImageDraw, ImageFont

    font_px = max(9, min(14, tile_width // 14))
    try:
        font = ImageFont.load_default(size=font_px)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    lines = 2 if title else 1
    strip = Image.new("RGB", (width, lines * (font_px + 4) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, name in enumerate(names):
        draw.text((i * tile_width + 3, 2), name, fill=(0, 0, 0), font=font)
    if title:
        draw.text((3, font_px + 6), f"{title} (near = red, far = blue)", fill=(60, 60, 60), font=font)
    return np.asarray(strip)


def with_title(panel: np.ndarray, title: str) -> np.ndarray:
    """``panel`` (H, W, 3) uint8 with a one-line title strip above it (which model a report picture shows)."""
    from PIL import Image, ImageDraw, ImageFont

    font_px = max(10, min(16, panel.shape[1] // 40))
    try:
        font = ImageFont.load_default(size=font_px)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    strip = Image.new("RGB", (panel.shape[1], font_px + 8), (255, 255, 255))
    ImageDraw.Draw(strip).text((3, 3), title, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(strip), panel], axis=0)
