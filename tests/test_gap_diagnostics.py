"""Teacher-student gap diagnostics (retained / closed) and the ghost loss: the formula on known numbers, the
benchmark's bootstrap interval, one tiny acclimate -> distill pipeline writing them, and the ghost loss's gradients."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import TINY_PAIR

from disdepth.config import load_config
from disdepth.models.student import build_student
from disdepth.tasks.acclimation import build_acclimated, gap_report, gap_share
from disdepth.tasks.distillation import DistillationTask, DistilledStudent, TeacherTargets
from disdepth.teachers.build import build_teacher

ROOT = Path(__file__).resolve().parents[1]
TINY = TINY_PAIR


def _ablation():
    spec = importlib.util.spec_from_file_location("distill_ablation", ROOT / "benchmarks" / "distill_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- the formula


def test_gap_share_on_known_numbers():
    # The figures: B 0.275, T 0.149, G 0.190 -> retained (0.275 - 0.190) / 0.126 = 0.6746.
    assert gap_share(0.275, 0.190, 0.149) == pytest.approx(0.085 / 0.126)
    assert gap_share(0.3, 0.3, 0.2) == 0.0  # no better than the start
    assert gap_share(0.3, 0.2, 0.2) == pytest.approx(1.0)  # as good as the teacher
    assert gap_share(0.3, 0.35, 0.2) == pytest.approx(-0.5)  # worse than the start
    assert gap_share(0.3, 0.25, 0.3) is None  # the teacher has no lead: no share
    assert gap_share(0.3, 0.25, 0.4) is None
    assert gap_share(None, 0.25, 0.2) is None and gap_share(0.3, float("nan"), 0.2) is None


def test_gap_report_keeps_missing_inputs_none():
    metrics = {"teacher_before": {"abs_rel": 0.2}, "teacher_after": {"abs_rel": 0.21}, "ghost": {"abs_rel": 0.25}}
    report = gap_report(metrics)
    assert report["retained"] is None and report["baseline"] is None and "closed" not in report
    metrics["baseline"] = {"abs_rel": 0.3}
    report = gap_report(metrics, {"abs_rel": 0.27})
    assert report["retained"] == pytest.approx(0.5) and report["closed"] == pytest.approx(0.3)
    assert report["teacher"] == 0.2 and report["teacher_after"] == 0.21


def test_benchmark_share_interval_brackets_the_share_and_shrinks_with_agreement():
    module = _ablation()
    rng = np.random.default_rng(0)
    base = 0.3 + 0.02 * rng.standard_normal((2, 50))
    teacher = base - 0.1
    model = base - 0.05 + 0.01 * rng.standard_normal((2, 50))  # half the gap, noisy per image
    share, low, high = module.gap_share_interval(base, model, teacher, n_boot=500)
    assert share == pytest.approx(0.5, abs=0.02) and low < share < high
    assert 0.4 < low and high < 0.6
    exact, lo, hi = module.gap_share_interval(base, base - 0.05, teacher, n_boot=200)
    assert exact == pytest.approx(0.5) and hi - lo < 1e-9  # a constant share has no spread
    with pytest.raises(ValueError, match="seeds, images"):
        module.gap_share_interval(base, model[:1], teacher)


def test_benchmark_gap_summary_from_per_run_records():
    module = _ablation()
    ids = [f"i{k}" for k in range(4)]

    def summary(values: list[float]) -> dict:
        return {
            "abs_rel": float(np.mean(values)),
            "per_image": {i: {"abs_rel": v} for i, v in zip(ids, values, strict=True)},
        }

    per_seed = {}
    for seed in (0, 1):
        per_seed[seed] = {
            "lgconv": {"metrics": summary([0.3, 0.32, 0.28, 0.3])},
            "acclimate": {
                "metrics": {
                    "teacher_before": summary([0.2, 0.22, 0.18, 0.2]),
                    "teacher_after": summary([0.2, 0.22, 0.18, 0.2]),
                    "ghost": summary([0.25, 0.27, 0.23, 0.25]),
                }
            },
            "disdepth": {"metrics": summary([0.28, 0.30, 0.26, 0.28])},
            # a --variant row: its label travels in its record; it gets its share and its pairs
            "v_w10": {"metrics": summary([0.26, 0.28, 0.24, 0.26]), "label": "full DisDepth, weight 10"},
        }
    text, numbers = module.gap_summary(per_seed)
    assert numbers["closed"]["v_w10"]["mean"] == pytest.approx(0.4) and "closed: full DisDepth, weight 10" in text
    assert set(numbers["paired"]) == {"disdepth_vs_lgconv", "v_w10_vs_lgconv", "v_w10_vs_disdepth"}
    assert numbers["paired"]["v_w10_vs_disdepth"]["mean"] < 0  # lower abs_rel on every image
    # --unlabelled rows run with --unlabelled-set: the stored label names the row; paired with their start, each
    # other, and the recipe without the unlabelled scenes (here the --variant row)
    for rows in per_seed.values():
        rows["disdepth_unlabelled"] = {"metrics": summary([0.25, 0.27, 0.23, 0.25]), "label": "DisDepth, w10, + mix"}
        rows["response_unlabelled"] = {"metrics": summary([0.29, 0.31, 0.27, 0.29])}
    assert ("disdepth_unlabelled", "DisDepth, w10, + mix") in module.all_rows(list(per_seed.values()))
    text, numbers = module.gap_summary(per_seed)
    assert {"disdepth_unlabelled_vs_response_unlabelled", "disdepth_unlabelled_vs_v_w10"} <= set(numbers["paired"])
    assert numbers["paired"]["disdepth_unlabelled_vs_v_w10"]["mean"] < 0
    assert "disdepth_unlabelled_vs_disdepth_response" not in numbers["paired"]  # a row the folder lacks: left out
    for rows in per_seed.values():
        del rows["disdepth_unlabelled"], rows["response_unlabelled"]
    del per_seed[0]["v_w10"], per_seed[1]["v_w10"]
    text, numbers = module.gap_summary(per_seed)
    assert numbers["retained"]["mean"] == pytest.approx(0.5) and numbers["closed"]["disdepth"]["mean"] == pytest.approx(
        0.2
    )
    assert numbers["closed"]["disdepth"]["per_seed"] == pytest.approx([0.2, 0.2])
    assert "retained" in text and "+0.20" in text and numbers["gap_pct"] == pytest.approx(100 / 3)
    del per_seed[1]["acclimate"]
    assert module.gap_summary(per_seed) == ("", {})  # a missing input: no diagnostics


# ---------------------------------------------------------------------------- the pipeline writes them


def test_tiny_acclimate_then_distill_pipeline_writes_retained_and_closed(tmp_path):
    from disdepth.pipeline.run import run_stages

    shrink = [
        *TINY,
        "model.pretrained=none",
        "teacher.pretrained=none",
        "data.dataset=synthetic",
        "data.synthetic.n_train=4",
        "data.synthetic.n_val=2",
        "data.synthetic.height=32",
        "data.synthetic.width=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.augment.enabled=false",
        "train.steps=2",
        "train.eval_every=0",
        "train.checkpoint_every=0",
        "train.image_panels=0",
        "train.device=cpu",
        "eval.protocol=none",
        "distill.ghost_weight=0.5",
    ]
    results = run_stages(load_config(overrides=shrink), tmp_path)
    acclimate = json.loads((tmp_path / "acclimate" / "result.json").read_text())
    distill = json.loads((tmp_path / "distill" / "result.json").read_text())
    baseline = json.loads((tmp_path / "baseline" / "result.json").read_text())
    m = acclimate["metrics"]
    gap = acclimate["gap"]
    # B is the baseline student the ghost decoder copies, scored again on the same frames: the baseline stage's score.
    assert gap["baseline"] == pytest.approx(baseline["metrics"]["abs_rel"], rel=1e-5)
    assert gap["teacher"] == m["teacher_before"]["abs_rel"] and gap["ghost"] == m["ghost"]["abs_rel"]
    want = gap_share(gap["baseline"], gap["ghost"], gap["teacher"])
    assert gap["retained"] == (pytest.approx(want) if want is not None else None)
    dgap = distill["gap"]
    assert dgap["student"] == distill["metrics"]["abs_rel"] == results["distill"]["metrics"]["abs_rel"]
    want = gap_share(dgap["baseline"], dgap["student"], dgap["teacher"])
    assert dgap["closed"] == (pytest.approx(want) if want is not None else None)
    assert math.isfinite(distill["metrics"]["abs_rel"])
    # distill.init_checkpoint: the student starts from the baseline's weights instead of its own initialisation.
    from disdepth.pipeline.stages import build_distillation, load_student_weights

    cfg = load_config(overrides=[*shrink, f"distill.acclimated_checkpoint={acclimate['checkpoint']}"])
    fresh = build_distillation(cfg).model
    cfg = load_config(
        overrides=[
            *shrink,
            f"distill.init_checkpoint={baseline['checkpoint']}",
            "distill.ghost_weight=0",
            "distill.feature_weight=0",
        ]
    )
    started = build_distillation(cfg).model
    want = build_student(cfg.model, load_weights=False)
    load_student_weights(want, baseline["checkpoint"])
    got, ref, other = started.state_dict(), want.state_dict(), fresh.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.items())
    assert not all(torch.equal(other[k], v) for k, v in ref.items())


# ---------------------------------------------------------------------------- the ghost loss


def _task(*extra: str):
    cfg = load_config(overrides=[*TINY, *extra])
    torch.manual_seed(0)
    student = build_student(cfg.model)
    acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), student, train=False)
    dc = cfg.distill
    model = DistilledStudent(build_student(cfg.model), dc.levels)
    targets = TeacherTargets(acclimated, dc.levels, student.input_spec, dc.feature_target, dc.attention)
    task = DistillationTask(
        model, targets, 1.0, dc.feature_target, dc.feature_weight, dc.normalize, dc.standardize, dc.response_weight,
        ghost_weight=dc.ghost_weight, ghost_target=dc.ghost_target,
    )  # fmt: skip
    return task, acclimated


def _batch(unlabelled: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    depth = 1.0 + 4.0 * torch.rand(2, 1, 32, 32, generator=g)
    valid = depth > 0
    if unlabelled:
        valid[1] = False
    return {"image": torch.randn(2, 3, 32, 32, generator=g), "depth": depth, "valid": valid, "id": ["a", "b"]}


@pytest.mark.parametrize("target,unlabelled", [("gt", False), ("gt", True), ("teacher", False)])
def test_ghost_loss_trains_the_student_encoder_through_the_frozen_ghost_decoder(target, unlabelled):
    task, acclimated = _task("distill.ghost_weight=1", f"distill.ghost_target={target}", "distill.feature_weight=0")
    task.train()
    losses = task(_batch(unlabelled))
    assert set(losses) >= {"ghost_depth", "silog"} and float(losses["ghost_depth"].detach()) > 0
    losses["ghost_depth"].backward()
    encoder = [p.grad for p in task.model.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder)  # it reaches the student's encoder ...
    assert all(p.grad is None for p in task.model.decoder.parameters())  # ... and not its own decoder
    assert all(p.grad is None for p in acclimated.parameters())  # the ghost decoder stays frozen


def test_ghost_loss_equals_silog_of_the_ghost_on_student_features():
    from disdepth.tasks.losses import resize_like, silog_loss

    task, acclimated = _task("distill.ghost_weight=2", "distill.feature_weight=0")
    task.eval()
    b = _batch()
    with torch.no_grad():
        losses = task(b)
        feats = task.model(b["image"])["encoder_features"]
        depth = acclimated.ghost(feats, (32, 32))["depth"]
        want = 2 * silog_loss(resize_like(depth, b["depth"]), b["depth"], b["valid"])
    torch.testing.assert_close(losses["ghost_depth"], want)


def test_ghost_loss_needs_an_acclimated_teacher_and_a_known_target():
    cfg = load_config(overrides=TINY)
    model = DistilledStudent(build_student(cfg.model), cfg.distill.levels)
    with pytest.raises(ValueError, match="ghost_weight"):
        DistillationTask(model, None, feature_target="none", ghost_weight=1.0)
    with pytest.raises(ValueError, match="ghost_weight"):
        load_config(overrides=[*TINY, "distill.ghost_weight=-1"])


def test_benchmark_gap_study_pairs_probes_on_the_same_frames(tmp_path):
    module = _ablation()
    ids = [f"i{k}" for k in range(6)]

    def summary(values: list[float]) -> dict:
        return {
            "abs_rel": float(np.mean(values)),
            "rmse": 1.0,
            "d1": 0.5,
            "per_image": {i: {"abs_rel": v} for i, v in zip(ids, values, strict=True)},
        }

    def write(folder: Path, seed: int, row: str, metrics: dict) -> None:
        folder.mkdir(exist_ok=True)
        (folder / f"{row}_seed{seed}.json").write_text(json.dumps({"row": row, "seed": seed, "metrics": metrics}))

    base = [0.30, 0.32, 0.28, 0.30, 0.31, 0.29]
    teacher = [b - 0.1 for b in base]
    for name, drop in (("ref", 0.02), ("better", 0.05)):
        for seed in (0, 1):
            write(tmp_path / name, seed, "baseline", summary(base))
            write(tmp_path / name, seed, "lgconv", summary(base))
            accl = {"teacher_before": summary(teacher), "teacher_after": summary(teacher), "ghost": summary(teacher)}
            write(tmp_path / name, seed, "acclimate", accl)
            write(tmp_path / name, seed, "disdepth", summary([b - drop for b in base]))
    text = module.gap_study([tmp_path / "ref", tmp_path / "better"])
    lines = [line for line in text.splitlines() if line.startswith("| better | disdepth")]
    assert len(lines) == 1 and "+0.50" in lines[0]  # closed: 0.05 of the 0.1 gap
    assert "-10.7 %" in lines[0]  # paired against ref's disdepth: mean(base - 0.05) / mean(base - 0.02) - 1
    assert "| ref | disdepth" in text and "| ref | [0, 1] |" in text
    # write_table: table.md stays the plain table; the gap diagnostics go beside it (gap.md, gap.json)
    out = module.write_table(tmp_path / "better")
    assert "retained" not in (tmp_path / "better" / "table.md").read_text() and "retained" in out
    assert json.loads((tmp_path / "better" / "gap.json").read_text())["closed"]["disdepth"]["mean"] == pytest.approx(
        0.5
    )


def test_benchmark_ghost_reads_mixes_student_and_acclimated_pyramids():
    module = _ablation()
    cfg = load_config(overrides=TINY)
    torch.manual_seed(0)
    student = build_student(cfg.model).eval()
    acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), student, train=False)
    image = _batch()["image"]
    strides = [f.stride for f in acclimated.student_info]
    with torch.no_grad():
        want_g = acclimated(image)["depth"]
        want_b = student(image)["depth"]  # the ghost is a copy of this student's decoder: it reads its features alike
        got_g = module.GhostReads(acclimated, student.encoder, set(strides))(image)["depth"]
        got_b = module.GhostReads(acclimated, student.encoder, set())(image)["depth"]
        half = module.GhostReads(acclimated, student.encoder, set(strides), alpha=0.5)(image)["depth"]
    torch.testing.assert_close(got_g, want_g)
    torch.testing.assert_close(got_b, want_b)
    assert not torch.allclose(half, want_g) and not torch.allclose(half, want_b)
