"""Training throughput (images/s): the disdepth engine versus a bare minimal loop, same model, same data.

    python benchmarks/train_throughput.py --steps 30 --size 240x320 --batch 8

Both loops train a mobilenetv2_100 student with SILog on the same in-memory dataset through a DataLoader
(num_workers=0, so data loading is the same trivial cost in both) and time the steps after a warm-up.
The engine adds per-sample seeding, NaN checks, logging, progress bar and the scheduler; its overhead is
the ratio of the two figures. Machines are shared: compare the ratio, and repeat (--repeats) to see spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.config import load_config
from disdepth.engine.loop import train
from disdepth.models.student import build_student
from disdepth.tasks.losses import silog_loss
from disdepth.tasks.supervised import SupervisedTask


class TensorDepthDataset(Dataset):
    """n random images with smooth positive depth, held in memory."""

    def __init__(self, n: int, height: int, width: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, height, width, generator=g)
        ramp = torch.linspace(1.0, 8.0, height).view(1, 1, height, 1).expand(n, 1, height, width)
        self.depth = ramp * (1 + 0.1 * torch.rand(n, 1, 1, 1, generator=g))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "depth": self.depth[i], "valid": self.depth[i] > 0, "id": str(i)}


def bare_loop(cfg, data: Dataset, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = build_student(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    loader = DataLoader(data, batch_size=cfg.data.batch_size, shuffle=True, drop_last=True, num_workers=0)
    done, start = 0, None
    while done < steps + warmup:
        for batch in loader:
            if done == warmup:
                start = time.perf_counter()
            out = model(batch["image"])
            loss = silog_loss(out["depth"], batch["depth"], batch["valid"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps + warmup:
                break
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def engine_loop(cfg, data: Dataset, steps: int, warmup: int) -> float:
    """Engine throughput from its own log: the windows after the warm-up steps."""
    torch.manual_seed(0)
    cfg.train.steps, cfg.train.log_every = steps + warmup, warmup
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "run", SupervisedTask(build_student(cfg.model)), data)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    windows = [r for r in records if r.get("split") == "train"][1:]  # drop the warm-up window
    # Each window covers log_every steps; average the time per image over them.
    seconds = sum(cfg.train.log_every * cfg.data.batch_size / r["images_per_s"] for r in windows)
    return len(windows) * cfg.train.log_every * cfg.data.batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="240x320")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (a multiple of --warmup)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--encoder", default="mobilenetv2_100")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    cfg = load_config(
        overrides=[
            *STUDENT_UNTIL_0_5,
            f"model.encoder={args.encoder}",
            f"data.batch_size={args.batch}",
            "data.num_workers=0",
            "train.eval_every=0",
            "train.checkpoint_every=0",
        ]
    )
    data = TensorDepthDataset(args.batch * 8, h, w)
    bare, engine = [], []
    for _ in range(args.repeats):  # interleave so machine noise hits both alike
        bare.append(bare_loop(cfg, data, args.steps, args.warmup))
        engine.append(engine_loop(cfg, data, args.steps, args.warmup))
    b, e = statistics.median(bare), statistics.median(engine)
    print(
        f"{args.encoder} {h}x{w}, batch {args.batch}, {torch.get_num_threads()} threads, CPU, "
        f"{args.steps} timed steps after {args.warmup} warm-up, median of {args.repeats}"
    )
    print("| loop | images/s (median) | runs |")
    print("|---|---:|---|")
    print(f"| bare minimal loop | {b:.2f} | {', '.join(f'{v:.2f}' for v in bare)} |")
    print(f"| disdepth engine | {e:.2f} | {', '.join(f'{v:.2f}' for v in engine)} |")
    print(f"engine overhead: {100 * (b / e - 1):+.1f}% time per image")


if __name__ == "__main__":
    main()
