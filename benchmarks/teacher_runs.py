"""How often the teacher runs per training image, with the target store and with the per-process cache, for 1, 2
and 4 processes over several epochs; and the store's size per view.

    python benchmarks/teacher_runs.py [--frames 48] [--epochs 3 10] [--worlds 1 2 4] [--out benchmarks/results/...]
    python benchmarks/teacher_runs.py --memory 48 480   # peak resident memory of one rank, store vs cache

Tiny teacher and student (the counts do not depend on the model), synthetic 64x96 frames, crops 48x64, flips on
(so each frame has two views: itself and its mirror image), batch 4 per process.

* store: ``disdepth teach``'s pass (pipeline/teach.py) in W real gloo processes (torch.multiprocessing, one thread
  each), each computing its share of the shards; then each rank distils for the epochs reading the store. The
  teacher's runs are counted inside each process (``TeacherTargets.views_computed``) and summed.
* ``--memory N ...``: a store of N frames (240x320) is written, then a fresh process distils one epoch over them
  reading the store, and another with the unbounded in-memory cache; each reports its peak resident memory
  (``ru_maxrss``) and, at the end, its private (``RssAnon``) and file-backed (``RssFile``: the store's memory maps,
  pages the kernel shares between ranks and may drop) resident memory.
* per-process cache (``distill.cache_teacher``, the default before the store): each rank's own in-memory cache, fed
  the samples ``DistributedSampler`` deals that rank each epoch (shuffled, ``set_epoch``), unbounded and bounded to
  a tenth of the views (a dataset 10x larger than ``distill.cache_max_gb`` holds). The ranks are simulated in one
  process: each is its own ``TeacherTargets`` with its own cache, as in W processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler, default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.checkpoint import save_checkpoint
from disdepth.config import Config, load_config
from disdepth.data.build import build_dataset
from disdepth.engine import dist
from disdepth.models.student import build_student
from disdepth.pipeline.stages import build_distillation
from disdepth.pipeline.teach import teach_stage
from disdepth.tasks.acclimation import acclimated_state, build_acclimated
from disdepth.teachers.build import build_teacher

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    *STUDENT_UNTIL_0_5,
    "model.encoder=test_efficientnet", "model.decoder_channels=[16,16,8,8,8]", "model.max_depth=8",
    "teacher.kind=hybrid", "teacher.name=test_efficientnet", "teacher.hybrid_dim=32", "teacher.hybrid_depth=1",
    "teacher.hybrid_heads=2", "teacher.decoder_channels=16", "teacher.max_depth=8", "data.synthetic.height=64",
    "data.synthetic.width=96", "data.augment.crop_height=48", "data.augment.crop_width=64", "data.batch_size=4",
    "data.num_workers=0",
]  # fmt: skip


def config(n_frames: int, acclimated: str, *extra: str) -> Config:
    return load_config(overrides=[*TINY, f"data.synthetic.n_train={n_frames}",
                                  f"distill.acclimated_checkpoint={acclimated}", *extra])  # fmt: skip


def epochs_of_batches(dataset, rank: int, world: int, epochs: int, batch: int):
    """The batches ``DistributedSampler`` deals ``rank`` each epoch (shuffled per epoch, as the training loop)."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        torch.manual_seed(1000 * epoch + rank)  # each draw a new augmentation
        order = list(sampler)
        for i in range(0, len(order), batch):
            yield default_collate([dataset[j] for j in order[i : i + batch]])


def _store_worker(rank: int, world: int, port: int, n_frames: int, acclimated: str, store: str, epochs: int,
                  out: str) -> None:  # fmt: skip
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    cfg = config(n_frames, acclimated)
    info = dist.setup("cpu")
    try:
        dataset = build_dataset(cfg, "train")
        taught = teach_stage(cfg, store, dataset, info, views_per_shard=8)
        cfg.distill.target_store = store
        targets = build_distillation(cfg, dataset).targets
        with torch.no_grad():
            for batch in epochs_of_batches(dataset, rank, world, epochs, cfg.data.batch_size):
                targets(batch)
        Path(out, f"rank{rank}.json").write_text(json.dumps({
            "teach_views_computed_all_ranks": taught["views_computed"], "views": taught["views"],
            "distill_teacher_runs": targets.views_computed, "store_reads": targets.store.reads,
        }))  # fmt: skip
    finally:
        dist.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_counts(world: int, n_frames: int, acclimated: str, epochs: int, work: Path) -> dict:
    store, out = work / f"store_w{world}", work / f"out_w{world}"
    out.mkdir(parents=True)
    mp.spawn(_store_worker, args=(world, _free_port(), n_frames, acclimated, str(store), epochs, str(out)),
             nprocs=world, join=True)  # fmt: skip
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    views = ranks[0]["views"]
    teach = ranks[0]["teach_views_computed_all_ranks"]
    during = sum(r["distill_teacher_runs"] for r in ranks)
    size = sum(p.stat().st_size for p in store.glob("shard-*.safetensors"))
    return {"views": views, "teacher_runs": teach + during, "teacher_runs_per_view": (teach + during) / views,
            "teacher_runs_per_image": (teach + during) / n_frames, "teacher_runs_while_distilling": during,
            "store_bytes_per_view": size / views}  # fmt: skip


