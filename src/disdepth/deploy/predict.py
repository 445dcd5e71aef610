"""``disdepth predict CKPT INPUTS... --out DIR``: depth for images, folders and videos, in several formats.

Per input (``NAME`` = file stem; folder inputs keep their relative sub-folders; video frames are
``NAME/frame_000000``):

    NAME.png         16-bit depth: mm (value = metres * 1000, NYU) or KITTI (metres * 256); 0 = no depth
    NAME.npy         float32 (H, W) metres
    NAME_color.png   turbo colour map (near = red); ``--legend`` adds a colour bar in metres
    NAME.ply         coloured point cloud, xyz metres in the camera frame (x right, y down, z forward);
                     only with ``--intrinsics fx,fy,cx,cy`` (pixels at the input's size) or ``--fov``
    NAME_panel.png   RGB | colour depth (``--panel``)

``NAME.png``/``NAME.npy`` follow BTS's test-script naming, so ``disdepth eval --pred-dir DIR`` reads them.
``predictions.json`` in DIR records units, conventions, sizes and one entry per written prediction.
Resizing follows :mod:`disdepth.api`: the network runs at ``--size`` or at the image size rounded to a
multiple of 32, and the prediction is resized back to the input's size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from disdepth.data.io import DataError, image_size, read_image, write_depth_png
from disdepth.eval.viz import colorize

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}
PNG_UNITS = {"mm": 1000.0, "kitti": 256.0}  # PNG units per metre (NYU Depth V2 / KITTI depth benchmark)
FORMATS = ("color", "png", "npy", "ply", "panel")


@dataclass(frozen=True)
class Source:
    """One input: ``path`` read as ``kind`` ("image" | "video"); outputs go to ``out/name*``."""

    path: Path
    kind: str
    name: str


# ---------------------------------------------------------------------------------------------- inputs


def collect_sources(inputs: list[str]) -> list[Source]:
    """Expand files and folders into sources, checking each one before any model work starts.

    Folders contribute their image files (recursively, sorted); a file given explicitly must be an
    image or a video. Images are checked to be readable (header only).

    Raises:
        FileNotFoundError: a missing file or folder.
        DataError: an unreadable image, an unsupported extension, a folder with no images, or two
            inputs that would write the same output name.
    """
    sources: list[Source] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise DataError(path, f"folder has no images ({', '.join(sorted(IMAGE_EXTS))})", "format")
            sources += [Source(p, "image", p.relative_to(path).with_suffix("").as_posix()) for p in files]
        elif path.is_file():
            ext = path.suffix.lower()
            if ext in IMAGE_EXTS:
                sources.append(Source(path, "image", path.stem))
            elif ext in VIDEO_EXTS:
                sources.append(Source(path, "video", path.stem))
            else:
                raise DataError(
                    path,
                    f"unsupported input type {ext or '(no extension)'}: expected an image "
                    f"({', '.join(sorted(IMAGE_EXTS))}), a video ({', '.join(sorted(VIDEO_EXTS))}) or a folder",
                    "format",
                )
        else:
            raise FileNotFoundError(f"{path}: input not found")
    seen: dict[str, Path] = {}
    for s in sources:
        if s.name in seen:
            raise DataError(s.path, f"writes the same output name {s.name!r} as {seen[s.name]}; rename one", "format")
        seen[s.name] = s.path
        if s.kind == "image":
            image_size(s.path)  # unreadable -> DataError naming the file, before the model is loaded
        else:
            _check_video_backend(s.path)
    return sources


def _check_video_backend(path: Path) -> None:
    """Fail early (naming the file) when a video cannot be decoded: no PyAV, or a file it cannot open."""
    if path.suffix.lower() == ".gif":
        image_size(path)  # animated GIFs are decoded frame by frame with Pillow
        return
    try:
        import av
    except ImportError:
        raise DataError(
            path,
            "reading video needs PyAV, which is not installed: pip install av "
            "(torchvision >= 0.22 no longer decodes video); or extract frames to a folder of images",
            "format",
        ) from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "no video stream in this file", "format")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"unreadable video ({exc.__class__.__name__}: {exc})", "unreadable") from None


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of a video (PyAV) or an animated GIF (Pillow)."""
    try:
        if path.suffix.lower() == ".gif":
            from PIL import Image, ImageSequence

            with Image.open(path) as im:
                for frame in ImageSequence.Iterator(im):
                    yield np.array(frame.convert("RGB"))  # a writable copy
            return
        import av

        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except DataError:
        raise
    except Exception as exc:  # decoders raise many types; name the file
        raise DataError(path, f"unreadable video ({exc.__class__.__name__}: {exc})", "unreadable") from None


