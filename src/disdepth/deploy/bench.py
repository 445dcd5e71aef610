"""``disdepth bench``: parameters, GFLOPs and CPU latency of a model at given resolutions.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` and reported as FLOPs (one
multiply-add = 2 FLOPs), not MACs. Latency is wall time of a batch-1 forward pass in
``torch.inference_mode`` after warm-up: median and the 10th-90th percentile spread over N runs,
with the number of threads stated. Compare figures as ratios within one run: machines are shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class BenchResult:
    """One model at one resolution. Latency in milliseconds."""

    model: str
    height: int
    width: int
    params_m: float
    gflops: float
    latency_ms_median: float
    latency_ms_p10: float
    latency_ms_p90: float
    runs: int
    threads: int


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass on a (1, 3, height, width) input."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, height, width))
    return int(counter.get_total_flops())


def time_forward(model: nn.Module, height: int, width: int, warmup: int, runs: int) -> list[float]:
    """Wall times (ms) of ``runs`` batch-1 forward passes after ``warmup`` untimed ones."""
    x = torch.randn(1, 3, height, width)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000.0)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bench_model(
    model: nn.Module, label: str, resolutions: list[tuple[int, int]], warmup: int = 3, runs: int = 10
) -> list[BenchResult]:
    """Benchmark ``model`` (eval mode, CPU) at each (height, width)."""
    model = model.eval().cpu()
    params = sum(p.numel() for p in model.parameters())
    results = []
    for height, width in resolutions:
        flops = count_flops(model, height, width)
        times = time_forward(model, height, width, warmup, runs)
        results.append(
            BenchResult(
                model=label,
                height=height,
                width=width,
                params_m=params / 1e6,
                gflops=flops / 1e9,
                latency_ms_median=statistics.median(times),
                latency_ms_p10=_percentile(times, 0.1),
                latency_ms_p90=_percentile(times, 0.9),
                runs=runs,
                threads=torch.get_num_threads(),
            )
        )
    return results


def format_table(results: list[BenchResult]) -> str:
    """Markdown table of results."""
    lines = [
        "| model | input (HxW) | params (M) | GFLOPs | CPU latency median (ms) | p10-p90 (ms) | threads |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.model} | {r.height}x{r.width} | {r.params_m:.2f} | {r.gflops:.2f} | {r.latency_ms_median:.1f} "
            f"| {r.latency_ms_p10:.1f}-{r.latency_ms_p90:.1f} | {r.threads} |"
        )
    return "\n".join(lines)


def parse_resolutions(text: str) -> list[tuple[int, int]]:
    """``"480x640,352x1216"`` -> [(480, 640), (352, 1216)]."""
    out = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"--resolutions: expected HxW[,HxW...], got {item!r}") from None
        out.append((h, w))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from disdepth.cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--checkpoint", help="benchmark the model stored in this checkpoint (its saved config)")
    parser.add_argument("--teacher", action="store_true", help="benchmark the config's teacher instead of the student")
    parser.add_argument("--encoders", help="comma-separated encoders to benchmark in turn (overrides model.encoder)")
    parser.add_argument("--compare-lgconv", action="store_true", help="benchmark each model without and with LG-Conv")
    parser.add_argument("--resolutions", help="HxW list, default bench.resolutions (480x640,352x1216)")
    parser.add_argument("--runs", type=int, help="timed runs per resolution (default bench.runs)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up runs (default bench.warmup)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default bench.threads; 0 = torch default)")
    parser.add_argument("--json", help="also write the results as JSON to this path ('-' = stdout)")


def _models_to_bench(args: argparse.Namespace, cfg) -> list[tuple[str, nn.Module]]:
    """(label, model) pairs for the requested configs, checkpoint or teacher."""
    import copy

    from disdepth.models.student import build_student

    if args.checkpoint:
        from disdepth.engine.checkpoint import load_model_from_checkpoint

        model, _ = load_model_from_checkpoint(args.checkpoint)
        return [(Path(args.checkpoint).name, model)]
    if args.teacher:
        from disdepth.teachers.build import build_teacher

        return [(f"teacher:{cfg.teacher.name}", build_teacher(cfg.teacher))]
    encoders = args.encoders.split(",") if args.encoders else [cfg.model.encoder]
    variants = [False, True] if args.compare_lgconv else [cfg.model.lgconv.enabled]
    models = []
    for encoder in encoders:
        for lg in variants:
            model_cfg = copy.deepcopy(cfg.model)
            model_cfg.encoder, model_cfg.lgconv.enabled = encoder, lg
            label = f"{encoder}+{model_cfg.head}" + (" +LG-Conv" if lg else "")
            models.append((label, build_student(model_cfg)))
    return models


def run(args: argparse.Namespace) -> int:
    from disdepth.config import dump_yaml, load_config

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg))
        return 0
    if args.threads if args.threads is not None else cfg.bench.threads:
        torch.set_num_threads(args.threads if args.threads is not None else cfg.bench.threads)
    resolutions = parse_resolutions(args.resolutions) if args.resolutions else [tuple(r) for r in cfg.bench.resolutions]
    runs = args.runs if args.runs is not None else cfg.bench.runs
    warmup = args.warmup if args.warmup is not None else cfg.bench.warmup
    results: list[BenchResult] = []
    for label, model in _models_to_bench(args, cfg):
        print(f"benchmarking {label} ...", file=sys.stderr, flush=True)
        results.extend(bench_model(model, label, resolutions, warmup, runs))
    print(format_table(results))
    print(
        f"\nFLOPs counted by torch.utils.flop_counter (1 MAC = 2 FLOPs); batch 1, {warmup} warm-up + {runs} timed runs;"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads, CPU."
    )
    if args.json:
        text = json.dumps([asdict(r) for r in results], indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0
