"""Writing depth predictions: 16-bit PNG, NPY, colour map (+ legend), PLY point cloud, panel, ``predictions.json``.

Per prediction ``NAME`` (see ``docs/deploy.md``):

    NAME.png         16-bit depth: mm (value = metres * 1000, NYU) or KITTI (metres * 256); 0 = no depth
    NAME.npy         float32 (H, W) metres
    NAME_color.png   turbo colour map (near = red); ``legend`` adds a colour bar in metres
    NAME.ply         coloured point cloud, xyz metres in the camera frame (x right, y down, z forward);
                     only with intrinsics (pixels at the input's size) or a field of view
    NAME_panel.png   RGB | colour depth

``NAME.png``/``NAME.npy`` follow BTS's test-script naming, so ``disdepth eval --pred-dir DIR`` reads them.
Everything is driven by :class:`WriteOptions`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from disdepth.data.io import write_depth_png
from disdepth.eval.viz import colorize

PNG_UNITS = {"mm": 1000.0, "kitti": 256.0}  # PNG units per metre (NYU Depth V2 / KITTI depth benchmark)
FORMATS = ("color", "png", "npy", "ply", "panel")
INPUT_POLICY = (
    "EXIF orientation applied (upright); greyscale copied to RGB; alpha composited on white; "
    "16/32-bit single-channel images refused as depth maps; conversions per input in input_notes"
)


@dataclass(frozen=True)
class WriteOptions:
    """What to write for each prediction.

    Attributes:
        formats: subset of :data:`FORMATS`.
        png_units: ``"mm"`` or ``"kitti"`` (see :data:`PNG_UNITS`).
        legend: append a colour bar in metres to colour maps (and panels).
        vmin, vmax: colour range in metres (None: 2nd / 98th percentile of each map).
        intrinsics: (fx, fy, cx, cy) pixels at the input's size, for the point cloud.
        fov: horizontal field of view in degrees (principal point = centre), when no ``intrinsics``.
        ply_ascii: ASCII PLY instead of binary little-endian.
        ply_stride: keep every N-th pixel in each direction in the point cloud.
    """

    formats: frozenset[str] = frozenset({"color", "png", "npy"})
    png_units: str = "mm"
    legend: bool = False
    vmin: float | None = None
    vmax: float | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    fov: float | None = None
    ply_ascii: bool = False
    ply_stride: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown output formats {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
        if self.png_units not in PNG_UNITS:
            raise ValueError(f"png_units must be one of {', '.join(PNG_UNITS)}, got {self.png_units!r}")
        if self.ply_stride < 1:
            raise ValueError(f"ply_stride must be >= 1, got {self.ply_stride}")


def auto_png_units(model: nn.Module) -> str:
    """``"kitti"`` when the model's max depth exceeds 65 m (mm saturates at 65.534 m), else ``"mm"``."""
    return "kitti" if model.input_spec.max_depth > 65.0 else "mm"


def png_note(png_units: str) -> str:
    """The 16-bit PNG convention in words (README.txt, predictions.json and the final message)."""
    scale = PNG_UNITS[png_units]
    return (
        f"uint16 = round(depth_m * {scale:g}) ({'millimetres, NYU' if png_units == 'mm' else 'KITTI'} "
        f"convention; metres = value / {scale:g}; 0 = no depth; max {65534 / scale:.2f} m)"
    )


# ---------------------------------------------------------------------------------------------- colour bar


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def nice_ticks(vmin: float, vmax: float, target: int = 5) -> list[float]:
    """About ``target`` round tick values (1, 2, 2.5, 5 x 10^k steps) inside [vmin, vmax]."""
    span = max(vmax - vmin, 1e-6)
    raw = span / max(target - 1, 1)
    base = 10 ** math.floor(math.log10(raw))
    step = min((m * base for m in (1, 2, 2.5, 5, 10)), key=lambda c: abs(math.log(c / raw)))
    first = math.ceil(vmin / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((vmax - first) / step + 1e-9) + 1)]


