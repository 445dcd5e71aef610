"""What each exact eager rewrite of ``optimize_for_inference`` buys: each model with all, and with one left out.

    python benchmarks/eager_rewrites.py --threads 1 --rounds 15 --fastdepth-repo PATH \
        --json benchmarks/results/eager_rewrites.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/eager_rewrites.py --threads 2 ...

What ``disdepth predict``, ``disdepth.load`` and the app run on the CPU (``deploy/inference.py``): BatchNorm folded,
channels-last, the decoder's upsampling fused, and the three rewrites measured here — each ReLU / ReLU6 computed inside
the conv before it (``deploy/conv_activation.py``), timm's stride-2 SAME convs without their padding copy
(``deploy/same_padding.py``) and every other conv run by oneDNN (``conv_activation.convs_to_onednn``). Per model: all
rewrites ("all"), all but the activation fusion ("no_activation_fusion"), all but the SAME rewrite
("no_same_rewrite", only for models that have SAME convs), all but the oneDNN routing ("no_onednn_convs"). Random
weights (latency does not depend on them), batch 1, fp32, 480x640 by default; one forward of every variant per round,
in a new random order each round (``deploy.bench.time_interleaved``); the median ms and the ratio of each variant to
its model's "all". With ``--fastdepth-repo`` (a checkout of github.com/dwofk/fast-depth outside this repository) the
authors' FastDepth is timed the same way, as every model is optimised alike in ``student_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from student_latency import AUTHORS, MODELS, AuthorsFastDepth, wrapped_student  # noqa: E402

from disdepth.deploy.bench import cpu_description, inference_forward, time_interleaved  # noqa: E402
from disdepth.deploy.inference import optimize_for_inference  # noqa: E402

STUDENTS = [
    "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)",
    "lite decoder 96/48/24, nearest upsampling (mobilenetv2_100)",
    "lite decoder 96/48/24, nearest upsampling, ImageNet EfficientNet-Lite0 encoder",
]
VARIANTS = {
    "all": {},
    "no_activation_fusion": {"fuse_activations": False},
    "no_same_rewrite": {"rewrite_same": False},
    "no_onednn_convs": {"onednn_convs": False},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--fastdepth-repo", type=Path, default=None)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {}
    for name in STUDENTS:
        models[name] = wrapped_student(MODELS[name])
    if args.fastdepth_repo:
        models[AUTHORS] = AuthorsFastDepth(args.fastdepth_repo)
    image = torch.rand(1, 3, *args.size).contiguous(memory_format=torch.channels_last)
    fns = {}
    for name, model in models.items():
        has_same = any(type(m).__name__ == "Conv2dSame" for m in model.modules())
        for variant, flags in VARIANTS.items():
            if variant == "no_same_rewrite" and not has_same:
                continue
            optimized, ok = optimize_for_inference(model, torch.rand(1, 3, 64, 96), **flags)
            if not ok:
                raise RuntimeError(f"{name}: optimize_for_inference changed the output ({variant})")
            fns[(name, variant)] = inference_forward(optimized, image)
    load_before = os.getloadavg()
    times = time_interleaved(fns, args.warmup, args.rounds)
    load_after = os.getloadavg()
    print(f"{args.size[0]}x{args.size[1]}, batch 1, fp32, {args.threads} thread(s), {cpu_description()}, {args.rounds} "
          f"interleaved rounds; load average {load_before[0]:.1f} -> {load_after[0]:.1f}")  # fmt: skip
    rows = []
    for name, variant in fns:
        med = statistics.median(times[(name, variant)])
        full = statistics.median(times[(name, "all")])
        rows.append({"model": name, "variant": variant, "median_ms": med, "ratio_to_all": med / full})
        print(f"{name[:60]:60s} {variant:22s} {med:7.1f} ms  x{med / full:.2f} of all rewrites")
    if args.json:
        meta = {"size": args.size, "threads": args.threads, "rounds": args.rounds, "cpu": cpu_description(),
                "load": [load_before, load_after], "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
