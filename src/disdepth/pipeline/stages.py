"""The four stages of the DisDepth pipeline, each trained by the one engine loop in its own run directory.

``supervised_stage`` (teacher or baseline student), ``acclimate_stage`` and ``distill_stage`` take ready datasets
(so callers may cache them in memory), and write ``result.json`` (metrics under the config's protocol) when they
finish. The ``train``/``acclimate``/``distill`` commands, :func:`disdepth.pipeline.run.run_stages` and the
benchmarks call them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from disdepth.checkpoint import CheckpointKind, read_checkpoint, save_checkpoint
from disdepth.config import Config
from disdepth.data.build import build_dataset, build_transform, kb_crop_enabled
from disdepth.data.csv import CSVDataset
from disdepth.data.io import DataError, FileDepthDataset
from disdepth.data.mixing import MixedDataset
from disdepth.data.transforms import NYUBorderCrop
from disdepth.deploy.weights import load_weights
from disdepth.engine import dist
from disdepth.engine.evaluation import evaluate_model, summary_of
from disdepth.engine.loop import train
from disdepth.eval.protocols import get_protocol
from disdepth.models.spec import InputSpec
from disdepth.models.student import DepthStudent, build_student, student_input_spec
from disdepth.tasks.acclimation import (
    AcclimatedTeacher,
    AcclimationTask,
    FrozenEncoder,
    TeacherDepth,
    acclimated_state,
    build_acclimated,
    gap_report,
    load_acclimated,
    low_retained_warning,
)
from disdepth.tasks.distillation import DistillationTask, DistilledStudent, TeacherTargets, build_adapters
from disdepth.tasks.supervised import SupervisedTask
from disdepth.tasks.target_store import STORE_FORMAT, TargetStore, weights_sha256
from disdepth.tasks.teacher_cache import GIB, frame_source
from disdepth.teachers.base import Teacher
from disdepth.teachers.build import build_teacher, teacher_input_spec

log = logging.getLogger(__name__)

RESULT = "result.json"

# datasets(cfg, split, spec) -> the split's dataset normalised for ``spec``, or None when the config has no such
# split (no validation list). The default reads ``cfg.data``; benchmarks pass in-memory sets.
DatasetFn = Callable[[Config, str, InputSpec], Dataset | None]


def config_datasets(cfg: Config, split: str, spec: InputSpec) -> Dataset | None:
    """The :data:`DatasetFn` of ``cfg.data``: a missing validation list gives None (no validation), not an error."""
    try:
        return build_dataset(cfg, split, spec.mean, spec.std)
    except ValueError as exc:
        if split == "val" and "needs a list file" in str(exc):
            log.warning("no validation during training: %s", exc)
            return None
        raise


def stage_done(run_dir: str | Path) -> dict | None:
    """The stage's ``result.json`` if it finished, else None (a re-run then resumes or restarts it)."""
    path = Path(run_dir) / RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def write_result(run_dir: Path, result: dict, info: dist.DistInfo) -> dict:
    """Write ``result.json`` atomically on the main rank; returns ``result``."""
    if info.is_main:
        tmp = run_dir / f".{RESULT}.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=float))
        tmp.replace(run_dir / RESULT)
    return result


def score(model: nn.Module, dataset: Dataset, cfg: Config, info: dist.DistInfo, n_panels: int = 0) -> tuple[dict, list]:
    """(summary metrics, panels) of ``model`` on ``dataset`` under ``cfg.eval`` (protocol, caps, flip TTA)."""
    protocol = get_protocol(cfg.eval.protocol, cfg.eval.min_depth, cfg.eval.max_depth)
    result, panels = evaluate_model(model, dataset, protocol, cfg.eval.flip_tta, info, n_panels=n_panels)
    summary = summary_of(result)
    summary.update(protocol=cfg.eval.protocol, flip_tta=cfg.eval.flip_tta)
    # Per-image errors, for paired statistics over images and seeds (eval/stats.py); small: a few numbers each.
    summary["per_image"] = {
        sample_id: {k: m[k] for k in ("abs_rel", "rmse", "d1")} for sample_id, m in result.per_image.items()
    }
    return summary, panels


