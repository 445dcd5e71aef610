"""``disdepth bench``: parameters, GFLOPs and CPU latency of a model at given resolutions.

See :mod:`disdepth.deploy.bench` for how FLOPs and latency are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from disdepth.commands.common import add_config_arguments, add_trust_argument, at_least, parse_hw, parse_hw_list
from disdepth.config import dump_yaml, load_config
from disdepth.deploy.bench import bench_models, format_table, models_to_bench

MIN_SIDE = 32  # the encoders' output stride: a smaller side leaves an empty stride-32 feature map


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trust_argument(parser)
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", help="benchmark the model stored in this checkpoint (its saved config)")
    parser.add_argument("--teacher", action="store_true", help="benchmark the config's teacher instead of the student")
    parser.add_argument("--encoders", help="comma-separated encoders to benchmark in turn (overrides model.encoder)")
    parser.add_argument("--compare-lgconv", action="store_true", help="benchmark each model without and with LG-Conv")
    parser.add_argument("--resolutions", help="HxW list, default bench.resolutions (480x640,352x1216)")
    parser.add_argument("--runs", type=at_least(1), help="timed runs per resolution (default bench.runs)")
    parser.add_argument("--warmup", type=at_least(0), help="untimed warm-up runs (default bench.warmup)")
    parser.add_argument(
        "--threads", type=at_least(0), help="torch CPU threads (default bench.threads; 0 = torch default)"
    )
    parser.add_argument(
        "--as-trained-only",
        action="store_true",
        help="time students only as trained, not also as `predict` runs them (BatchNorm folded, channels-last)",
    )
    parser.add_argument("--json", help="also write the results as JSON to this path ('-' = stdout)")


def run(args: argparse.Namespace) -> int:

    resolutions = parse_hw_list(args.resolutions, "--resolutions", MIN_SIDE) if args.resolutions else None
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg))
        return 0
    if resolutions is None:
        resolutions = [parse_hw(f"{h}x{w}", "bench.resolutions", MIN_SIDE) for h, w in cfg.bench.resolutions]
    threads = args.threads if args.threads is not None else cfg.bench.threads
    if threads:
        torch.set_num_threads(threads)
    runs = args.runs if args.runs is not None else cfg.bench.runs
    warmup = args.warmup if args.warmup is not None else cfg.bench.warmup
    if runs < 1 or warmup < 0:
        raise ValueError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {warmup}")
    encoders = args.encoders.split(",") if args.encoders else None
    models = list(models_to_bench(cfg, args.checkpoint, args.teacher, encoders, args.compare_lgconv))
    print(f"benchmarking {len(models)} model(s), interleaved ...", file=sys.stderr, flush=True)
    results = bench_models(models, resolutions, warmup, runs, optimize=not args.as_trained_only)
    print(format_table(results))
    print(
        f"\nFLOPs counted by torch.utils.flop_counter (1 MAC = 2 FLOPs); batch 1, {warmup} warm-up + {runs} timed"
        f" rounds, models interleaved (one forward of each per round), load average {os.getloadavg()[0]:.1f};"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads, CPU."
        + (
            " 'As `predict` runs it': BatchNorm folded into its conv, channels-last input (timed in the same rounds)."
            if not args.as_trained_only
            else ""
        )
    )
    if args.json:
        text = json.dumps([asdict(r) for r in results], indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0
