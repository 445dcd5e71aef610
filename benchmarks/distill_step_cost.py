"""Distillation step cost with augmentation on, and the accuracy of cached-and-warped teacher targets.

Step cost (issue 15: distillation at the baseline's cost with augmentation on; run on a quiet machine):

    python benchmarks/distill_step_cost.py [--teacher vit_base|swin_base|hybrid|tiny] [--frame 240 320]
        [--crop 224 288] [--batch 4] [--steps 10] [--threads 1] [--set k=v ...]

Times full optimizer steps (forward, backward, AdamW) on augmented batches (the BTS training augmentation:
rotation, crop, flip, colour; each sample records its geometry) of: the baseline student (SupervisedTask);
DisDepth distillation with teacher targets recomputed on every augmented batch; and with the teacher-target cache
(the teacher ran once per un-augmented frame, and once per mirrored frame, before timing; each step warps the
cached maps). With ``--store`` two more: the teacher-target store (``disdepth teach``'s pass over every frame and
its mirror image, written before timing; each step reads its views memory-mapped and warps them, nothing kept in
memory), and the in-memory cache bounded to a tenth of the views (``distill.cache_max_gb`` at a dataset 10x larger
than it holds: the other views are recomputed on each augmented sample). All run round-robin, one step each, in one
process, so machine load hits them alike; medians and ratios to the baseline are printed, with the one-time cost
of filling the cache (and writing the store) per view and their sizes. Student mobilenetv2_100 + LG-Conv;
teachers are built offline with random weights (timm ``pretrained=False``: cost does not depend on the weights)
and wrapped with random FAMs and a ghost decoder (an acclimated teacher).

Accuracy (cheap; the numbers in docs/distillation.md, "Teacher-target cache with augmentation"):

    python benchmarks/distill_step_cost.py --accuracy [--acclimated acclimated.pt | --teacher tiny|hybrid ...]
        [--frames index.csv] [--frame 192 256] [--crop 160 224] [--n-frames 16]

For each kind of augmentation, per image: targets the teacher computes on the augmented image vs targets cached
on the un-augmented frame and warped by the recorded geometry. Per distilled level: relative L2 error of the
features, 1 - r (r: Pearson correlation per channel over positions, what the standardised KD distance sees), and
the total-variation distance of the attention maps; the relative L2 error of the teacher depth, and both teacher
depths' abs_rel against the ground truth. The row "geometry ignored" warps with a top-left crop instead (the old
cache under augmentation) as a reference.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.config import Config, load_config
from disdepth.data.csv import CSVDataset
from disdepth.data.sample import RawSample, normalize_sample
from disdepth.data.synthetic import SyntheticDepthDataset
from disdepth.data.transforms import (
    ColorAugment,
    Compose,
    RandomCrop,
    RandomHFlip,
    RandomRotateCrop,
    RecordGeometry,
    crop,
    train_augmentation,
)
from disdepth.models.spec import InputSpec
from disdepth.models.student import build_student
from disdepth.tasks.acclimation import build_acclimated, load_acclimated
from disdepth.tasks.distillation import DistillationTask, DistilledStudent, TeacherTargets
from disdepth.tasks.supervised import SupervisedTask
from disdepth.tasks.target_store import TargetStore, plan_views, write_store
from disdepth.teachers.build import build_teacher

STUDENT = [
    *STUDENT_UNTIL_0_5,
    "model.encoder=mobilenetv2_100",
    "model.decoder_channels=[96,64,32,24,16]",
    "model.decoder_upsample=bilinear",
    "model.lgconv.enabled=true",
    "model.lgconv.min_channels=32",
    "model.lgconv.strides=[16,32]",
]
TEACHERS = {  # built offline with random weights
    "vit_base": ["teacher.kind=timm", "teacher.name=vit_base_patch16_384"],
    "swin_base": ["teacher.kind=timm", "teacher.name=swin_base_patch4_window7_224"],
    # the ablation's hybrid teacher (EfficientNet-Lite0 stem, 4 transformer blocks, dim 192)
    "hybrid": ["teacher.kind=hybrid", "teacher.name=tf_efficientnet_lite0", "teacher.hybrid_dim=192",
               "teacher.hybrid_depth=4", "teacher.hybrid_heads=4", "teacher.decoder_channels=64"],
    "tiny": ["teacher.kind=hybrid", "teacher.name=test_efficientnet", "teacher.hybrid_dim=32", "teacher.hybrid_depth=1",
             "teacher.hybrid_heads=2", "teacher.decoder_channels=16"],
}  # fmt: skip


def teacher_targets(
    cfg: Config,
    acclimated: torch.nn.Module,
    spec: InputSpec,
    cache: bool,
    source: Callable | None = None,
    max_bytes: int = 0,
    store: TargetStore | None = None,
) -> TeacherTargets:
    """The teacher side as ``pipeline.stages.build_distillation`` makes it."""
    dc, tc = cfg.distill, cfg.train
    return TeacherTargets(
        acclimated, dc.levels, spec, dc.feature_target, dc.attention, dc.tau, dc.attention_floor, cache,
        tc.silog_variance_focus, tc.silog_scale, source, max_bytes, store,
    )  # fmt: skip


def load_frames(args: argparse.Namespace, n: int) -> list[RawSample]:
    """``n`` un-augmented frames of ``--frame`` size: synthetic indoor scenes, or ``--frames`` (a CSV) resized."""
    h, w = args.frame
    if not args.frames:
        ds = SyntheticDepthDataset("indoor", n, h, w, seed=1)
        return [ds.raw(i) for i in range(n)]
    ds = CSVDataset(args.frames)
    frames = []
    for i in range(min(n, len(ds))):
        raw = dict(ds.load_raw(i * max(1, len(ds) // n)))
        raw["image"] = F.interpolate(raw["image"][None], size=(h, w), mode="area")[0]
        raw["depth"] = F.interpolate(raw["depth"][None], size=(h, w), mode="nearest")[0]
        raw["valid"] = raw["depth"] > 0
        frames.append(raw)  # intrinsics are not used here
    return frames


def normalized(frames: list[RawSample], spec: InputSpec) -> dict[str, dict]:
    """Sample id -> the frame normalised for ``spec`` (the cache's source of un-augmented frames)."""
    return {f["id"]: dict(normalize_sample(f, spec.mean, spec.std)) for f in frames}


# --------------------------------------------------------------------------------------------
# Step cost.
# --------------------------------------------------------------------------------------------


def step(task: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict) -> float:
    start = time.perf_counter()
    loss = task(batch)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def time_steps(args: argparse.Namespace) -> None:
    cfg = load_config(overrides=[*STUDENT, *TEACHERS[args.teacher], *args.overrides])
    torch.manual_seed(0)
    student = build_student(cfg.model)
    spec = student.input_spec
    acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), student, train=False).eval()
    frames = load_frames(args, args.n_frames)
    source = normalized(frames, spec)
    g = torch.Generator().manual_seed(0)
    aug = train_augmentation(tuple(args.crop), 2.5, True, (0.9, 1.1), (0.9, 1.1), (0.9, 1.1), 0.5, g)
    batches = []
    for k in range(args.steps + 2):  # each step a new augmentation of frames drawn in turn
        picked = [frames[(k * args.batch + i) % len(frames)] for i in range(args.batch)]
        batches.append(default_collate([normalize_sample(aug(f), spec.mean, spec.std) for f in picked]))

    def distill(cache: bool, max_bytes: int = 0, store: TargetStore | None = None) -> DistillationTask:
        torch.manual_seed(0)
        model = DistilledStudent(build_student(cfg.model), cfg.distill.levels)
        dc = cfg.distill
        targets = teacher_targets(cfg, acclimated, spec, cache, source.__getitem__, max_bytes, store)
        return DistillationTask(
            model, targets, 1.0, dc.feature_target, dc.feature_weight, dc.normalize, dc.standardize,
            dc.response_weight,
        )  # fmt: skip

    torch.manual_seed(0)
    tasks = {"baseline": SupervisedTask(build_student(cfg.model)), "distill_recomputed": distill(False)}
    tasks["distill_cached"] = cached = distill(True)
    start = time.perf_counter()  # fill the cache: one pass over the batches runs the teacher once per view
    with torch.no_grad():
        for batch in batches:
            cached.targets(batch)
    views = sum(len(v) for v in cached.targets.cache.values())  # frames and the mirrors of flipped ones
    fill_s = (time.perf_counter() - start) / views
    store_note = ""
    if args.store:
        # The teacher pass over every frame and its mirror image, as disdepth teach writes it.
        writer = teacher_targets(cfg, acclimated, spec, False, source.__getitem__)
        plan = plan_views(list(source), mirrored=True)
        start = time.perf_counter()
        def compute(views: list) -> list:  # one teacher batch per call, as pipeline/teach.py runs it
            entries = writer.frame_targets(views, torch.device("cpu"))
            return [entries[v] for v in views]

        with torch.no_grad():
            write_store(args.store, {"benchmark": args.teacher}, plan, compute, batch_size=args.batch)
        teach_s = (time.perf_counter() - start) / len(plan)
        store = TargetStore(args.store)
        size = sum(f.stat().st_size for f in Path(args.store).glob("shard-*.safetensors")) / len(plan) / 2**20
        tasks["distill_store"] = distill(False, store=store)
        # The in-memory cache bounded to a tenth of the views: what a dataset 10x larger than the bound gets.
        tasks["distill_cache_tenth"] = distill(True, max_bytes=cached.targets.cache_bytes // 10)
        store_note = (f"store: {teach_s:.3f} s per view to write ({len(plan)} views: every frame and its mirror), "
                      f"{size:.2f} MiB per view on disk; reads during timing: {{reads}}")  # fmt: skip
    optims = {
        n: torch.optim.AdamW([p for p in t.model.parameters() if p.requires_grad], lr=1e-4) for n, t in tasks.items()
    }
    times: dict[str, list[float]] = {n: [] for n in tasks}
    for t in tasks.values():
        t.train()
    for k, batch in enumerate(batches):
        for name, task in tasks.items():  # round-robin: one step of each per batch
            dt = step(task, optims[name], batch)
            if k >= 2:  # two warm-up steps
                times[name].append(dt)
    base = statistics.median(times["baseline"])
    mb = cached.targets.cache_bytes / views / 2**20
    print(f"teacher {args.teacher} ({cfg.teacher.name}), frames {args.frame[0]}x{args.frame[1]} -> crops "
          f"{args.crop[0]}x{args.crop[1]} (rotation 2.5 deg, flip, colour), batch {args.batch}, {args.steps} timed "
          f"steps each, {torch.get_num_threads()} threads")  # fmt: skip
    dc = cfg.distill
    print(f"distill: attention={dc.attention} levels={dc.levels} standardize={dc.standardize}")
    print("| step | s/step | ratio to baseline |\n|---|---:|---:|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {m:.3f} | {m / base:.2f}x |")
    print(f"cache fill: {fill_s:.3f} s per cached view (a frame, or its mirror for flipped samples: at most two "
          f"per image, once each), {mb:.2f} MiB per view (fp16 maps on the CPU); {views} views of {len(frames)} "
          "frames")  # fmt: skip
    if store_note:
        print(store_note.format(reads=tasks["distill_store"].targets.store.reads))
        capped = tasks["distill_cache_tenth"].targets
        print(f"cache bounded to a tenth: teacher runs during timing {capped.views_computed} "
              f"(store: {tasks['distill_store'].targets.views_computed})")  # fmt: skip
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


# --------------------------------------------------------------------------------------------
# Accuracy.
# --------------------------------------------------------------------------------------------


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def _one_minus_r(a: torch.Tensor, b: torch.Tensor) -> float:
    """1 - mean over channels of the Pearson correlation over positions; a, b (C, h, w)."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)
    return float(1 - r.mean())


def _abs_rel(depth: torch.Tensor, batch: dict) -> float:
    """abs_rel of a (1, 1, H, W) depth against the batch's ground truth (valid pixels); nan without any."""
    valid = batch["valid"] & (batch["depth"] > 0)
    if not valid.any():
        return float("nan")
    gt = batch["depth"][valid]
    return float(((depth[valid] - gt).abs() / gt).mean())


def accuracy_cases(crop_hw: tuple[int, int], frame_hw: tuple[int, int], g: torch.Generator) -> dict:
    """name -> a transform of a frame (after RecordGeometry); each kind of augmentation alone, then all of them."""
    h, w = crop_hw
    fh, fw = frame_hw

    def aligned_crop(s: RawSample) -> RawSample:  # offsets that are multiples of 32: every stride divides them
        top = 32 * int(torch.randint(0, (fh - h) // 32 + 1, (), generator=g))
        left = 32 * int(torch.randint(0, (fw - w) // 32 + 1, (), generator=g))
        return crop(s, top, left, h, w)

    return {
        "flip": RandomHFlip(1.0, g),
        "crop, offsets multiples of 32": aligned_crop,
        "crop, random offsets": RandomCrop(h, w, g),
        "crop + flip": Compose([RandomCrop(h, w, g), RandomHFlip(1.0, g)]),
        "rotation U(-2.5, 2.5) deg + crop": RandomRotateCrop(2.5, h, w, g),
        "colour (gamma, brightness, gain)": ColorAugment(p=1.0, generator=g),
        "all (BTS recipe: rotation, crop, flip p=0.5, colour p=0.5)": train_augmentation(
            crop_hw, 2.5, True, (0.9, 1.1), (0.9, 1.1), (0.9, 1.1), 0.5, g
        ),
    }


def accuracy(args: argparse.Namespace) -> None:
    if args.acclimated:
        acclimated, cfg = load_acclimated(args.acclimated)
        cfg = load_config(overrides=list(args.overrides), base=cfg)
        name = args.acclimated
    else:
        cfg = load_config(overrides=[*STUDENT, *TEACHERS[args.teacher], *args.overrides])
        torch.manual_seed(0)
        acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), build_student(cfg.model), train=False).eval()
        name = f"{args.teacher} (random FAMs)"
    spec = build_student(cfg.model, load_weights=False).input_spec
    frames = load_frames(args, args.n_frames)
    source = normalized(frames, spec)
    fresh = teacher_targets(cfg, acclimated, spec, cache=False)
    g = torch.Generator().manual_seed(0)
    levels = cfg.distill.levels
    print(f"teacher {name}; {len(frames)} frames {args.frame[0]}x{args.frame[1]}"
          f"{' from ' + args.frames if args.frames else ' (synthetic indoor)'}, crops {args.crop[0]}x{args.crop[1]}; "
          f"attention {cfg.distill.attention}; mean over images")  # fmt: skip
    header = " | ".join(f"s{s}: rel L2 / 1-r / attn TV" for s in levels)
    print(f"| augmentation | {header} | depth rel L2 | depth abs_rel vs GT: recomputed / cached |")
    print(f"|---|{'---|' * len(levels)}---:|---:|")
    cases = accuracy_cases(tuple(args.crop), tuple(args.frame), g)
    cases["geometry ignored (reference: crop + flip read as a top-left crop)"] = cases["crop + flip"]
    for case, transform in cases.items():
        cached = teacher_targets(cfg, acclimated, spec, cache=True, source=source.__getitem__)
        rows = []
        for f in frames:
            sample = normalize_sample(transform(RecordGeometry()(f)), spec.mean, spec.std)
            batch = default_collate([sample])
            if case.startswith("geometry ignored"):
                batch["geometry"] = torch.eye(3, dtype=torch.float64)[None]
            want, got = fresh(batch), cached(batch)
            rows.append(
                [(_rel_l2(gf, wf), _one_minus_r(gf[0], wf[0]), 0.5 * float((ga - wa).abs().sum()))
                 for gf, wf, ga, wa in zip(got["features"], want["features"], got["attention"], want["attention"],
                                           strict=True)]
                + [_rel_l2(got["depth"], want["depth"]), _abs_rel(want["depth"], batch), _abs_rel(got["depth"], batch)]
            )  # fmt: skip
        cells = []
        for lv in range(len(levels)):
            mean = [statistics.mean(r[lv][k] for r in rows) for k in range(3)]
            cells.append(f"{mean[0]:.3f} / {mean[1]:.3f} / {mean[2]:.3f}")
        depth = [statistics.mean(r[k] for r in rows) for k in (-3, -2, -1)]
        print(f"| {case} | {' | '.join(cells)} | {depth[0]:.4f} | {depth[1]:.4f} / {depth[2]:.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accuracy", action="store_true", help="measure cached-and-warped targets instead of timing")
    p.add_argument("--teacher", choices=sorted(TEACHERS), default="vit_base")
    p.add_argument("--acclimated", default="", help="accuracy: a trained acclimated.pt instead of --teacher")
    p.add_argument("--frames", default="", help="a CSV index of frames (resized to --frame); default synthetic")
    p.add_argument("--frame", type=int, nargs=2, default=[240, 320], help="un-augmented frame H W")
    p.add_argument("--crop", type=int, nargs=2, default=[224, 288], help="training crop H W")
    p.add_argument("--n-frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides (k=v)")
    p.add_argument("--store", default="", help="time a teacher-target store written here too (a new folder)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with torch.no_grad() if args.accuracy else torch.enable_grad():
        accuracy(args) if args.accuracy else time_steps(args)


if __name__ == "__main__":
    main()