def cache_counts(world: int, n_frames: int, acclimated: str, epochs: int, tenth: bool) -> dict:
    cfg = config(n_frames, acclimated)
    dataset = build_dataset(cfg, "train")
    views = 2 * len(dataset)
    runs = 0
    for rank in range(world):
        targets = build_distillation(cfg, dataset).targets
        if tenth:  # bound: a tenth of all views (one view's size measured on a first frame)
            probe = build_distillation(cfg, dataset).targets
            with torch.no_grad():
                probe(default_collate([dataset[0]]))
            targets.max_cache_bytes = max(1, probe.cache_bytes * views // 10)
        with torch.no_grad():
            for batch in epochs_of_batches(dataset, rank, world, epochs, cfg.data.batch_size):
                targets(batch)
        runs += targets.views_computed
    return {"views": views, "teacher_runs": runs, "teacher_runs_per_image": runs / len(dataset)}


MEMORY_SIZE = ["data.synthetic.height=240", "data.synthetic.width=320", "data.augment.crop_height=224",
               "data.augment.crop_width=288"]  # fmt: skip  # frames large enough for targets to show in RSS


def _memory_worker(n_frames: int, acclimated: str, store: str, queue) -> None:
    """One epoch of distillation targets over ``n_frames`` in a fresh process; puts its peak RSS (MiB) in ``queue``."""
    torch.set_num_threads(1)
    cfg = config(n_frames, acclimated, *MEMORY_SIZE)
    dataset = build_dataset(cfg, "train")
    if store:
        cfg.distill.target_store = store
    targets = build_distillation(cfg, dataset).targets
    with torch.no_grad():
        for batch in epochs_of_batches(dataset, 0, 1, 1, cfg.data.batch_size):
            targets(batch)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mib = {k: round(int(status[k].split()[0]) / 1024, 1) for k in ("RssAnon", "RssFile") if k in status}
    queue.put({"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               **{f"end_{k}_mib": v for k, v in mib.items()}})  # fmt: skip


def peak_memory(n_frames: int, acclimated: str, work: Path) -> dict:
    """Peak resident memory of one process distilling from a store of ``n_frames`` and from the in-memory cache."""
    cfg = config(n_frames, acclimated, *MEMORY_SIZE)
    store = work / f"memory_store_{n_frames}"
    teach_stage(cfg, store, build_dataset(cfg, "train"), dist.DistInfo.single(), views_per_shard=64)
    ctx = mp.get_context("spawn")
    size = sum(p.stat().st_size for p in store.glob("shard-*.safetensors"))
    out = {"frames": n_frames, "frame_size": [240, 320], "store_mib": round(size / 2**20, 1)}
    for name, path in (("store", str(store)), ("cache_unbounded", "")):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_worker, args=(n_frames, acclimated, path, queue))
        proc.start()
        out[name] = queue.get()
        proc.join()
    return out


def table(result: dict) -> str:
    """The markdown table of a result (teacher runs per training image; the store's include each mirror view)."""
    header = (
        "| processes | epochs | store: teacher runs per image (of them while distilling) | per view | "
        "per-process cache, unbounded | bounded to a tenth of the views |"
    )
    lines = [header, "|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        s, u, t = r["store"], r["cache_unbounded"], r["cache_tenth"]
        lines.append(f"| {r['processes']} | {r['epochs']} | {s['teacher_runs_per_image']:.2f} "
                     f"({s['teacher_runs_while_distilling']}) | {s['teacher_runs_per_view']:.2f} | "
                     f"{u['teacher_runs_per_image']:.2f} | {t['teacher_runs_per_image']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_runs.json")
    p.add_argument("--table-only", action="store_true", help="print the table of the committed --out JSON")
    p.add_argument("--memory", type=int, nargs="+", default=None, help="only: peak RSS for stores of these sizes")
    args = p.parse_args()
    if args.memory:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            cfg = config(args.memory[0], "")
            torch.manual_seed(0)
            acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), build_student(cfg.model), train=False)
            save_checkpoint(acclimated_state(acclimated.eval(), cfg, {}), work / "acclimated.pt")
            rows = [peak_memory(n, str(work / "acclimated.pt"), work) for n in args.memory]
        out = args.out.with_name("teacher_runs_memory.json")
        out.write_text(json.dumps({"rows": rows, "threads_per_process": 1}, indent=1) + "\n")
        print(json.dumps(rows, indent=1))
        return
    if args.table_only:
        print(table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = config(args.frames, "")
        torch.manual_seed(0)
        student = build_student(cfg.model)
        acclimated = build_acclimated(cfg, build_teacher(cfg.teacher), student, train=False).eval()
        path = work / "acclimated.pt"
        save_checkpoint(acclimated_state(acclimated, cfg, {}), path)
        rows = []
        for world in args.worlds:
            for epochs in args.epochs:
                row = {"processes": world, "epochs": epochs, "frames": args.frames}
                row["store"] = store_counts(world, args.frames, str(path), epochs, work / f"e{epochs}")
                row["cache_unbounded"] = cache_counts(world, args.frames, str(path), epochs, tenth=False)
                row["cache_tenth"] = cache_counts(world, args.frames, str(path), epochs, tenth=True)
                rows.append(row)
                print(json.dumps(row), flush=True)
    cpu = platform.processor() or platform.machine()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "other"
    result = {"rows": rows, "cpu": f"{cpu} ({isa}, {os.cpu_count()} cores)", "threads_per_process": 1,
              "teacher": "tiny hybrid (counts do not depend on the model)", "flips": True}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