def _evaluator(cfg: Config, val_set: Dataset | None, info: dist.DistInfo):
    if val_set is None:
        return None

    def evaluate(model: nn.Module):
        return score(model, val_set, cfg, info, cfg.train.image_panels)

    return evaluate


def _stage_result(stage: str, res: Any, start: float, checkpoint: Path) -> dict:
    return {
        "stage": stage,
        "step": res.step,
        "wall_s": time.perf_counter() - start,
        "metrics": res.last_metrics,
        "checkpoint": str(checkpoint),
        "interrupted": res.interrupted,
    }


# --------------------------------------------------------------------------------------------
# Models.
# --------------------------------------------------------------------------------------------


def model_spec(cfg: Config, which: str) -> InputSpec:
    """The input spec of the ``which`` = student | teacher model of ``cfg``."""
    return student_input_spec(cfg.model) if which == "student" else teacher_input_spec(cfg.teacher)


def supervised_task(cfg: Config, which: str) -> SupervisedTask:
    """A student or teacher under depth supervision, its ImageNet part at ``lr * train.encoder_lr_scale``.

    With ``data.require_depth=false`` a student's images without ground truth learn from the frozen teacher of
    ``cfg.teacher`` (label-free training); a teacher always needs ground truth.
    """
    tc = cfg.train
    teacher = None
    if which == "teacher":
        if not cfg.data.require_depth:
            raise ValueError(
                "data.require_depth=false: a teacher learns from ground truth only; give a trained or pretrained "
                "teacher (teacher.checkpoint, or teacher.kind=hf) and train students"
            )
        model: nn.Module = build_teacher(cfg.teacher)
        kind, pretrained = CheckpointKind.TEACHER, model.backbone if cfg.teacher.pretrained != "none" else None
    else:
        model = build_student(cfg.model)
        kind, pretrained = CheckpointKind.STUDENT, model.encoder if cfg.model.pretrained != "none" else None
        if not cfg.data.require_depth:
            teacher = pseudo_label_teacher(cfg)
    scale = tc.encoder_lr_scale if pretrained is not None else 1.0
    return SupervisedTask(
        model, kind, pretrained, scale, tc.silog_variance_focus, tc.silog_scale, tc.bins_chamfer_weight,
        teacher, model.input_spec, tc.depth_loss,
    )  # fmt: skip


def pseudo_label_teacher(cfg: Config) -> Teacher:
    """The frozen teacher whose depth is the target of images without ground truth (label-free training)."""
    if not cfg.teacher.checkpoint and cfg.teacher.kind != "hf":
        raise ValueError(
            "data.require_depth=false: images without ground truth learn from a teacher; set teacher.checkpoint "
            "(a trained teacher) or teacher.kind=hf with teacher.name (a pretrained one)"
        )
    return build_teacher(cfg.teacher).freeze()


def load_student_weights(student: nn.Module, path: str | Path, use_ema: bool = True) -> None:
    """Load a student checkpoint's weights (EMA when present) into ``student``; a mismatch names key and shapes."""
    state = read_checkpoint(path)
    if state["kind"] != CheckpointKind.STUDENT:
        raise ValueError(f"{path}: a {state['kind'].value} checkpoint, not a student")
    load_weights(student, state, path, use_ema)


# --------------------------------------------------------------------------------------------
# Stages.
# --------------------------------------------------------------------------------------------


