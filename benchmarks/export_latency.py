"""Eager PyTorch vs ONNX Runtime (CPU) latency of disdepth students, printed as a markdown table.

    python benchmarks/export_latency.py    # mobilenetv2_100 (+LG-Conv), tf_efficientnet_lite0 (+LG-Conv)
    python benchmarks/export_latency.py --resolutions 240x320 --runs 5 --threads 1,2

Each student (random weights: latency does not depend on them; default decoder and sigmoid head) is
wrapped as ``disdepth export`` does (RGB in [0, 1] in, depth in metres out), exported to a
fixed-size ONNX graph, checked for parity, and timed at batch 1: warm-up, then eager and ORT runs
*alternating*, median per side. Machines running this are often shared and noisy, so read the
ORT/eager ratio (both measured in the same seconds) rather than the absolute milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.commands.common import parse_hw_list
from disdepth.config import load_config
from disdepth.deploy.bench import count_flops
from disdepth.deploy.export import DepthOnly, export_onnx, latency, ort_session, parity
from disdepth.models.student import build_student

MODELS = [("mobilenetv2_100", False), ("mobilenetv2_100", True), ("tf_efficientnet_lite0", False),
          ("tf_efficientnet_lite0", True)]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", default="480x640,240x320", help="HxW list")
    parser.add_argument("--encoders", help="comma list; default mobilenetv2_100,tf_efficientnet_lite0")
    parser.add_argument("--no-lgconv", action="store_true", help="skip the +LG-Conv variants")
    parser.add_argument("--threads", default="", help="comma list of thread counts (default: torch's default)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    models = MODELS
    if args.encoders:
        models = [(e, lg) for e in args.encoders.split(",") for lg in (False, True)]
    if args.no_lgconv:
        models = [(e, lg) for e, lg in models if not lg]
    threads = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    rows = []
    exporter = "?"
    with tempfile.TemporaryDirectory() as tmp:
        for encoder, lg in models:
            cfg = load_config(overrides=STUDENT_UNTIL_0_5).model
            cfg.encoder, cfg.lgconv.enabled = encoder, lg
            torch.manual_seed(0)
            model = build_student(cfg).eval()
            wrapper = DepthOnly(model, model.encoder.mean, model.encoder.std).eval()
            label = encoder + (" +LG-Conv" if lg else "")
            params = sum(p.numel() for p in model.parameters()) / 1e6
            for h, w in parse_hw_list(args.resolutions, "--resolutions", 32):
                print(f"{label} {h}x{w}: export ...", file=sys.stderr, flush=True)
                path = Path(tmp) / f"{encoder}_{int(lg)}_{h}x{w}.onnx"
                exporter = export_onnx(wrapper, path, (h, w), dynamic=False, opset=args.opset)
                gflops = count_flops(wrapper, h, w) / 1e9
                for n in threads:
                    torch.set_num_threads(n)
                    session = ort_session(path, n)
                    diff = parity(session, wrapper, torch.rand(1, 3, h, w))
                    t = latency(session, wrapper, h, w, args.warmup, args.runs)
                    rows.append((label, f"{h}x{w}", params, gflops, n, t["eager_ms"], t["ort_ms"], t["speedup"], diff))
                    print(f"  {n} threads: eager {t['eager_ms']:.1f} ms, ORT {t['ort_ms']:.1f} ms", file=sys.stderr)
    print("| model | input (HxW) | params (M) | GFLOPs | threads | eager (ms) | ORT CPU (ms) | eager / ORT "
          "| max abs diff (m) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, size, params, gflops, n, eager, ort_ms, ratio, diff in rows:
        print(f"| {label} | {size} | {params:.2f} | {gflops:.2f} | {n} | {eager:.1f} | {ort_ms:.1f} | {ratio:.2f}x "
              f"| {diff:.1e} |")  # fmt: skip
    import onnxruntime

    print(
        f"\nbatch 1, {args.warmup} warm-up + {args.runs} timed runs per side, eager and ORT alternating, median; "
        f"torch {torch.__version__} (inference_mode), onnxruntime {onnxruntime.__version__} CPUExecutionProvider, "
        f"ONNX via {exporter} exporter, opset {args.opset}; sigmoid head, default decoder, random weights. "
        "Shared machine: compare the ratio column, not absolute times."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
