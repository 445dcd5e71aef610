"""``disdepth export CKPT --out model.onnx``: ONNX export of a depth model, checked and timed with ONNX Runtime.

The graph takes ``image`` (B, 3, H, W) RGB in [0, 1] (or mean/std-normalised with ``--normalized-input``)
and returns ``depth`` (B, 1, H, W) metres; see :mod:`disdepth.deploy.export` for the library. ``--int8`` and
``--fp16`` add ``<out>.int8.onnx`` / ``<out>.fp16.onnx`` (same input and output), each timed and compared with the
fp32 graph; ``--eval-list`` scores all of them on a labelled CSV (:mod:`disdepth.deploy.quantize`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from disdepth.commands.common import add_threads_argument, add_trust_argument, at_least, hw_type
from disdepth.data.io import Record
from disdepth.deploy.export import (
    DepthOnly,
    build_metadata,
    check_and_time,
    default_size,
    export_onnx,
    graph_opset,
    ort_session,
    read_metadata,
    realistic_image,
    write_metadata,
)
from disdepth.deploy.quantize import (
    compare_to_fp32,
    convert_fp16,
    iter_calibration,
    labelled_records,
    quantize_int8,
    score_graphs,
)
from disdepth.deploy.sources import collect_sources, read_rgb
from disdepth.deploy.weights import load_model
from disdepth.models.spec import InputSpec

FP16_PRECISION = "float16 weights and compute (onnxruntime float16 converter, keep_io_types); image/depth float32"
# ONNX Runtime's CPU provider has few float16 kernels: it casts around the rest, so fp16 is rarely faster there.
FP16_CPU_NOTE = "; fp16 is for GPU / mobile runtimes, on CPU ONNX Runtime it is usually not faster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trust_argument(parser)
    parser.add_argument(
        "checkpoint", help="checkpoint (.pt) or model folder (config.json + model.safetensors) from train / distill"
    )
    parser.add_argument("--out", "-o", required=True, help="output .onnx file")
    parser.add_argument(
        "--size",
        type=hw_type("--size", 32),
        help="HxW of the example input and of a fixed-size graph "
        "(default: KITTI 352x1216, NYU 480x640, synthetic its render size, else 480x640)",
    )
    parser.add_argument("--dynamic", action="store_true", help="dynamic height and width (batch is always dynamic)")
    parser.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (default 17; the dynamo exporter writes at least 18)"
    )
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
    add_threads_argument(parser, "CPU threads for torch and ONNX Runtime")
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
        "--int8-full-range",
        action="store_true",
        help="--int8: 8-bit weights instead of 7-bit; only for CPUs with VNNI (or ARM): without it, x86 int8 "
        "kernels saturate and the depth gets much worse (docs/deploy.md)",
    )
    parser.add_argument(
        "--calibration-images", type=at_least(2), default=32, help="--int8: at most this many images (default 32)"
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="also write <out>.fp16.onnx: float16 weights and compute, float32 image/depth; reports its latency and "
        "depth change against the fp32 graph (on CPU ONNX Runtime fp16 is usually not faster: it is for GPU and "
        "mobile runtimes)",
    )
    parser.add_argument(
        "--eval-list",
        metavar="CSV",
        help="labelled CSV list (rgb, depth, depth_scale; the data.dataset=csv format): score the fp32 graph and the "
        "--int8/--fp16 graphs on it (abs_rel, rmse, d1; protocol none, the model's depth caps, at the export size)",
    )


def _read_image(path: str) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: ``path`` read as ``disdepth predict`` reads it (upright RGB; errors name the file)."""

    rgb, _ = read_rgb(path)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None]


def check_out_path(out: Path, checkpoint: Path) -> None:
    """``--out`` must be a new ``.onnx`` file or an earlier export: never the checkpoint or another existing file
    (``export best.pt --out best.pt`` would replace the trained weights with the graph)."""
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out {out}: expected a .onnx file name")
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise ValueError(f"--out {out}: is the checkpoint being exported")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give a .onnx file name")


