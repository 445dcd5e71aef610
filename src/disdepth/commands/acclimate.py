"""``disdepth acclimate``: teacher acclimation with a ghost decoder (docs/distillation.md).

disdepth acclimate -c configs/nyu/distill_acclimate_hybrid_lite0_mbv2.yaml --run-dir runs/nyu_acclimate \
    --set teacher.checkpoint=runs/nyu_teacher/checkpoints/last.pt \
    --set acclimate.baseline_checkpoint=runs/nyu_baseline/checkpoints/last.pt
torchrun --nproc_per_node 8 -m disdepth acclimate -c ... --run-dir ...
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from disdepth.pipeline.stages import add_stage_arguments

    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from disdepth.pipeline.stages import run_cli_stage

    return run_cli_stage(args, "acclimate")
