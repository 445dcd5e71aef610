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
from disdepth.pipeline.stages import score


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
        save_png(panel, path)
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


def write_report(
    entries: list[dict],
    cfg: Config,
    out_dir: str | Path,
    stages: dict | None = None,
    title: str = "DisDepth pipeline report",
    appendix: str = "",
    summary: dict | None = None,
) -> Path:
    """report.md + report.json in ``out_dir``; returns the markdown path.

    ``stages``: the stage results (shown in the markdown); ``appendix``: markdown added at the end; ``summary``:
    top-level entries added to report.json (the demo's ``demo`` summary).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e0 = entries[0]["metrics"]
    h, w = cfg.pipeline.bench_resolution
    stage_cfgs = {stage: stage_config(cfg, stage) for stage in PIPELINE_STAGES}
    budgets = ", ".join(f"{stage} {c.train.steps}x{c.data.batch_size}" for stage, c in stage_cfgs.items())
    lines = [
        f"# {title}: {cfg.name}",
        "",
        describe_run(cfg) + f". Budgets (steps x batch): {budgets}.",
        "",
        f"Protocol `{cfg.eval.protocol}`, caps {cfg.eval.min_depth or 'default'}..{cfg.eval.max_depth or 'default'} m, "
        f"{e0.get('images')} images ({e0.get('skipped')} skipped), flip-TTA {'on' if cfg.eval.flip_tta else 'off'}. "
        f"Complexity at {h}x{w}, batch 1, CPU (latency: median, {entries[0]['latency_threads']} threads).",
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
        lines += ["", f"\\* Relative model: scored after {aligned[0]['metrics']['alignment']} to the ground truth."]
    if stages:
        lines += ["", "## Stages", "", "```json", json.dumps(stages, indent=2, default=float), "```"]
    lines += ["", "## Panels (RGB | prediction | ground truth | error)", ""]
    for e in entries:
        lines += [f"![{e['label']}]({p})" for p in e["panels"]]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines) + "\n" + (f"\n{appendix}" if appendix else ""))
    report = {"title": title, "run": describe_run(cfg), "entries": entries, "stages": stages or {}, **(summary or {})}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return md