def supervised_stage(
    cfg: Config,
    run_dir: str | Path,
    train_set: Dataset,
    val_set: Dataset | None,
    info: dist.DistInfo,
    resume: bool = False,
    overwrite: bool = False,
    which: str = "student",
) -> dict:
    """Supervised ``which`` = student (the baseline) or teacher (the ``train`` command)."""
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    task = supervised_task(cfg, which)
    start = time.perf_counter()
    res = train(cfg, run_dir, task, train_set, _evaluator(cfg, val_set, info), resume=resume, overwrite=overwrite,
                info=info)  # fmt: skip
    out = _stage_result(which, res, start, run_dir / "checkpoints" / "last.pt")
    return out if res.interrupted else write_result(run_dir, out, info)


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
    run_dir, ac = Path(run_dir), cfg.acclimate
    if not cfg.teacher.checkpoint and cfg.teacher.kind != "hf":
        log.warning("teacher.checkpoint is empty: acclimating an untrained %s teacher", cfg.teacher.kind)
    torch.manual_seed(cfg.seed)
    teacher = build_teacher(cfg.teacher)
    if ac.ghost_init == "baseline":
        if not ac.baseline_checkpoint:
            raise ValueError("acclimate.ghost_init=baseline needs acclimate.baseline_checkpoint (a trained student)")
        student = build_student(cfg.model, load_weights=False)
        load_student_weights(student, ac.baseline_checkpoint)
    else:
        student = build_student(cfg.model)
        if not ac.train_ghost:
            log.warning("acclimate.ghost_init=fresh with a frozen ghost decoder: it cannot read depth; set train_ghost")
    model = build_acclimated(cfg, teacher, student, train=True)
    before = score(TeacherDepth(teacher, model.input_spec).eval(), val_set, cfg, info)[0] if val_set else {}
    # B of the gap diagnostics: the trained student whose decoder the ghost copies (a fresh one has no score).
    baseline = score(student.eval(), val_set, cfg, info)[0] if val_set and ac.ghost_init == "baseline" else {}
    tc = cfg.train
    anchor = FrozenEncoder(student.encoder) if ac.anchor_weight > 0 else None  # the baseline's own features
    task = AcclimationTask(
        model, tc.silog_variance_focus, tc.silog_scale, ac.teacher_loss_weight, anchor, ac.anchor_weight,
        ac.teacher_lr_scale,
    )  # fmt: skip
    start = time.perf_counter()
    res = train(cfg, run_dir, task, train_set, _evaluator(cfg, val_set, info), resume=resume, overwrite=overwrite,
                info=info)  # fmt: skip
    if res.interrupted:
        return {"stage": "acclimate", "interrupted": True, "step": res.step}
    model.eval()
    after = score(TeacherDepth(teacher, model.input_spec).eval(), val_set, cfg, info)[0] if val_set else {}
    metrics = {"teacher_before": before, "teacher_after": after, "ghost": res.last_metrics, "baseline": baseline}
    if info.is_main:
        save_checkpoint(acclimated_state(model, cfg, metrics), run_dir / "acclimated.pt")
    out = _stage_result("acclimate", res, start, run_dir / "acclimated.pt")
    out["metrics"] = metrics
    out["gap"] = gap_report(metrics)
    log.info("acclimate: %s", format_gap(out["gap"]))
    if warning := low_retained_warning(out["gap"]):
        log.warning("acclimate: %s", warning)
    return write_result(run_dir, out, info)


def format_gap(gap: dict) -> str:
    """One readable line of the gap diagnostics (abs_rel to 4 decimals, shares to 2; "-" where unknown)."""

    def show(key: str, digits: int) -> str:
        value = gap.get(key)
        return "-" if value is None else f"{value:.{digits}f}"

    parts = [f"{k} {show(k, 4)}" for k in ("baseline", "teacher", "ghost", "student") if k in gap]
    shares = [f"{k} {show(k, 2)}" for k in ("retained", "closed") if k in gap]
    return f"{gap.get('metric', 'abs_rel')}: " + ", ".join(parts) + " | " + ", ".join(shares)


def distill_gap(cfg: Config, student: dict | None) -> dict | None:
    """The gap diagnostics of a distilled student (``closed``; ``retained`` as the acclimation measured it).

    B, G and T come from the acclimation report inside ``distill.acclimated_checkpoint``, so they are only known
    with one, and only used when they were scored on the very frames the student was (same per-image ids).
    """
    path = cfg.distill.acclimated_checkpoint
    if not path or not student:
        return None
    metrics = read_checkpoint(path)["extra"].get("metrics") or {}
    ids = set(student.get("per_image", {}))
    scored = {k: v for k, v in metrics.items() if v}
    same = {k: v for k, v in scored.items() if set(v.get("per_image", {})) == ids}
    if len(same) < len(scored):
        log.warning("distill: the acclimation was scored on other frames; its gap diagnostics are left out")
    return gap_report(same, student)


