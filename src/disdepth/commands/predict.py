"""``disdepth predict CKPT INPUTS... --out DIR``: depth for images, folders and videos, in several formats.

Per input (``NAME`` = file stem; folder inputs keep their relative sub-folders; video frames are
``NAME/frame_000000``) the formats of :mod:`disdepth.deploy.writers` are written, plus ``predictions.json``
and ``README.txt`` in DIR. Inputs are found and read by :mod:`disdepth.deploy.sources` (EXIF orientation
applied, greyscale to RGB, alpha on white, 16-bit depth maps refused). Resizing follows :mod:`disdepth.api`:
the network runs at ``--size`` or at the image size rounded to a multiple of 32, and the prediction is
resized back to the input's size; a network size above ``--max-megapixels`` is refused before the model runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from disdepth.api import DepthPredictor, round_size
from disdepth.commands.common import (
    add_threads_argument,
    add_trust_argument,
    check_device,
    finite_float,
    hw_type,
    non_negative_float,
)
from disdepth.deploy.limits import MAX_RUN_MEGAPIXELS, check_run_size, is_out_of_memory, out_of_memory_error
from disdepth.deploy.sources import Frame, Source, collect_sources, iter_frames
from disdepth.deploy.weights import readable_load_errors
from disdepth.deploy.writers import (
    FORMATS,
    PNG_UNITS,
    WriteOptions,
    auto_png_units,
    parse_intrinsics,
    png_note,
    write_outputs,
    write_summary,
)


def _intrinsics_type(text: str) -> tuple[float, float, float, float]:
    """``--intrinsics``: :func:`disdepth.deploy.writers.parse_intrinsics` as an argparse type (one-line error)."""
    try:
        intrinsics = parse_intrinsics(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if intrinsics is None:
        raise argparse.ArgumentTypeError("expected fx,fy,cx,cy in pixels, got an empty value")
    return intrinsics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trust_argument(parser)
    add_threads_argument(parser)
    parser.add_argument(
        "checkpoint", help="checkpoint (.pt), model folder, or .onnx from disdepth export (run by ONNX Runtime)"
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders of images, videos (.mp4 ... via PyAV; .gif)")
    parser.add_argument("--out", "-o", required=True, help="output folder")
    parser.add_argument(
        "--size", type=hw_type("--size", 32), help="run the network at HxW (default: input size rounded to /32)"
    )
    parser.add_argument(
        "--max-megapixels",
        type=non_negative_float,
        default=MAX_RUN_MEGAPIXELS,
        help=f"refuse images the network would run on at more than this (default {MAX_RUN_MEGAPIXELS:.1f} MP = "
        "4096x4096; 0 = no limit); use --size for larger images",
    )
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
    parser.add_argument(
        "--legend", action="store_true", help="add a colour bar to colour maps (metres, or relative values)"
    )
    parser.add_argument("--panel", action="store_true", help="also write RGB | colour depth side by side")
    parser.add_argument("--vmin", type=finite_float, help="colour range near end, model units (default 2nd pct)")
    parser.add_argument("--vmax", type=finite_float, help="colour range far end, model units (default 98th pct)")
    parser.add_argument("--intrinsics", type=_intrinsics_type, help="fx,fy,cx,cy in pixels at the input size")
    parser.add_argument("--fov", type=finite_float, help="horizontal field of view, degrees (principal point = centre)")
    parser.add_argument("--ply-ascii", action="store_true", help="ASCII PLY instead of binary")
    parser.add_argument("--ply-stride", type=int, default=1, help="keep every N-th pixel in the point cloud")
    parser.add_argument("--every", type=int, default=1, help="video: predict every N-th frame")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (same-size runs)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--flip-tta", action="store_true", help="average with the mirrored image's prediction")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights even if the checkpoint has EMA")


def _formats(args: argparse.Namespace) -> frozenset[str]:
    """The requested formats (``--formats`` plus what ``--panel`` / ``--intrinsics`` / ``--fov`` add), checked."""
    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    unknown = formats - set(FORMATS)
    if unknown:
        raise ValueError(f"--formats: unknown {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
    if not formats and not (args.panel or args.intrinsics or args.fov):
        raise ValueError(f"--formats {args.formats!r}: no output format; choose from {', '.join(FORMATS)}")
    if args.panel:
        formats.add("panel")
    if args.intrinsics or args.fov:
        formats.add("ply")
    elif "ply" in formats:
        raise ValueError("--formats ply needs camera intrinsics: --intrinsics fx,fy,cx,cy or --fov DEGREES")
    return frozenset(formats)


# The files ``write_outputs`` makes for a prediction NAME, by format (deploy/writers.py).
OUTPUT_SUFFIXES = {"png": ".png", "npy": ".npy", "color": "_color.png", "panel": "_panel.png", "ply": ".ply"}


def refuse_writing_over_inputs(sources: list[Source], out_dir: Path, formats: frozenset[str]) -> None:
    """Refuse, naming the file, when an output would replace an input (``--out`` = the photos' own folder: the
    16-bit depth PNG of ``kitchen.png`` is ``kitchen.png``)."""
    inputs = {s.path.resolve() for s in sources}
    for s in sources:
        for fmt in formats:
            target = (out_dir / (s.name + OUTPUT_SUFFIXES[fmt])).resolve()
            if target in inputs:
                raise ValueError(
                    f"--out {out_dir}: writing {fmt} output {target.name} would overwrite the input {target}; "
                    "choose another output folder"
                )


def _make_out_dir(out: str) -> Path:
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the output folder ({exc.strerror or exc})") from None
    return out_dir


def _batches(frames: Iterator[Frame], batch_size: int) -> Iterator[list[Frame]]:
    """Consecutive same-size frames, up to ``batch_size`` at a time (a size change flushes the batch)."""
    batch: list[Frame] = []
    for frame in frames:
        if batch and (len(batch) == batch_size or batch[0].rgb.shape != frame.rgb.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    formats = _formats(args)
    if args.batch_size < 1 or args.every < 1 or args.ply_stride < 1:
        raise ValueError("--batch-size, --every and --ply-stride must be >= 1")
    if args.vmin is not None and args.vmax is not None and not args.vmin < args.vmax:
        raise ValueError(f"--vmin {args.vmin:g} --vmax {args.vmax:g}: the near end must be below the far end")
    if args.fov is not None and not 0 < args.fov < 180:
        raise ValueError(f"--fov {args.fov:g}: expected 0 < degrees < 180")
    check_device(args.device)
    sources = collect_sources(args.inputs, skip_under=Path(args.out))
    refuse_writing_over_inputs(sources, Path(args.out), formats)
    for s in sources:  # every image's size is known from its header: refuse a too-large one before loading
        if s.size is not None:
            check_run_size(s.path, *s.size, args.size or round_size(*s.size), args.max_megapixels)
    with readable_load_errors(args.checkpoint):
        predictor = DepthPredictor.from_checkpoint(
            args.checkpoint, device=args.device, use_ema=not args.no_ema, size=args.size, flip_tta=args.flip_tta
        )
    spec = predictor.model.input_spec
    if not spec.metric and "ply" in formats:
        raise ValueError(
            f"{args.checkpoint}: a relative model (depth {spec.units}) has no metric point cloud; "
            "drop --intrinsics/--fov/--formats ply, or distil with a few labelled frames for a metric student"
        )
    if not spec.metric:
        print(f"note: {args.checkpoint} is a relative model: outputs are depth {spec.units}, not metres")
    size_policy = None
    if predictor.fixed_size is not None:
        fh, fw = predictor.fixed_size
        size_policy = f"network at {fh}x{fw}: the graph's fixed size (each image resized to it and back)"
        print(
            f"note: {args.checkpoint} is a fixed-size graph: every image runs at {fh}x{fw} and its depth is resized "
            "back to the image (export with --dynamic to run each image at its own size)"
        )
    options = WriteOptions(
        formats=formats,
        png_units=auto_png_units(predictor.model) if args.png_units == "auto" else args.png_units,
        legend=args.legend,
        vmin=args.vmin,
        vmax=args.vmax,
        intrinsics=args.intrinsics,
        fov=args.fov,
        ply_ascii=args.ply_ascii,
        ply_stride=args.ply_stride,
        depth_units=spec.units,
    )
    out_dir = _make_out_dir(args.out)
    n_images = sum(s.kind == "image" for s in sources)
    total = n_images if n_images == len(sources) else None  # video frame counts are not known up front
    entries = []
    with tqdm(total=total, desc="predict", unit="img", file=sys.stderr, disable=None) as bar:
        for batch in _batches(iter_frames(sources, args.every), args.batch_size):
            first = batch[0]
            height, width = first.rgb.shape[:2]
            run_size = predictor.run_size(height, width)
            check_run_size(first.source.path, height, width, run_size, args.max_megapixels)  # video frames
            for frame in batch:
                if "alpha" in frame.notes:
                    tqdm.write(f"note: {frame.source.path}: {frame.notes['alpha']}", file=sys.stderr)
            try:
                images = torch.stack([torch.from_numpy(f.rgb).permute(2, 0, 1) for f in batch]).float().div(255.0)
                depth = predictor.predict_tensor(images)
                if not torch.isfinite(depth).all():
                    raise ValueError(
                        f"{args.checkpoint}: the model predicted non-finite depth (NaN or inf) for "
                        f"{first.source.path}; its weights are probably broken"
                    )
                for frame, d in zip(batch, depth, strict=True):
                    entry = write_outputs(out_dir, frame.name, d[0].numpy(), frame.rgb, options)
                    entry["input"] = str(frame.source.path)
                    entry["run_size"] = list(run_size)
                    if frame.notes:
                        entry["input_notes"] = frame.notes
                    entries.append(entry)
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                raise out_of_memory_error(first.source.path, height, width, run_size, len(batch)) from None
            bar.update(len(batch))
    write_summary(
        out_dir, args.checkpoint, predictor.config, options, args.size, args.flip_tta, entries, size_policy
    )
    print(f"wrote {len(entries)} predictions to {out_dir} (16-bit PNG: {png_note(options.png_units, spec.units)})")
    return 0
