"""Stage functions shared by ``disdepth acclimate``, ``disdepth distill``, ``disdepth pipeline`` and the ablation
runner. Each stage takes ready datasets (so callers may cache them), trains with the one engine loop in its own
run directory, and writes ``result.json`` (metrics under the config's protocol) when it finishes.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from disdepth.config import Config, to_dict
from disdepth.engine import dist

log = logging.getLogger(__name__)

RESULT = "result.json"


def stage_done(run_dir: str | Path) -> dict | None:
    """The stage's ``result.json`` if it finished, else None (a re-run then resumes or restarts it)."""
    path = Path(run_dir) / RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def _write_result(run_dir: Path, result: dict, info: dist.DistInfo) -> dict:
    if info.is_main:
        tmp = run_dir / f".{RESULT}.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=float))
        tmp.replace(run_dir / RESULT)
    return result


def score(model: nn.Module, dataset: Dataset, cfg: Config, info: dist.DistInfo, n_panels: int = 0) -> tuple[dict, list]:
    """(summary metrics, panels) of ``model`` on ``dataset`` under ``cfg.eval`` (protocol, caps, flip TTA)."""
    from disdepth.engine.evaluation import evaluate_model, summary_of
    from disdepth.eval.protocols import get_protocol

    protocol = get_protocol(cfg.eval.protocol, cfg.eval.min_depth, cfg.eval.max_depth)
    result, panels = evaluate_model(model, dataset, protocol, cfg.eval.flip_tta, info, n_panels=n_panels)
    summary = summary_of(result)
    summary.update(protocol=cfg.eval.protocol, flip_tta=cfg.eval.flip_tta)
    return summary, panels


def _evaluator(cfg: Config, val_set: Dataset | None, info: dist.DistInfo):
    if val_set is None:
        return None

    def evaluate(model: nn.Module):
        return score(model, val_set, cfg, info, cfg.train.image_panels)

    return evaluate


def load_student_weights(student: nn.Module, path: str | Path, use_ema: bool = True) -> None:
    """Load a student checkpoint's weights (EMA when present; training-only ``adapters.*`` dropped)."""
    from disdepth.engine.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    weights = {k: v for k, v in weights.items() if not k.startswith("adapters.")}
    try:
        student.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"{path}: does not match the student built from model.* ({exc})") from exc


