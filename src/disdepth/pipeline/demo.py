"""The demo: the packaged recipe through :func:`~disdepth.pipeline.run.run_stages`, scored on held-out scenes.

``disdepth demo`` runs the pipeline (teacher -> baseline student -> acclimation -> distillation) from the packaged
recipe ``disdepth/recipes/demo.yaml``, then :func:`~disdepth.pipeline.run.score_models` scores the teacher, the
baseline and the distilled student on **held-out** synthetic scenes that no stage trained or validated on (scene
numbers after the train, validation and tuning scenes), and prints one table with the KD gain. The report goes to
the output folder; the stages live in ``<out>/pipeline`` and a re-run reuses the finished ones.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disdepth.config import PIPELINE_STAGES, Config, dump_yaml, stage_config
from disdepth.data.synthetic import SyntheticDepthDataset
from disdepth.engine.evaluation import predict_depth
from disdepth.eval.viz import colorize, denormalize
from disdepth.models.spec import InputSpec
from disdepth.pipeline.report import change_json, change_lines, save_png, write_report
from disdepth.pipeline.run import pipeline_models, run_stages, score_models
from disdepth.pipeline.stages import model_spec

# --quick divides every stage's steps by this (and the held-out set by two): about a third of the full run.
QUICK_STEP_DIVISOR = 3
LABELS = ("teacher", "baseline", "distilled")


def recipe_path() -> Path:
    """The packaged demo recipe (``configs/`` is not installed with the package, so the recipe ships inside it)."""
    return Path(str(resources.files("disdepth.recipes") / "demo.yaml"))


def stage_steps(cfg: Any) -> dict[str, int]:
    """Optimizer steps of each stage after its ``pipeline.<stage>`` budget."""
    return {stage: stage_config(cfg, stage).train.steps for stage in PIPELINE_STAGES}


def quick_overrides(cfg: Any) -> list[str]:
    """``--set`` overrides that divide every stage's steps by :data:`QUICK_STEP_DIVISOR` (data unchanged)."""
    steps = stage_steps(cfg)
    return [f"pipeline.{stage}.steps={max(1, n // QUICK_STEP_DIVISOR)}" for stage, n in steps.items()]


# Scenes n_train + n_val ... + TUNING_SCENES - 1 are where settings get chosen (``benchmarks/distill_ablation.py
# --split val`` scores there); the demo's test scenes come after them, so nothing it reports was tuned on.
TUNING_SCENES = 100


def held_out_start(cfg: Any) -> int:
    """First held-out scene: after the train, validation and tuning scenes."""
    s = cfg.data.synthetic
    return s.n_train + s.n_val + TUNING_SCENES


def held_out_dataset(cfg: Any, n: int, spec: InputSpec) -> SyntheticDepthDataset:
    """Synthetic scenes from :func:`held_out_start`: never seen by training (``< n_train``), validation (the next
    ``n_val``, which the pipeline's stages score) or the tuning scenes the distillation settings were chosen on."""
    s = cfg.data.synthetic
    extra = {k: getattr(s, k) for k in ("sparse_density", "depth_noise", "holes") if hasattr(s, k)}
    return SyntheticDepthDataset(
        preset=s.preset, length=n, height=s.height, width=s.width, seed=s.seed,
        index_offset=held_out_start(cfg), sparse=s.sparse, mean=spec.mean, std=spec.std, transform=None, **extra,
    )  # fmt: skip


def check_same_recipe(out: Path, cfg_text: str, overwrite: bool) -> None:
    """Stages are reused by folder, so refuse to mix runs made from different recipes (e.g. quick and full)."""
    saved = out / "demo_config.yaml"
    if saved.is_file() and saved.read_text() != cfg_text and not overwrite:
        raise ValueError(
            f"{out} holds a demo made with a different recipe (--quick or --set changed; see {saved}): "
            "pass --overwrite to start over, or another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(cfg_text)


def comparison_panel(rows: list[list[np.ndarray]], scale: int = 2) -> np.ndarray:
    """Stack rows of [RGB, teacher, baseline, distilled, GT] tiles under a label strip; (H', W', 3) uint8."""
    from PIL import Image, ImageDraw  # PIL draws the labels; numpy the grid

    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    grid = np.kron(grid, np.ones((scale, scale, 1), dtype=np.uint8))  # nearest-neighbour upscale: tiny images
    tile_w = grid.shape[1] // len(rows[0])
    strip = Image.new("RGB", (grid.shape[1], 14), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, name in enumerate(("RGB", *LABELS, "ground truth")):
        draw.text((i * tile_w + 4, 1), name, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), grid], axis=0)


def side_by_side(models: dict[str, Any], dataset, n: int) -> list[list[np.ndarray]]:
    """Per image: RGB | teacher | baseline | distilled | GT, one depth range (the GT's 2-98th percentile)."""

    rows = []
    for i in range(min(n, len(dataset))):
        sample = dataset[i]
        image = sample["image"][None]
        gt, valid = sample["depth"][0].numpy(), sample["valid"][0].numpy().astype(bool)
        vmin, vmax = (float(np.percentile(gt[valid], q)) for q in (2, 98))
        tiles = [denormalize(sample["image"], dataset.mean, dataset.std)]
        for label in LABELS:
            with torch.inference_mode():
                pred = predict_depth(models[label].eval(), image)[0, 0].float().numpy()
            tiles.append(colorize(pred, vmin, vmax, np.ones_like(valid)))
        tiles.append(colorize(gt, vmin, vmax, valid))
        rows.append(tiles)
    return rows


