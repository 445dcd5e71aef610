"""``disdepth acclimate``: teacher acclimation with a ghost decoder (docs/distillation.md).

disdepth acclimate -c configs/nyu/disdepth.yaml --run-dir runs/nyu_acclimate \
    --set teacher.checkpoint=runs/nyu_teacher/checkpoints/last.pt \
    --set acclimate.baseline_checkpoint=runs/nyu_baseline/checkpoints/last.pt
torchrun --nproc_per_node 8 -m disdepth acclimate -c ... --run-dir ...
"""

from __future__ import annotations

import argparse

from disdepth.commands.common import add_run_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_command(args, "acclimate")