def cache_enabled(cfg: Config) -> bool:
    """``distill.cache_teacher``: auto = on unless targets cannot be kept per sample id.

    With augmentation on, the teacher runs once on each un-augmented frame and its maps are warped by each
    sample's recorded crop, flip and rotation (``tasks/teacher_cache.py``; colour jitter is not applied to cached
    targets). Off under auto with an unlabelled pool (the cache would grow with every pool image drawn) and with
    KITTI ``data.use_right`` (one id names either camera's image).
    """
    mode = cfg.distill.cache_teacher
    use_right = cfg.data.use_right and cfg.data.dataset == "kitti"
    if mode == "on" and use_right:
        log.warning("distill.cache_teacher=on with data.use_right: an id's cached targets are of one camera only")
    if mode == "on" and cfg.distill.unlabelled_list:
        log.warning("distill.cache_teacher=on with distill.unlabelled_list: the cache grows with the unlabelled pool")
    return mode == "on" or (mode == "auto" and not cfg.distill.unlabelled_list and not use_right)


def _distillation_teacher(cfg: Config, student: DepthStudent) -> nn.Module | None:
    """The frozen teacher side: the acclimated teacher, a raw teacher (classic or response KD), or None."""
    dc = cfg.distill
    if dc.acclimated_checkpoint:
        teacher, _ = load_acclimated(dc.acclimated_checkpoint)
        got = [(f.channels, f.stride) for f in teacher.student_info]
        want = [(f.channels, f.stride) for f in student.feature_info]
        if got != want:
            raise ValueError(f"{dc.acclimated_checkpoint}: acclimated for student levels {got}, student has {want}")
        return teacher
    if dc.feature_target == "acclimated" and dc.feature_weight > 0:
        raise ValueError("distill.feature_target=acclimated needs distill.acclimated_checkpoint (run acclimate)")
    if (dc.feature_target == "raw" and dc.feature_weight > 0) or dc.response_weight > 0:
        return build_teacher(cfg.teacher).freeze()
    if not cfg.data.require_depth or dc.unlabelled_list:  # images without ground truth learn the teacher's depth
        return pseudo_label_teacher(cfg)
    return None


def build_distillation(cfg: Config, train_set: Dataset | None = None) -> DistillationTask:
    """The distillation task of a config: student (+ classic-KD adapters) and the frozen teacher side.

    ``train_set`` lets the teacher-target cache load un-augmented frames by id (augmentation on); without it, or for
    a dataset whose frames cannot be found by id, augmented batches have their targets computed every step.
    """
    dc, tc = cfg.distill, cfg.train
    torch.manual_seed(cfg.seed)
    student = build_student(cfg.model, load_weights=not dc.init_checkpoint)
    if dc.init_checkpoint:  # start from a trained student (its ImageNet weights are already in it)
        load_student_weights(student, dc.init_checkpoint)
    teacher = _distillation_teacher(cfg, student)
    adapters = None
    if dc.feature_target == "raw" and teacher is not None:
        raw: Teacher = teacher.teacher if isinstance(teacher, AcclimatedTeacher) else teacher
        adapters = build_adapters(student.feature_info, raw.feature_info, dc.levels)
    model = DistilledStudent(student, dc.levels, adapters)
    targets = None
    if teacher is not None:
        targets = TeacherTargets(
            teacher.eval(), dc.levels, student.input_spec, dc.feature_target, dc.attention, dc.tau,
            dc.attention_floor, cache_enabled(cfg), tc.silog_variance_focus, tc.silog_scale,
            frame_source(train_set), int(dc.cache_max_gb * GIB),
        )  # fmt: skip
        if dc.target_store:
            targets.store = TargetStore(dc.target_store, store_identity(cfg, targets))
            log.info("distill: teacher targets from the store %s (%d views)", dc.target_store, len(targets.store))
    scale = tc.encoder_lr_scale if cfg.model.pretrained != "none" else 1.0
    return DistillationTask(
        model, targets, scale, dc.feature_target, dc.feature_weight, dc.normalize, dc.standardize,
        dc.response_weight, tc.silog_variance_focus, tc.silog_scale, tc.bins_chamfer_weight, dc.ghost_weight,
        dc.ghost_target, dc.distance, dc.feature_schedule, tc.depth_loss,
    )  # fmt: skip


