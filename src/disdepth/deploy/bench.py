"""Parameters, GFLOPs and CPU latency of a model at given resolutions (the library under ``disdepth bench``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` and reported as FLOPs (one
multiply-add = 2 FLOPs), not MACs. Latency is wall time of a batch-1 forward pass in
``torch.inference_mode`` after warm-up: median and the 10th-90th percentile spread over N runs,
with the number of threads stated. Compare figures as ratios within one run: machines are shared.

A student is timed twice, interleaved with everything else: as trained, and as ``disdepth predict`` and
``DepthPredictor`` run it on the CPU (BatchNorm folded into its conv, channels-last:
``deploy.inference.optimize_for_inference``).
"""

from __future__ import annotations

import functools
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from disdepth.deploy.inference import optimize_for_inference
from disdepth.deploy.weights import load_model
from disdepth.models.student import DepthStudent, build_student
from disdepth.teachers.build import build_teacher

Key = TypeVar("Key")  # what names a timed callable (a label, or a (label, backend) pair)


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
    # as ``predict`` runs it (BatchNorm folded, channels-last); None for a model it does not optimise (teachers)
    optimized_ms_median: float | None = None
    optimized_ms_p10: float | None = None
    optimized_ms_p90: float | None = None


def cpu_description() -> str:
    """The CPU's model name and the widest vector instructions PyTorch uses on it, e.g. "AMD EPYC, AVX2": latency
    ratios differ between machines (ONNX Runtime's blocked layout and INT8 kernels depend on AVX-512), so every
    benchmark JSON records it."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")  # Linux's own description of the CPU (platform.processor() is often empty there)
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


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
    fns: dict[Key, Callable[[], Any]], warmup: int, runs: int, seed: int = 0, pause_s: float = 0.0
) -> dict[Key, list[float]]:
    """Wall times (ms) of each zero-argument callable, alternating between them on every run.

    Alternating makes the *ratios* (eager vs ORT, one model vs another) robust to load that comes and goes on a
    shared machine; timing one after another lets machine drift decide the comparison. Each round runs them in a new
    random order (seeded): in a fixed order, what ran just before a model (its memory left behind, the caches) biased
    it steadily — an identical copy of a student measured 0.88x and 1.20x its original in one fixed-order run.

    ``pause_s`` sleeps that long before each timed call (not timed), so that thread pools which busy-wait after a run
    (ONNX Runtime's default, OpenMP's) have gone idle before the next callable starts, instead of taking its cores.
    """
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[Key, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            if pause_s:
                time.sleep(pause_s)
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def inference_forward(model: nn.Module, image: torch.Tensor) -> Callable[[], None]:
    """A zero-argument callable for :func:`time_interleaved`: one forward of ``model`` on ``image`` (B, 3, H, W) in
    ``torch.inference_mode``, entered per call so that ONNX Runtime callables timed beside it run outside it."""

    def run() -> None:
        with torch.inference_mode():
            model(image)

    return run


def _optimized(model: nn.Module) -> nn.Module | None:
    """The student as ``DepthPredictor`` runs it on the CPU, or None (not a student, or the optimisation did not keep
    its output: then ``predict`` runs it unchanged, which the plain column already times)."""
    if not isinstance(model, DepthStudent):
        return None
    optimized, ok = optimize_for_inference(model, torch.rand(1, 3, 64, 96))
    return optimized if ok else None


def bench_models(
    models: list[tuple[str, nn.Module]],
    resolutions: list[tuple[int, int]],
    warmup: int = 3,
    runs: int = 10,
    optimize: bool = True,
) -> list[BenchResult]:
    """Benchmark several models (eval mode, CPU) at each (height, width), **interleaved**: every timed round runs
    each model once, so load that comes and goes on a shared machine hits all of them alike and their ratios hold
    (timing one model after another let machine drift decide the comparison). With ``optimize``, each student is also
    timed as ``predict`` runs it (BatchNorm folded, channels-last input), in the same rounds."""
    models = [(label, model.eval().cpu()) for label, model in models]
    optimized = {label: _optimized(model) for label, model in models} if optimize else {}
    results = []
    for height, width in resolutions:
        x = torch.randn(1, 3, height, width)
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        fns = {(label, False): functools.partial(model, x) for label, model in models}
        fns.update({(label, True): functools.partial(m, x_nhwc) for label, m in optimized.items() if m is not None})
        with torch.inference_mode():
            times = time_interleaved(fns, warmup, runs)
        for label, model in models:
            t, t_opt = times[(label, False)], times.get((label, True))
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
                    optimized_ms_median=statistics.median(t_opt) if t_opt else None,
                    optimized_ms_p10=_percentile(t_opt, 0.1) if t_opt else None,
                    optimized_ms_p90=_percentile(t_opt, 0.9) if t_opt else None,
                )
            )
    return results


def bench_model(
    model: nn.Module, label: str, resolutions: list[tuple[int, int]], warmup: int = 3, runs: int = 10
) -> list[BenchResult]:
    """Benchmark one model as trained (see :func:`bench_models`)."""
    return bench_models([(label, model)], resolutions, warmup, runs, optimize=False)


def format_table(results: list[BenchResult]) -> str:
    """Markdown table of results (the optimised column only when some model has it)."""
    with_opt = any(r.optimized_ms_median is not None for r in results)
    opt_header = " as `predict` runs it, median (p10-p90) ms |" if with_opt else ""
    lines = [
        "| model | input (HxW) | params (M) | GFLOPs | CPU latency median (ms) | p10-p90 (ms) |" + opt_header
        + " threads |",
        "|---|---|---:|---:|---:|---:|" + ("---:|" if with_opt else "") + "---:|",
    ]  # fmt: skip
    for r in results:
        opt = ""
        if with_opt:
            opt = " — |" if r.optimized_ms_median is None else (
                f" {r.optimized_ms_median:.1f} ({r.optimized_ms_p10:.1f}-{r.optimized_ms_p90:.1f}) |"
            )  # fmt: skip
        lines.append(
            f"| {r.model} | {r.height}x{r.width} | {r.params_m:.2f} | {r.gflops:.2f} | {r.latency_ms_median:.1f} "
            f"| {r.latency_ms_p10:.1f}-{r.latency_ms_p90:.1f} |{opt} {r.threads} |"
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