def run(args: argparse.Namespace) -> int:
    check_out_path(Path(args.out), Path(args.checkpoint))
    # Bad inputs fail before the (slow) export: --image, the calibration images, the labelled list.
    image = _read_image(args.image) if args.image and not args.no_check else None
    calibration = _calibration_paths(args) if args.int8 or args.calibration else []
    labelled = labelled_records(args.eval_list) if args.eval_list else []
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
        f"exported {args.out} ({metadata['exporter']}, opset {graph_opset(args.out)}, input {metadata['input_size']}, "
        f"{Path(args.out).stat().st_size / 1e6:.1f} MB)"
    )
    preset = "outdoor" if getattr(getattr(cfg, "data", None), "dataset", "") == "kitti" else "indoor"
    if not args.no_check:
        _check(args, wrapper, size, image, preset)
    variants = _write_variants(args, size, wrapper, calibration, preset)
    if labelled:
        _report_eval(args, variants, labelled, size, model.input_spec)
    return 0


def _check(
    args: argparse.Namespace, wrapper: DepthOnly, size: tuple[int, int], image: torch.Tensor | None, preset: str
) -> None:
    """Print ORT vs PyTorch parity (metres, or relative units) and eager vs ORT latency of the fp32 graph."""
    if image is not None:
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    report = check_and_time(
        args.out, wrapper, size, args.dynamic, args.normalized_input, image, args.warmup, args.runs, preset
    )
    unit = " m" if wrapper.model.input_spec.metric else " (relative units)"
    for name, diff in report["max_abs_diff_m"].items():
        print(f"parity ORT vs PyTorch, {name} input: max |diff| = {diff:.2e}{unit}")
    optimized = report["eager_opt_ms"]
    plural = "s" if report["threads"] != 1 else ""
    how = "upsampling fused, BatchNorm folded"
    as_predict = "" if optimized is None else f" ({optimized:.1f} ms as `predict` runs it: {how})"
    print(
        f"latency {size[0]}x{size[1]} batch 1, median of {args.runs} after {args.warmup} warm-up, "
        f"{report['threads']} thread{plural}: eager {report['eager_ms']:.1f} ms{as_predict}, ONNX Runtime CPU "
        f"{report['ort_ms']:.1f} ms (ORT {report['speedup']:.2f}x eager"
        + ("" if optimized is None else f", {optimized / report['ort_ms']:.2f}x as `predict` runs it")
        + ")"
    )


def _calibration_paths(args: argparse.Namespace) -> list[Path]:
    """The --calibration image files (at most --calibration-images); --int8 needs at least 2."""
    paths = [s.path for s in collect_sources(args.calibration) if s.kind == "image"][: args.calibration_images]
    if args.int8 and len(paths) < 2:
        raise ValueError("--int8 needs --calibration with at least 2 images (the deployment domain's photos)")
    return paths


def _graph_inputs(images: list[torch.Tensor], wrapper: DepthOnly, normalized: bool) -> list[np.ndarray]:
    """(1, 3, H, W) float32 arrays as the graph takes them: RGB in [0, 1], or mean/std-normalised."""
    if normalized:
        images = [(x - wrapper.mean.view(1, 3, 1, 1)) / wrapper.std.view(1, 3, 1, 1) for x in images]
    return [x.float().numpy() for x in images]


