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
import hashlib
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
from disdepth.deploy.bench import cpu_description
from disdepth.engine import dist
from disdepth.eval.stats import paired_bootstrap, per_image_matrix
from disdepth.models.spec import InputSpec
from disdepth.pipeline.run import run_stage
from disdepth.pipeline.stages import acclimate_stage, distill_stage, model_spec, score, stage_done, supervised_stage
from disdepth.teachers.build import build_teacher

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill_ablation"
RECIPE = ROOT / "configs" / "benchmarks" / "distill_ablation.yaml"
# The shared real data sit beside the repository (../shared/data), as the tests find them.
SEVEN_SCENES = ROOT.parent / "shared" / "data" / "seven_scenes_redkitchen" / "index.csv"
# In-memory samples are stored in ImageNet normalisation; each model sees them in its own (InputSpec).
STORED = InputSpec()
# Sequence split, fixed before any run (rows of index.csv = frames 0, 3, ..., 699): train rows 0-129 (frames 0-387),
# a 5-row gap, validation rows 135-164 (frames 405-492), a 10-row gap, test rows 175-233 (frames 525-699). The gaps
# keep near-duplicate neighbours from straddling two parts; settings are chosen on validation frames only
# (--split val), and the test frames are scored once per run (--split test).
TRAIN_ROWS, VAL_ROWS, TEST_ROWS = range(0, 130), range(135, 165), range(175, 234)

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
# Optional rows (flags --magnitude-row, --unlabelled).
EXTRA_ROWS = [
    ("disdepth_soft", "full DisDepth, magnitude attention (--soft-tau, --soft-floor)"),
    ("disdepth_unlabelled", "full DisDepth + response KD, + unlabelled synthetic scenes (--unlabelled)"),
    ("response_unlabelled", "response KD only, + unlabelled synthetic scenes (--unlabelled)"),
    ("disdepth_ghost", "full DisDepth + ghost loss (--ghost-weight)"),
    ("ghost_only", "ghost loss alone (LG-Conv student, no feature KD; --ghost-only)"),
    ("lgconv_continued", "LG-Conv student trained --steps more, no KD (--init-from-base: the control)"),
    ("acclimated_kd_init", "acclimated feature KD (uniform), starting from the LG-Conv student (--init-from-base)"),
    ("disdepth_init", "full DisDepth starting from the LG-Conv student (--init-from-base)"),
]
# Rows distilled from the acclimated teacher or from the teacher itself: the gap diagnostics measure them against
# the LG-Conv student (the KD start, B) and the teacher (T) on the same held-out frames.
GAP_BASE = "lgconv"
# Paired comparisons the gap table adds (row, the row it is compared with on the same seeds and images): each KD row
# against the LG-Conv student it starts from, and feature KD on top of response KD against response KD alone.
KD_PAIRS = [("disdepth", GAP_BASE), ("response", GAP_BASE), ("disdepth_response", GAP_BASE),
            ("disdepth", "response"), ("disdepth_response", "response"), ("disdepth_response", "disdepth")]  # fmt: skip
# --unlabelled rows: each against its start, feature KD against response KD on the same mix, and each against its
# recipe without the unlabelled scenes (DisDepth + response KD, or a --variant row with its settings).
UNLABELLED_PAIRS = [("disdepth_unlabelled", GAP_BASE), ("response_unlabelled", GAP_BASE),
                    ("disdepth_unlabelled", "response_unlabelled"), ("response_unlabelled", "response"),
                    ("disdepth_unlabelled", "disdepth_response")]  # fmt: skip
