"""Rendering speed of the synthetic world on one core: samples/s per preset and size.

Counts the full dataset item (scene generation, ray casting, shading, shadows, tensors, normalisation).
Prints wall-clock and CPU-time rates: on a shared machine the CPU-time rate is the one to trust.

Usage:
    python benchmarks/synthetic_speed.py [--n 100] [--sizes 240x320 120x160 352x1216] [--sparse]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before NumPy / torch load their thread pools

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from disdepth.data.synthetic import SyntheticDepthDataset  # noqa: E402

TARGET = 50.0  # samples/s at 240x320 on one core (issue 4 acceptance)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="samples per preset and size")
    ap.add_argument("--sizes", nargs="+", default=["240x320", "120x160", "480x640", "352x1216"])
    ap.add_argument("--presets", nargs="+", default=["indoor", "outdoor"])
    ap.add_argument("--sparse", action="store_true", help="outdoor with LiDAR-like sparse ground truth")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'preset':8s} {'size':>9s} {'n':>5s} {'wall/s':>8s} {'cpu/s':>8s} {'ms (cpu)':>9s}")
    for size in args.sizes:
        h, w = (int(x) for x in size.split("x"))
        for preset in args.presets:
            n = args.n if h * w <= 240 * 320 else max(10, args.n // 5)
            ds = SyntheticDepthDataset(preset, n + 2, h, w, sparse=args.sparse and preset == "outdoor")
            ds[n + 1]  # warm-up: noise tiles, ray-grid cache
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                ds[i]
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            flag = f"  (target >= {TARGET:g}/s)" if size == "240x320" else ""
            print(f"{preset:8s} {size:>9s} {n:5d} {n / wall:8.1f} {n / cpu:8.1f} {1000 * cpu / n:9.1f}{flag}")


if __name__ == "__main__":
    main()
