"""``disdepth demo``: the whole DisDepth method on the built-in synthetic world, no data and no downloads.

disdepth demo            # full recipe (runs/demo)
disdepth demo --quick    # steps scaled down (runs/demo_quick)

The recipe is ``disdepth/recipes/demo.yaml``; what runs is :func:`disdepth.pipeline.demo.run_demo` (the pipeline,
then the teacher, baseline and distilled student scored on held-out scenes). The report (``report.md``,
``report.json``, ``panels/``) goes to ``--out``; the stages live in ``--out/pipeline`` and a re-run reuses the
finished ones (``--overwrite`` starts over).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from disdepth.commands.common import add_override_argument, add_threads_argument
from disdepth.config import dump_yaml, load_config
from disdepth.engine.logging import setup_console_logging
from disdepth.pipeline.demo import QUICK_STEP_DIVISOR, quick_overrides, recipe_path, run_demo

QUICK_TEST_IMAGES, FULL_TEST_IMAGES = 50, 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``disdepth demo`` options."""

    parser.add_argument("--quick", action="store_true", help=f"every stage's steps / {QUICK_STEP_DIVISOR} (<= 5 min)")
    parser.add_argument("--out", help="output folder (default runs/demo, or runs/demo_quick with --quick)")
    add_override_argument(
        parser, "override the recipe, e.g. train.steps=50 (stage budgets: pipeline.teacher.steps=100)"
    )
    parser.add_argument(
        "--test-images", type=int, default=0, help=f"held-out test scenes (default {FULL_TEST_IMAGES}; quick 50)"
    )
    parser.add_argument("--panels", type=int, default=3, help="held-out images in the side-by-side picture")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of reusing finished stages")
    add_threads_argument(parser)
    parser.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")


def run(args: argparse.Namespace) -> int:
    """Resolve the recipe, run the demo, print the table."""

    recipe = recipe_path()
    overrides = list(args.overrides)
    if args.quick:  # scales the budget the user's --set values give
        overrides += quick_overrides(load_config(recipe, overrides))
    cfg = load_config(recipe, overrides)
    if cfg.data.dataset != "synthetic":
        raise ValueError(f"disdepth demo runs on the synthetic world; data.dataset={cfg.data.dataset!r}")
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    setup_console_logging(True)
    out = Path(args.out or ("runs/demo_quick" if args.quick else "runs/demo"))
    n_test = args.test_images or (QUICK_TEST_IMAGES if args.quick else FULL_TEST_IMAGES)
    summary = run_demo(cfg, out, n_test, args.panels, args.overwrite, "quick" if args.quick else "full")
    print()
    print(summary["table"])
    print(
        f"\ntime: {summary['wall_s'] / 60:.1f} min wall, {summary['cpu_s'] / 60:.1f} min CPU in this process "
        "(stages reused from an earlier run are not counted)"
    )
    print(f"report: {summary['report']}")
    return 0