# --variant NAME KEY=VALUE ...: a DisDepth row with settings of its own (row key "v_NAME"); "{B}" in a value is the
# LG-Conv student's checkpoint. Each is paired with its LG-Conv start, the DisDepth row and response KD alone.
VARIANT_PREFIX = "v_"
# Stages --reuse-from may link (the ones a KD probe does not change).
REUSABLE = ("baseline", "lgconv", "acclimate")
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

    ``split="test"`` holds out the test images; ``split="val"`` holds out a third, disjoint set (synthetic scenes, or
    the 7-Scenes validation rows) for choosing settings, so the test images never steer a choice.
    """
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
        test = [_resize(full[i], size) for i in (VAL_ROWS if split == "val" else TEST_ROWS)]
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
    """``n`` synthetic indoor scenes numbered from ``offset`` (teacher-only "more data", docs/method.md §3, or the
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


def student_weights(cfg: Config) -> str:
    """The student encoder's starting weights in words, from the resolved config (flags and ``--base-set``)."""
    words = {"file": cfg.model.weights, "timm": "timm's ImageNet weights"}
    return words.get(cfg.model.pretrained, "no ImageNet weights")


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


def kd_overrides(args, teacher_ckpt: str) -> list[str]:
    """The feature-KD settings every KD row shares: LG-Conv student, the teacher, weight, levels, --distill-set."""
    levels = ",".join(map(str, args.levels))
    teacher, weight = f"teacher.checkpoint={teacher_ckpt}", f"distill.feature_weight={args.kd_weight}"
    return ["model.lgconv.enabled=true", teacher, weight, f"distill.levels=[{levels}]", *args.distill_set]


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
        results[key] = {**run_stage(key, run_dir, cfg, run, overwrite=False), "curve": validation_curve(run_dir)}
        return results[key]

    if args.few_only:  # the few-label rows alone (another process may run the full-label rows of this seed)
        kd = kd_overrides(args, teacher_ckpt)
        few_label_rows(
            args, seed, stage, train, kd, [*kd, f"distill.attention={args.attention}", f"distill.tau={args.tau}"]
        )
        return results
    if "baseline" not in args.skip:  # skipped: the results folder keeps the baseline records it holds
        stage("baseline", supervised_stage, base_config(args, seed))
    if args.baseline_only:
        return results
    lg = ["model.lgconv.enabled=true"]
    cfg = load_config(overrides=lg, base=base_config(args, seed))
    lg_ckpt = stage("lgconv", supervised_stage, cfg)["checkpoint"]
    if args.students_only:
        if args.few_label:
            few_label_rows(args, seed, stage, train, [], [], students_only=True)
        return results
    kd = kd_overrides(args, teacher_ckpt)
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
    if args.ghost_weight > 0:  # the ghost loss (docs/distillation.md): the DisDepth row + it, and it alone
        ghost = f"distill.ghost_weight={args.ghost_weight}"
        stage("disdepth_ghost", distill_stage, load_config(overrides=[*disdepth, ghost], base=base_config(args, seed)))
        if args.ghost_only:
            cfg = load_config(overrides=[*kd, ghost, "distill.feature_weight=0"], base=base_config(args, seed))
            stage("ghost_only", distill_stage, cfg)
    if args.init_from_base:  # the student starts from B (the ghost decoder is its decoder), against B trained on
        init = [f"distill.init_checkpoint={lg_ckpt}"]
        cfg = load_config(overrides=[*kd, *init, "distill.feature_weight=0"], base=base_config(args, seed))
        stage("lgconv_continued", distill_stage, cfg)
        cfg = load_config(overrides=[*kd, *init, "distill.attention=none"], base=base_config(args, seed))
        stage("acclimated_kd_init", distill_stage, cfg)
        stage("disdepth_init", distill_stage, load_config(overrides=[*disdepth, *init], base=base_config(args, seed)))
    for name, *settings in args.variant:  # DisDepth with settings of its own, named by the user
        key = VARIANT_PREFIX + name
        overrides = [*disdepth, *(x.replace("{B}", lg_ckpt) for x in settings)]
        stage(key, distill_stage, load_config(overrides=overrides, base=base_config(args, seed)))
        results[key]["label"] = f"DisDepth with {' '.join(x.replace('{B}', 'B') for x in settings)}"
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
        extra = args.unlabelled_set  # e.g. the default recipe's distill.feature_weight=10 distill.attention=none
        if extra:
            tag += "_" + hashlib.sha256(" ".join(extra).encode()).hexdigest()[:8]
        cfg = load_config(overrides=[*disdepth, response, *extra], base=base_config(args, seed))
        stage("disdepth_unlabelled", distill_stage, cfg, data=mixed, name=f"disdepth_unlabelled_{tag}")
        if extra:
            results["disdepth_unlabelled"]["label"] = (
                f"DisDepth with {' '.join(extra)} + response KD, + {args.unlabelled} unlabelled synthetic scenes"
            )
        cfg = load_config(overrides=[*disdepth, response, "distill.feature_weight=0"], base=base_config(args, seed))
        stage("response_unlabelled", distill_stage, cfg, data=mixed, name=f"response_unlabelled_{tag}")
    return results


def validation_curve(run_dir: Path) -> list[list[float]]:
    """[[step, abs_rel], ...] of the held-out scores logged during training (train.eval_every > 0), from
    ``log.jsonl``; empty when the stage scored only at its end."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return []
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [[r["step"], r["abs_rel"]] for r in records if r.get("split") == "val" and "abs_rel" in r]


def few_label_split(train: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """(the labelled part, the whole set with the rest's depth removed): every 1/fraction-th frame keeps its depth,
    spread over the sequence."""
    from torch.utils.data import Subset

    from disdepth.data.mixing import UnlabelledImages

    step = max(1, round(1 / fraction))
    labelled = [i for i in range(len(train)) if i % step == 0]
    rest = [i for i in range(len(train)) if i % step != 0]
    return Subset(train, labelled), ConcatDataset([Subset(train, labelled), UnlabelledImages(Subset(train, rest))])


def few_label_rows(
    args, seed: int, stage, train: Dataset, kd: list[str], disdepth: list[str], students_only: bool = False
) -> None:
    """Baseline, response KD and DisDepth when only ``args.few_label`` of the frames have depth (``students_only``:
    the two rows that need no teacher, baseline and + LG-Conv)."""
    labelled, mixed = few_label_split(train, args.few_label)
    tag = f"_f{args.few_label:g}"  # the run directory records the fraction
    cfg = base_config(args, seed)
    stage("few_baseline", supervised_stage, cfg, data=labelled, name="few_baseline" + tag)
    lg = load_config(overrides=["model.lgconv.enabled=true"], base=base_config(args, seed))
    lg_ckpt = stage("few_lgconv", supervised_stage, lg, data=labelled, name="few_lgconv" + tag)["checkpoint"]
    if students_only:
        return
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


def variant_rows(runs: list[dict]) -> list[tuple[str, str]]:
    """(key, label) of the --variant rows any run holds, sorted by key (the label is in their record)."""
    return sorted({k: r[k].get("label", k) for r in runs for k in r if k.startswith(VARIANT_PREFIX)}.items())


def all_rows(runs: list[dict]) -> list[tuple[str, str]]:
    """(key, label) of the fixed rows, then the --variant rows; a fixed row run with settings of its own
    (``--unlabelled-set``) carries its label in its record."""
    stored = {k: r[k]["label"] for r in runs for k in r if r[k].get("label")}
    return [*((k, stored.get(k, label)) for k, label in [*ROWS, *EXTRA_ROWS]), *variant_rows(runs)]


def kd_pairs(runs: list[dict]) -> list[tuple[str, str]]:
    """:data:`KD_PAIRS`, then each --variant row against its LG-Conv start, the DisDepth row and response KD alone,
    then :data:`UNLABELLED_PAIRS` and the unlabelled DisDepth row against each --variant row (pairs whose rows a
    folder lacks are left out by the caller)."""
    variants = [v for v, _ in variant_rows(runs)]
    return [
        *KD_PAIRS,
        *((v, ref) for v in variants for ref in (GAP_BASE, "disdepth", "response")),
        *UNLABELLED_PAIRS,
        *(("disdepth_unlabelled", v) for v in variants),
    ]


def per_image_errors(per_seed: dict[int, dict], key: str) -> np.ndarray:
    """(seeds, test images) abs_rel of one row."""
    return per_image_matrix([r[key]["metrics"] for r in per_seed.values()])


def save_runs(per_seed: dict[int, dict], teacher: dict | None, args) -> Path:
    """The per-run results (metrics, per-image errors, seed, wall time; no checkpoints) under
    benchmarks/results/distill_ablation/<out folder name>/, so the tables survive a new machine."""
    folder = results_folder(args)
    folder.mkdir(parents=True, exist_ok=True)
    if teacher is not None:
        (folder / "teacher.json").write_text(json.dumps(teacher, indent=1, default=float))
    # Runs repeat to the last digit on one kind of CPU and not across kinds (other kernels, other sums): rows are
    # only paired image by image within one CPU's records.
    cpu = cpu_description()
    for seed, rows in per_seed.items():
        for key, result in rows.items():
            record = {"row": key, "seed": seed, **{k: result.get(k) for k in ("metrics", "wall_s", "step", "curve")}}
            record["cpu"] = cpu
            if result.get("label"):  # a --variant or --unlabelled-set row: its settings
                record["label"] = result["label"]
            if result.get("gap") is not None:  # the stage's own gap diagnostics (pipeline/stages.py)
                record["gap"] = result["gap"]
            (folder / f"{key}_seed{seed}.json").write_text(json.dumps(record, indent=1, default=float))
    return folder


def results_folder(args) -> Path:
    """Where an invocation's JSONs go: ``--results-dir`` (under benchmarks/results/distill_ablation/), else the
    --out folder's name there."""
    return RESULTS / (args.results_dir or args.out.name)


def load_runs(folder: Path) -> tuple[dict[int, dict], dict | None]:
    """(per seed: {row: record}, the teacher's own record or None) from the per-run JSONs of :func:`save_runs`."""
    per_seed: dict[int, dict] = {}
    for path in sorted(folder.glob("*_seed*.json")):
        record = json.loads(path.read_text())
        per_seed.setdefault(record["seed"], {})[record["row"]] = record
    teacher = folder / "teacher.json"
    return per_seed, json.loads(teacher.read_text()) if teacher.is_file() else None


def _cells(values: dict[str, list[float]]) -> str:
    """``mean ± std`` (std over seeds) of abs_rel, rmse, δ1."""
    return " | ".join(
        f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}" for v in values.values()
    )


def summarise(per_seed: dict[int, dict]) -> tuple[str, dict]:
    """The markdown table (and its numbers) of every row present for all seeds.

    Δ: each seed's row against the same seed's baseline (same initialisation and batch order) on the same test
    images, a paired bootstrap over test images and seeds (eval/stats.py); few-label rows against the few-label
    baseline. The teacher and ghost-decoder rows are the acclimation stage's scores on the same held-out frames
    (the teacher is frozen, so ``teacher_before`` is the teacher every student learns from)."""
    metrics = ("abs_rel", "rmse", "d1")
    table: dict[str, dict] = {}
    lines = [
        "| row | abs_rel | rmse (m) | δ1 | paired Δ abs_rel vs baseline, 95 % CI (images x seeds) | wall s / run |",
        "|---|---|---|---|---|---|",
    ]
    runs = list(per_seed.values())
    for key, label in [*all_rows(runs), *FEW_ROWS]:
        if not all(key in r for r in runs):
            continue
        vals = {m: [r[key]["metrics"][m] for r in runs] for m in metrics}
        table[key] = {"label": label, **{m: {"mean": statistics.mean(v), "values": v} for m, v in vals.items()}}
        base_key = "few_baseline" if key.startswith("few_") else "baseline"
        change = None
        if key != base_key and all(base_key in r for r in runs):
            change = paired_bootstrap(per_image_errors(per_seed, key), per_image_errors(per_seed, base_key))
            table[key]["paired_delta_pct"] = {"mean": change.percent, "ci95": [change.low, change.high]}
        wall = statistics.mean(r[key].get("wall_s") or 0.0 for r in runs)
        lines.append(f"| {label} | {_cells(vals)} | {change.format() if change else ''} | {wall:.0f} |")
    for acclimate, who in (("acclimate", "full labels"), ("few_acclimate", "few labels")):
        if not all(acclimate in r for r in runs):
            continue
        scored = {"teacher_before": "teacher (frozen; the one every KD row learns from)", "ghost": "ghost decoder on "
                  "acclimated teacher features"}  # fmt: skip
        for part, label in scored.items():
            vals = {m: [r[acclimate]["metrics"][part][m] for r in runs] for m in metrics}
            base_key = "few_baseline" if acclimate.startswith("few_") else "baseline"
            rows = [r[acclimate]["metrics"][part] for r in runs]
            change = paired_bootstrap(per_image_matrix(rows), per_image_errors(per_seed, base_key))
            table[f"{acclimate}_{part}"] = {"abs_rel": {"mean": statistics.mean(vals["abs_rel"])},
                                            "paired_delta_pct": {"mean": change.percent,
                                                                 "ci95": [change.low, change.high]}}  # fmt: skip
            lines.append(f"| {label} ({who}) | {_cells(vals)} | {change.format()} | |")
    return "\n".join(lines), table


def gap_share_interval(
    base: np.ndarray, model: np.ndarray, teacher: np.ndarray, n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(B - X) / (B - T)`` of the means (retained / closed) with a bootstrap interval.

    Args:
        base, model, teacher: (seeds, images) per-image abs_rel of B, X and T on the same images (same order).

    Returns:
        (share, low, high); seeds and images are resampled together, the same draw for all three (as
        :func:`~disdepth.eval.stats.paired_bootstrap` does), so the interval holds both sources of variation.
    """
    b, x, t = (np.asarray(a, np.float64) for a in (base, model, teacher))
    if not b.shape == x.shape == t.shape or b.ndim != 2:
        raise ValueError(f"B, X and T must all be (seeds, images), got {b.shape}, {x.shape}, {t.shape}")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, b.shape[0], size=(n_boot, b.shape[0]))
    images = rng.integers(0, b.shape[1], size=(n_boot, b.shape[1]))
    means = np.array([[a[s][:, i].mean() for a in (b, x, t)] for s, i in zip(seeds, images, strict=True)])
    draws = (means[:, 0] - means[:, 1]) / (means[:, 0] - means[:, 2])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return float((b.mean() - x.mean()) / (b.mean() - t.mean())), float(low), float(high)


def gap_summary(per_seed: dict[int, dict]) -> tuple[str, dict]:
    """Teacher-student gap diagnostics over seeds: B = the LG-Conv student (the KD start), T = the teacher before
    acclimation, G = the ghost decoder on acclimated features, S = each KD row; *retained* = (B - G) / (B - T),
    *closed* = (B - S) / (B - T) of the mean abs_rel, with 95 % bootstrap intervals over images and seeds.
    Empty when a seed lacks the LG-Conv or acclimation stage."""
    runs = list(per_seed.values())
    if not runs or not all(GAP_BASE in r and "acclimate" in r for r in runs):
        return "", {}
    base = per_image_errors(per_seed, GAP_BASE)
    teacher = per_image_matrix([r["acclimate"]["metrics"]["teacher_before"] for r in runs])
    after = [r["acclimate"]["metrics"]["teacher_after"]["abs_rel"] for r in runs]
    ghost = per_image_matrix([r["acclimate"]["metrics"]["ghost"] for r in runs])

    def per_seed_share(x: np.ndarray) -> list[float]:
        return [float((b.mean() - v.mean()) / (b.mean() - t.mean())) for b, v, t in zip(base, x, teacher, strict=True)]

    out: dict = {
        "base_row": GAP_BASE,
        "base_abs_rel": base.mean(1).tolist(),
        "teacher_abs_rel": teacher.mean(1).tolist(),
        "teacher_after_abs_rel": after,
        "gap_pct": float(100.0 * (1.0 - teacher.mean() / base.mean())),
    }
    share, low, high = gap_share_interval(base, ghost, teacher)
    out["retained"] = {"mean": share, "ci95": [low, high], "per_seed": per_seed_share(ghost)}
    lines = [
        f"Teacher-student gap: B ({GAP_BASE}) abs_rel {base.mean():.4f}, teacher {teacher.mean():.4f} before / "
        f"{statistics.mean(after):.4f} after acclimation: the teacher is {out['gap_pct']:.0f} % better.",
        "",
        "| | abs_rel | share of the gap, 95 % CI (images x seeds) | per seed |",
        "|---|---|---|---|",
        f"| retained: ghost decoder on acclimated features | {ghost.mean():.4f} | {share:+.2f} [{low:+.2f}, "
        f"{high:+.2f}] | {' / '.join(f'{v:+.2f}' for v in out['retained']['per_seed'])} |",
    ]
    out["closed"] = {}
    for key, label in all_rows(runs):
        if key in ("baseline", GAP_BASE) or not all(key in r for r in runs):
            continue
        x = per_image_errors(per_seed, key)
        share, low, high = gap_share_interval(base, x, teacher)
        out["closed"][key] = {"mean": share, "ci95": [low, high], "per_seed": per_seed_share(x)}
        lines.append(f"| closed: {label} | {x.mean():.4f} | {share:+.2f} [{low:+.2f}, {high:+.2f}] | "
                     f"{' / '.join(f'{v:+.2f}' for v in out['closed'][key]['per_seed'])} |")  # fmt: skip
    # What a user asks: does each KD row beat the student it starts from, and does feature KD add to response KD?
    pairs = [(k, ref) for k, ref in kd_pairs(runs) if all(k in r and ref in r for r in runs)]
    if pairs:
        out["paired"] = {}
        lines += ["", "| row | vs | paired Δ abs_rel, 95 % CI (images x seeds) |", "|---|---|---|"]
        labels = dict(all_rows(runs))
        for key, ref in pairs:
            change = paired_bootstrap(per_image_errors(per_seed, key), per_image_errors(per_seed, ref))
            out["paired"][f"{key}_vs_{ref}"] = {"mean": change.percent, "ci95": [change.low, change.high]}
            lines.append(f"| {labels[key]} | {labels[ref]} | {change.format()} |")
    return "\n".join(lines), out


def gap_study(folders: list[Path], reference: str = "disdepth") -> str:
    """Markdown comparing results folders (probes that share seeds and held-out frames) on the gap diagnostics.

    One line per probe with B, T (before / after acclimation) and *retained*; one per KD row with its abs_rel,
    *closed* and the paired change of abs_rel against the ``reference`` row of the first folder (same seeds, same
    images: a paired bootstrap over both), so a candidate is judged against the recipe it would replace."""
    loaded = [(folder, load_runs(folder)[0]) for folder in folders]
    ref_folder, ref_runs = loaded[0]
    ref = per_image_errors(ref_runs, reference) if all(reference in r for r in ref_runs.values()) else None
    probes = [
        "| probe | seeds | B (LG-Conv student) | teacher before → after | gap | retained, 95 % CI |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        f"| probe | row | abs_rel | closed, 95 % CI | per seed | paired Δ abs_rel vs {ref_folder.name} {reference} |",
        "|---|---|---|---|---|---|",
    ]
    for folder, per_seed in loaded:
        _, gap = gap_summary(per_seed)
        if not gap:
            continue
        r = gap["retained"]
        before, after = statistics.mean(gap["teacher_abs_rel"]), statistics.mean(gap["teacher_after_abs_rel"])
        probes.append(
            f"| {folder.name} | {list(per_seed)} | {statistics.mean(gap['base_abs_rel']):.4f} | {before:.4f} → "
            f"{after:.4f} | {gap['gap_pct']:.0f} % | {r['mean']:+.2f} [{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}] |"
        )
        same_frames = list(per_seed) == list(ref_runs)
        for key, c in gap["closed"].items():
            x = per_image_errors(per_seed, key)
            delta = ""
            if ref is not None and same_frames and x.shape == ref.shape and (folder, key) != (ref_folder, reference):
                delta = paired_bootstrap(x, ref).format()
            rows.append(
                f"| {folder.name} | {key} | {x.mean():.4f} | {c['mean']:+.2f} [{c['ci95'][0]:+.2f}, "
                f"{c['ci95'][1]:+.2f}] | {' / '.join(f'{v:+.2f}' for v in c['per_seed'])} | {delta} |"
            )
    levels = [level_table(folder) for folder, _ in loaded if (folder / "level_probe.json").is_file()]
    return "\n".join(probes) + "\n\n" + "\n".join(rows) + "\n" + "".join("\n" + t for t in levels)


def level_table(folder: Path) -> str:
    """Markdown of a folder's ``level_probe.json``: per mix the ghost decoder's abs_rel and share of the gap, and per
    distilled student the ghost decoder on its own features and its Pearson r to the acclimated features, each
    ``seed 0 / seed 1 / ...``."""
    probe = json.loads((folder / "level_probe.json").read_text())
    seeds = list(probe["seeds"].values())

    def cells(values: list[float], fmt: str = ".4f") -> str:
        return " / ".join(f"{v:{fmt}}" for v in values)

    lines = [
        f"{folder.name}: the ghost decoder reading the LG-Conv student's (B's) pyramid with the acclimated features "
        f"swapped in (seeds {' / '.join(probe['seeds'])}; distilled levels {probe['levels']})",
        "",
        "| acclimated features at | alpha | abs_rel | share of the gap |",
        "|---|---|---|---|",
    ]
    for name, mix in seeds[0]["mixes"].items():
        lines.append(
            f"| {', '.join(f's{x}' for x in mix['strides']) or 'none (B)'} | {mix['alpha']:g} | "
            f"{cells([r['mixes'][name]['abs_rel'] for r in seeds])} | "
            f"{cells([r['mixes'][name]['share_of_gap'] for r in seeds], '+.2f')} |"
        )
    lines += ["", "| features | abs_rel (own decoder) | ghost decoder on them | Pearson r to acclimated, per level |"]
    lines.append("|---|---|---|---|")
    base_r = " ; ".join(f"s{k} {cells([r['base_pearson_to_acclimated'][k] for r in seeds], '.2f')}" for k in
                        seeds[0]["base_pearson_to_acclimated"])  # fmt: skip
    lines.append(
        f"| B (LG-Conv student) | {cells([r['mixes']['B']['abs_rel'] for r in seeds])} | (the same) | {base_r} |"
    )
    for row in seeds[0]["students"]:
        if not all(row in r["students"] for r in seeds):
            continue
        got = [r["students"][row] for r in seeds]
        rs = " ; ".join(f"s{k} {cells([g['pearson_to_acclimated'][k] for g in got], '.2f')}" for k in
                        got[0]["pearson_to_acclimated"])  # fmt: skip
        lines.append(
            f"| {row} | {cells([g['abs_rel'] for g in got])} | {cells([g['ghost_on_own_features'] for g in got])} "
            f"| {rs} |"
        )
    return "\n".join(lines) + "\n"


class GhostReads(torch.nn.Module):
    """The frozen ghost decoder reading a mixed pyramid, as a depth model for :func:`score` (student input spec).

    Level ``i`` of the pyramid is ``f_i + alpha * (a_i - f_i)`` where ``f`` is ``encoder``'s feature (a trained
    student's) and ``a`` the acclimated teacher feature, for the strides in ``acclimated_strides``; ``f_i`` elsewhere.
    alpha = 1 with every stride is the ghost decoder of the acclimation (G); no stride is the student's own decoder
    reading its own features when the ghost is a copy of that student's decoder (B)."""

    def __init__(self, acclimated, encoder: torch.nn.Module, acclimated_strides: set[int], alpha: float = 1.0) -> None:
        super().__init__()
        self.acclimated, self.encoder, self.alpha = acclimated.eval(), encoder.eval(), alpha
        self.strides = [f.stride for f in acclimated.student_info]
        self.mix = set(acclimated_strides)
        self.input_spec = acclimated.input_spec

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> dict:
        size = tuple(image.shape[-2:])
        own = self.encoder(image)
        acc = self.acclimated(image, with_ghost=False)["acclimated"] if self.mix else own
        feats = [
            f + self.alpha * (a - f) if s in self.mix else f for s, f, a in zip(self.strides, own, acc, strict=True)
        ]
        return {"depth": self.acclimated.ghost(feats, size)["depth"]}


def _trained_student(run_dir: Path):
    """The student of a finished student/distill run directory, with its last weights, in eval mode."""
    from disdepth.models.student import build_student
    from disdepth.pipeline.stages import load_student_weights

    cfg = load_config(run_dir / "config.yaml")
    student = build_student(cfg.model, load_weights=False)
    load_student_weights(student, run_dir / "checkpoints" / "last.pt")
    return student.eval()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images and channels of the Pearson r over positions of two (B, C, h, w) maps."""
    from disdepth.tasks.kd_losses import standardize_channels

    return float((standardize_channels(a) * standardize_channels(b)).mean((2, 3)).mean())


def pearsons(encoder: torch.nn.Module, acclimated, data: Dataset, levels: list[int]) -> dict[int, float]:
    """Pearson r of ``encoder``'s features to the acclimated ones per stride in ``levels``, over ``data``'s frames
    (batches of 16; the mean of the batch means)."""
    strides = [f.stride for f in acclimated.student_info]
    rs: dict[int, list[float]] = {s: [] for s in levels}
    with torch.no_grad():
        for i in range(0, len(data), 16):
            image = torch.stack([data[j]["image"] for j in range(i, min(i + 16, len(data)))])
            own, acc = encoder(image), acclimated(image, with_ghost=False)["acclimated"]
            for s in levels:
                rs[s].append(_pearson(own[strides.index(s)], acc[strides.index(s)]))
    return {s: float(np.mean(v)) for s, v in rs.items()}


def level_probe(args, held_out: Dataset, info) -> dict:
    """Where the acclimated features' lead lives and how close each distilled student's features come to it.

    Per seed of ``args.out``: the ghost decoder's abs_rel on the LG-Conv student's (B's) pyramid with the acclimated
    features swapped in at some strides (all; the distilled ``--levels``; the others; each alone), half way there
    (alpha 0.5 at every stride), and on each distilled student's own pyramid; with the Pearson r of a distilled
    student's features to the acclimated ones at the distilled strides. Written to the results folder as
    ``level_probe.json``; returns it."""
    from disdepth.tasks.acclimation import gap_share, load_acclimated

    kd_rows = [k for k, _ in [*ROWS, *EXTRA_ROWS] if k not in ("baseline", GAP_BASE, "classic_kd", "response")]
    out: dict = {"levels": args.levels, "seeds": {}}
    for seed in args.seeds:
        root = args.out / f"seed{seed}"
        acclimated, _ = load_acclimated(root / "acclimate" / "acclimated.pt")
        cfg = load_config(root / "acclimate" / "config.yaml")
        data = renormalized(held_out, STORED, acclimated.input_spec)
        strides = [f.stride for f in acclimated.student_info]
        base = _trained_student(root / GAP_BASE)
        kd = set(args.levels)
        mixes = {"B": (set(), 1.0), "all": (set(strides), 1.0), "kd_levels": (kd, 1.0)}
        mixes.update({"other_levels": (set(strides) - kd, 1.0), "all_half": (set(strides), 0.5)})
        mixes.update({f"s{s}": ({s}, 1.0) for s in strides})
        teacher = json.loads((root / "acclimate" / "result.json").read_text())["metrics"]["teacher_before"]["abs_rel"]
        record: dict = {"teacher": teacher, "mixes": {}, "students": {}}
        for name, (mix, alpha) in mixes.items():
            m, _ = score(GhostReads(acclimated, base.encoder, mix, alpha), data, cfg, info)
            record["mixes"][name] = {"strides": sorted(mix), "alpha": alpha, "abs_rel": m["abs_rel"]}
        b = record["mixes"]["B"]["abs_rel"]
        for v in record["mixes"].values():
            v["share_of_gap"] = gap_share(b, v["abs_rel"], teacher)

        record["base_pearson_to_acclimated"] = pearsons(base.encoder, acclimated, data, args.levels)
        variants = sorted(d.name for d in root.iterdir() if d.name.startswith(VARIANT_PREFIX))
        for row in [*kd_rows, *variants]:
            if not (root / row / "checkpoints" / "last.pt").is_file():
                continue
            student = _trained_student(root / row)
            m, _ = score(GhostReads(acclimated, student.encoder, set(), 1.0), data, cfg, info)
            record["students"][row] = {
                "abs_rel": json.loads((root / row / "result.json").read_text())["metrics"]["abs_rel"],
                "ghost_on_own_features": m["abs_rel"],
                "pearson_to_acclimated": pearsons(student.encoder, acclimated, data, args.levels),
            }
        out["seeds"][seed] = record
        print(f"seed {seed}:", json.dumps(record, default=float), flush=True)
    folder = results_folder(args)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "level_probe.json").write_text(json.dumps(out, indent=1, default=float))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["synthetic", "sevenscenes"], default="sevenscenes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
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
        "--score-teacher",
        action="store_true",
        help="with --teacher-dir: score that finished teacher on this invocation's held-out frames (--split) and "
        "record it as <teacher run name>_on_<split>.json in the --out results folder, then stop",
    )
    p.add_argument(
        "--baseline-only",
        action="store_true",
        help="train/evaluate the baseline students only (no teacher): with --split val and "
        "--base-set train.eval_every=N, their validation curves",
    )
    p.add_argument(
        "--few-only", action="store_true", help="only the few-label rows (with --few-label), e.g. in a second process"
    )
    p.add_argument(
        "--students-only",
        action="store_true",
        help="train the rows that need no teacher (baseline, + LG-Conv, and with --few-label their few-label "
        "versions), then stop; a later full run reuses them",
    )
    p.add_argument(
        "--split", choices=["test", "val"], default="test", help="val: score on disjoint synthetic scenes (tuning)"
    )
    p.add_argument("--levels", type=int, nargs="+", default=[4, 8, 16, 32], help="student strides distilled")
    p.add_argument("--distill-set", nargs="*", default=[], help="extra --set overrides for every KD/acclimate stage")
    p.add_argument("--kd-weight", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--attention", choices=["magnitude", "saliency"], default="magnitude", help="the DisDepth row's")
    p.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="add the row v_NAME: the DisDepth row with these config overrides on top ({B} in a value = the LG-Conv "
        "student's checkpoint, e.g. distill.init_checkpoint={B}); repeatable",
    )
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
        "--unlabelled-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra config overrides of the unlabelled DisDepth row (its label records them)",
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["baseline", "classic_kd", "acclimated_kd", "disdepth", "response", "disdepth_response"],
        help="rows not to run (quicker exploratory runs; the table then omits them); baseline: when the results "
        "folder already holds this seed's baseline records, made on the same kind of CPU (e.g. --variant rows added "
        "later to a committed folder)",
    )
    p.add_argument("--response-weight", type=float, default=1.0, help="response KD weight of its rows")
    p.add_argument(
        "--ghost-weight", type=float, default=0.0, help="> 0: add the row full DisDepth + ghost loss of this weight"
    )
    p.add_argument("--ghost-only", action="store_true", help="with --ghost-weight: also the ghost loss alone")
    p.add_argument(
        "--init-from-base",
        action="store_true",
        help="add rows whose student starts from the LG-Conv student (B) and trains --steps more: without KD (the "
        "control), acclimated KD, full DisDepth",
    )
    p.add_argument(
        "--reuse-stages", nargs="*", default=["baseline", "lgconv"], choices=list(REUSABLE),
        help="which stages --reuse-from links (acclimate only when its settings are this run's too)",
    )  # fmt: skip
    p.add_argument(
        "--reuse-from",
        type=Path,
        default=None,
        help="another --out folder whose finished baseline / lgconv / acclimate stages (per seed) this one links to "
        "instead of retraining them; the pipeline's reuse rule still refuses one made with other settings",
    )
    p.add_argument(
        "--few-label", type=float, default=0.0, help="also run the few-label regime with this fraction labelled"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--results-dir", default="", help="folder under benchmarks/results/distill_ablation/ (default: --out name)"
    )
    p.add_argument(
        "--gap-study",
        type=Path,
        nargs="+",
        default=None,
        help="only print the gap-diagnostics comparison of these results folders (the first is the reference)",
    )
    p.add_argument(
        "--level-probe",
        action="store_true",
        help="after a run: where the acclimated features' lead lives (the ghost decoder on the LG-Conv student's "
        "features with acclimated ones swapped in per stride) and how close each distilled student's features come",
    )
    p.add_argument("--gap-reference", default="disdepth", help="with --gap-study: the row the others are paired with")
    p.add_argument(
        "--from-results",
        type=Path,
        default=None,
        help="only regenerate table.md of a committed results folder (benchmarks/results/distill_ablation/NAME)",
    )
    args = p.parse_args()
    if args.from_results:
        print(write_table(args.from_results))
        return
    if args.baseline_only and "baseline" in args.skip:
        p.error("--baseline-only trains the baseline that --skip baseline skips: give one of them")
    if args.gap_study:
        print(gap_study(args.gap_study, args.gap_reference))
        return
    torch.set_num_threads(args.threads)
    info = dist.DistInfo.single()
    start = time.perf_counter()
    train, test = load_data(args.dataset, tuple(args.size), args.n_train, args.n_val, args.out / "data", args.split)
    print(f"data: {len(train)} train / {len(test)} test at {args.size}", flush=True)
    if args.level_probe:
        level_probe(args, test, info)
        return
    if args.baseline_only or args.students_only:
        per_seed = {seed: run_seed(args, seed, args.out, train, test, "", info, None) for seed in args.seeds}
        print(f"per-run results: {save_runs(per_seed, None, args)}")
        for seed, rows in per_seed.items():
            print(f"seed {seed} baseline: abs_rel {rows['baseline']['metrics']['abs_rel']:.4f}, "
                  f"curve {[(s, round(a, 4)) for s, a in rows['baseline']['curve']]}")  # fmt: skip
        return
    tdir = args.teacher_dir or args.out / "teacher"
    teacher = stage_done(tdir)
    if args.score_teacher:
        if teacher is None:
            p.error(f"--score-teacher: {tdir} holds no finished teacher (give it with --teacher-dir)")
        score_teacher(tdir, teacher, test, info, args)
        return
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
    if args.teacher_only:  # its held-out scores (and curve, with train.eval_every) kept with the other results
        record = {**teacher, "split": args.split, "recipe": teacher_recipe(tdir), "curve": validation_curve(tdir)}
        save_runs({}, record, args)
        return
    unlabelled = None
    if args.unlabelled:
        if args.dataset != "synthetic":
            p.error("--unlabelled needs --dataset synthetic (the 7-Scenes folder has no frames beyond its splits)")
        unlabelled = extra_synthetic(
            args.unlabelled, tuple(args.size), args.out / "data", UNLABELLED_SCENE_OFFSET, "unlabelled"
        )
    if args.reuse_from is not None:
        link_stages(args.reuse_from, args.out, args.seeds, tuple(args.reuse_stages))
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
    folder = save_runs(per_seed, teacher, args)
    # Seeds may come from several invocations into one results folder (one per seed, two at a time): the header
    # describes every seed the folder holds and sums all of their stage wall times.
    all_seeds = load_runs(folder)[0]
    stage_wall = sum(r.get("wall_s") or 0.0 for rows in all_seeds.values() for r in rows.values())
    recipe = teacher_recipe(tdir)  # written when the teacher was trained (a reused teacher keeps its own)
    header = (
        f"dataset={args.dataset} size={args.size[0]}x{args.size[1]} train={len(train)} held-out={len(test)} "
        f"split={args.split} student={args.student} ({student_weights(base_config(args, 0))}) "
        f"steps={args.steps} batch={args.batch} lr={args.lr} "
        f"acclimate_steps={args.acclimate_steps} kd_weight={args.kd_weight} response_weight={args.response_weight} "
        f"{f'few_label={args.few_label:g} ' if args.few_label else ''}"
        f"{f'unlabelled={args.unlabelled} fraction={args.unlabelled_fraction:g} ' if args.unlabelled else ''}"
        f"attention={args.attention} tau={args.tau} levels={args.levels} "
        f"{''.join(x + ' ' for x in args.base_set + args.distill_set)}"
        f"teacher: {json.dumps(recipe) if recipe is not None else '(recipe not recorded)'} "
        f"cpu={cpu_description()} seeds={sorted(all_seeds)} protocol=none caps 1e-3..{args.max_depth} m, no flip-TTA, "
        f"stage wall times summed {stage_wall:.0f} s (1 thread each, up to 4 runs on 2 cores), "
        f"the last invocation {time.perf_counter() - start:.0f} s"
    )
    (folder / "header.txt").write_text(header + "\n")
    print(f"per-run results: {folder}")
    print(write_table(folder))


def link_stages(source: Path, out: Path, seeds: list[int], keys: tuple[str, ...] = REUSABLE) -> None:
    """Symlink ``source``'s finished per-seed stages ``keys`` into ``out`` (absent there only): probes that change
    only later stages share one baseline, LG-Conv student and (if its settings match) acclimation."""
    for seed in seeds:
        for key in keys:
            src, dst = (source / f"seed{seed}" / key).resolve(), out / f"seed{seed}" / key
            if stage_done(src) is not None and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src, target_is_directory=True)


def teacher_recipe(tdir: Path) -> dict | None:
    """How the teacher of ``tdir`` was made (``recipe.json``, written when it was trained), or None if not recorded."""
    path = tdir / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else None


def score_teacher(tdir: Path, teacher: dict, held_out: Dataset, info: dist.DistInfo, args) -> None:
    """Score the finished teacher of ``tdir`` (its own saved config, its last checkpoint) on ``held_out``: a teacher
    chosen on validation frames gets its test score without retraining."""
    cfg = load_config(tdir / "config.yaml", [f"teacher.checkpoint={teacher['checkpoint']}"])
    model = build_teacher(cfg.teacher).eval()
    dataset = renormalized(held_out, STORED, model_spec(cfg, "teacher"))
    metrics, _ = score(model, dataset, cfg, info)
    recipe = teacher_recipe(tdir)
    name = tdir.parent.name if tdir.name == "teacher" else tdir.name  # runs/NAME/teacher -> NAME
    record = {"stage": "teacher", "teacher": name, "split": args.split, "metrics": metrics, "recipe": recipe}
    folder = results_folder(args)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_on_{args.split}.json").write_text(json.dumps(record, indent=1, default=float))
    print("teacher on", args.split, json.dumps({k: metrics[k] for k in ("abs_rel", "rmse", "d1")}), flush=True)


def render_table(folder: Path) -> str:
    """The markdown of a results folder: ``header.txt`` and the table of its per-run JSONs."""
    per_seed, _ = load_runs(folder)
    text, _ = summarise(per_seed)
    header = folder / "header.txt"
    return (header.read_text().strip() if header.is_file() else "") + "\n\n" + text + "\n"


def write_table(folder: Path) -> str:
    """Regenerate ``table.md`` in a results folder from its per-run JSONs, and beside it ``gap.md`` / ``gap.json``
    (the teacher-student gap diagnostics, :func:`gap_summary`) when the folder has the LG-Conv and acclimation
    stages; returns the table (the README copies it) followed by the gap table."""
    out = render_table(folder)
    (folder / "table.md").write_text(out)
    gap, numbers = gap_summary(load_runs(folder)[0])
    if not numbers:
        return out
    (folder / "gap.md").write_text(gap + "\n")
    (folder / "gap.json").write_text(json.dumps(numbers, indent=1))
    return out + "\n" + gap + "\n"


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