def _variant_inputs(
    args: argparse.Namespace, size: tuple[int, int], wrapper: DepthOnly, calibration: list[Path], preset: str
) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Graph inputs (1, 3, H, W) float32 at ``size``: (INT8 calibration set, comparison set, what the comparison is).

    INT8 calibrates on the first three quarters of the --calibration images; both variants are compared with the
    fp32 graph on the rest (on all of them without --int8), else on 4 synthetic renders.
    """
    rgb = [torch.from_numpy(x) for x in iter_calibration(calibration, size, lambda p: read_rgb(p)[0])]
    images = _graph_inputs(rgb, wrapper, args.normalized_input)
    n_cal = max(1, len(images) * 3 // 4) if args.int8 else 0
    if images[n_cal:]:
        return images[:n_cal], images[n_cal:], f"{len(images) - n_cal} held-out images"
    renders = [realistic_image(*size, preset, i) for i in range(4)]
    return images[:n_cal], _graph_inputs(renders, wrapper, args.normalized_input), "4 synthetic renders"


def _write_variants(
    args: argparse.Namespace, size: tuple[int, int], wrapper: DepthOnly, calibration: list[Path], preset: str
) -> dict[str, Path]:
    """Write the --int8 / --fp16 graphs (fp32 metadata kept) and report each against fp32.

    Returns:
        {"fp32": --out, "int8": <out>.int8.onnx, "fp16": <out>.fp16.onnx}, the variants only when asked for.
    """
    variants = {"fp32": Path(args.out)}
    if not (args.int8 or args.fp16):
        return variants
    cal, compare, where = _variant_inputs(args, size, wrapper, calibration, preset)
    metadata = read_metadata(args.out)
    notes = {}
    if args.int8:
        reduce_range = not args.int8_full_range
        bits = 7 if reduce_range else 8
        variants["int8"] = quantize_int8(args.out, Path(args.out).with_suffix(".int8.onnx"), cal, reduce_range)
        write_metadata(
            variants["int8"],
            {**metadata, "quantization": f"int8 static QDQ per-channel, {bits}-bit weights, {len(cal)} images"},
        )
        notes["int8"] = f"calibrated on {len(cal)} images"
    if args.fp16:
        variants["fp16"] = convert_fp16(args.out, Path(args.out).with_suffix(".fp16.onnx"))
        write_metadata(variants["fp16"], {**metadata, "precision": FP16_PRECISION})
        notes["fp16"] = "float16 weights and compute, float32 image/depth"
    fp32 = ort_session(args.out)
    for name, note in notes.items():
        result = compare_to_fp32(fp32, ort_session(variants[name]), compare, args.warmup, args.runs)
        _report_variant(args, name, variants[name], note, result, where)
    return variants


def _report_variant(
    args: argparse.Namespace, name: str, path: Path, note: str, r: dict[str, float], where: str
) -> None:
    """One line: the variant's file, ``note``, fp32 vs variant ONNX Runtime latency and depth change (``r``)."""
    print(
        f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB), {note}; ONNX Runtime CPU fp32 {r['fp32_ms']:.1f} "
        f"-> {name} {r['other_ms']:.1f} ms (speed {r['speed_ratio']:.2f}x fp32, interleaved median of {args.runs}"
        f"{FP16_CPU_NOTE if name == 'fp16' else ''}); depth vs fp32 on {where}: mean |rel diff| "
        f"{100 * r['mean_rel_diff']:.2f} %, p99 {100 * r['p99_rel_diff']:.2f} %"
    )


def _report_eval(
    args: argparse.Namespace, variants: dict[str, Path], records: list[Record], size: tuple[int, int], spec: InputSpec
) -> None:
    """Score every graph on the --eval-list frames; print abs_rel, rmse, d1 and the abs_rel change vs fp32."""
    results = score_graphs(
        {name: ort_session(path) for name, path in variants.items()}, records, size, spec, args.normalized_input
    )
    base = results["fp32"]
    if base.n_evaluated == 0:
        raise ValueError(f"--eval-list {args.eval_list}: no frame has a ground-truth pixel within the model's caps")
    p = base.protocol
    print(
        f"eval {args.eval_list}: {base.n_evaluated} frames (skipped {len(base.skipped)}), run at {size[0]}x{size[1]}, "
        f"protocol none, caps {p.min_depth:g}-{p.max_depth:g} m"
    )
    ref = base.metrics["abs_rel"]
    for name, result in results.items():
        m = result.metrics
        change = f" ({100 * (m['abs_rel'] - ref) / ref:+.2f} % vs fp32)" if name != "fp32" and ref > 0 else ""
        print(f"eval {name}: abs_rel {m['abs_rel']:.4f}{change}, rmse {m['rmse']:.4f} m, d1 {m['d1']:.4f}")
