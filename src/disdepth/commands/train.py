"""``disdepth train``: supervised training of a baseline student or a transformer teacher.

disdepth train --config configs/nyu/student_mobilenetv2.yaml --run-dir runs/nyu_mbv2
torchrun --nproc_per_node 8 -m disdepth train --config ... --run-dir ...
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from torch import nn

from disdepth.config import Config
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from disdepth.commands.common import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", help="where checkpoints, logs and the resolved config go (default runs/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from checkpoints/last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start over in a run directory that holds a run")
    parser.add_argument("--model", choices=["student", "teacher"], default="student", help="what to train")


def normalization_of(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean/std a model expects (its encoder's, or the model's own), ImageNet by default."""
    for holder in (model, getattr(model, "encoder", None)):
        if holder is not None and hasattr(holder, "mean") and hasattr(holder, "std"):
            return tuple(holder.mean), tuple(holder.std)
    return IMAGENET_MEAN, IMAGENET_STD


def build_model(cfg: Config, which: str) -> tuple[nn.Module, bool]:
    """(model, has a pretrained encoder) for ``which`` = student | teacher."""
    if which == "teacher":
        from disdepth.teachers.build import build_teacher

        return build_teacher(cfg.teacher), cfg.teacher.pretrained != "none"
    from disdepth.models.student import build_student

    return build_student(cfg.model), cfg.model.pretrained != "none"


def make_evaluator(cfg: Config, mean, std, info):
    """evaluate(model) on the val split under ``cfg.eval``, or None when the dataset has no val list."""
    from disdepth.data.build import build_dataset
    from disdepth.engine.evaluation import evaluate_model, summary_of
    from disdepth.eval.protocols import get_protocol

    try:
        val_set = build_dataset(cfg, "val", mean, std)
    except ValueError as exc:
        if "needs a list file" not in str(exc):
            raise
        log.warning("no validation during training: %s", exc)
        return None
    protocol = get_protocol(cfg.eval.protocol, cfg.eval.min_depth, cfg.eval.max_depth)

    def evaluate(model: nn.Module):
        result, panels = evaluate_model(
            model, val_set, protocol, cfg.eval.flip_tta, info, n_panels=cfg.train.image_panels
        )
        return summary_of(result), panels

    return evaluate


def run(args: argparse.Namespace) -> int:
    from disdepth.data.build import build_dataset
    from disdepth.engine import dist
    from disdepth.engine.launch import start_command
    from disdepth.engine.loop import TrainingAborted, train
    from disdepth.tasks.supervised import SupervisedTask

    started = start_command(args)
    if started is None:
        return 0
    cfg, info = started
    try:
        import torch

        torch.manual_seed(cfg.seed)
        model, pretrained = build_model(cfg, args.model)
        mean, std = normalization_of(model)
        train_set = build_dataset(cfg, "train", mean, std)
        tc = cfg.train
        task = SupervisedTask(model, tc.silog_variance_focus, tc.silog_scale, tc.bins_chamfer_weight)
        run_dir = Path(args.run_dir or Path("runs") / cfg.name)
        result = train(
            cfg,
            run_dir,
            task,
            train_set,
            make_evaluator(cfg, mean, std, info),
            kind=args.model,
            pretrained_encoder=pretrained,
            resume=args.resume,
            overwrite=args.overwrite,
            info=info,
        )
    except TrainingAborted as exc:
        print(f"disdepth train: aborted: {exc}")
        return 1
    finally:
        dist.cleanup()
    if info.is_main:
        best = result.best
        print(
            f"run: {run_dir}  step {result.step}/{cfg.train.steps}  best {best['metric']}={best['value']}"
            f" (step {best['step']})"
        )
    return 130 if result.interrupted else 0  # 130: stopped by a signal after writing a checkpoint
