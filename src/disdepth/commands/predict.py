"""``disdepth predict CKPT INPUTS... --out DIR``: depth for images, folders and videos, in several formats.

Argument parsing and printing only; the work is :func:`disdepth.deploy.predict_folder.predict` (also
``disdepth.predict`` from Python). Per input (``NAME`` = file stem; folder inputs keep their relative sub-folders;
video frames are ``NAME/frame_000000``) the formats of :mod:`disdepth.deploy.writers` are written, plus
``predictions.json`` and ``README.txt`` in DIR.
"""

from __future__ import annotations

import argparse

from disdepth.commands.common import (
    add_threads_argument,
    add_trust_argument,
    finite_float,
    hw_type,
    non_negative_float,
)
from disdepth.deploy.limits import MAX_RUN_MEGAPIXELS
from disdepth.deploy.ort_runtime import RUNTIMES
from disdepth.deploy.predict_folder import predict
from disdepth.deploy.writers import FORMATS, PNG_UNITS, parse_intrinsics


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
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="torch (a checkpoint's default) or onnxruntime: the checkpoint exported once per run size (seconds) and "
        "run by ONNX Runtime on the CPU, 1.2-2x faster per image; for folders and videos (an .onnx always runs there)",
    )
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights even if the checkpoint has EMA")


def run(args: argparse.Namespace) -> int:
    result = predict(
        args.checkpoint,
        args.inputs,
        args.out,
        size=args.size,
        formats=args.formats.split(","),
        png_units=args.png_units,
        legend=args.legend,
        panel=args.panel,
        vmin=args.vmin,
        vmax=args.vmax,
        intrinsics=args.intrinsics,
        fov=args.fov,
        ply_ascii=args.ply_ascii,
        ply_stride=args.ply_stride,
        every=args.every,
        batch_size=args.batch_size,
        device=args.device,
        flip_tta=args.flip_tta,
        use_ema=not args.no_ema,
        max_megapixels=args.max_megapixels,
        runtime=args.runtime,
    )
    print(f"wrote {len(result.entries)} predictions to {result.out_dir} (16-bit PNG: {result.png_note})")
    return 0