def iter_frames(sources: list[Source], every: int = 1) -> Iterator[tuple[Source, str, np.ndarray]]:
    """(source, output name, (H, W, 3) uint8 RGB) for every image and every ``every``-th video frame."""
    for s in sources:
        if s.kind == "image":
            rgb = (read_image(s.path) * 255).round().byte().permute(1, 2, 0).numpy()
            yield s, s.name, rgb
            continue
        for i, rgb in enumerate(_video_frames(s.path)):
            if i % every == 0:
                yield s, f"{s.name}/frame_{i:06d}", rgb


# ---------------------------------------------------------------------------------------------- writers


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


def intrinsics_for_image(args: argparse.Namespace, height: int, width: int) -> tuple[float, float, float, float] | None:
    """(fx, fy, cx, cy) at (height, width) from ``--intrinsics`` or ``--fov`` (horizontal, degrees), else None."""
    if args.intrinsics:
        return args.intrinsics
    if args.fov:
        f = (width / 2) / math.tan(math.radians(args.fov) / 2)
        return f, f, (width - 1) / 2, (height - 1) / 2
    return None


def write_outputs(out_dir: Path, name: str, depth: np.ndarray, rgb: np.ndarray, args: argparse.Namespace) -> dict:
    """Write every requested format for one prediction; returns its ``predictions.json`` entry."""
    base = out_dir / name
    base.parent.mkdir(parents=True, exist_ok=True)
    entry: dict = {"name": name, "height": int(depth.shape[0]), "width": int(depth.shape[1]), "files": []}
    entry["depth_m"] = {
        k: round(float(f(depth)), 4) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
    }
    if "png" in args.formats:
        write_depth_png(base.with_name(base.name + ".png"), depth, PNG_UNITS[args.png_units])
        entry["files"].append(base.name + ".png")
    if "npy" in args.formats:
        np.save(base.with_name(base.name + ".npy"), depth.astype(np.float32))
        entry["files"].append(base.name + ".npy")
    if "color" in args.formats or "panel" in args.formats:
        valid = np.isfinite(depth) & (depth > 0)
        vals = depth[valid] if valid.any() else np.ones(1, np.float32)
        vmin = args.vmin if args.vmin is not None else float(np.percentile(vals, 2))
        vmax = args.vmax if args.vmax is not None else float(np.percentile(vals, 98))
        vmax = max(vmax, vmin + 1e-3)
        color = colorize(depth, vmin, vmax, valid)
        entry["color_range_m"] = [round(vmin, 4), round(vmax, 4)]
        if args.legend:
            color = add_legend(color, vmin, vmax)
        from PIL import Image

        if "color" in args.formats:
            Image.fromarray(color).save(base.with_name(base.name + "_color.png"))
            entry["files"].append(base.name + "_color.png")
        if "panel" in args.formats:
            Image.fromarray(np.concatenate([rgb, color], axis=1)).save(base.with_name(base.name + "_panel.png"))
            entry["files"].append(base.name + "_panel.png")
    k = intrinsics_for_image(args, *depth.shape)
    if "ply" in args.formats and k is not None:
        entry["ply_vertices"] = write_ply(
            base.with_name(base.name + ".ply"), depth, rgb, k, not args.ply_ascii, args.ply_stride
        )
        entry["intrinsics"] = [round(float(v), 4) for v in k]
        entry["files"].append(base.name + ".ply")
    return entry


# ---------------------------------------------------------------------------------------------- command


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 480x640), got {text!r}") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return h, w


def _parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fx,fy,cx,cy in pixels, got {text!r}") from None
    return fx, fy, cx, cy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint (.pt) from disdepth train / distill")
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, videos (.mp4 ... via PyAV; .gif)")
    parser.add_argument("--out", "-o", required=True, help="output folder")
    parser.add_argument("--size", type=_parse_size, help="run the network at HxW (default: input size rounded to /32)")
    parser.add_argument(
        "--formats",
        default="color,png,npy",
        help=f"comma list of {','.join(FORMATS)} (default color,png,npy; ply is added by "
        "--intrinsics/--fov, panel by --panel)",
    )
    parser.add_argument(
        "--png-units",
        choices=["auto", *sorted(PNG_UNITS)],
        default="auto",
        help="16-bit PNG: mm = metres*1000 (NYU, up to 65.5 m), kitti = metres*256 (up to 256 m); "
        "auto (default) = mm unless the model's max depth exceeds 65 m",
    )
    parser.add_argument("--legend", action="store_true", help="add a colour bar in metres to colour maps")
    parser.add_argument("--panel", action="store_true", help="also write RGB | colour depth side by side")
    parser.add_argument("--vmin", type=float, help="colour range near end, metres (default: 2nd percentile)")
    parser.add_argument("--vmax", type=float, help="colour range far end, metres (default: 98th percentile)")
    parser.add_argument("--intrinsics", type=_parse_intrinsics, help="fx,fy,cx,cy in pixels at the input size")
    parser.add_argument("--fov", type=float, help="horizontal field of view in degrees (principal point = centre)")
    parser.add_argument("--ply-ascii", action="store_true", help="ASCII PLY instead of binary")
    parser.add_argument("--ply-stride", type=int, default=1, help="keep every N-th pixel in the point cloud")
    parser.add_argument("--every", type=int, default=1, help="video: predict every N-th frame")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (same-size runs)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--flip-tta", action="store_true", help="average with the mirrored image's prediction")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights even if the checkpoint has EMA")


