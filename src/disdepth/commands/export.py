"""``disdepth export CKPT --out model.onnx``: ONNX export of a depth model, checked and timed with ONNX Runtime.

The graph takes ``image`` (B, 3, H, W) RGB in [0, 1] (or mean/std-normalised with ``--normalized-input``)
and returns ``depth`` (B, 1, H, W) metres; see :mod:`disdepth.deploy.export` for the library.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from disdepth.commands.common import add_trust_argument, at_least, hw_type
from disdepth.deploy.bench import time_interleaved
from disdepth.deploy.export import (
    DepthOnly,
    build_metadata,
    check_and_time,
    default_size,
    export_onnx,
    ort_session,
    read_metadata,
    write_metadata,
)
from disdepth.deploy.quantize import depth_agreement, iter_calibration, quantize_int8
from disdepth.deploy.sources import collect_sources, read_rgb
from disdepth.deploy.weights import load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trust_argument(parser)
    parser.add_argument("checkpoint", help="checkpoint (.pt) from disdepth train / distill")
    parser.add_argument("--out", "-o", required=True, help="output .onnx file")
    parser.add_argument(
        "--size",
        type=hw_type("--size", 32),
        help="HxW of the example input and of a fixed-size graph "
        "(default: KITTI 352x1216, NYU 480x640, synthetic its render size, else 480x640)",
    )
    parser.add_argument("--dynamic", action="store_true", help="dynamic height and width (batch is always dynamic)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--exporter",
        choices=["auto", "dynamo", "torchscript"],
        default="auto",
        help="auto: dynamo if onnxscript is installed, else torchscript (dynamo=False)",
    )
    parser.add_argument(
        "--normalized-input",
        action="store_true",
        help="graph takes a mean/std-normalised image instead of RGB in [0, 1]",
    )
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights even if the checkpoint has EMA")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity check and timing")
    parser.add_argument("--image", help="an image for the real-input parity check (default: a synthetic render)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and ORT (0 = torch default)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write <out>.int8.onnx: ONNX Runtime static quantisation (QDQ, per-channel), calibrated on "
        "--calibration images; reports its latency and depth change against the fp32 graph",
    )
    parser.add_argument(
        "--calibration", nargs="+", default=[], help="--int8: images or folders of the deployment domain"
    )
    parser.add_argument(
        "--calibration-images", type=at_least(2), default=32, help="--int8: at most this many images (default 32)"
    )


def _read_image(path: str) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: ``path`` read as ``disdepth predict`` reads it (upright RGB; errors name the file)."""

    rgb, _ = read_rgb(path)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None]


def run(args: argparse.Namespace) -> int:

    if args.threads:
        torch.set_num_threads(args.threads)
    image = _read_image(args.image) if args.image and not args.no_check else None  # a bad --image fails early
    model, cfg = load_model(args.checkpoint, use_ema=not args.no_ema)
    mean, std = model.input_spec.mean, model.input_spec.std
    size = tuple(args.size) if args.size else default_size(cfg)
    wrapper = DepthOnly(model, mean, std, args.normalized_input).eval()
    exporter = export_onnx(wrapper, args.out, size, args.dynamic, args.opset, args.exporter)
    metadata = build_metadata(
        model, cfg, args.checkpoint, exporter, mean, std, args.normalized_input, args.dynamic, size
    )
    write_metadata(args.out, metadata)
    print(
        f"exported {args.out} ({metadata['exporter']}, opset {args.opset}, input {metadata['input_size']}, "
        f"{Path(args.out).stat().st_size / 1e6:.1f} MB)"
    )
    if args.no_check:
        if args.int8:
            report_int8(args, size, wrapper)
        return 0
    if image is not None:
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    preset = "outdoor" if getattr(getattr(cfg, "data", None), "dataset", "") == "kitti" else "indoor"
    report = check_and_time(
        args.out, wrapper, size, args.dynamic, args.normalized_input, image, args.warmup, args.runs, preset
    )
    for name, diff in report["max_abs_diff_m"].items():
        print(f"parity ORT vs PyTorch, {name} input: max |diff| = {diff:.2e} m")
    print(
        f"latency {size[0]}x{size[1]} batch 1, median of {args.runs} after {args.warmup} warm-up, "
        f"{report['threads']} threads: eager {report['eager_ms']:.1f} ms, ONNX Runtime CPU {report['ort_ms']:.1f} ms "
        f"(ORT {report['speedup']:.2f}x eager)"
    )
    if args.int8:
        report_int8(args, size, wrapper)
    return 0


def report_int8(args: argparse.Namespace, size: tuple[int, int], wrapper: DepthOnly) -> Path:
    """Quantise the exported graph, then time fp32 vs INT8 (interleaved) and compare their depth on held-out images:
    three quarters of the calibration images calibrate, the last quarter measures the change."""
    paths = [s.path for s in collect_sources(args.calibration) if s.kind == "image"][: args.calibration_images]
    if len(paths) < 2:
        raise ValueError("--int8 needs --calibration with at least 2 images (the deployment domain's photos)")
    images = list(iter_calibration(paths, size, lambda p: read_rgb(p)[0]))
    if args.normalized_input:
        mean, std = wrapper.mean.view(1, 3, 1, 1).numpy(), wrapper.std.view(1, 3, 1, 1).numpy()
        images = [((x - mean) / std).astype(np.float32) for x in images]
    n_cal = max(1, len(images) * 3 // 4)
    out = Path(args.out).with_suffix(".int8.onnx")
    quantize_int8(args.out, out, images[:n_cal])
    write_metadata(out, {**read_metadata(args.out), "quantization": f"int8 static QDQ per-channel, {n_cal} images"})
    fp32, int8 = ort_session(args.out), ort_session(out)
    feed = images[-1]
    times = time_interleaved(
        {"fp32": lambda: fp32.run(None, {"image": feed}), "int8": lambda: int8.run(None, {"image": feed})},
        args.warmup,
        args.runs,
    )
    med = {k: float(np.median(v)) for k, v in times.items()}
    change = depth_agreement(fp32, int8, images[n_cal:])
    print(
        f"int8: {out} ({out.stat().st_size / 1e6:.1f} MB), calibrated on {n_cal} images; ONNX Runtime "
        f"{med['fp32']:.1f} -> {med['int8']:.1f} ms ({med['fp32'] / med['int8']:.2f}x, interleaved median of "
        f"{args.runs}); depth vs fp32 on {len(images) - n_cal} held-out images: mean |rel diff| "
        f"{100 * change['mean_rel_diff']:.2f} %, p99 {100 * change['p99_rel_diff']:.2f} %"
    )
    return out