def kd_gain(entries: list[dict]) -> float:
    """Relative abs_rel change of the distilled student vs the baseline, percent (negative = lower error)."""
    by = {e["label"]: e["metrics"]["abs_rel"] for e in entries}
    return 100.0 * (by["distilled"] - by["baseline"]) / by["baseline"]


def format_table(entries: list[dict], summary: dict) -> str:
    """The demo's printed table (plain text) with its protocol line and verdict."""
    s = summary
    lines = [
        f"DisDepth demo ({s['mode']}): synthetic {s['preset']} world at {s['resolution'][0]}x{s['resolution'][1]}, "
        f"{s['n_train']} train scenes",
        f"test: {s['test_images']} held-out scenes (#{s['test_scenes'][0]}-{s['test_scenes'][1]}, never trained or "
        f"validated on), protocol {s['protocol']}, depth {s['caps'][0]:g}-{s['caps'][1]:g} m, flip-TTA off",
        f"budgets (steps x batch {s['batch_size']}): " + ", ".join(f"{k} {v}" for k, v in s["steps"].items()),
        f"complexity: {s['bench_hw'][0]}x{s['bench_hw'][1]} input, batch 1, CPU, torch threads {s['threads']}, "
        "latency = median",
        "",
        f"{'model':<10} {'abs_rel':>8} {'rmse':>7} {'δ1':>7} {'params(M)':>10} {'GFLOPs':>7} {'latency(ms)':>12}",
    ]
    for e in entries:
        m = e["metrics"]
        lines.append(
            f"{e['label']:<10} {m['abs_rel']:>8.4f} {m['rmse']:>7.4f} {m['d1']:>7.4f} {e['params_m']:>10.2f} "
            f"{e['gflops']:>7.2f} {e['latency_ms']:>12.1f}"
        )
    # The change with what it is: one seed and an interval over these test images; never a bare "helped".
    changes = s.get("distilled_vs_baseline") or change_json(entries)
    lines += ["", *(change_lines(changes) or [f"distilled vs baseline, abs_rel: {s['kd_gain_pct']:+.1f} % (one seed)"])]
    return "\n".join(lines)


def run_demo(cfg: Config, out: Path, n_test: int, n_side: int, overwrite: bool = False, mode: str = "full") -> dict:
    """The pipeline from ``cfg`` in ``out/pipeline``, then the held-out scoring, picture, table and report.

    Returns the summary (with ``table``: the printed table, and ``report``: the markdown path).
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    check_same_recipe(out, dump_yaml(cfg), overwrite)
    results = run_stages(cfg, out / "pipeline", overwrite=overwrite)
    pipeline_wall = time.perf_counter() - start_wall
    test = held_out_dataset(cfg, n_test, model_spec(cfg, "student"))
    models = pipeline_models(cfg, results)
    entries = score_models(cfg, models, test, out, cfg.pipeline.panels)
    rows = side_by_side({label: scored for label, (scored, _) in models.items()}, test, n_side)
    s = cfg.data.synthetic
    summary = {
        "mode": mode,
        "preset": s.preset,
        "resolution": [s.height, s.width],
        "n_train": s.n_train,
        "n_val": s.n_val,
        "test_images": entries[0]["metrics"]["images"],
        "test_scenes": [held_out_start(cfg), held_out_start(cfg) + n_test - 1],
        "protocol": cfg.eval.protocol,
        "caps": [cfg.eval.min_depth or 1e-3, cfg.eval.max_depth or float("inf")],
        "batch_size": cfg.data.batch_size,
        "steps": stage_steps(cfg),
        "bench_hw": entries[0]["bench_hw"],
        "threads": entries[0]["latency_threads"],
        "kd_gain_pct": kd_gain(entries),
        "distilled_vs_baseline": change_json(entries),
        "stage_wall_s": {k: v.get("wall_s") for k, v in results.items()},
        "pipeline_wall_s": pipeline_wall,
        "recipe": "disdepth/recipes/demo.yaml",
    }
    if rows:
        save_png(comparison_panel(rows), out / "panels" / "side_by_side.png")
    summary["wall_s"] = time.perf_counter() - start_wall
    summary["cpu_s"] = time.process_time() - start_cpu
    table = format_table(entries, summary)
    appendix = (
        "## Held-out images (RGB | teacher | baseline | distilled | ground truth)\n\n"
        f"![side by side](panels/side_by_side.png)\n\n```\n{table}\n```\n"
    )
    md = write_report(
        entries, cfg, out, results, "DisDepth demo report", appendix, {"demo": summary},
        changes=summary["distilled_vs_baseline"],
    )  # fmt: skip
    (out / "table.txt").write_text(table + "\n")
    return {**summary, "table": table, "report": str(md)}
