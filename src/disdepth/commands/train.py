"""``disdepth train``: supervised training of a baseline student or a transformer teacher.

disdepth train -c configs/nyu/student.yaml --run-dir runs/nyu_mbv2
torchrun --nproc_per_node 8 -m disdepth train -c ... --run-dir ...
"""

from __future__ import annotations

import argparse

from disdepth.commands.common import add_run_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--model", choices=["student", "teacher"], default="student", help="what to train")


def run(args: argparse.Namespace) -> int:
    return run_stage_command(args, args.model)
