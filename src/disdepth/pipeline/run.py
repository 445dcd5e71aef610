"""One pipeline API: :func:`run_stages` (teacher -> baseline -> acclimate -> distill) and :func:`score_models`.

The ``pipeline`` and ``demo`` commands and ``benchmarks/distill_ablation.py`` all call these two functions.

Each stage has its own run directory under ``root`` (teacher/, baseline/, acclimate/, distill/) and writes
``result.json`` when it finishes. A re-run reuses a finished stage only when nothing that determines it changed:
its resolved config (saved as ``config.yaml`` by the engine) and its input checkpoints (size and modification time,
recorded in ``result.json``). Otherwise it is refused with the differing keys named (``--overwrite`` or another run
directory to go on). An interrupted stage resumes from its ``last.pt``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from disdepth.config import Config, ConfigError, changed_keys, load_config, stage_config
from disdepth.deploy.weights import load_model
from disdepth.engine import dist
from disdepth.pipeline import stages as S
from disdepth.pipeline.report import model_entry
from disdepth.pipeline.teach import teach_stage
from disdepth.runs import Run
from disdepth.tasks.acclimation import TeacherDepth
from disdepth.teachers.build import build_teacher

log = logging.getLogger(__name__)

# Keys that do not change what a stage trains or scores: a re-run may differ in them and still reuse the stage.
NOT_DETERMINING = ("train.device", "data.num_workers", "train.log_every", "train.image_panels", "pipeline.", "bench.")


class StageInterrupted(KeyboardInterrupt):
    """A stage stopped on a signal after writing its checkpoint; re-running resumes it."""


class StaleStage(ConfigError):
    """A finished or interrupted stage was made with settings that differ from this run's."""


