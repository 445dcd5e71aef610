"""``disdepth distill``: train a student with its depth loss plus attentive KD (docs/distillation.md).

disdepth distill -c configs/nyu/disdepth.yaml --run-dir runs/nyu_distill \
    --set distill.acclimated_checkpoint=runs/nyu_acclimate/acclimated.pt
torchrun --nproc_per_node 8 -m disdepth distill -c ... --run-dir ...
"""

from __future__ import annotations

import argparse

from disdepth.commands.common import add_run_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_stage_command(args, "distill")
