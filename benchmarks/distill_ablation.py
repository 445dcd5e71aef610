"""DisDepth ablation runner: baseline -> + LG-Conv -> + classic feature KD -> + ghost-decoder acclimation ->
+ attentive loss (full DisDepth), mean and spread over seeds, on the synthetic indoor world or the real 7-Scenes
redkitchen frames. Regenerates the table in docs/distillation.md.

python benchmarks/distill_ablation.py --dataset synthetic --seeds 0 1 2 --out runs/ablation_synth
python benchmarks/distill_ablation.py --dataset sevenscenes --seeds 0 1 2 --out runs/ablation_7s

Data are rendered/loaded once, resized and kept in memory (augmentation off, so teacher targets are cached).
The recipe is configs/benchmarks/distill_ablation.yaml plus the flags; every stage is a stage of the pipeline API
(disdepth.pipeline.stages, run through disdepth.pipeline.run.run_stage: a stage finished with the same settings is
reused, one made with other settings is refused naming the keys). One teacher per dataset (seed 0, longer budget)
is shared by every student; each seed trains its own baseline, LG-Conv baseline (whose decoder is the ghost
decoder), acclimation, and the three KD students.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset

from disdepth.config import Config, load_config
from disdepth.data.views import InMemory, renormalized
from disdepth.engine import dist
from disdepth.eval.stats import paired_bootstrap, per_image_matrix
from disdepth.models.spec import InputSpec
from disdepth.pipeline.run import run_stage
from disdepth.pipeline.stages import acclimate_stage, distill_stage, model_spec, stage_done, supervised_stage

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill_ablation"
RECIPE = ROOT / "configs" / "benchmarks" / "distill_ablation.yaml"
# The shared real data sit beside the repository (../shared/data), as the tests find them.
SEVEN_SCENES = ROOT.parent / "shared" / "data" / "seven_scenes_redkitchen" / "index.csv"
# In-memory samples are stored in ImageNet normalisation; each model sees them in its own (InputSpec).
STORED = InputSpec()
# Sequence split (rows of index.csv = frames 0, 3, ..., 699): train rows 0-164 (frames 0-492), a 10-row gap
# (frames 495-522) so near-duplicate neighbours never straddle the split, test rows 175-233 (frames 525-699).
TRAIN_ROWS, TEST_ROWS = range(0, 165), range(175, 234)

ROWS = [
    ("baseline", "baseline student"),
    ("lgconv", "+ LG-Conv"),
    ("classic_kd", "+ classic feature KD (adapter, raw teacher features)"),
    ("acclimated_kd", "+ ghost-decoder acclimation (uniform weights on FAM features)"),
    ("disdepth", "+ attentive loss (full DisDepth)"),
    ("response", "response KD alone (LG-Conv student, teacher depth, no feature KD)"),
    ("disdepth_response", "full DisDepth + response KD"),
]
# The few-label regime (--few-label F): F of the training frames keep their depth, the rest are unlabelled images
# whose depth target is the teacher's; compared with the baseline trained on the labelled part alone.
FEW_ROWS = [
    ("few_baseline", "few labels: baseline student (labelled part only)"),
    ("few_response", "few labels: response KD (all frames, teacher depth where unlabelled)"),
    ("few_disdepth", "few labels: full DisDepth (acclimated on the labelled part's baseline) + teacher depth"),
]


class Flipped(Dataset):
    """Random horizontal flips (the data module's ``RandomHFlip``) for teacher training only: students keep
    augmentation off so that their teacher targets can be cached per sample id."""

    def __init__(self, inner: Dataset, seed: int = 0) -> None:
        from disdepth.data.transforms import RandomHFlip

        self.inner, self.flip = inner, RandomHFlip(0.5, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict:
        return self.flip(dict(self.inner[i]))


def _resize(sample: dict, size: tuple[int, int]) -> dict:
    """Image: area (anti-aliased) resize; depth and valid: nearest (no mixing across depth edges)."""
    image = F.interpolate(sample["image"][None], size=size, mode="area")[0]
    depth = F.interpolate(sample["depth"][None], size=size, mode="nearest")[0]
    valid = F.interpolate(sample["valid"][None].float(), size=size, mode="nearest")[0] > 0.5
    scale = size[1] / sample["image"].shape[-1]
    return {
        **sample,
        "image": image,
        "depth": depth * valid,
        "valid": valid,
        "focal": sample["focal"] * scale,
        "intrinsics": sample["intrinsics"] * scale,
    }


def load_data(
    name: str, size: tuple[int, int], n_train: int, n_val: int, cache: Path, split: str = "test"
) -> tuple[Dataset, Dataset]:
    """(train, held-out) in memory with ImageNet normalisation (the students'; teachers re-normalise).

    ``split="test"`` holds out the test images; ``split="val"`` (synthetic only) holds out a third, disjoint set of
    scenes for choosing settings, so the test images never steer a choice.
    """
    if split == "val" and name != "synthetic":
        raise ValueError("--split val exists for the synthetic world only (its scenes are unlimited)")
    path = cache / f"{name}_{size[0]}x{size[1]}_{n_train}_{n_val}{'_val' if split == 'val' else ''}.pt"
    if path.is_file():
        train, test = torch.load(path, weights_only=True)
        return InMemory(train), InMemory(test)
    if name == "synthetic":
        from disdepth.data.synthetic import SyntheticDepthDataset

        kw = dict(preset="indoor", height=size[0], width=size[1], seed=0)
        train = [SyntheticDepthDataset(length=n_train, **kw)[i] for i in range(n_train)]
        # val = the tuning scenes right after train + test, which the demo reserves and never reports on.
        from disdepth.pipeline.demo import TUNING_SCENES

        if split == "val" and n_val > TUNING_SCENES:
            raise ValueError(f"--n-val {n_val} > the {TUNING_SCENES} tuning scenes the demo keeps out of its test set")
        offset = n_train + (n_val if split == "val" else 0)
        test = [SyntheticDepthDataset(length=n_val, index_offset=offset, **kw)[i] for i in range(n_val)]
    else:
        from disdepth.data.csv import CSVDataset

        if not SEVEN_SCENES.is_file():
            raise FileNotFoundError(f"{SEVEN_SCENES}: the 7-Scenes frames are not beside this repository")
        rows = list(csv.DictReader(SEVEN_SCENES.open()))
        full = CSVDataset(SEVEN_SCENES, require_depth=True)
        assert len(full) == len(rows) == 234, len(full)
        train = [_resize(full[i], size) for i in TRAIN_ROWS]
        test = [_resize(full[i], size) for i in TEST_ROWS]
    cache.mkdir(parents=True, exist_ok=True)
    torch.save((train, test), path)
    return InMemory(train), InMemory(test)


# Extra teacher-only scenes start here: far from the students' train/test/val scene numbers (0 .. a few hundred).
EXTRA_SCENE_OFFSET = 1_000_000
# Unlabelled scenes for the distillation stage (--unlabelled): disjoint from the students' splits and from the
# teacher's extra scenes, so the teacher never saw their labels.
UNLABELLED_SCENE_OFFSET = 2_000_000


def extra_synthetic(
    n: int, size: tuple[int, int], cache: Path, offset: int = EXTRA_SCENE_OFFSET, name: str = "teacher_extra"
) -> Dataset:
    """``n`` synthetic indoor scenes numbered from ``offset`` (teacher-only "more data", DESIGN.md §1.3, or the
    distillation stage's unlabelled images), disjoint from every student split; ImageNet-normalised like the
    other in-memory sets."""
    from disdepth.data.synthetic import SyntheticDepthDataset

    path = cache / f"{name}_{size[0]}x{size[1]}_{n}.pt"
    if not path.is_file():
        world = SyntheticDepthDataset("indoor", length=n, height=size[0], width=size[1], seed=0, index_offset=offset)
        cache.mkdir(parents=True, exist_ok=True)
        torch.save([world[i] for i in range(n)], path)
    return InMemory(torch.load(path, weights_only=True))


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """The flags :func:`base_config` reads (shared by the benchmarks built on this recipe)."""
    p.add_argument("--student", default="mobilenetv2_100")
    p.add_argument(
        "--student-weights", default="", help="ImageNet weights for the student, e.g. package:efficientnet-lite0"
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-depth", type=float, default=10.0)
    p.add_argument("--base-set", nargs="*", default=[], help="extra --set overrides for every stage (teacher too)")


def base_config(args: argparse.Namespace, seed: int) -> Config:
    """The recipe file plus what the flags set (seed, student, budgets, sizes), then ``--base-set``."""
    h, w = args.size
    weights = ["model.pretrained=file", f"model.weights={args.student_weights}"] if args.student_weights else []
    return load_config(
        RECIPE,
        [
            f"seed={seed}",
            f"model.encoder={args.student}",
            *weights,
            f"model.max_depth={args.max_depth}",
            f"teacher.max_depth={args.max_depth}",
            f"train.steps={args.steps}",
            f"train.lr={args.lr}",
            f"data.batch_size={args.batch}",
            f"eval.max_depth={args.max_depth}",
            f"data.synthetic.height={h}",
            f"data.synthetic.width={w}",
            *args.base_set,
        ],
    )


class Splits:
    """The pipeline's ``datasets(cfg, split, spec)`` over in-memory sets: train, and the held-out frames as
    "val" (scored at the end of every stage); each model sees them in its own normalisation."""

    def __init__(self, train: Dataset, held_out: Dataset) -> None:
        self.sets = {"train": train, "val": held_out}

    def __call__(self, cfg: Config, split: str, spec: InputSpec) -> Dataset:
        return renormalized(self.sets[split], STORED, spec)


def run_seed(
    args, seed: int, out: Path, train: Dataset, test: Dataset, teacher_ckpt: str, info, unlabelled: Dataset | None
) -> dict[str, dict]:
    results: dict[str, dict] = {}

    def stage(key: str, fn, cfg: Config, data: Dataset = train, name: str = "") -> dict:
        """One stage through the pipeline's reuse rule (finished with the same settings: reused; else refused)."""
        run_dir = out / f"seed{seed}" / (name or key)  # name: a run directory that records the row's settings
        splits = Splits(data, test)
        spec = model_spec(cfg, "student")
        train_set, val_set = splits(cfg, "train", spec), splits(cfg, "val", spec)
        run = lambda **kw: fn(cfg, run_dir, train_set, val_set, info, **kw)  # noqa: E731
        results[key] = run_stage(key, run_dir, cfg, run, overwrite=False)
        return results[key]

    cfg = base_config(args, seed)
    stage("baseline", supervised_stage, cfg)
    lg = ["model.lgconv.enabled=true"]
    cfg = load_config(overrides=lg, base=base_config(args, seed))
    lg_ckpt = stage("lgconv", supervised_stage, cfg)["checkpoint"]
    kd = [
        *lg,
        f"teacher.checkpoint={teacher_ckpt}",
        f"distill.feature_weight={args.kd_weight}",
        f"distill.levels=[{','.join(map(str, args.levels))}]",
        *args.distill_set,
    ]
    cfg = load_config(
        overrides=[*kd, "distill.feature_target=raw", "distill.attention=none"], base=base_config(args, seed)
    )
    if "classic_kd" not in args.skip:
        stage("classic_kd", distill_stage, cfg)
    cfg = load_config(
        overrides=[
            *kd,
            f"acclimate.baseline_checkpoint={lg_ckpt}",
            f"train.steps={args.acclimate_steps}",
            f"train.lr={args.acclimate_lr}",
        ],
        base=base_config(args, seed),
    )
    acc = stage("acclimate", acclimate_stage, cfg)["checkpoint"]
    kd.append(f"distill.acclimated_checkpoint={acc}")
    if "acclimated_kd" not in args.skip:
        cfg = load_config(overrides=[*kd, "distill.attention=none"], base=base_config(args, seed))
        stage("acclimated_kd", distill_stage, cfg)
    disdepth = [*kd, f"distill.attention={args.attention}", f"distill.tau={args.tau}"]
    if "disdepth" not in args.skip:
        stage("disdepth", distill_stage, load_config(overrides=disdepth, base=base_config(args, seed)))
    response = [*lg, f"teacher.checkpoint={teacher_ckpt}", f"distill.response_weight={args.response_weight}"]
    if "response" not in args.skip:
        cfg = load_config(overrides=[*response, "distill.feature_target=none"], base=base_config(args, seed))
        stage("response", distill_stage, cfg)
    if "disdepth_response" not in args.skip:
        cfg = load_config(overrides=[*disdepth, f"distill.response_weight={args.response_weight}"],
                          base=base_config(args, seed))  # fmt: skip
        stage("disdepth_response", distill_stage, cfg)
    if args.few_label:
        few_label_rows(args, seed, stage, train, kd, disdepth)
    if args.magnitude_row:  # extra variant: teacher-magnitude attention with --soft-tau / --soft-floor
        soft = [
            "distill.attention=magnitude",
            f"distill.tau={args.soft_tau}",
            f"distill.attention_floor={args.soft_floor}",
        ]
        stage("disdepth_soft", distill_stage, load_config(overrides=[*kd, *soft], base=base_config(args, seed)))
    if unlabelled is not None:
        # The DisDepth row's recipe + response KD, its epochs mixed with unlabelled scenes (no depth loss there);
        # and the control: the same mix with response KD alone (no feature KD).
        from disdepth.data.mixing import MixedDataset

        mixed = MixedDataset(train, unlabelled, args.unlabelled_fraction)
        response = f"distill.response_weight={args.unlabelled_response}"
        # The settings are in the directory name, so a re-run with other settings never reuses these results.
        tag = f"n{args.unlabelled}_f{args.unlabelled_fraction:g}_r{args.unlabelled_response:g}"
        cfg = load_config(overrides=[*disdepth, response], base=base_config(args, seed))
        stage("disdepth_unlabelled", distill_stage, cfg, data=mixed, name=f"disdepth_unlabelled_{tag}")
        cfg = load_config(overrides=[*disdepth, response, "distill.feature_weight=0"], base=base_config(args, seed))
        stage("response_unlabelled", distill_stage, cfg, data=mixed, name=f"response_unlabelled_{tag}")
    return results


def few_label_split(train: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """(the labelled part, the whole set with the rest's depth removed): every 1/fraction-th frame keeps its depth,
    spread over the sequence."""
    from torch.utils.data import Subset

    from disdepth.data.mixing import UnlabelledImages

    step = max(1, round(1 / fraction))
    labelled = [i for i in range(len(train)) if i % step == 0]
    rest = [i for i in range(len(train)) if i % step != 0]
    return Subset(train, labelled), ConcatDataset([Subset(train, labelled), UnlabelledImages(Subset(train, rest))])


def few_label_rows(args, seed: int, stage, train: Dataset, kd: list[str], disdepth: list[str]) -> None:
    """Baseline, response KD and DisDepth when only ``args.few_label`` of the frames have depth."""
    labelled, mixed = few_label_split(train, args.few_label)
    tag = f"_f{args.few_label:g}"  # the run directory records the fraction
    cfg = base_config(args, seed)
    stage("few_baseline", supervised_stage, cfg, data=labelled, name="few_baseline" + tag)
    lg = load_config(overrides=["model.lgconv.enabled=true"], base=base_config(args, seed))
    lg_ckpt = stage("few_lgconv", supervised_stage, lg, data=labelled, name="few_lgconv" + tag)["checkpoint"]
    no_gt = "data.require_depth=false"
    teacher = [x for x in kd if x.startswith("teacher.")]
    response = ["model.lgconv.enabled=true", *teacher, no_gt, "distill.feature_target=none",
                f"distill.response_weight={args.response_weight}"]  # fmt: skip
    cfg = load_config(overrides=response, base=base_config(args, seed))
    stage("few_response", distill_stage, cfg, data=mixed, name="few_response" + tag)
    plain = [x for x in kd if not x.startswith("distill.acclimated_checkpoint")]
    acfg = load_config(overrides=[*plain, no_gt, f"acclimate.baseline_checkpoint={lg_ckpt}",
                                  f"train.steps={args.acclimate_steps}", f"train.lr={args.acclimate_lr}"],
                       base=base_config(args, seed))  # fmt: skip
    acc = stage("few_acclimate", acclimate_stage, acfg, data=mixed, name="few_acclimate" + tag)["checkpoint"]
    settings = [x for x in disdepth if not x.startswith("distill.acclimated_checkpoint")]
    few = [*settings, no_gt, f"distill.acclimated_checkpoint={acc}"]
    cfg = load_config(overrides=few, base=base_config(args, seed))
    stage("few_disdepth", distill_stage, cfg, data=mixed, name="few_disdepth" + tag)


def per_image_errors(per_seed: dict[int, dict], key: str) -> np.ndarray:
    """(seeds, test images) abs_rel of one row."""
    return per_image_matrix([r[key]["metrics"] for r in per_seed.values()])


def save_runs(per_seed: dict[int, dict], teacher: dict, args) -> Path:
    """The per-run results (metrics, per-image errors, seed, wall time; no checkpoints) under
    benchmarks/results/distill_ablation/<out folder name>/, so the tables survive a new machine."""
    folder = RESULTS / args.out.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "teacher.json").write_text(json.dumps(teacher, indent=1, default=float))
    for seed, rows in per_seed.items():
        for key, result in rows.items():
            record = {"row": key, "seed": seed, **{k: result.get(k) for k in ("metrics", "wall_s", "step")}}
            (folder / f"{key}_seed{seed}.json").write_text(json.dumps(record, indent=1, default=float))
    return folder


def summarise(per_seed: dict[int, dict], teacher: dict, args) -> tuple[str, dict]:
    metrics = ("abs_rel", "rmse", "d1")
    table = {}
    lines = [
        "| row | abs_rel | rmse (m) | δ1 | Δ abs_rel vs baseline | paired Δ, 95 % CI (images x seeds) | wall s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    base_mean = statistics.mean(r["baseline"]["metrics"]["abs_rel"] for r in per_seed.values())
    mix = f"{args.unlabelled} unlabelled scenes ({args.unlabelled_fraction:g} of samples)"
    optional = [
        *ROWS,
        ("disdepth_soft", f"full DisDepth, magnitude attention (tau {args.soft_tau}, floor {args.soft_floor})"),
        ("disdepth_unlabelled", f"full DisDepth + response KD (weight {args.unlabelled_response:g}), + {mix}"),
        ("response_unlabelled", f"response KD only (weight {args.unlabelled_response:g}), + {mix}"),
        *FEW_ROWS,
    ]
    rows = [(key, label) for key, label in optional if all(key in r for r in per_seed.values())]
    runs = list(per_seed.values())
    for key, label in rows:
        vals = {m: [r[key]["metrics"][m] for r in runs] for m in metrics}
        wall = statistics.mean(r[key].get("wall_s", 0.0) for r in per_seed.values())
        stats = {m: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in vals.items()}
        table[key] = {"label": label, **{m: {"mean": a, "std": s, "values": vals[m]} for m, (a, s) in stats.items()}}
        delta = 100.0 * (stats["abs_rel"][0] - base_mean) / base_mean
        # Paired: each seed's row against the same seed's baseline (same init and batch order), mean ± std.
        # Paired against the same seed's baseline on the same images; a bootstrap over images and seeds
        # (eval/stats.py). Few-label rows compare with the few-label baseline.
        base_key = "few_baseline" if key.startswith("few_") else "baseline"
        change = None
        if key != base_key and all("per_image" in r[key]["metrics"] for r in runs):
            change = paired_bootstrap(per_image_errors(per_seed, key), per_image_errors(per_seed, base_key))
            table[key]["paired_delta_pct"] = {"mean": change.percent, "ci95": [change.low, change.high]}
        cells = " | ".join(f"{stats[m][0]:.4f} ± {stats[m][1]:.4f}" for m in metrics)
        lines.append(f"| {label} | {cells} | {delta:+.1f}% | {change.format() if change else ''} | {wall:.0f} |")
    t = teacher["metrics"]
    lines.append(
        f"| teacher (hybrid lite0, seed 0) | {t['abs_rel']:.4f} | {t['rmse']:.4f} | {t['d1']:.4f} | "
        f"{100.0 * (t['abs_rel'] - base_mean) / base_mean:+.1f}% | | {teacher.get('wall_s', 0):.0f} |"
    )
    ghosts = [r["acclimate"]["metrics"] for r in per_seed.values()]
    g = [x["ghost"]["abs_rel"] for x in ghosts]
    ta = [x["teacher_after"]["abs_rel"] for x in ghosts]
    lines.append(f"| ghost decoder on acclimated teacher features | {statistics.mean(g):.4f} | | | | | |")
    lines.append(f"| teacher after acclimation (frozen: unchanged) | {statistics.mean(ta):.4f} | | | | | |")
    return "\n".join(lines), table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["synthetic", "sevenscenes"], required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    p.add_argument("--n-train", type=int, default=400, help="synthetic only")
    p.add_argument("--n-val", type=int, default=100, help="synthetic only")
    add_recipe_arguments(p)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--teacher-steps", type=int, default=900)
    p.add_argument("--acclimate-steps", type=int, default=150)
    p.add_argument("--acclimate-lr", type=float, default=1e-3)
    p.add_argument("--teacher-init", default="", help="teacher checkpoint to fine-tune from (e.g. the synthetic one)")
    p.add_argument("--teacher-flip", action="store_true", help="random horizontal flips while training the teacher")
    p.add_argument("--teacher-dir", type=Path, default=None, help="teacher run dir to reuse (default OUT/teacher)")
    p.add_argument(
        "--teacher-extra", type=int, default=0, help="extra synthetic indoor scenes for the teacher only (more data)"
    )
    p.add_argument("--teacher-only", action="store_true", help="train/evaluate the teacher, then stop")
    p.add_argument(
        "--split", choices=["test", "val"], default="test", help="val: score on disjoint synthetic scenes (tuning)"
    )
    p.add_argument("--levels", type=int, nargs="+", default=[4, 8, 16, 32], help="student strides distilled")
    p.add_argument("--distill-set", nargs="*", default=[], help="extra --set overrides for every KD/acclimate stage")
    p.add_argument("--kd-weight", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--attention", choices=["magnitude", "saliency"], default="magnitude", help="the DisDepth row's")
    p.add_argument("--magnitude-row", action="store_true", help="add a magnitude-attention DisDepth row")
    p.add_argument("--soft-floor", type=float, default=0.0, help="attention floor of the magnitude row")
    p.add_argument("--soft-tau", type=float, default=1.0, help="temperature of the magnitude row")
    p.add_argument(
        "--unlabelled",
        type=int,
        default=0,
        help="synthetic only: add a row distilling with this many unlabelled scenes (scenes >= 2,000,000)",
    )
    p.add_argument("--unlabelled-fraction", type=float, default=0.5, help="share of each epoch that is unlabelled")
    p.add_argument(
        "--unlabelled-response", type=float, default=1.0, help="response KD weight of the two unlabelled rows"
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["classic_kd", "acclimated_kd", "disdepth", "response", "disdepth_response"],
        help="KD rows not to run (quicker exploratory runs; the table then omits them)",
    )
    p.add_argument("--response-weight", type=float, default=1.0, help="response KD weight of its rows")
    p.add_argument(
        "--few-label", type=float, default=0.0, help="also run the few-label regime with this fraction labelled"
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = dist.DistInfo.single()
    start = time.perf_counter()
    train, test = load_data(args.dataset, tuple(args.size), args.n_train, args.n_val, args.out / "data", args.split)
    print(f"data: {len(train)} train / {len(test)} test at {args.size}", flush=True)
    tdir = args.teacher_dir or args.out / "teacher"
    teacher = stage_done(tdir)
    if teacher is None:
        init = [f"teacher.checkpoint={args.teacher_init}"] if args.teacher_init else []
        cfg = load_config(
            overrides=[f"train.steps={args.teacher_steps}", "train.lr=5e-4", *init], base=base_config(args, 0)
        )
        teacher_data = train
        if args.teacher_extra:
            extra = extra_synthetic(args.teacher_extra, tuple(args.size), args.out / "data")
            teacher_data = ConcatDataset([train, extra])
        if args.teacher_flip:
            teacher_data = Flipped(teacher_data)
        splits, spec = Splits(teacher_data, test), model_spec(cfg, "teacher")
        teacher = run_stage(
            "teacher", tdir, cfg,
            lambda **kw: supervised_stage(cfg, tdir, splits(cfg, "train", spec), splits(cfg, "val", spec), info, **kw,
                                          which="teacher"),
            overwrite=False,
        )  # fmt: skip
        recipe = {"steps": args.teacher_steps, "init": args.teacher_init or "ImageNet lite0 stem"}
        recipe.update(flip=args.teacher_flip, extra_scenes=args.teacher_extra)
        (tdir / "recipe.json").write_text(json.dumps(recipe))
    print("teacher", json.dumps({k: teacher["metrics"][k] for k in ("abs_rel", "rmse", "d1")}), flush=True)
    if args.teacher_only:
        return
    unlabelled = None
    if args.unlabelled:
        if args.dataset != "synthetic":
            p.error("--unlabelled needs --dataset synthetic (the 7-Scenes folder has no frames beyond its splits)")
        unlabelled = extra_synthetic(
            args.unlabelled, tuple(args.size), args.out / "data", UNLABELLED_SCENE_OFFSET, "unlabelled"
        )
    per_seed = {}
    for seed in args.seeds:
        per_seed[seed] = run_seed(args, seed, args.out, train, test, teacher["checkpoint"], info, unlabelled)
        print(
            f"seed {seed}:",
            {
                k: round(v["metrics"].get("abs_rel", float("nan")), 4)
                for k, v in per_seed[seed].items()
                if "abs_rel" in v["metrics"]
            },
            flush=True,
        )
    text, table = summarise(per_seed, teacher, args)
    print(f"per-run results: {save_runs(per_seed, teacher, args)}")
    recipe_file = tdir / "recipe.json"  # written when the teacher was trained (a reused teacher keeps its own)
    teacher_recipe = recipe_file.read_text().strip() if recipe_file.is_file() else "(recipe not recorded)"
    header = (
        f"dataset={args.dataset} size={args.size[0]}x{args.size[1]} train={len(train)} test={len(test)} "
        f"student={args.student} ({args.student_weights or 'no ImageNet weights'}) "
        f"steps={args.steps} batch={args.batch} lr={args.lr} "
        f"acclimate_steps={args.acclimate_steps} kd_weight={args.kd_weight} "
        f"{f'unlabelled={args.unlabelled} fraction={args.unlabelled_fraction:g} ' if args.unlabelled else ''}"
        f"attention={args.attention} tau={args.tau} levels={args.levels} "
        f"{''.join(x + ' ' for x in args.base_set + args.distill_set)}split={args.split} "
        f"teacher {tdir}: {teacher_recipe} "
        f"seeds={args.seeds} protocol=none caps 1e-3..{args.max_depth} m, no flip-TTA, "
        f"total wall {time.perf_counter() - start:.0f} s"
    )
    print(header + "\n" + text)
    (args.out / "table.md").write_text(header + "\n\n" + text + "\n")
    (args.out / "table.json").write_text(
        json.dumps({"header": header, "teacher": teacher, "rows": table, "per_seed": per_seed}, indent=2, default=float)
    )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
