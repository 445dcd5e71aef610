"""``disdepth demo``: the packaged recipe, the quick budget, and an end-to-end run at a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from disdepth.cli import main
from disdepth.config import PIPELINE_STAGES, load_config
from disdepth.models.spec import InputSpec
from disdepth.pipeline import demo

# The packaged recipe (hybrid teacher with the offline Lite0 stem, mobilenetv2 + LG-Conv student) at a tiny budget.
TINY = [
    "train.steps=2",
    "pipeline.teacher.steps=3",
    "pipeline.acclimate.steps=2",
    "data.synthetic.n_train=8",
    "data.synthetic.n_val=4",
    "data.synthetic.height=32",
    "data.synthetic.width=48",
    "data.batch_size=4",
    "train.checkpoint_every=0",
    "train.image_panels=1",
    "train.device=cpu",
    "pipeline.bench_resolution=[32,48]",
    "pipeline.panels=1",
]


@pytest.fixture
def lite0():
    from disdepth.models.pretrained import lite0_package_weights

    try:
        return lite0_package_weights()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _args(out, *extra: str) -> list[str]:
    args = ["demo", "--out", str(out), "--test-images", "3", "--panels", "2", "--threads", "1", *extra]
    for item in TINY:
        args += ["--set", item]
    return args


def test_recipe_ships_inside_the_package_and_runs_on_the_synthetic_world():
    cfg = load_config(demo.recipe_path())
    assert demo.recipe_path().is_file()
    assert cfg.data.dataset == "synthetic" and cfg.teacher.weights == "package:efficientnet-lite0"
    assert cfg.distill.feature_target == "acclimated" and cfg.model.lgconv.enabled


def test_quick_divides_every_stage_budget():
    cfg = load_config(demo.recipe_path())
    full = demo.stage_steps(cfg)
    quick = demo.stage_steps(load_config(demo.recipe_path(), demo.quick_overrides(cfg)))
    assert set(quick) == {"teacher", "baseline", "acclimate", "distill"}
    for stage, steps in full.items():
        assert quick[stage] == max(1, steps // demo.QUICK_STEP_DIVISOR)
    # Stage-specific settings other than the steps survive (e.g. the teacher's learning rate).
    quick_cfg = load_config(demo.recipe_path(), demo.quick_overrides(cfg))
    assert quick_cfg.pipeline.teacher.lr == cfg.pipeline.teacher.lr > 0


def _entries(distilled: list[float], baseline: list[float]) -> list[dict]:
    def metrics(values: list[float]) -> dict:
        per_image = {f"img{i}": {"abs_rel": v, "rmse": 10 * v, "d1": 1 - v} for i, v in enumerate(values)}
        mean = float(np.mean(values))
        return {"abs_rel": mean, "rmse": 10 * mean, "d1": 1 - mean, "per_image": per_image}

    return [
        {"label": lb, "metrics": metrics(v), "params_m": 1.0, "gflops": 1.0, "latency_ms": 1.0}
        for lb, v in (("teacher", [0.1] * len(baseline)), ("baseline", baseline), ("distilled", distilled))
    ]


SUMMARY = {
    "mode": "full", "preset": "indoor", "resolution": [72, 96], "n_train": 240, "test_images": 20,
    "test_scenes": [400, 419], "protocol": "none", "caps": [1e-3, 10.0], "batch_size": 8,
    "steps": {"teacher": 300}, "bench_hw": [240, 320], "threads": 2,
}  # fmt: skip


def test_kd_change_is_stated_with_its_interval_and_no_effect_when_it_contains_zero():
    rng = np.random.default_rng(0)
    baseline = list(0.2 + 0.05 * rng.random(20))
    # Noise around the baseline, mean 2 % lower: the interval contains 0, so no claim is made.
    noisy = [b * (0.98 + 0.3 * (rng.random() - 0.5)) for b in baseline]
    entries = _entries(noisy, baseline)
    table = demo.format_table(entries, {**SUMMARY, "kd_gain_pct": demo.kd_gain(entries)})
    assert "abs_rel" in table and "no measurable effect" in table and "helped" not in table
    assert "One seed" in table and "20 test images" in table
    # Every image 5 % better: a measurable change in each metric, stated as better (δ1 higher is better).
    entries = _entries([0.95 * b for b in baseline], baseline)
    table = demo.format_table(entries, {**SUMMARY, "kd_gain_pct": demo.kd_gain(entries)})
    assert "abs_rel -5.0 %" in table and "δ1 +" in table and "no measurable effect" not in table
    assert table.count("better") == 3 and "worse" not in table


def test_held_out_scenes_follow_train_validation_and_tuning_scenes():
    cfg = load_config(demo.recipe_path(), ["data.synthetic.n_train=5", "data.synthetic.n_val=3"])
    test = demo.held_out_dataset(cfg, 2, InputSpec((0.5,) * 3, (0.5,) * 3))
    assert len(test) == 2 and test.index_offset == 8 + demo.TUNING_SCENES


def test_demo_end_to_end_tiny_budget(tmp_path, capsys, lite0, one_thread):
    out = tmp_path / "demo"
    assert main(_args(out)) == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()[:1]}
    for label in ("teacher", "baseline", "distilled"):
        assert len(rows[label]) == 7, rows[label]  # abs_rel rmse δ1 params GFLOPs latency
    assert "Distilled vs baseline: abs_rel" in printed and "One seed" in printed and "held-out" in printed
    report = json.loads((out / "report.json").read_text())
    assert [e["label"] for e in report["entries"]] == ["teacher", "baseline", "distilled"]
    for e in report["entries"]:
        assert {"abs_rel", "rmse", "d1"} <= set(e["metrics"]) and e["metrics"]["images"] == 3
        assert e["params_m"] > 0 and e["gflops"] > 0 and e["latency_ms"] > 0
        assert all((out / p).is_file() for p in e["panels"])
    d = report["demo"]
    assert d["test_scenes"] == [112, 114] and d["steps"] == {"teacher": 3, "baseline": 2, "acclimate": 2, "distill": 2}
    assert {"kd_gain_pct", "wall_s", "cpu_s", "protocol", "resolution", "bench_hw"} <= set(d)
    assert set(d["distilled_vs_baseline"]) == {"abs_rel", "rmse", "d1"}
    assert "per_image" not in (out / "report.md").read_text()  # per-image scores stay in report.json
    assert (out / "panels/side_by_side.png").is_file() and (out / "table.txt").is_file()
    assert "side_by_side.png" in (out / "report.md").read_text()
    # A re-run reuses every finished stage; a different recipe in the same folder is refused.
    stamps = {s: (out / "pipeline" / s / "result.json").stat().st_mtime for s in PIPELINE_STAGES}
    assert main(_args(out)) == 0
    assert stamps == {s: (out / "pipeline" / s / "result.json").stat().st_mtime for s in PIPELINE_STAGES}
    assert main(_args(out, "--quick")) == 2
    assert "different recipe" in capsys.readouterr().err
