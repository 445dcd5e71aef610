"""``disdepth export CKPT --out model.onnx``: ONNX export of a depth model, checked and timed with ONNX Runtime.

The graph takes ``image`` (B, 3, H, W) RGB in [0, 1] (or mean/std-normalised with ``--normalized-input``)
and returns ``depth`` (B, 1, H, W) metres. Argument parsing and printing only: the work is
:func:`disdepth.deploy.export_model.export` (``disdepth.export`` from Python). ``--int8`` and
``--fp16`` add ``<out>.int8.onnx`` / ``<out>.fp16.onnx`` (same input and output), each timed and compared with the
fp32 graph; ``--eval-list`` scores all of them on a labelled CSV (:mod:`disdepth.deploy.quantize`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from disdepth.commands.common import add_threads_argument, add_trust_argument, at_least, hw_type
from disdepth.deploy.export_model import ExportResult, VariantReport, export

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


def run(args: argparse.Namespace) -> int:
    result = export(
        args.checkpoint,
        args.out,
        size=tuple(args.size) if args.size else None,
        dynamic=args.dynamic,
        opset=args.opset,
        exporter=args.exporter,
        normalized_input=args.normalized_input,
        use_ema=not args.no_ema,
        check=not args.no_check,
        image=args.image,
        warmup=args.warmup,
        runs=args.runs,
        int8=args.int8,
        calibration=args.calibration,
        int8_full_range=args.int8_full_range,
        calibration_images=args.calibration_images,
        fp16=args.fp16,
        eval_list=args.eval_list,
    )
    meta = result.metadata
    print(
        f"exported {args.out} ({meta['exporter']}, opset {result.opset}, input {meta['input_size']}, "
        f"{Path(args.out).stat().st_size / 1e6:.1f} MB)"
    )
    if result.check is not None:
        _print_check(args, result)
    for report in result.variant_reports:
        _print_variant(args, report)
    if result.evaluation is not None:
        _print_eval(args, result)
    return 0


def _print_check(args: argparse.Namespace, result: ExportResult) -> None:
    """ORT vs PyTorch parity (metres, or relative units) and eager vs ORT latency of the fp32 graph."""
    report, (h, w) = result.check, result.size
    unit = " m" if result.metric else " (relative units)"
    for name, diff in report["max_abs_diff_m"].items():
        print(f"parity ORT vs PyTorch, {name} input: max |diff| = {diff:.2e}{unit}")
    optimized = report["eager_opt_ms"]
    plural = "s" if report["threads"] != 1 else ""
    how = "upsampling fused, BatchNorm folded"
    as_predict = "" if optimized is None else f" ({optimized:.1f} ms as `predict` runs it: {how})"
    print(
        f"latency {h}x{w} batch 1, median of {args.runs} after {args.warmup} warm-up, "
        f"{report['threads']} thread{plural}: eager {report['eager_ms']:.1f} ms{as_predict}, ONNX Runtime CPU "
        f"{report['ort_ms']:.1f} ms (ORT {report['speedup']:.2f}x eager"
        + ("" if optimized is None else f", {optimized / report['ort_ms']:.2f}x as `predict` runs it")
        + ")"
    )


def _print_variant(args: argparse.Namespace, v: VariantReport) -> None:
    """One line: the variant's file, its note, fp32 vs variant ONNX Runtime latency and depth change."""
    r = v.comparison
    print(
        f"{v.name}: {v.path} ({v.path.stat().st_size / 1e6:.1f} MB), {v.note}; ONNX Runtime CPU fp32 "
        f"{r['fp32_ms']:.1f} -> {v.name} {r['other_ms']:.1f} ms (speed {r['speed_ratio']:.2f}x fp32, interleaved "
        f"median of {args.runs}{FP16_CPU_NOTE if v.name == 'fp16' else ''}); depth vs fp32 on {v.compared_on}: "
        f"mean |rel diff| {100 * r['mean_rel_diff']:.2f} %, p99 {100 * r['p99_rel_diff']:.2f} %"
    )


def _print_eval(args: argparse.Namespace, result: ExportResult) -> None:
    """Every graph on the --eval-list frames: abs_rel, rmse, d1 and the abs_rel change vs fp32."""
    base = result.evaluation["fp32"]
    if base.n_evaluated == 0:
        raise ValueError(f"--eval-list {args.eval_list}: no frame has a ground-truth pixel within the model's caps")
    p, (h, w) = base.protocol, result.size
    print(
        f"eval {args.eval_list}: {base.n_evaluated} frames (skipped {len(base.skipped)}), run at {h}x{w}, "
        f"protocol none, caps {p.min_depth:g}-{p.max_depth:g} m"
    )
    ref = base.metrics["abs_rel"]
    for name, scored in result.evaluation.items():
        m = scored.metrics
        change = f" ({100 * (m['abs_rel'] - ref) / ref:+.2f} % vs fp32)" if name != "fp32" and ref > 0 else ""
        print(f"eval {name}: abs_rel {m['abs_rel']:.4f}{change}, rmse {m['rmse']:.4f} m, d1 {m['d1']:.4f}")