def input_files(cfg: Config) -> dict[str, list[int] | None]:
    """(size, mtime_ns) of the checkpoints a stage starts from: a retrained teacher or baseline makes it stale."""
    paths = [
        cfg.teacher.checkpoint,
        cfg.acclimate.baseline_checkpoint,
        cfg.distill.acclimated_checkpoint,
        cfg.distill.init_checkpoint,
    ]
    out: dict[str, list[int] | None] = {}
    for path in filter(None, paths):
        p = Path(path)
        out[path] = [p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else None
    return out


def stale_keys(run_dir: Path, cfg: Config) -> list[str]:
    """What differs between the stage in ``run_dir`` and ``cfg`` (config keys, then changed input files)."""
    saved_path = Run(run_dir).config_path
    if not saved_path.is_file():
        return []
    keys = [k for k in changed_keys(load_config(saved_path), cfg) if not k.startswith(NOT_DETERMINING)]
    done = S.stage_done(run_dir)
    if done is not None and "inputs" in done:
        now = input_files(cfg)
        keys += [f"{path} (file changed)" for path, stamp in done["inputs"].items() if now.get(path) != stamp]
    return keys


def run_stage(name: str, run_dir: Path, cfg: Config, fn, overwrite: bool, info: dist.DistInfo | None = None) -> dict:
    """Reuse a finished stage made from the same settings; resume an interrupted one; otherwise start (over).

    ``fn(resume=..., overwrite=...)`` runs the stage. Raises :class:`StaleStage` naming the differing keys.
    """
    info = info or dist.DistInfo.single()
    if not overwrite:
        stale = stale_keys(run_dir, cfg)
        if stale:
            raise StaleStage(
                f"stage {name} in {run_dir} was made with other settings ({', '.join(stale[:8])}"
                f"{' ...' if len(stale) > 8 else ''}); pass --overwrite to redo it, or use another run directory"
            )
        done = S.stage_done(run_dir)
        if done is not None:
            log.info("stage %s: finished earlier with the same settings, reused", name)
            return done
    resume = Run(run_dir).last.is_file() and not overwrite
    inputs = input_files(cfg)
    out = fn(resume=resume, overwrite=not resume)
    if out.get("interrupted"):
        raise StageInterrupted(f"stage {name} interrupted at step {out.get('step')}; re-run to resume")
    out["inputs"] = inputs  # recorded with the result, so a changed input makes the stage stale
    return S.write_result(run_dir, out, info)


def teacher_config(cfg: Config, checkpoint: str) -> Config:
    """``cfg`` with the teacher loaded from ``checkpoint`` (a trained teacher; "" = as configured)."""
    out = copy.deepcopy(cfg)
    if checkpoint:
        out.teacher = dataclasses.replace(cfg.teacher, pretrained="none", weights="", checkpoint=checkpoint)
    return out


def check_teacher_and_labels(cfg: Config, datasets: S.DatasetFn) -> Config:
    """Before any stage trains: a given teacher (``teacher.checkpoint`` or a Hugging Face model) must build, and a
    label-free run (``data.require_depth=false``) needs one. With a relative teacher and no labelled training frame
    the student can only learn relative depth: it is made relative (``model.metric=false``), and says so.
    """
    given = bool(cfg.teacher.checkpoint) or cfg.teacher.kind == "hf"
    if not cfg.data.require_depth and not given:
        raise ValueError(
            "data.require_depth=false: a label-free run needs a teacher to learn from; set teacher.checkpoint (a "
            "trained teacher) or teacher.kind=hf and teacher.name (a hub id or a local folder)"
        )
    if not given:
        return cfg
    teacher = build_teacher(cfg.teacher)  # fails here, naming the field and file, not after the baseline trained
    if teacher.input_spec.metric or not cfg.model.metric:
        return cfg
    labelled = S.labelled_frames(datasets(cfg, "train", S.model_spec(cfg, "student")))
    if labelled != 0:
        if not cfg.data.require_depth:
            log.info("relative teacher: %s labelled training frames fix the student's metric scale", labelled)
        return cfg
    log.warning(
        "relative teacher %s and no labelled training frame: the student learns relative depth (%s); add labelled "
        "frames (a depth column) for a metric student", cfg.teacher.name, teacher.input_spec.relative_space,
    )  # fmt: skip
    out = copy.deepcopy(cfg)
    t = teacher.input_spec
    out.model.metric, out.model.relative_space, out.model.relative_fit = False, t.relative_space, t.relative_fit
    return out


def run_stages(
    cfg: Config,
    root: str | Path,
    datasets: S.DatasetFn = S.config_datasets,
    info: dist.DistInfo | None = None,
    overwrite: bool = False,
) -> dict[str, dict]:
    """The DisDepth pipeline: teacher (trained, or ``teacher.checkpoint``) -> baseline student -> acclimation
    (ghost decoder = the baseline's decoder) -> distillation. Returns each stage's result dict.

    Args:
        cfg: the resolved config; ``pipeline.<stage>`` budgets apply per stage.
        root: the pipeline's folder; stage ``s`` runs in ``root/s``.
        datasets: ``(stage config, split, input spec) -> dataset or None``; the teacher gets its own normalisation.
        info: the process group (``torchrun``) or None for one process.
        overwrite: redo every stage instead of reusing or refusing.

    Raises:
        StageInterrupted: a stage stopped on a signal (its checkpoint is written; re-run to resume).
        StaleStage: a stage was made with other settings (names the keys).
    """
    root = Path(root)
    info = info or dist.DistInfo.single()
    cfg = check_teacher_and_labels(cfg, datasets)
    results: dict[str, dict] = {}

    def stage(name: str, stage_cfg: Config, which: str, fn) -> dict:
        def train_stage(**kw) -> dict:  # datasets are built only when the stage runs, not when it is reused
            spec = S.model_spec(stage_cfg, which)
            train_set, val_set = datasets(stage_cfg, "train", spec), datasets(stage_cfg, "val", spec)
            return fn(stage_cfg, root / name, train_set, val_set, info, **kw)

        results[name] = run_stage(name, root / name, stage_cfg, train_stage, overwrite, info)
        return results[name]

    if cfg.teacher.checkpoint or cfg.teacher.kind == "hf":  # a given teacher is used as it is
        teacher_ckpt = cfg.teacher.checkpoint
        results["teacher"] = {"stage": "teacher", "checkpoint": teacher_ckpt, "loaded": True}
    else:
        train_teacher = functools.partial(S.supervised_stage, which="teacher")
        teacher_ckpt = stage("teacher", stage_config(cfg, "teacher"), "teacher", train_teacher)["checkpoint"]
    # The baseline's images without ground truth (label-free) learn from the same teacher.
    baseline = stage("baseline", teacher_config(stage_config(cfg, "baseline"), teacher_ckpt), "student",
                     S.supervised_stage)  # fmt: skip
    acfg = teacher_config(stage_config(cfg, "acclimate"), teacher_ckpt)
    acfg.acclimate.baseline_checkpoint = baseline["checkpoint"]
    acclimated = stage("acclimate", acfg, "student", S.acclimate_stage)
    dcfg = teacher_config(stage_config(cfg, "distill"), teacher_ckpt)
    dcfg.distill.acclimated_checkpoint = acclimated["checkpoint"]
    if dcfg.distill.target_store and S.stage_done(root / "distill") is None:
        # The teacher pass first: distillation then reads every view from the store. A finished store made by the
        # same teacher side (another student's or seed's run, a shared acclimation, a response-KD teacher) is
        # reused shard by shard; one made by another teacher is refused naming what differs.
        train_set = datasets(dcfg, "train", S.model_spec(dcfg, "student"))
        taught = teach_stage(dcfg, dcfg.distill.target_store, train_set, info)
        results["teach"] = {"stage": "teach", **taught, "wall_s": taught["seconds"]}
        log.info("teach: %d views in %s, %d teacher runs now", taught["views"], taught["store"],
                 taught["views_computed"])  # fmt: skip
    stage("distill", dcfg, "student", S.distill_stage)
    return results


def pipeline_models(cfg: Config, results: dict[str, dict]) -> dict[str, tuple[nn.Module, nn.Module]]:
    """label -> (model to score on student-normalised images, model as deployed) for teacher/baseline/distilled."""
    spec = S.model_spec(cfg, "student")
    teacher = build_teacher(teacher_config(cfg, results["teacher"]["checkpoint"]).teacher).freeze()
    models = {"teacher": (TeacherDepth(teacher, spec).eval(), teacher)}
    for label, stage in (("baseline", "baseline"), ("distilled", "distill")):
        model, _ = load_model(results[stage]["checkpoint"])
        models[label] = (model, model)
    return models


def score_models(
    cfg: Config,
    models: dict[str, tuple[nn.Module, nn.Module]],
    test_set: Dataset,
    out_dir: str | Path,
    n_panels: int = 0,
) -> list[dict]:
    """Every model on the same test set and protocol (rank 0 alone): accuracy, params, GFLOPs, CPU latency."""
    one = dist.DistInfo.single()
    return [
        model_entry(label, scored, deployed, test_set, cfg, one, Path(out_dir), n_panels)
        for label, (scored, deployed) in models.items()
    ]
