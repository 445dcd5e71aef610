"""Parameters, GFLOPs and CPU latency of a model at given resolutions (the library under ``disdepth bench``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` and reported as FLOPs (one
multiply-add = 2 FLOPs), not MACs. Latency is wall time of a batch-1 forward pass in
``torch.inference_mode`` after warm-up: median and the 10th-90th percentile spread over N runs,
with the number of threads stated. Compare figures as ratios within one run: machines are shared.
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from disdepth.deploy.weights import load_model
from disdepth.models.student import build_student
from disdepth.teachers.build import build_teacher


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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int, runs: int, seed: int = 0
) -> dict[str, list[float]]:
    """Wall times (ms) of each zero-argument callable, alternating between them on every run.

    Alternating makes the *ratios* (eager vs ORT, one model vs another) robust to load that comes and goes on a
    shared machine; timing one after another lets machine drift decide the comparison. Each round runs them in a new
    random order (seeded): in a fixed order, what ran just before a model (its memory left behind, the caches) biased
    it steadily — an identical copy of a student measured 0.88x and 1.20x its original in one fixed-order run.
    """
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def bench_models(
    models: list[tuple[str, nn.Module]], resolutions: list[tuple[int, int]], warmup: int = 3, runs: int = 10
) -> list[BenchResult]:
    """Benchmark several models (eval mode, CPU) at each (height, width), **interleaved**: every timed round runs
    each model once, so load that comes and goes on a shared machine hits all of them alike and their ratios hold
    (timing one model after another let machine drift decide the comparison)."""
    models = [(label, model.eval().cpu()) for label, model in models]
    results = []
    for height, width in resolutions:
        x = torch.randn(1, 3, height, width)
        with torch.inference_mode():
            times = time_interleaved({label: functools.partial(model, x) for label, model in models}, warmup, runs)
        for label, model in models:
            t = times[label]
            results.append(
                BenchResult(
                    model=label,
                    height=height,
                    width=width,
                    params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                    gflops=count_flops(model, height, width) / 1e9,
                    latency_ms_median=statistics.median(t),
                    latency_ms_p10=_percentile(t, 0.1),
                    latency_ms_p90=_percentile(t, 0.9),
                    runs=runs,
                    threads=torch.get_num_threads(),
                )
            )
    return results


def bench_model(
    model: nn.Module, label: str, resolutions: list[tuple[int, int]], warmup: int = 3, runs: int = 10
) -> list[BenchResult]:
    """Benchmark one model (see :func:`bench_models`)."""
    return bench_models([(label, model)], resolutions, warmup, runs)


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


def models_to_bench(
    cfg: Any,
    checkpoint: str | Path | None = None,
    teacher: bool = False,
    encoders: list[str] | None = None,
    compare_lgconv: bool = False,
) -> list[tuple[str, nn.Module]]:
    """(label, model) pairs to benchmark: a checkpoint's model, the config's teacher, or students.

    Students are built from ``cfg.model`` with each of ``encoders`` (default: the config's) and, with
    ``compare_lgconv``, each without and with LG-Conv.

    Raises:
        ValueError: a checkpoint whose weights do not fit its model (one line naming the first differing key).
    """
    import copy

    if checkpoint:
        model, _ = load_model(checkpoint)
        return [(Path(checkpoint).name, model)]
    if teacher:
        return [(f"teacher:{cfg.teacher.name}", build_teacher(cfg.teacher))]
    variants = [False, True] if compare_lgconv else [cfg.model.lgconv.enabled]
    models = []
    for encoder in encoders or [cfg.model.encoder]:
        for lg in variants:
            model_cfg = copy.deepcopy(cfg.model)
            model_cfg.encoder, model_cfg.lgconv.enabled = encoder, lg
            label = f"{encoder}+{model_cfg.head}" + (" +LG-Conv" if lg else "")
            models.append((label, build_student(model_cfg)))
    return models
