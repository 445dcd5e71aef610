"""How much faster the students are than the teachers they learn from: eager PyTorch, interleaved in one process.

python benchmarks/teacher_latency.py --size 480 640 --threads 1 --runs 5 --json benchmarks/results/teacher_latency.json

Students, the peers (FastDepth, Monodepth2-R18) and teachers are built from their configs with random weights
(latency does not depend on the weights; hub weights cannot be downloaded here) and timed round-robin (one forward
of each per round, ``--runs`` rounds after one warm-up), batch 1, fp32, CPU. Teachers: the ViT-B/16 DPT and Swin-B
DPT of ``configs/teachers/`` (the transformer teachers of the real recipes) and the small hybrid Lite0 teacher of the
real-data ablation (``configs/benchmarks/distill_ablation.yaml``). Eager only: exporting a ViT-B at 480x640 to ONNX
takes minutes and the ratio is what the README states.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.config import load_config
from disdepth.deploy.bench import inference_forward, time_interleaved
from disdepth.models.student import build_student
from disdepth.teachers.build import build_teacher

ROOT = Path(__file__).resolve().parents[1]
ABLATION = ROOT / "configs" / "benchmarks" / "distill_ablation.yaml"
STUDENTS = {
    "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)": (None, []),
    "U-Net 256/128/64/32 student (mobilenetv2_100; the earlier default)": (
        None,
        ["model.decoder_channels=[256,128,64,32,16]", "model.decoder_upsample=bilinear"],
    ),
    "lite student (mobilenetv2_100, lite decoder)": (None, ["model.decoder=lite"]),
    "narrow student (mobilenetv2_100, U-Net 128/64/32/16)": (
        None,
        ["model.decoder_channels=[128,64,32,16]", "model.decoder_upsample=bilinear"],
    ),
    "ablation student (mobilenetv2_100 + LG-Conv, light U-Net)": (ABLATION, ["model.lgconv.enabled=true"]),
    # The peers, so the latency-accuracy figure (plot_tradeoff.py) places them on the same time axis.
    "FastDepth (MobileNet + NNConv5)": (
        None,
        ["model.encoder=mobilenetv1_100", "model.decoder=nnconv5", "model.head=pointwise"],
    ),
    "Monodepth2-R18": (None, ["model.encoder=resnet18", "model.decoder=monodepth2"]),
}
TEACHERS = {
    "teacher: ViT-B/16 + DPT (configs/teachers/vit_base.yaml)": (ROOT / "configs/teachers/vit_base.yaml", []),
    "teacher: Swin-B + DPT (configs/teachers/swin_base.yaml)": (ROOT / "configs/teachers/swin_base.yaml", []),
    "teacher: hybrid Lite0 192x4 (the ablation's)": (ABLATION, []),
}


class DepthOf(nn.Module):
    """image (1, 3, H, W) -> depth (1, 1, H, W): the part of a student's or teacher's forward a user deploys."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)["depth"]


def build(name: str, path: Path | None, overrides: list[str], teacher: bool) -> nn.Module:
    pinned = [*STUDENT_UNTIL_0_5, *overrides]
    cfg = load_config(path, pinned) if path else load_config(overrides=pinned)
    if teacher:  # random weights: no hub download, and latency does not depend on them
        model = build_teacher(cfg.teacher, load_weights=False)
    else:
        model = build_student(cfg.model, load_weights=False)
    return DepthOf(model).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.size
    image = torch.rand(1, 3, h, w)
    models = {n: build(n, path, o, False) for n, (path, o) in STUDENTS.items()}
    models.update({n: build(n, path, o, True) for n, (path, o) in TEACHERS.items()})

    load_before = os.getloadavg()
    times = time_interleaved({n: inference_forward(m, image) for n, m in models.items()}, 1, args.runs)
    load_after = os.getloadavg()
    medians = {n: statistics.median(t) for n, t in times.items()}
    print(f"{h}x{w}, batch 1, fp32, eager, {args.threads} thread(s), {args.runs} interleaved rounds, median ms; "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} (1 min)")  # fmt: skip
    rows = []
    for name, model in models.items():
        ratios = {s: medians[name] / medians[s] for s in STUDENTS}
        params = sum(q.numel() for q in model.parameters()) / 1e6
        rows.append({"model": name, "median_ms": medians[name], "params_m": params, "ratio_to_student": ratios})
        cells = "  ".join(f"{r:6.1f}x" for r in ratios.values())
        print(f"{name:62s} {params:6.1f} M {medians[name]:9.1f} ms  {cells}")
    print("(ratios: this model's time / each student's, in the order " + "; ".join(STUDENTS) + ")")
    if args.json:
        meta = {"size": [h, w], "threads": args.threads, "runs": args.runs, "load": [load_before, load_after]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
