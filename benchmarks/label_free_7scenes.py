"""Label-free distillation on real frames: the student never sees a depth map (issue 14's evidence).

On ``../shared/data/seven_scenes_redkitchen`` (234 frames of one sequence, every 3rd frame), split by sequence
position with gaps so near-duplicate neighbours never straddle two parts:

    teacher rows   0-59   (frames   0-177): the teacher's only real frames (labelled), plus synthetic indoor scenes
    student rows  70-164  (frames 210-492): the students' frames; the label-free students get them WITHOUT depth
    test rows    175-233  (frames 525-699): scored only, never trained or tuned on

Rows (each seed trains its own students; one teacher is shared):
    teacher                    hybrid Lite0 transformer, synthetic scenes + teacher rows (with flips)
    supervised                 the student trained on the student rows WITH their depth (the label-using reference)
    label-free, response only  the student trained on the student rows with the teacher's depth as the only target
    label-free DisDepth        acclimation (ghost = the response-only student) + distillation: feature KD to the
                               acclimated teacher + the teacher's depth as the depth target, no labels anywhere

python benchmarks/label_free_7scenes.py --seeds 0 1 2 --out runs/label_free_7s --threads 1

Each stage goes through the pipeline API (reused when finished with the same settings); per-run results are
written to ``benchmarks/results/label_free_7scenes/`` (metrics, config, seed, wall time; no checkpoints) and the
table to ``table.md`` there.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_ablation import SEVEN_SCENES, Flipped, Splits, _resize, add_recipe_arguments, base_config, extra_synthetic  # noqa: E402

from disdepth.config import Config, load_config, to_dict  # noqa: E402
from disdepth.data.csv import CSVDataset  # noqa: E402
from disdepth.data.mixing import UnlabelledImages  # noqa: E402
from disdepth.data.views import InMemory  # noqa: E402
from disdepth.engine import dist  # noqa: E402
from disdepth.eval.stats import paired_bootstrap, per_image_matrix  # noqa: E402
from disdepth.pipeline.run import run_stage  # noqa: E402
from disdepth.pipeline.stages import acclimate_stage, distill_stage, model_spec, supervised_stage  # noqa: E402

TEACHER_ROWS, STUDENT_ROWS, TEST_ROWS = range(0, 60), range(70, 165), range(175, 234)
RESULTS = Path(__file__).resolve().parent / "results" / "label_free_7scenes"
ROWS = {
    "supervised": "student, supervised on the student frames (uses their depth)",
    "response_only": "student, label-free: teacher depth as the only target",
    "disdepth": "student, label-free DisDepth: acclimated feature KD + teacher depth",
}


def load_frames(size: tuple[int, int], cache: Path) -> dict[str, InMemory]:
    """The three parts of the sequence, resized and held in memory (ImageNet normalisation, as the ablation)."""
    path = cache / f"sevenscenes_parts_{size[0]}x{size[1]}.pt"
    if not path.is_file():
        if not SEVEN_SCENES.is_file():
            raise FileNotFoundError(f"{SEVEN_SCENES}: the 7-Scenes frames are not beside this repository")
        full = CSVDataset(SEVEN_SCENES, require_depth=True)
        assert len(full) == len(list(csv.DictReader(SEVEN_SCENES.open()))) == 234
        split = {"teacher": TEACHER_ROWS, "student": STUDENT_ROWS, "test": TEST_ROWS}
        parts = {name: [_resize(full[i], size) for i in rows] for name, rows in split.items()}
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(parts, path)
    return {name: InMemory(samples) for name, samples in torch.load(path, weights_only=True).items()}


def stage(name: str, run_dir: Path, cfg: Config, fn, train: Dataset, test: Dataset, info, **kw) -> dict:
    """One pipeline stage on in-memory sets (reused when finished with the same settings)."""
    splits, spec = Splits(train, test), model_spec(cfg, kw.get("which", "student"))
    train_set, val_set = splits(cfg, "train", spec), splits(cfg, "val", spec)
    return run_stage(name, run_dir, cfg, lambda **k: fn(cfg, run_dir, train_set, val_set, info, **k, **kw), False)


def record(row: str, seed: int, cfg: Config, result: dict) -> dict:
    """The committed per-run file: metrics, config, seed, wall time."""
    out = {"row": row, "seed": seed, "metrics": result["metrics"], "wall_s": result.get("wall_s"),
           "config": to_dict(cfg)}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{row}_seed{seed}.json").write_text(json.dumps(out, indent=1, default=float))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--teacher-steps", type=int, default=1200)
    p.add_argument("--teacher-extra", type=int, default=400, help="synthetic indoor scenes for the teacher")
    p.add_argument("--acclimate-steps", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    add_recipe_arguments(p)  # what distill_ablation.base_config reads
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = dist.DistInfo.single()
    start = time.perf_counter()
    size = tuple(args.size)
    parts = load_frames(size, args.out / "data")
    test = parts["test"]

    teacher_cfg = load_config(overrides=[f"train.steps={args.teacher_steps}", "train.lr=5e-4"],
                              base=base_config(args, 0))  # fmt: skip
    extra = extra_synthetic(args.teacher_extra, size, args.out / "data")
    teacher_train = Flipped(ConcatDataset([parts["teacher"], extra]))
    teacher = stage("teacher", args.out / "teacher", teacher_cfg, supervised_stage, teacher_train, test, info,
                    which="teacher")  # fmt: skip
    print("teacher", {k: round(teacher["metrics"][k], 4) for k in ("abs_rel", "rmse", "d1")}, flush=True)
    record("teacher", 0, teacher_cfg, teacher)
    unlabelled = UnlabelledImages(parts["student"])  # the students' frames without their depth

    for seed in args.seeds:
        run = args.out / f"seed{seed}"
        kd = [f"teacher.checkpoint={teacher['checkpoint']}"]
        cfg = base_config(args, seed)
        record("supervised", seed, cfg, stage("supervised", run / "supervised", cfg, supervised_stage,
                                              parts["student"], test, info))  # fmt: skip
        label_free = load_config(overrides=[*kd, "data.require_depth=false"], base=base_config(args, seed))
        response = stage("response_only", run / "response_only", label_free, supervised_stage, unlabelled, test, info)
        record("response_only", seed, label_free, response)
        acfg = load_config(
            overrides=[*kd, "data.require_depth=false", f"acclimate.baseline_checkpoint={response['checkpoint']}",
                       f"train.steps={args.acclimate_steps}"],
            base=base_config(args, seed),
        )  # fmt: skip
        acc = stage("acclimate", run / "acclimate", acfg, acclimate_stage, unlabelled, test, info)
        acclimated = f"distill.acclimated_checkpoint={acc['checkpoint']}"
        dcfg = load_config(overrides=[*kd, "data.require_depth=false", acclimated], base=base_config(args, seed))
        record("disdepth", seed, dcfg, stage("disdepth", run / "disdepth", dcfg, distill_stage, unlabelled, test, info))
        ghost = acc["metrics"]["ghost"]
        print(f"seed {seed}: ghost decoder abs_rel {ghost.get('abs_rel', float('nan')):.4f}", flush=True)
    write_table(args, time.perf_counter() - start)


def per_image(runs: dict, row: str, seeds: list[int]) -> np.ndarray:
    """(seeds, test images) abs_rel of one row."""
    return per_image_matrix([runs[f"{row}_seed{s}"]["metrics"] for s in seeds])


def write_table(args: argparse.Namespace, wall: float) -> None:
    """Mean ± std over seeds, and paired changes with 95 % bootstrap intervals over test images and seeds."""
    runs = {f.stem: json.loads(f.read_text()) for f in RESULTS.glob("*_seed*.json")}
    teacher = runs["teacher_seed0"]["metrics"]
    seeds = [s for s in args.seeds if all(f"{r}_seed{s}" in runs for r in ROWS)]
    lines = [
        f"7-Scenes redkitchen, {args.size[0]}x{args.size[1]}, seeds {seeds}, {args.steps} steps x batch "
        f"{args.batch} per student, protocol none, caps 1e-3..{args.max_depth} m, no flip-TTA, test frames "
        f"525-699 ({len(TEST_ROWS)}); Δ: paired change of mean abs_rel, 95 % bootstrap interval over test images "
        f"and seeds (eval/stats.py); total wall {wall:.0f} s",
        "",
        "| row | abs_rel | rmse (m) | δ1 | Δ abs_rel vs supervised | Δ abs_rel vs response-only |",
        "|---|---|---|---|---|---|",
        f"| teacher (synthetic + frames 0-177) | {teacher['abs_rel']:.4f} | {teacher['rmse']:.4f} | "
        f"{teacher['d1']:.4f} | | |",
    ]
    if seeds:
        supervised, response = per_image(runs, "supervised", seeds), per_image(runs, "response_only", seeds)
    for row, label in ROWS.items():
        if not seeds:
            break
        per = [runs[f"{row}_seed{s}"]["metrics"] for s in seeds]
        cells = []
        for m in ("abs_rel", "rmse", "d1"):
            vals = [x[m] for x in per]
            cells.append(f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals) if len(vals) > 1 else 0:.4f}")
        errors = per_image(runs, row, seeds)
        vs_sup = paired_bootstrap(errors, supervised).format() if row != "supervised" else ""
        vs_resp = paired_bootstrap(errors, response).format() if row == "disdepth" else ""
        lines.append(f"| {label} | {' | '.join(cells)} | {vs_sup} | {vs_resp} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
