"""``disdepth distill``: train a student with its depth loss plus attentive KD (docs/distillation.md).

disdepth distill -c configs/nyu/distill_mbv2_lgconv.yaml --run-dir runs/nyu_distill \
    --set distill.acclimated_checkpoint=runs/nyu_acclimate/acclimated.pt
torchrun --nproc_per_node 8 -m disdepth distill -c ... --run-dir ...
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from disdepth.pipeline.stages import add_stage_arguments

    add_stage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from disdepth.pipeline.stages import run_cli_stage

    return run_cli_stage(args, "distill")