def _batches(frames: Iterator[tuple[Source, str, np.ndarray]], batch_size: int) -> Iterator[list]:
    """Consecutive same-size frames, up to ``batch_size`` at a time (a size change flushes the batch)."""
    batch: list = []
    for item in frames:
        if batch and (len(batch) == batch_size or batch[0][2].shape != item[2].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from disdepth.api import DepthPredictor

    args.formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    unknown = args.formats - set(FORMATS)
    if unknown:
        raise ValueError(f"--formats: unknown {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
    if args.panel:
        args.formats.add("panel")
    if args.intrinsics or args.fov:
        args.formats.add("ply")
    elif "ply" in args.formats:
        raise ValueError("--formats ply needs camera intrinsics: --intrinsics fx,fy,cx,cy or --fov DEGREES")
    if args.batch_size < 1 or args.every < 1 or args.ply_stride < 1:
        raise ValueError("--batch-size, --every and --ply-stride must be >= 1")
    sources = collect_sources(args.inputs)
    predictor = DepthPredictor.from_checkpoint(
        args.checkpoint, device=args.device, use_ema=not args.no_ema, size=args.size, flip_tta=args.flip_tta
    )
    cfg = predictor.config
    if args.png_units == "auto":  # mm saturates at 65.534 m: KITTI-range models (80 m) need the x256 convention
        ranges = [getattr(m, "max_depth", None) for m in predictor.model.modules()]
        heads = (r for r in ranges if isinstance(r, (int, float)))
        args.png_units = "kitti" if next(heads, 10.0) > 65.0 else "mm"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_images = sum(s.kind == "image" for s in sources)
    total = n_images if n_images == len(sources) else None  # video frame counts are not known up front
    entries = []
    with tqdm(total=total, desc="predict", unit="img", file=sys.stderr, disable=None) as bar:
        for batch in _batches(iter_frames(sources, args.every), args.batch_size):
            images = torch.stack([torch.from_numpy(rgb).permute(2, 0, 1) for _, _, rgb in batch]).float().div(255.0)
            depth = predictor.predict_tensor(images)
            for (source, name, rgb), d in zip(batch, depth, strict=True):
                entry = write_outputs(out_dir, name, d[0].numpy(), rgb, args)
                entry["input"] = str(source.path)
                entry["run_size"] = list(predictor.run_size(*rgb.shape[:2]))
                entries.append(entry)
            bar.update(len(batch))
    scale = PNG_UNITS[args.png_units]
    png_note = (
        f"uint16 = round(depth_m * {scale:g}) ({'millimetres, NYU' if args.png_units == 'mm' else 'KITTI'} "
        f"convention; metres = value / {scale:g}; 0 = no depth; max {65534 / scale:.2f} m)"
    )
    summary = {
        "checkpoint": str(args.checkpoint),
        "encoder": getattr(getattr(cfg, "model", None), "encoder", None),
        "head": getattr(getattr(cfg, "model", None), "head", None),
        "units": {
            "png": png_note,
            "npy": "float32 (H, W) metres",
            "ply": "x, y, z metres (camera: x right, y down, z forward) + uchar rgb",
            "color": "turbo, near = red; range in each entry's color_range_m",
        },
        "png_units": args.png_units,
        "png_scale": scale,
        "size_policy": f"network at {args.size[0]}x{args.size[1]}" if args.size else "input size rounded to /32",
        "resized_back_to_input": True,
        "flip_tta": bool(args.flip_tta),
        "predictions": entries,
    }
    (out_dir / "predictions.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "README.txt").write_text(
        f"disdepth predictions from {args.checkpoint}\nNAME.png: {png_note}\nNAME.npy: float32 metres\n"
        "NAME_color.png: colour map; NAME.ply: point cloud (metres); details in predictions.json\n"
    )
    print(f"wrote {len(entries)} predictions to {out_dir} (16-bit PNG: {png_note})")
    return 0
