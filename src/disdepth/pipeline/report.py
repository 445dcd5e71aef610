"""Pipeline report: teacher vs baseline vs distilled student, accuracy beside params / GFLOPs / latency.

Writes ``report.md`` (a table naming protocol, caps, image count and flip-TTA), ``report.json`` (everything) and
``panels/<model>_<i>.png`` (RGB | prediction | ground truth | error).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from disdepth.config import PIPELINE_STAGES, Config, stage_config
from disdepth.deploy.bench import bench_model
from disdepth.engine import dist
from disdepth.eval.stats import Change, change_on_images
from disdepth.eval.viz import with_title
from disdepth.pipeline.stages import score
from disdepth.tasks.acclimation import low_retained_warning

# The changes a report states for the distilled student against its baseline, and which way is better.
CHANGE_METRICS = {"abs_rel": "lower", "rmse": "lower", "d1": "higher"}
METRIC_NAMES = {"abs_rel": "abs_rel", "rmse": "rmse", "d1": "δ1"}


def save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def model_entry(
    label: str,
    model: nn.Module,
    deployed: nn.Module,
    dataset: Dataset,
    cfg: Config,
    info: dist.DistInfo,
    out_dir: Path,
    n_panels: int = 4,
    runs: int = 5,
) -> dict:
    """Accuracy of ``model`` on ``dataset`` plus ``deployed``'s params, GFLOPs and CPU latency; saves panels.

    ``deployed`` is the model as deployed (a teacher is benchmarked on its own input, not via a wrapper).
    """
    metrics, panels = score(model, dataset, cfg, info, n_panels)
    paths = []
    for i, panel in enumerate(panels):
        path = out_dir / "panels" / f"{label}_{i}.png"
        aligned = " (relative, aligned to the ground truth)" if metrics.get("alignment") else ""
        save_png(with_title(panel, f"{label}{aligned}: test image {i + 1}"), path)
        paths.append(str(path.relative_to(out_dir)))
    h, w = cfg.pipeline.bench_resolution
    b = bench_model(deployed, label, [(h, w)], warmup=1, runs=runs)[0]
    return {
        "label": label,
        "metrics": metrics,
        "params_m": b.params_m,
        "gflops": b.gflops,
        "latency_ms": b.latency_ms_median,
        "latency_threads": b.threads,
        "bench_hw": [h, w],
        "panels": paths,
    }


def describe_run(cfg: Config) -> str:
    """One line naming the student, the teacher (and whether relative), and the data."""
    m, t, d = cfg.model, cfg.teacher, cfg.data
    student = f"{m.encoder}{' + LG-Conv' if m.lgconv.enabled else ''} student"
    kind = {"hf": "Hugging Face", "hybrid": "hybrid CNN-transformer", "timm": "timm transformer"}[t.kind]
    relative = " (relative: scored after per-image alignment)" if t.metric == "relative" else ""
    teacher = f"{kind} teacher {t.name}{relative}"
    data = d.dataset if d.dataset != "csv" else f"csv {d.train_list}"
    return f"{student}, {teacher}, data {data}"


def distillation_change(entries: list[dict]) -> dict[str, Change]:
    """The distilled student against the baseline on the same test images (one seed): metric -> relative change with
    a paired bootstrap interval over those images; {} when either entry is missing or lacks per-image scores."""
    by = {e["label"]: e["metrics"] for e in entries}
    if not {"distilled", "baseline"} <= set(by) or not all("per_image" in by[k] for k in ("distilled", "baseline")):
        return {}
    distilled, baseline = by["distilled"]["per_image"], by["baseline"]["per_image"]
    # A relative change of a metric whose baseline mean is 0 (δ1 of an untrained model) is undefined: left out.
    return {
        metric: change_on_images(distilled, baseline, metric)
        for metric in CHANGE_METRICS
        if any(v[metric] for v in baseline.values())
    }


def verdict(metric: str, change: Change) -> str:
    """"better" / "worse" when the interval excludes 0, else "no measurable effect"."""
    if not change.measurable:
        return "no measurable effect"
    improved = (change.percent < 0) == (CHANGE_METRICS[metric] == "lower")
    return "better" if improved else "worse"


def change_json(entries: list[dict]) -> dict:
    """:func:`distillation_change` as plain JSON, computed once and then only rendered (report.md, report.json, the
    demo's table, the app): metric -> percent, interval, verdict, and what the interval covers. {} without a
    distilled/baseline pair."""
    changes = distillation_change(entries)
    if not changes:
        return {}
    n = len(next(e for e in entries if e["label"] == "baseline")["metrics"]["per_image"])
    return {
        k: {"percent": c.percent, "low": c.low, "high": c.high, "verdict": verdict(k, c), "seeds": 1, "images": n,
            "interval": "95 % paired bootstrap over test images"}
        for k, c in changes.items()
    }  # fmt: skip


def change_lines(changes: dict) -> list[str]:
    """What distillation changed (:func:`change_json`), said with what it is: one seed, a bootstrap interval over the
    test images only (run more seeds before calling it an effect of the method). [] when there is no change."""
    if not changes:
        return []
    n = next(iter(changes.values()))["images"]
    parts = [
        f"{METRIC_NAMES[k]} {c['percent']:+.1f} % [{c['low']:+.1f}, {c['high']:+.1f}] {c['verdict']}"
        for k, c in changes.items()
    ]
    return [
        f"Distilled vs baseline: {'; '.join(parts)}.",
        f"(One seed: the interval is a 95 % paired bootstrap over the {n} test images, not over training seeds.)",
    ]


def trained_budgets(cfg: Config, stages: dict | None) -> str:
    """"stage steps x batch" for the stages that trained in this run (a given teacher trains nothing)."""
    ran = [s for s in PIPELINE_STAGES if stages is None or (s in stages and not stages[s].get("loaded"))]
    budgets = [(s, stage_config(cfg, s)) for s in ran]
    return ", ".join(f"{s} {c.train.steps}x{c.data.batch_size}" for s, c in budgets)


def gap_cell(gap: dict | None) -> str:
    """A stage's share of the teacher's lead over the baseline student (validation frames; docs/distillation.md):
    the acclimation's *retained* (what its ghost decoder reads), the distillation's *closed* (what the student took)."""
    if not gap:
        return ""
    parts = [f"{key} {gap[key]:.2f}" for key in ("retained", "closed") if gap.get(key) is not None]
    return ", ".join(parts) or "teacher not ahead"


def stage_table(stages: dict, teacher_name: str = "") -> list[str]:
    """One markdown row per stage (steps, wall time, validation abs_rel, checkpoint; a given teacher by its name);
    per-image scores stay in report.json."""
    rows = [
        "| stage | steps | wall (s) | validation abs_rel | gap share | checkpoint |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, r in stages.items():
        if r.get("loaded"):
            rows.append(f"| {name} | given, not trained | | | | `{r.get('checkpoint') or teacher_name}` |")
            continue
        abs_rel = (r.get("metrics") or {}).get("abs_rel")
        wall = r.get("wall_s")
        rows.append(
            f"| {name} | {r.get('step', '')} | {'' if wall is None else f'{wall:.0f}'} | "
            f"{'' if abs_rel is None else f'{abs_rel:.4f}'} | {gap_cell(r.get('gap'))} | `{r.get('checkpoint', '')}` |"
        )
    return rows


def write_report(
    entries: list[dict],
    cfg: Config,
    out_dir: str | Path,
    stages: dict | None = None,
    title: str = "DisDepth pipeline report",
    appendix: str = "",
    summary: dict | None = None,
    changes: dict | None = None,
) -> Path:
    """report.md + report.json in ``out_dir``; returns the markdown path.

    ``stages``: the stage results (a table in the markdown, in full in report.json); ``appendix``: markdown added at
    the end; ``summary``: top-level entries added to report.json (the demo's ``demo`` summary); ``changes``: the
    :func:`change_json` of ``entries`` when the caller already has it (its bootstrap is not cheap).
    """
    changes = change_json(entries) if changes is None else changes
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e0 = entries[0]["metrics"]
    h, w = cfg.pipeline.bench_resolution
    threads = entries[0]["latency_threads"]
    lines = [
        f"# {title}: {cfg.name}",
        "",
        describe_run(cfg) + f". Budgets of the stages that trained (steps x batch): {trained_budgets(cfg, stages)}.",
        "",
        f"Protocol `{cfg.eval.protocol}`, caps {cfg.eval.min_depth or 'default'}..{cfg.eval.max_depth or 'default'} m, "
        f"{e0.get('images')} images ({e0.get('skipped')} skipped), flip-TTA {'on' if cfg.eval.flip_tta else 'off'}. "
        f"Complexity at {h}x{w}, batch 1, CPU (latency: median, {threads} thread{'s' if threads != 1 else ''}).",
        "",
        "| model | abs_rel | sq_rel | rmse | rmse_log | δ1 | δ2 | δ3 | params (M) | GFLOPs | latency (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    aligned = [e for e in entries if e["metrics"].get("alignment")]
    for e in entries:
        m = e["metrics"]
        label = f"{e['label']} (relative, aligned*)" if m.get("alignment") else e["label"]
        lines.append(
            f"| {label} | {m['abs_rel']:.4f} | {m['sq_rel']:.4f} | {m['rmse']:.4f} | {m['rmse_log']:.4f} | "
            f"{m['d1']:.4f} | {m['d2']:.4f} | {m['d3']:.4f} | {e['params_m']:.2f} | {e['gflops']:.2f} | "
            f"{e['latency_ms']:.1f} |"
        )
    if aligned:  # a relative model's numbers are never presented as metric
        how = aligned[0]["metrics"]["alignment"]
        lines += ["", f"\\* Relative model: {how}, to the ground truth before scoring; never read as metres."]
    if changes:
        lines += ["", *change_lines(changes)]
    if stages:
        lines += ["", "## Stages", "", *stage_table(stages, cfg.teacher.name), "", "Full stage results: report.json."]
        if warning := low_retained_warning((stages.get("acclimate") or {}).get("gap")):
            lines += ["", f"**Acclimation**: {warning}."]
    lines += ["", "## Panels (RGB | prediction | ground truth | error)", ""]
    for e in entries:
        lines += [f"![{e['label']}]({p})" for p in e["panels"]]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines) + "\n" + (f"\n{appendix}" if appendix else ""))
    report = {
        "title": title,
        "run": describe_run(cfg),
        "entries": entries,
        "distilled_vs_baseline": changes,
        "stages": stages or {},
        **(summary or {}),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return md
