"""``disdepth pipeline``: teacher (train or load) -> baseline student -> acclimate -> distill -> report.

disdepth pipeline -c configs/synthetic/pipeline_indoor.yaml --run-dir runs/pipe
torchrun --nproc_per_node 8 -m disdepth pipeline -c configs/nyu/distill_pipeline_mbv2_lgconv.yaml --run-dir runs/nyu

Each stage has its own run directory under ``--run-dir`` (teacher/, baseline/, acclimate/, distill/, report/)
and writes ``result.json`` when it finishes; a re-run skips finished stages and resumes an interrupted one from
its ``last.pt``. ``pipeline.<stage>`` holds one stage's budget (steps, lr, batch size) on top of ``train``.
A set ``teacher.checkpoint`` skips teacher training (the given teacher is used as is).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from disdepth.pipeline.stages import add_stage_arguments

    add_stage_arguments(parser)


def _stage_cfg(cfg, stage: str, extra: list[str] | None = None):
    from disdepth.config import load_config, stage_config

    return load_config(overrides=extra or [], base=stage_config(cfg, stage))


def _run_stage(run_dir: Path, fn, overwrite: bool) -> dict:
    """Skip when finished; resume from last.pt when interrupted; otherwise start (over)."""
    from disdepth.pipeline.stages import stage_done

    done = stage_done(run_dir)
    if done is not None and not overwrite:
        log.info("stage %s: finished earlier, skipped", run_dir.name)
        return done
    resume = (run_dir / "checkpoints" / "last.pt").is_file() and not overwrite
    out = fn(resume=resume, overwrite=not resume)
    if out.get("interrupted"):
        raise KeyboardInterrupt(f"stage {run_dir.name} interrupted at step {out.get('step')}; re-run to resume")
    return out


def run(args: argparse.Namespace) -> int:
    from disdepth.commands.train import build_model, normalization_of
    from disdepth.engine import dist
    from disdepth.engine.launch import start_command
    from disdepth.pipeline import stages as C

    started = start_command(args)
    if started is None:
        return 0
    cfg, info = started
    root = Path(args.run_dir or Path("runs") / f"{cfg.name}_pipeline")
    stages: dict[str, dict] = {}
    try:
        # 1. Teacher: trained on data in its own normalisation, unless a checkpoint is given.
        if cfg.teacher.checkpoint:
            teacher_ckpt = cfg.teacher.checkpoint
            stages["teacher"] = {"stage": "teacher", "checkpoint": teacher_ckpt, "loaded": True}
        else:
            tcfg = _stage_cfg(cfg, "teacher")
            t_norm = normalization_of(build_model(copy.deepcopy(tcfg), "teacher")[0])
            t_train, t_val = C.datasets_for(tcfg, *t_norm)
            stages["teacher"] = _run_stage(
                root / "teacher",
                lambda **kw: C.supervised_stage(tcfg, root / "teacher", "teacher", t_train, t_val, info, **kw),
                args.overwrite,
            )
            teacher_ckpt = stages["teacher"]["checkpoint"]
        s_norm = C.student_normalization(cfg)
        # 2. Baseline student.
        bcfg = _stage_cfg(cfg, "baseline")
        b_train, b_val = C.datasets_for(bcfg, *s_norm)
        stages["baseline"] = _run_stage(
            root / "baseline",
            lambda **kw: C.supervised_stage(bcfg, root / "baseline", "student", b_train, b_val, info, **kw),
            args.overwrite,
        )
        # 3. Acclimation (ghost decoder = the baseline's decoder + head).
        acfg = _stage_cfg(
            cfg,
            "acclimate",
            [f"teacher.checkpoint={teacher_ckpt}", f"acclimate.baseline_checkpoint={stages['baseline']['checkpoint']}"],
        )
        a_train, a_val = C.datasets_for(acfg, *s_norm)
        stages["acclimate"] = _run_stage(
            root / "acclimate",
            lambda **kw: C.acclimate_stage(acfg, root / "acclimate", a_train, a_val, info, **kw),
            args.overwrite,
        )
        # 4. Distillation.
        dcfg = _stage_cfg(
            cfg,
            "distill",
            [
                f"teacher.checkpoint={teacher_ckpt}",
                f"distill.acclimated_checkpoint={stages['acclimate']['checkpoint']}",
            ],
        )
        d_train, d_val = C.datasets_for(dcfg, *s_norm)
        stages["distill"] = _run_stage(
            root / "distill",
            lambda **kw: C.distill_stage(dcfg, root / "distill", d_train, d_val, info, **kw),
            args.overwrite,
        )
    except KeyboardInterrupt as exc:
        print(f"disdepth pipeline: {exc}")
        return 130
    finally:
        dist.cleanup()
    # 5. Report, on rank 0 alone after the process group is gone: every model on the same split and protocol.
    if info.is_main:
        md = report(cfg, root, teacher_ckpt, stages, info)
        print(f"report: {md}")
    return 0


def report(cfg, root: Path, teacher_ckpt: str, stages: dict, info) -> Path:
    from disdepth.data.build import build_dataset
    from disdepth.engine.checkpoint import load_model_from_checkpoint
    from disdepth.pipeline.report import model_entry, write_report
    from disdepth.pipeline.stages import student_normalization
    from disdepth.tasks.acclimation import TeacherDepth
    from disdepth.teachers.build import build_teacher

    one = dist_single(info)
    mean, std = student_normalization(cfg)
    test = build_dataset(cfg, cfg.eval.split, mean, std)
    tcfg = copy.deepcopy(cfg.teacher)
    tcfg.pretrained, tcfg.weights, tcfg.checkpoint = "none", "", teacher_ckpt
    teacher = build_teacher(tcfg).freeze()
    out = root / "report"
    n = cfg.pipeline.panels
    entries = [model_entry("teacher", TeacherDepth(teacher, mean, std).eval(), teacher, test, cfg, one, out, n)]
    for label, key in (("baseline", "baseline"), ("distilled", "distill")):
        model, _ = load_model_from_checkpoint(stages[key]["checkpoint"])
        entries.append(model_entry(label, model, model, test, cfg, one, out, n))
    return write_report(entries, cfg, out, json.loads(json.dumps(stages, default=float)))


def dist_single(info):
    """Report scoring runs on rank 0 alone."""
    from disdepth.engine.dist import DistInfo

    return DistInfo(0, 1, info.local_rank, info.device)
