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

from disdepth.config import Config
from disdepth.engine import dist


def _save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def model_entry(
    label: str,
    model: nn.Module,
    bench_model: nn.Module,
    dataset: Dataset,
    cfg: Config,
    info: dist.DistInfo,
    out_dir: Path,
    n_panels: int = 4,
    runs: int = 5,
) -> dict:
    """Accuracy of ``model`` on ``dataset`` plus ``bench_model``'s params, GFLOPs and CPU latency; saves panels.

    ``bench_model`` is the model as deployed (a teacher is benchmarked on its own input, not via a wrapper).
    """
    from disdepth.deploy.bench import bench_model as bench
    from disdepth.pipeline.stages import score

    metrics, panels = score(model, dataset, cfg, info, n_panels)
    paths = []
    for i, panel in enumerate(panels):
        path = out_dir / "panels" / f"{label}_{i}.png"
        _save_png(panel, path)
        paths.append(str(path.relative_to(out_dir)))
    h, w = cfg.pipeline.bench_resolution
    b = bench(bench_model, label, [(h, w)], warmup=1, runs=runs)[0]
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


def write_report(entries: list[dict], cfg: Config, out_dir: str | Path, extra: dict | None = None) -> Path:
    """report.md + report.json in ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    e0 = entries[0]["metrics"]
    h, w = cfg.pipeline.bench_resolution
    lines = [
        f"# DisDepth pipeline report: {cfg.name}",
        "",
        f"Protocol `{cfg.eval.protocol}`, caps {cfg.eval.min_depth or 'default'}..{cfg.eval.max_depth or 'default'} m, "
        f"{e0.get('images')} images ({e0.get('skipped')} skipped), flip-TTA {'on' if cfg.eval.flip_tta else 'off'}. "
        f"Complexity at {h}x{w}, batch 1, CPU (latency: median, {entries[0]['latency_threads']} threads).",
        "",
        "| model | abs_rel | sq_rel | rmse | rmse_log | δ1 | δ2 | δ3 | params (M) | GFLOPs | latency (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        m = e["metrics"]
        lines.append(
            f"| {e['label']} | {m['abs_rel']:.4f} | {m['sq_rel']:.4f} | {m['rmse']:.4f} | {m['rmse_log']:.4f} | "
            f"{m['d1']:.4f} | {m['d2']:.4f} | {m['d3']:.4f} | {e['params_m']:.2f} | {e['gflops']:.2f} | "
            f"{e['latency_ms']:.1f} |"
        )
    if extra:
        lines += ["", "## Stages", "", "```json", json.dumps(extra, indent=2, default=float), "```"]
    lines += ["", "## Panels (RGB | prediction | ground truth | error)", ""]
    for e in entries:
        lines += [f"![{e['label']}]({p})" for p in e["panels"]]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines) + "\n")
    (out_dir / "report.json").write_text(
        json.dumps({"entries": entries, "stages": extra or {}}, indent=2, default=float)
    )
    return md