def add_legend(color: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Append a vertical colour bar (far at the top, near at the bottom) with metre ticks to an (H, W, 3) map."""
    from PIL import Image, ImageDraw

    h = color.shape[0]
    font_px = max(9, min(20, h // 24))
    bar_w, margin = max(6, font_px), max(3, font_px // 3)
    ticks = nice_ticks(vmin, vmax)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.1
    decimals = next(d for d in range(7) if abs(round(step, d) - step) < 1e-9 * max(1.0, step) or d == 6)
    labels = [f"{t:.{decimals}f} m" for t in ticks]
    width = 2 * margin + bar_w + margin + int(0.62 * font_px * max(len(s) for s in labels)) + margin
    panel = Image.new("RGB", (width, h), (255, 255, 255))
    top, bottom = margin + font_px // 2, h - margin - font_px // 2
    if bottom - top >= 2:
        column = np.linspace(vmax, vmin, bottom - top, dtype=np.float32)[:, None]
        bar = colorize(np.repeat(column, bar_w, axis=1), vmin, vmax, np.ones((bottom - top, bar_w), bool))
        panel.paste(Image.fromarray(bar), (margin, top))
    draw = ImageDraw.Draw(panel)
    font = _font(font_px)
    for t, label in zip(ticks, labels, strict=True):
        y = top + (vmax - t) / max(vmax - vmin, 1e-6) * (bottom - top - 1)
        draw.line([(margin + bar_w, y), (margin + bar_w + margin, y)], fill=(0, 0, 0))
        draw.text((2 * margin + bar_w + margin // 2, y), label, fill=(0, 0, 0), font=font, anchor="lm")
    return np.concatenate([color, np.asarray(panel)], axis=1)


# ---------------------------------------------------------------------------------------------- point cloud


def write_ply(
    path: Path,
    depth: np.ndarray,
    rgb: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    binary: bool = True,
    stride: int = 1,
) -> int:
    """Back-project depth to a coloured point cloud; returns the number of vertices.

    Args:
        depth: (H, W) metres; non-finite or <= 0 pixels are skipped.
        rgb: (H, W, 3) uint8 colours.
        intrinsics: (fx, fy, cx, cy) pixels at (H, W); pixel (u, v) has its centre at integer (u, v), so the
            pixel at (cx, cy) lands on the optical axis: X = (u - cx) Z / fx, Y = (v - cy) Z / fy, Z = depth.
        binary: binary little-endian PLY (compact) instead of ASCII.
        stride: keep every ``stride``-th pixel in each direction.
    """
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    z = depth[::stride, ::stride].astype(np.float32)
    col = rgb[::stride, ::stride]
    keep = np.isfinite(z) & (z > 0)
    z, u, v, col = z[keep], u[keep], v[keep], col[keep]
    verts = np.empty(z.size, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    verts["x"], verts["y"], verts["z"] = (u - cx) * z / fx, (v - cy) * z / fy, z
    verts["r"], verts["g"], verts["b"] = col[:, 0], col[:, 1], col[:, 2]
    header = (
        f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\ncomment disdepth prediction, metres\n"
        f"element vertex {z.size}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        if binary:
            verts.tofile(f)
        else:
            np.savetxt(f, np.column_stack([verts[k] for k in verts.dtype.names]), fmt="%.6f %.6f %.6f %d %d %d")
    return int(z.size)


def parse_intrinsics(text: str) -> tuple[float, float, float, float] | None:
    """``"fx,fy,cx,cy"`` (pixels) -> a tuple; blank -> None. Raises ValueError naming the field."""
    if not text or not text.strip():
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"intrinsics: expected fx,fy,cx,cy in pixels, got {text!r}") from None
    if fx <= 0 or fy <= 0:
        raise ValueError(f"intrinsics: fx and fy must be > 0, got {text!r}")
    return fx, fy, cx, cy


def intrinsics_for_image(options: WriteOptions, height: int, width: int) -> tuple[float, float, float, float] | None:
    """(fx, fy, cx, cy) at (height, width) from ``options.intrinsics`` or ``options.fov`` (degrees), else None."""
    if options.intrinsics:
        return options.intrinsics
    if options.fov:
        f = (width / 2) / math.tan(math.radians(options.fov) / 2)
        return f, f, (width - 1) / 2, (height - 1) / 2
    return None


# ---------------------------------------------------------------------------------------------- one prediction


def write_outputs(out_dir: Path, name: str, depth: np.ndarray, rgb: np.ndarray, options: WriteOptions) -> dict:
    """Write every requested format for one prediction; returns its ``predictions.json`` entry.

    Args:
        out_dir: the output folder; ``name`` may hold sub-folders (``sub/img``, ``clip/frame_000012``).
        depth: (H, W) float32 metres.
        rgb: (H, W, 3) uint8, the image the depth is for (point-cloud colours and the panel).
    """
    base = out_dir / name
    base.parent.mkdir(parents=True, exist_ok=True)
    entry: dict = {"name": name, "height": int(depth.shape[0]), "width": int(depth.shape[1]), "files": []}
    entry["depth_m"] = {
        k: round(float(f(depth)), 4) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
    }
    if "png" in options.formats:
        write_depth_png(base.with_name(base.name + ".png"), depth, PNG_UNITS[options.png_units])
        entry["files"].append(base.name + ".png")
    if "npy" in options.formats:
        np.save(base.with_name(base.name + ".npy"), depth.astype(np.float32))
        entry["files"].append(base.name + ".npy")
    if "color" in options.formats or "panel" in options.formats:
        valid = np.isfinite(depth) & (depth > 0)
        vals = depth[valid] if valid.any() else np.ones(1, np.float32)
        vmin = options.vmin if options.vmin is not None else float(np.percentile(vals, 2))
        vmax = options.vmax if options.vmax is not None else float(np.percentile(vals, 98))
        vmax = max(vmax, vmin + 1e-3)
        color = colorize(depth, vmin, vmax, valid)
        entry["color_range_m"] = [round(vmin, 4), round(vmax, 4)]
        if options.legend:
            color = add_legend(color, vmin, vmax)
        from PIL import Image

        if "color" in options.formats:
            Image.fromarray(color).save(base.with_name(base.name + "_color.png"))
            entry["files"].append(base.name + "_color.png")
        if "panel" in options.formats:
            Image.fromarray(np.concatenate([rgb, color], axis=1)).save(base.with_name(base.name + "_panel.png"))
            entry["files"].append(base.name + "_panel.png")
    k = intrinsics_for_image(options, *depth.shape)
    if "ply" in options.formats and k is not None:
        entry["ply_vertices"] = write_ply(
            base.with_name(base.name + ".ply"), depth, rgb, k, not options.ply_ascii, options.ply_stride
        )
        entry["intrinsics"] = [round(float(v), 4) for v in k]
        entry["files"].append(base.name + ".ply")
    return entry


# ---------------------------------------------------------------------------------------------- the run summary


def write_summary(
    out_dir: Path,
    checkpoint: str | Path,
    config: Any,
    options: WriteOptions,
    size: tuple[int, int] | None,
    flip_tta: bool,
    entries: list[dict],
    depth_units: str = "m",
) -> None:
    """``predictions.json`` (units, conventions, sizes, one entry per prediction) and a short ``README.txt``.

    ``depth_units`` other than "m" (a relative model, ``InputSpec.units``) is stated first in both files: the
    numbers are then depth-like values of unknown scale and shift, not metres.

    Args:
        config: the checkpoint's config (its ``model.encoder`` / ``model.head`` are recorded when present).
        size: the fixed (H, W) the network ran at, or None (input size rounded to /32).
    """
    note = png_note(options.png_units)
    model_cfg = getattr(config, "model", None)
    summary = {
        "checkpoint": str(checkpoint),
        "encoder": getattr(model_cfg, "encoder", None),
        "head": getattr(model_cfg, "head", None),
        "depth_units": "metres" if depth_units == "m" else depth_units,
        "units": {
            "png": note,
            "npy": "float32 (H, W) metres",
            "ply": "x, y, z metres (camera: x right, y down, z forward) + uchar rgb",
            "color": "turbo, near = red; range in each entry's color_range_m",
        },
        "input_policy": INPUT_POLICY,
        "png_units": options.png_units,
        "png_scale": PNG_UNITS[options.png_units],
        "size_policy": f"network at {size[0]}x{size[1]}" if size else "input size rounded to /32",
        "resized_back_to_input": True,
        "flip_tta": bool(flip_tta),
        "predictions": entries,
    }
    (out_dir / "predictions.json").write_text(json.dumps(summary, indent=1) + "\n")
    relative = "" if depth_units == "m" else f"RELATIVE MODEL: values are depth {depth_units}, not metres\n"
    (out_dir / "README.txt").write_text(
        f"disdepth predictions from {checkpoint}\n{relative}NAME.png: {note}\nNAME.npy: float32 metres\n"
        "NAME_color.png: colour map; NAME.ply: point cloud (metres); details in predictions.json\n"
    )
