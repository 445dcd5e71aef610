"""How a student's latency and memory grow with input resolution (240x320 -> 960x1280), eager PyTorch and ONNX Runtime.

python benchmarks/student_scaling.py --threads 1 --runs 10 --json benchmarks/results/student_scaling.json

Latency: every (model, size, backend) timed round-robin in one process (``--runs`` rounds after one warm-up),
batch 1, fp32, CPU, so drift hits all sizes alike. Three backends, as a user meets them: eager PyTorch as trained,
eager as ``disdepth predict`` runs it (``optimize_for_inference``: the decoder's upsampling fused, BatchNorm folded,
channels-last), and ONNX Runtime on a fixed-size graph per size, as ``disdepth export --size`` writes it (with the
same fusion; a ``--dynamic`` graph is not fused). Memory: the peak resident set size (``VmHWM``) that one eager
forward adds over the built model, measured in a fresh subprocess per (model, size) so earlier, larger runs do not
hide it. Random weights (neither figure depends on them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.config import load_config
from disdepth.deploy.bench import cpu_description, inference_forward, time_interleaved
from disdepth.deploy.export import DepthOnly, export_onnx, ort_session
from disdepth.deploy.inference import optimize_for_inference
from disdepth.models.student import build_student

SIZES = [(240, 320), (480, 640), (720, 960), (960, 1280)]
MODELS = {
    "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)": [],
    "lite student (mobilenetv2_100, lite decoder)": ["model.decoder=lite"],
}


def wrapper_of(overrides: list[str]) -> DepthOnly:
    model = build_student(load_config(overrides=[*STUDENT_UNTIL_0_5, *overrides]).model, load_weights=False).eval()
    return DepthOnly.of(model)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (``VmHWM``; unlike ``ru_maxrss`` it is not inherited from the
    parent across fork + exec, which would hide a child's growth below the parent's high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError("/proc/self/status has no VmHWM (Linux only)")


def forward_peak_mb(overrides: list[str], size: tuple[int, int], threads: int) -> float:
    """Peak RSS (MB) one eager forward at ``size`` adds over the built model; run in a fresh process."""
    torch.set_num_threads(threads)
    wrapper = wrapper_of(overrides)
    image = torch.rand(1, 3, *size)
    before = peak_rss_mb()
    with torch.inference_mode():
        wrapper(image)
    return peak_rss_mb() - before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--json", type=Path)
    p.add_argument("--memory-of", nargs=3, metavar=("MODEL", "H", "W"), help=argparse.SUPPRESS)  # the subprocess
    args = p.parse_args()
    if args.memory_of:
        name, h, w = args.memory_of
        print(forward_peak_mb(MODELS[name], (int(h), int(w)), args.threads))
        return
    torch.set_num_threads(args.threads)
    fns, images = {}, {size: torch.rand(1, 3, *size) for size in SIZES}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(MODELS.items()):
            wrapper = wrapper_of(overrides)
            optimized, ok = optimize_for_inference(wrapper, torch.rand(1, 3, 64, 96))
            if not ok:
                raise RuntimeError(f"optimize_for_inference changed the output of {name}")
            for size in SIZES:
                path = Path(tmp) / f"m{i}_{size[0]}x{size[1]}.onnx"
                export_onnx(wrapper, path, size)  # fixed size, as `disdepth export` writes it
                session = ort_session(path, args.threads)
                image = images[size]
                feed = image.numpy()
                fns[(name, size, "eager")] = inference_forward(wrapper, image)
                fns[(name, size, "eager_opt")] = inference_forward(
                    optimized, image.contiguous(memory_format=torch.channels_last)
                )
                fns[(name, size, "ort")] = lambda session=session, feed=feed: session.run(None, {"image": feed})
        load_before = os.getloadavg()
        times = time_interleaved(fns, 1, args.runs)
        load_after = os.getloadavg()
    rows = []
    print(f"batch 1, fp32, {args.threads} thread(s), {args.runs} interleaved rounds, median ms; load average "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f} (1 min); memory: peak RSS one eager forward adds")  # fmt: skip
    for name in MODELS:
        for size in SIZES:
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--memory-of", name, *map(str, size)]
            peak = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())
            eager, opt, ort = (statistics.median(times[(name, size, b)]) for b in ("eager", "eager_opt", "ort"))
            rows.append({"model": name, "size": list(size), "eager_ms": eager, "eager_opt_ms": opt, "ort_ms": ort,
                         "peak_mb": peak})  # fmt: skip
            print(f"{name:46s} {size[0]:4d}x{size[1]:<4d} eager {eager:8.1f}  optimised {opt:8.1f}  ORT {ort:8.1f}  "
                  f"+{peak:7.0f} MB")  # fmt: skip
    if args.json:
        meta = {"threads": args.threads, "runs": args.runs, "load": [load_before, load_after], "cpu": cpu_description()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
