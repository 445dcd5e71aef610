"""Writing depth predictions: 16-bit PNG, NPY, colour map (+ legend), PLY point cloud, panel, ``predictions.json``.

Per prediction ``NAME`` (see ``docs/deploy.md``):

    NAME.png         16-bit depth: mm (value = metres * 1000, NYU) or KITTI (metres * 256); 0 = no depth.
                     A relative model: ``rel16``, the map's own min..max spread over 1..65534 (per image; the
                     range is in its ``predictions.json`` entry), because its values have no unit to scale by
    NAME.npy         float32 (H, W) metres (a relative model: its relative values)
    NAME_color.png   turbo colour map (near = red); ``legend`` adds a colour bar in metres (or "relative")
    NAME.ply         coloured point cloud, xyz metres in the camera frame (x right, y down, z forward);
                     only with intrinsics (pixels at the input's size) or a field of view; metric models only
    NAME_panel.png   RGB | colour depth

``NAME.png``/``NAME.npy`` follow BTS's test-script naming, so ``disdepth eval --pred-dir DIR`` reads them (a
relative model's PNG is an affine map of its values, and relative predictions are aligned per image anyway).
Everything is driven by :class:`WriteOptions`; every label of a relative model's output comes from
:func:`value_words` and :data:`RELATIVE`, so they all say the same thing.
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
# A relative map has no unit: its PNG spreads each image's own [min, max] over 1..65534 (0 = no depth).
RELATIVE_PNG = "rel16"
RELATIVE_PNG_TOP = 65534  # as the metric PNGs: 65535 is left unused
# The one short word for a relative model's values, used in tick labels, JSON keys and notes alike.
RELATIVE = "relative"
FORMATS = ("color", "png", "npy", "ply", "panel")
# The file each format writes for a prediction NAME (``predict`` also checks them against its inputs).
FILE_SUFFIXES = {"png": ".png", "npy": ".npy", "color": "_color.png", "panel": "_panel.png", "ply": ".ply"}
INPUT_POLICY = (
    "EXIF orientation applied (upright); greyscale copied to RGB; alpha composited on white; "
    "16/32-bit single-channel images refused as depth maps; conversions per input in input_notes"
)


@dataclass(frozen=True)
class WriteOptions:
    """What to write for each prediction.

    Attributes:
        formats: subset of :data:`FORMATS`.
        png_units: ``"mm"`` or ``"kitti"`` (see :data:`PNG_UNITS`) for a metric model; a relative model's PNG is
            always :data:`RELATIVE_PNG`.
        legend: append a colour bar in metres (or relative values) to colour maps (and panels).
        vmin, vmax: colour range in the model's units (None: 2nd / 98th percentile of each map).
        intrinsics: (fx, fy, cx, cy) pixels at the input's size, for the point cloud.
        fov: horizontal field of view in degrees (principal point = centre), when no ``intrinsics``.
        ply_ascii: ASCII PLY instead of binary little-endian.
        ply_stride: keep every N-th pixel in each direction in the point cloud.
        depth_units: the model's ``InputSpec.units``: "m", or a relative note (then nothing is labelled metres).
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
    depth_units: str = "m"

    @property
    def metric(self) -> bool:
        return self.depth_units == "m"

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(FORMATS)
        if unknown:
            raise ValueError(f"unknown output formats {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
        if self.png_units not in PNG_UNITS:
            raise ValueError(f"png_units must be one of {', '.join(PNG_UNITS)}, got {self.png_units!r}")
        if self.ply_stride < 1:
            raise ValueError(f"ply_stride must be >= 1, got {self.ply_stride}")
        if "ply" in self.formats and not self.metric:
            raise ValueError(f"a relative model (depth {self.depth_units}) has no metric point cloud (.ply)")


def auto_png_units(model: nn.Module) -> str:
    """``"kitti"`` when the model's max depth exceeds 65 m (mm saturates at 65.534 m), else ``"mm"``."""
    return "kitti" if model.input_spec.max_depth > 65.0 else "mm"


def value_words(depth_units: str) -> tuple[str, str]:
    """(suffix, noun) for a depth value: ("m", "metres") or (:data:`RELATIVE`, "<units>, not metres")."""
    return ("m", "metres") if depth_units == "m" else (RELATIVE, f"depth {depth_units}, not metres")


def png_note(png_units: str, depth_units: str = "m") -> str:
    """The 16-bit PNG convention in words (README.txt, predictions.json and the final message)."""
    if depth_units != "m":
        return (
            f"{RELATIVE_PNG}: uint16 = 1 + round((value - lo) / (hi - lo) * {RELATIVE_PNG_TOP - 1}) with lo, hi = "
            f"that image's png_range in predictions.json (value = lo + (png - 1) / {RELATIVE_PNG_TOP - 1} * "
            f"(hi - lo)); 0 = no depth; values are {value_words(depth_units)[1]}"
        )
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


def tick_labels(ticks: list[float], depth_units: str = "m") -> list[str]:
    """Tick texts with as many decimals as the step needs and the unit word ("m" or :data:`RELATIVE`)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.1
    decimals = next(d for d in range(7) if abs(round(step, d) - step) < 1e-9 * max(1.0, step) or d == 6)
    suffix = value_words(depth_units)[0]
    return [f"{t:.{decimals}f} {suffix}" for t in ticks]


def add_legend(color: np.ndarray, vmin: float, vmax: float, depth_units: str = "m") -> np.ndarray:
    """Append a vertical colour bar (far at the top, near at the bottom) with ticks in metres (or labelled
    relative) to an (H, W, 3) map."""
    from PIL import Image, ImageDraw

    h = color.shape[0]
    font_px = max(9, min(20, h // 24))
    bar_w, margin = max(6, font_px), max(3, font_px // 3)
    ticks = nice_ticks(vmin, vmax)
    labels = tick_labels(ticks, depth_units)
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
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        raise ValueError(f"intrinsics: every value must be a finite number, got {text!r}")
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


def write_relative_png(path: Path, values: np.ndarray) -> list[float]:
    """A relative map as :data:`RELATIVE_PNG`: its finite range [lo, hi] spread over 1..TOP, 0 where not finite.

    Returns [lo, hi], which the reader needs: value = lo + (png - 1) / (TOP - 1) * (hi - lo).
    """
    from PIL import Image

    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    scaled = (np.where(finite, values, lo) - lo) / max(hi - lo, 1e-12) * (RELATIVE_PNG_TOP - 1)
    raw = np.where(finite, 1 + np.round(scaled), 0).astype(np.uint16)
    Image.fromarray(raw).save(path)
    return [lo, hi]


def write_outputs(out_dir: Path, name: str, depth: np.ndarray, rgb: np.ndarray, options: WriteOptions) -> dict:
    """Write every requested format for one prediction; returns its ``predictions.json`` entry.

    The entry's keys carry the unit: ``depth_m`` / ``color_range_m`` for a metric model, ``depth_relative`` /
    ``color_range_relative`` (and ``png_range``) for a relative one.

    Args:
        out_dir: the output folder; ``name`` may hold sub-folders (``sub/img``, ``clip/frame_000012``).
        depth: (H, W) float32 metres (a relative model: its relative values, ``options.depth_units``).
        rgb: (H, W, 3) uint8, the image the depth is for (point-cloud colours and the panel).
    """
    base = out_dir / name
    base.parent.mkdir(parents=True, exist_ok=True)

    suffix = value_words(options.depth_units)[0]
    entry: dict = {"name": name, "height": int(depth.shape[0]), "width": int(depth.shape[1]), "files": []}

    def output(fmt: str) -> Path:  # NAME + the format's suffix, listed in the entry
        entry["files"].append(base.name + FILE_SUFFIXES[fmt])
        return base.with_name(base.name + FILE_SUFFIXES[fmt])

    entry[f"depth_{suffix}"] = {
        k: round(float(f(depth)), 4) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
    }
    if "png" in options.formats:
        png = output("png")
        if options.metric:
            write_depth_png(png, depth, PNG_UNITS[options.png_units])
        else:
            entry["png_range"] = [round(v, 6) for v in write_relative_png(png, depth)]
    if "npy" in options.formats:
        np.save(output("npy"), depth.astype(np.float32))
    if "color" in options.formats or "panel" in options.formats:
        valid = np.isfinite(depth) & (depth > 0)
        vals = depth[valid] if valid.any() else np.ones(1, np.float32)
        vmin = options.vmin if options.vmin is not None else float(np.percentile(vals, 2))
        vmax = options.vmax if options.vmax is not None else float(np.percentile(vals, 98))
        vmax = max(vmax, vmin + 1e-3)
        color = colorize(depth, vmin, vmax, valid)
        entry[f"color_range_{suffix}"] = [round(vmin, 4), round(vmax, 4)]
        if options.legend:
            color = add_legend(color, vmin, vmax, options.depth_units)
        from PIL import Image

        if "color" in options.formats:
            Image.fromarray(color).save(output("color"))
        if "panel" in options.formats:
            Image.fromarray(np.concatenate([rgb, color], axis=1)).save(output("panel"))
    k = intrinsics_for_image(options, *depth.shape)
    if "ply" in options.formats and k is not None:
        entry["ply_vertices"] = write_ply(output("ply"), depth, rgb, k, not options.ply_ascii, options.ply_stride)
        entry["intrinsics"] = [round(float(v), 4) for v in k]
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
    size_policy: str | None = None,
    runtime: str = "torch",
) -> None:
    """``predictions.json`` (units, conventions, sizes, one entry per prediction) and a short ``README.txt``.

    A relative model (``options.depth_units`` other than "m") is stated first in both files and no field or line
    calls its values metres.

    Args:
        config: the checkpoint's config (its ``model.encoder`` / ``model.head`` are recorded when present).
        size: the fixed (H, W) the network ran at, or None (input size rounded to /32).
        size_policy: overrides the words for ``size`` (e.g. a fixed-size ONNX graph's own size).
        runtime: what ran the network, in words ("torch", "onnxruntime", ...).
    """
    units = options.depth_units
    note = png_note(options.png_units, units)
    suffix, values = value_words(units)
    model_cfg = getattr(config, "model", None)
    summary = {
        "checkpoint": str(checkpoint),
        "encoder": getattr(model_cfg, "encoder", None),
        "head": getattr(model_cfg, "head", None),
        "depth_units": "metres" if options.metric else units,
        "units": {
            "png": note,
            "npy": f"float32 (H, W) {values}",
            "color": f"turbo, near = red; range in each entry's color_range_{suffix}",
        },
        "input_policy": INPUT_POLICY,
        "png_units": options.png_units if options.metric else RELATIVE_PNG,
        "size_policy": size_policy or (f"network at {size[0]}x{size[1]}" if size else "input size rounded to /32"),
        "resized_back_to_input": True,
        "flip_tta": bool(flip_tta),
        "runtime": runtime,
        "predictions": entries,
    }
    if options.metric:
        summary["units"]["ply"] = "x, y, z metres (camera: x right, y down, z forward) + uchar rgb"
        summary["png_scale"] = PNG_UNITS[options.png_units]
    (out_dir / "predictions.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    if options.metric:
        body = f"NAME.png: {note}\nNAME.npy: float32 metres\nNAME_color.png: colour map; NAME.ply: point cloud (metres)"
    else:
        body = (
            f"RELATIVE MODEL: values are {values}\nNAME.png: {note}\nNAME.npy: float32 {RELATIVE} values\n"
            "NAME_color.png: colour map (relative values)"
        )
    (out_dir / "README.txt").write_text(
        f"disdepth predictions from {checkpoint}\n{body}; details in predictions.json\n"
    )