def store_identity(cfg: Config, targets: TeacherTargets) -> dict:
    """What a teacher-target store's contents depend on: the teacher side's weights (SHA-256 of the teacher, and of
    the FAMs and ghost decoder of an acclimated one), what is kept per level, the student normalisation the frames
    arrive in, and which frames (dataset, lists, fixed crops). Attention temperature and floor are applied after
    reading, so they are not part of it."""
    d = cfg.data
    frames: dict[str, Any] = {"dataset": d.dataset, "root": d.root, "train_list": d.train_list}
    frames["kb_crop"] = kb_crop_enabled(cfg)
    frames["nyu_border_crop"] = d.dataset == "nyu" and d.nyu_border_crop
    if d.dataset == "synthetic":
        s = d.synthetic
        frames["synthetic"] = [s.preset, s.n_train, s.height, s.width, s.seed, s.sparse, s.sparse_density,
                               s.depth_noise, s.holes]  # fmt: skip
    if cfg.distill.unlabelled_list:
        frames["unlabelled"] = [cfg.distill.unlabelled_list, cfg.distill.unlabelled_root]
    identity = {
        "format": STORE_FORMAT,
        "teacher_sha256": weights_sha256(targets.teacher),
        "feature_target": targets.feature_target,
        "attention": targets.attention,
        "levels": list(targets.kd_strides),
        "map_strides": list(targets.map_strides),
        "student_normalization": [list(targets.student_spec.mean), list(targets.student_spec.std)],
        "frames": frames,
    }
    if targets.attention == "saliency":  # its scores are gradients of this SILog
        identity["saliency_silog"] = [targets.variance_focus, targets.silog_scale]
    return identity


def distill_stage(
    cfg: Config,
    run_dir: str | Path,
    train_set: Dataset,
    val_set: Dataset | None,
    info: dist.DistInfo,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Distil; the deployable student is ``checkpoints/last.pt`` (and ``model/``), as for any student run."""
    run_dir = Path(run_dir)
    train_set = add_unlabelled(cfg, train_set)
    task = build_distillation(cfg, train_set)
    start = time.perf_counter()
    res = train(cfg, run_dir, task, train_set, _evaluator(cfg, val_set, info), resume=resume, overwrite=overwrite,
                info=info)  # fmt: skip
    if res.interrupted:
        return {"stage": "distill", "interrupted": True, "step": res.step}
    out = _stage_result("distill", res, start, run_dir / "checkpoints" / "last.pt")
    gap = distill_gap(cfg, res.last_metrics)
    if gap is not None:
        out["gap"] = gap
        log.info("distill: %s", format_gap(gap))
    return write_result(run_dir, out, info)


def add_unlabelled(cfg: Config, train_set: Dataset) -> Dataset:
    """``train_set`` mixed with the ``distill.unlabelled_list`` images (returned unchanged when the key is empty).

    The unlabelled images get the training transform and the student's normalisation; see
    :mod:`disdepth.data.mixing`. Raises ValueError naming the key for a missing or malformed index.
    """
    d = cfg.distill
    if not d.unlabelled_list:
        return train_set
    spec = student_input_spec(cfg.model)
    # The labelled set's fixed pre-crops, so both kinds reach the random crop alike (KITTI raw frames: KB crop;
    # NYU frames: the white-border crop).
    pre = NYUBorderCrop() if cfg.data.dataset == "nyu" and cfg.data.nyu_border_crop else None
    try:
        images = CSVDataset(
            d.unlabelled_list, d.unlabelled_root, kb_crop=kb_crop_enabled(cfg), transform=build_transform(cfg, "train"),
            images_only=True, mean=spec.mean, std=spec.std, pre=pre,
        )  # fmt: skip
        mixed = MixedDataset(train_set, images, d.unlabelled_fraction)
    except (FileNotFoundError, DataError) as exc:
        raise ValueError(f"distill.unlabelled_list: {exc}") from exc
    log.info(
        "distill: %d unlabelled images from %s, %d of every %d samples per epoch",
        len(images), d.unlabelled_list, mixed.slots, len(mixed),
    )  # fmt: skip
    return mixed


def labelled_frames(dataset: Dataset) -> int | None:
    """How many frames of a file dataset have ground truth (None when the dataset cannot tell without loading)."""
    if isinstance(dataset, FileDepthDataset):
        return sum(r.depth is not None for r in dataset.records)
    return None
