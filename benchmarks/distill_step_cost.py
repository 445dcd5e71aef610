"""Step cost of distillation vs a supervised baseline step on the same machine (issue 7 target: <= 1.6x).

python benchmarks/distill_step_cost.py [--size 96 128] [--batch 8] [--steps 20] [--threads 2] [--set k=v ...]

Times full optimizer steps (forward, backward, AdamW) of: the baseline student (SupervisedTask), DisDepth
distillation with teacher targets recomputed every step (teacher forward under no_grad), and with cached targets
(augmentation off: the teacher runs once per training image). Student mobilenetv2_100 + LG-Conv; teacher: the
hybrid EfficientNet-Lite0 teacher of the ablation (dim 192, 4 blocks) with its FAMs and ghost decoder.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from disdepth.config import load_config
from disdepth.models.student import build_student
from disdepth.tasks.acclimation import build_acclimated
from disdepth.tasks.distillation import DistillationTask, DistilledStudent, TeacherTargets
from disdepth.tasks.supervised import SupervisedTask
from disdepth.teachers.build import build_teacher


def time_steps(task, batches, steps: int) -> list[float]:
    params = [p for p in task.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    task.train()
    times = []
    for i in range(steps + 2):  # 2 warm-up steps (and, for the cache, the pass that fills it)
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        loss = task(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[96, 128])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides (k=v)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(
        overrides=[
            "model.encoder=mobilenetv2_100",
            "model.decoder_channels=[96,64,32,24,16]",
            "model.lgconv.enabled=true",
            "model.lgconv.min_channels=32",
            "teacher.kind=hybrid",
            "teacher.name=tf_efficientnet_lite0",
            "teacher.hybrid_dim=192",
            "teacher.hybrid_depth=4",
            "teacher.hybrid_heads=4",
            "teacher.decoder_channels=64",
            *args.overrides,
        ]
    )
    g = torch.Generator().manual_seed(0)
    h, w = args.size
    batches = []
    for k in range(2):  # two distinct batches, cycled: the cache holds both after the warm-up
        depth = 1 + 4 * torch.rand(args.batch, 1, h, w, generator=g)
        batches.append(
            {
                "image": torch.randn(args.batch, 3, h, w, generator=g),
                "depth": depth,
                "valid": depth > 0,
                "id": [f"b{k}_{i}" for i in range(args.batch)],
            }
        )
    torch.manual_seed(0)
    base = time_steps(SupervisedTask(build_student(cfg.model)), batches, args.steps)
    results = {"baseline": base}
    for cache in (False, True):
        torch.manual_seed(0)
        student = build_student(cfg.model)
        acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), student, train=False)
        dc = cfg.distill
        targets = TeacherTargets(acclimated, dc, dc.levels, student.encoder.mean, student.encoder.std, cache=cache)
        task = DistillationTask(DistilledStudent(student, dc.levels), targets, dc)
        results["distill_cached" if cache else "distill_teacher_every_step"] = time_steps(task, batches, args.steps)
    b = statistics.median(base)
    dc = cfg.distill
    print(f"input {h}x{w}, batch {args.batch}, {args.steps} timed steps, {torch.get_num_threads()} threads")
    print(f"distill: attention={dc.attention} levels={dc.levels} standardize={dc.standardize}")
    print("| step | s/step | ratio to baseline |\n|---|---:|---:|")
    for name, times in results.items():
        m = statistics.median(times)
        print(f"| {name} | {m:.3f} | {m / b:.2f}x |")


if __name__ == "__main__":
    main()
