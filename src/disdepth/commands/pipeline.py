"""``disdepth pipeline``: teacher (train or load) -> baseline student -> acclimate -> distill -> report.

disdepth pipeline -c configs/nyu/disdepth.yaml --run-dir runs/nyu
torchrun --nproc_per_node 8 -m disdepth pipeline -c configs/nyu/disdepth.yaml --run-dir runs/nyu

Each stage has its own run directory under ``--run-dir`` (teacher/, baseline/, acclimate/, distill/, report/);
a re-run reuses finished stages made from the same settings, refuses stale ones naming the keys, and resumes an
interrupted one from its ``last.pt`` (:mod:`disdepth.pipeline.run`). ``pipeline.<stage>`` holds one stage's
budget (steps, lr, batch size) on top of ``train``. A set ``teacher.checkpoint`` (or a Hugging Face teacher)
skips teacher training: the given teacher is used as it is.
"""

from __future__ import annotations

import argparse

from disdepth.commands.common import add_run_arguments, start_run
from disdepth.engine import dist
from disdepth.pipeline.report import write_report
from disdepth.pipeline.run import StageInterrupted, pipeline_models, run_stages, score_models
from disdepth.pipeline.stages import config_datasets, model_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, resume=False)  # a re-run resumes by itself


def run(args: argparse.Namespace) -> int:

    started = start_run(args, "{name}_pipeline")
    if started is None:
        return 0
    cfg, root, info = started
    try:
        results = run_stages(cfg, root, info=info, overwrite=args.overwrite)
    except StageInterrupted as exc:
        print(f"disdepth pipeline: {exc}")
        return 130
    finally:
        dist.cleanup()
    # The report, on rank 0 alone after the process group is gone: every model on the same split and protocol.
    if info.is_main:
        test_set = config_datasets(cfg, cfg.eval.split, model_spec(cfg, "student"))
        entries = score_models(cfg, pipeline_models(cfg, results), test_set, root / "report", cfg.pipeline.panels)
        print(f"report: {write_report(entries, cfg, root / 'report', results)}")
    return 0
