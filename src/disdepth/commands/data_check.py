"""``disdepth data check``: counts, bad files and depth statistics of a dataset config, every problem at once."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from disdepth.commands.common import add_config_arguments, at_least
from disdepth.config import dump_yaml, load_config
from disdepth.data.check import check_dataset, format_report


def add_arguments(parser: argparse.ArgumentParser) -> None:

    add_config_arguments(parser)
    parser.add_argument("--split", action="append", choices=["train", "val", "test"], help="only these splits")
    parser.add_argument("--limit", type=at_least(0), default=0, help="check only the first N samples of each split")
    parser.add_argument("--json", help="write statistics and all problems as JSON here")


def run(args: argparse.Namespace) -> int:

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    stats, problems = check_dataset(cfg, args.split, args.limit, progress=True)
    print(f"dataset {cfg.data.dataset}")
    print(format_report(stats, problems))
    if args.json:
        out = {
            "dataset": cfg.data.dataset,
            "splits": {k: v.summary() for k, v in stats.items()},
            "n_problems": len(problems),
            "problems": [p.__dict__ for p in problems],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 1 if problems else 0
