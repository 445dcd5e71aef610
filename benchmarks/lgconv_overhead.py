"""What LG-Conv's global branches add to a student's latency, eager PyTorch and ONNX Runtime, interleaved.

python benchmarks/lgconv_overhead.py --size 480 640 --threads 1 --runs 20 --json benchmarks/results/lgconv_overhead.json

For the default and the lite student: the student alone, with LG-Conv at the default policy (stride 32, convs with
>= 64 input channels, depthwise included) and at the paper configs' strides 16 and 32 as the library computes it, and
with the default policy's branches evaluated in the formula's order (``GlobalBranch.reference_forward``: every
per-pixel map materialised, as before the branch was reordered). An identical copy of the default student is the
control: its ratio shows the noise. Every model runs once per round, ``--runs`` rounds after warm-up, so load that
comes and goes hits all alike. Randomly initialised weights (latency does not depend on them; the branch BatchNorm
gamma is set to 1 so no branch is a no-op), batch 1, fp32; eager, eager with BatchNorm folded and channels-last (what
``disdepth predict`` runs), and ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402
from student_latency import time_eager_and_ort  # noqa: E402

from disdepth.config import load_config  # noqa: E402
from disdepth.deploy.bench import cpu_description  # noqa: E402
from disdepth.deploy.export import DepthOnly  # noqa: E402
from disdepth.models.lgconv import GlobalBranch  # noqa: E402
from disdepth.models.student import build_student  # noqa: E402


class FormulaOrderBranch(GlobalBranch):
    """The same branch computed step by step (the pre-reordering cost)."""

    forward = GlobalBranch.reference_forward


LG_16_32 = ["model.lgconv.enabled=true", "model.lgconv.strides=[16,32]"]  # the default policy until issue 15
# name -> (config overrides, evaluate branches in the formula's order), and the row each is compared with.
MODELS: dict[str, tuple[list[str], bool, str]] = {
    "default student": ([], False, "default student"),
    "control: default student again": ([], False, "default student"),
    "default + LG-Conv": (["model.lgconv.enabled=true"], False, "default student"),
    "default + LG-Conv, strides 16 and 32": ([*LG_16_32], False, "default student"),
    "default + LG-Conv, formula order": (["model.lgconv.enabled=true"], True, "default student"),
    "lite student": (["model.decoder=lite"], False, "lite student"),
    "lite + LG-Conv": (["model.decoder=lite", "model.lgconv.enabled=true"], False, "lite student"),
    "lite + LG-Conv, strides 16 and 32": (["model.decoder=lite", *LG_16_32], False, "lite student"),
    "lite + LG-Conv, formula order": (["model.decoder=lite", "model.lgconv.enabled=true"], True, "lite student"),
}


def build(overrides: list[str], formula_order: bool) -> nn.Module:
    """The student of ``overrides`` wrapped for export (normalisation inside); branches made non-trivial."""
    torch.manual_seed(0)
    model = build_student(load_config(overrides=[*STUDENT_UNTIL_0_5, *overrides]).model).eval()
    for module in model.modules():
        if isinstance(module, GlobalBranch):
            nn.init.ones_(module.norm.weight)
            if formula_order:
                module.__class__ = FormulaOrderBranch
    return DepthOnly.of(model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    h, w = args.size
    wrappers = {name: build(overrides, formula) for name, (overrides, formula, _) in MODELS.items()}
    times, load_before, load_after, _ = time_eager_and_ort(wrappers, (h, w), args.threads, args.warmup, args.runs)
    print(f"{h}x{w}, batch 1, fp32, {args.threads} thread(s), {args.runs} interleaved rounds, median [p10-p90] ms; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} (1 min)")  # fmt: skip
    rows = []
    for backend in ("eager", "eager_opt", "ort"):
        for name, (_, _, reference) in MODELS.items():
            t = sorted(times[(backend, name)])
            med, p10, p90 = statistics.median(t), t[len(t) // 10], t[(len(t) * 9) // 10]
            # Per-round ratio to the reference row, then its median: the load of a round cancels out.
            ratios = sorted(a / b for a, b in zip(times[(backend, name)], times[(backend, reference)], strict=True))
            ratio = statistics.median(ratios)
            params = sum(q.numel() for q in wrappers[name].parameters()) / 1e6
            rows.append({"backend": backend, "model": name, "median_ms": med, "p10_ms": p10, "p90_ms": p90,
                         "reference": reference, "ratio": ratio, "ratio_p10": ratios[len(ratios) // 10],
                         "ratio_p90": ratios[(len(ratios) * 9) // 10], "params_m": params})  # fmt: skip
            print(f"{backend:9s} {name:36s} {med:8.1f} [{p10:.1f}-{p90:.1f}]  x{ratio:.3f} "
                  f"[{rows[-1]['ratio_p10']:.3f}-{rows[-1]['ratio_p90']:.3f}] {reference}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"size": [h, w], "threads": args.threads, "runs": args.runs, "load": [load_before, load_after],
                "cpu": cpu_description()}  # fmt: skip
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