def supervised_stage(
    cfg: Config,
    run_dir: str | Path,
    which: str,
    train_set: Dataset,
    val_set: Dataset | None,
    info: dist.DistInfo,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Supervised teacher or baseline student (same as ``disdepth train``)."""
    from disdepth.commands.train import build_model
    from disdepth.engine.loop import train
    from disdepth.tasks.supervised import SupervisedTask

    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    model, pretrained = build_model(cfg, which)
    tc = cfg.train
    task = SupervisedTask(model, tc.silog_variance_focus, tc.silog_scale, tc.bins_chamfer_weight)
    start = time.perf_counter()
    res = train(
        cfg,
        run_dir,
        task,
        train_set,
        _evaluator(cfg, val_set, info),
        kind=which,
        pretrained_encoder=pretrained,
        resume=resume,
        overwrite=overwrite,
        info=info,
    )
    out = {
        "stage": which,
        "step": res.step,
        "wall_s": time.perf_counter() - start,
        "metrics": res.last_metrics,
        "checkpoint": str(run_dir / "checkpoints" / "last.pt"),
        "interrupted": res.interrupted,
    }
    return out if res.interrupted else _write_result(run_dir, out, info)


def acclimate_stage(
    cfg: Config,
    run_dir: str | Path,
    train_set: Dataset,
    val_set: Dataset | None,
    info: dist.DistInfo,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Train FAMs (+ optionally the teacher / ghost decoder); write ``acclimated.pt`` and teacher before/after."""
    from disdepth.engine.checkpoint import save_checkpoint
    from disdepth.engine.loop import train
    from disdepth.models.student import build_student
    from disdepth.tasks.acclimation import (
        AcclimationTask,
        FrozenEncoder,
        TeacherDepth,
        acclimated_state,
        build_acclimated,
    )
    from disdepth.teachers.build import build_teacher

    run_dir, ac = Path(run_dir), cfg.acclimate
    if not cfg.teacher.checkpoint and cfg.teacher.kind != "hf":
        log.warning("teacher.checkpoint is empty: acclimating an untrained %s teacher", cfg.teacher.kind)
    torch.manual_seed(cfg.seed)
    teacher = build_teacher(cfg.teacher)
    mcfg = copy.deepcopy(cfg.model)
    if ac.ghost_init == "baseline":
        if not ac.baseline_checkpoint:
            raise ValueError("acclimate.ghost_init=baseline needs acclimate.baseline_checkpoint (a trained student)")
        mcfg.pretrained, mcfg.weights = "none", ""
    student = build_student(mcfg)
    if ac.ghost_init == "baseline":
        load_student_weights(student, ac.baseline_checkpoint)
    elif not ac.train_ghost:
        log.warning("acclimate.ghost_init=fresh with a frozen ghost decoder: it cannot read depth; set train_ghost")
    model = build_acclimated(cfg, teacher, student, train=True)
    mean, std = model.student_mean, model.student_std
    before = score(TeacherDepth(teacher, mean, std).eval(), val_set, cfg, info)[0] if val_set is not None else {}
    tc = cfg.train
    anchor = FrozenEncoder(student.encoder) if ac.anchor_weight > 0 else None  # the baseline's own features
    task = AcclimationTask(
        model, tc.silog_variance_focus, tc.silog_scale, ac.teacher_loss_weight, anchor, ac.anchor_weight
    )
    run_cfg = copy.deepcopy(cfg)
    run_cfg.train.encoder_lr_scale = ac.teacher_lr_scale  # the teacher is registered as ``backbone``
    start = time.perf_counter()
    res = train(
        run_cfg,
        run_dir,
        task,
        train_set,
        _evaluator(cfg, val_set, info),
        kind="acclimation",
        pretrained_encoder=ac.train_teacher,
        resume=resume,
        overwrite=overwrite,
        info=info,
    )
    if res.interrupted:
        return {"stage": "acclimate", "interrupted": True, "step": res.step}
    model.eval()
    after = score(TeacherDepth(teacher, mean, std).eval(), val_set, cfg, info)[0] if val_set is not None else {}
    metrics = {"teacher_before": before, "teacher_after": after, "ghost": res.last_metrics}
    if info.is_main:
        save_checkpoint(acclimated_state(model, cfg, metrics), run_dir / "acclimated.pt")
    out = {
        "stage": "acclimate",
        "step": res.step,
        "wall_s": time.perf_counter() - start,
        "metrics": metrics,
        "checkpoint": str(run_dir / "acclimated.pt"),
    }
    return _write_result(run_dir, out, info)


def cache_enabled(cfg: Config) -> bool:
    """``distill.cache_teacher``: auto = on exactly when train augmentation is off (targets are deterministic)
    and there is no unlabelled pool (the cache would grow with every pool image drawn, on the device)."""
    mode = cfg.distill.cache_teacher
    if mode == "on" and cfg.data.augment.enabled:
        log.warning("distill.cache_teacher=on with augmentation on: cached targets ignore the augmentation")
    if mode == "on" and cfg.distill.unlabelled_list:
        log.warning("distill.cache_teacher=on with distill.unlabelled_list: the cache grows with the unlabelled pool")
    return mode == "on" or (mode == "auto" and not cfg.data.augment.enabled and not cfg.distill.unlabelled_list)


def build_distillation(cfg: Config) -> tuple[nn.Module, bool]:
    """(DistillationTask, pretrained encoder) from a config; loads the acclimated or raw frozen teacher."""
    from disdepth.commands.train import build_model
    from disdepth.tasks.acclimation import load_acclimated
    from disdepth.tasks.distillation import DistillationTask, DistilledStudent, TeacherTargets, build_adapters
    from disdepth.teachers.build import build_teacher

    dc = cfg.distill
    torch.manual_seed(cfg.seed)
    student, pretrained = build_model(cfg, "student")
    teacher: nn.Module | None = None
    if dc.acclimated_checkpoint:
        teacher, _ = load_acclimated(dc.acclimated_checkpoint)
        got = [(f.channels, f.stride) for f in teacher.student_info]
        want = [(f.channels, f.stride) for f in student.feature_info]
        if got != want:
            raise ValueError(f"{dc.acclimated_checkpoint}: acclimated for student levels {got}, student has {want}")
    elif dc.feature_target == "acclimated" and dc.feature_weight > 0:
        raise ValueError("distill.feature_target=acclimated needs distill.acclimated_checkpoint (run acclimate)")
    elif (dc.feature_target == "raw" and dc.feature_weight > 0) or dc.response_weight > 0:
        teacher = build_teacher(cfg.teacher).freeze()
    adapters = None
    if dc.feature_target == "raw":
        raw = teacher.backbone if hasattr(teacher, "backbone") else teacher
        adapters = build_adapters(student.feature_info, raw.feature_info, dc.levels)
    model = DistilledStudent(student, dc.levels, adapters)
    tc = cfg.train
    targets = None
    if teacher is not None:
        targets = TeacherTargets(
            teacher.eval(),
            dc,
            dc.levels,
            tuple(student.encoder.mean),
            tuple(student.encoder.std),
            cache_enabled(cfg),
            tc.silog_variance_focus,
            tc.silog_scale,
        )
    task = DistillationTask(model, targets, dc, tc.silog_variance_focus, tc.silog_scale, tc.bins_chamfer_weight)
    return task, pretrained


def distill_stage(
    cfg: Config,
    run_dir: str | Path,
    train_set: Dataset,
    val_set: Dataset | None,
    info: dist.DistInfo,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Distil; writes ``checkpoints/student.pt`` (kind student: loads with ``load_model_from_checkpoint``)."""
    from disdepth.engine.checkpoint import load_checkpoint, save_checkpoint
    from disdepth.engine.loop import train

    run_dir = Path(run_dir)
    train_set = add_unlabelled(cfg, train_set)
    task, pretrained = build_distillation(cfg)
    kind = "distilled_student" if len(task.model.adapters) else "student"
    start = time.perf_counter()
    res = train(
        cfg,
        run_dir,
        task,
        train_set,
        _evaluator(cfg, val_set, info),
        kind=kind,
        pretrained_encoder=pretrained,
        resume=resume,
        overwrite=overwrite,
        info=info,
    )
    if res.interrupted:
        return {"stage": "distill", "interrupted": True, "step": res.step}
    student_path = run_dir / "checkpoints" / "student.pt"
    if info.is_main:
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        weights = state["ema"] if state.get("ema") is not None else state["model"]
        weights = {k: v for k, v in weights.items() if not k.startswith("adapters.")}
        save_checkpoint(
            {"kind": "student", "model": weights, "ema": None, "config": to_dict(cfg), "step": res.step}, student_path
        )
    out = {
        "stage": "distill",
        "step": res.step,
        "wall_s": time.perf_counter() - start,
        "metrics": res.last_metrics,
        "checkpoint": str(student_path),
    }
    return _write_result(run_dir, out, info)


def add_unlabelled(cfg: Config, train_set: Dataset) -> Dataset:
    """``train_set`` mixed with the ``distill.unlabelled_list`` images (returned unchanged when the key is empty).

    The unlabelled images get the training transform and the student's normalisation; see
    :mod:`disdepth.data.mixing`. Raises ValueError naming the key for a missing or malformed index.
    """
    d = cfg.distill
    if not d.unlabelled_list:
        return train_set
    from disdepth.data.build import build_transform, kb_crop_enabled
    from disdepth.data.csv import CSVDataset
    from disdepth.data.io import DataError
    from disdepth.data.mixing import MixedDataset
    from disdepth.data.transforms import NYUBorderCrop

    mean, std = student_normalization(cfg)
    # The labelled set's fixed pre-crops, so both kinds reach the random crop alike (KITTI raw frames: KB crop;
    # NYU frames: the white-border crop).
    pre = NYUBorderCrop() if cfg.data.dataset == "nyu" and cfg.data.nyu_border_crop else None
    try:
        images = CSVDataset(
            d.unlabelled_list,
            d.unlabelled_root,
            kb_crop=kb_crop_enabled(cfg),
            transform=build_transform(cfg, "train"),
            images_only=True,
            mean=mean,
            std=std,
            pre=pre,
        )
        mixed = MixedDataset(train_set, images, d.unlabelled_fraction)
    except (FileNotFoundError, DataError) as exc:
        raise ValueError(f"distill.unlabelled_list: {exc}") from exc
    log.info(
        "distill: %d unlabelled images from %s, %d of every %d samples per epoch",
        len(images),
        d.unlabelled_list,
        mixed.slots,
        len(mixed),
    )
    return mixed


def datasets_for(cfg: Config, mean: Any, std: Any) -> tuple[Dataset, Dataset | None]:
    """(train set, val set or None) from ``cfg.data`` with the student's normalisation."""
    from disdepth.data.build import build_dataset

    train_set = build_dataset(cfg, "train", mean, std)
    try:
        val_set = build_dataset(cfg, "val", mean, std)
    except ValueError as exc:
        if "needs a list file" not in str(exc):
            raise
        val_set = None
    return train_set, val_set


def student_normalization(cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from disdepth.commands.train import normalization_of
    from disdepth.models.student import build_student

    mcfg = copy.deepcopy(cfg.model)
    mcfg.pretrained, mcfg.weights = "none", ""
    return normalization_of(build_student(mcfg))


def run_cli_stage(args, stage: str) -> int:
    """Shared ``run`` of ``disdepth acclimate`` / ``disdepth distill``."""
    from disdepth.engine.launch import start_command
    from disdepth.engine.loop import TrainingAborted

    started = start_command(args)
    if started is None:
        return 0
    cfg, info = started
    try:
        train_set, val_set = datasets_for(cfg, *student_normalization(cfg))
        run_dir = Path(args.run_dir or Path("runs") / f"{cfg.name}_{stage}")
        fn = acclimate_stage if stage == "acclimate" else distill_stage
        out = fn(cfg, run_dir, train_set, val_set, info, resume=args.resume, overwrite=args.overwrite)
    except TrainingAborted as exc:
        print(f"disdepth {stage}: aborted: {exc}")
        return 1
    finally:
        dist.cleanup()
    if info.is_main:
        print(json.dumps(out, indent=2, default=float))
    return 130 if out.get("interrupted") else 0


def add_stage_arguments(parser) -> None:
    from disdepth.commands.common import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", help="where checkpoints, logs and the resolved config go")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--overwrite", action="store_true", help="start over in a run directory that holds a run")
