"""``disdepth data bench``: data-loading throughput with augmentation (fixtures in a temporary folder)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from disdepth.commands.common import at_least
from disdepth.data.bench import run_bench


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=at_least(0), nargs="+", default=[1, 2], help="DataLoader worker counts")
    parser.add_argument("--images", type=at_least(1), default=48, help="images timed per setting")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--files", type=int, default=8, help="fixture files written per dataset")
    parser.add_argument("--dataset", action="append", choices=["nyu", "kitti"], help="only these sizes")
    parser.add_argument("--json", help="write the table as JSON here")


def run(args: argparse.Namespace) -> int:
    print(f"data loading with augmentation, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    rows = run_bench(args.workers, args.images, args.batch_size, args.files, args.dataset)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"batch_size": args.batch_size, "rows": rows}, indent=2))
    return 0
