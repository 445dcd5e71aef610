"""Latency of students and peers, interleaved in one process, eager PyTorch and ONNX Runtime, as ratios to FastDepth.

Three backends per model: ``eager`` (the model as trained, in ``torch.inference_mode``), ``eager_opt`` (BatchNorm
folded and channels-last, ``deploy.inference.optimize_for_inference``: what ``DepthPredictor`` and ``disdepth predict``
run on the CPU; applied to every model alike, FastDepth included) and ``ort`` (ONNX Runtime).

python benchmarks/student_latency.py --size 480 640 --threads 1 --runs 20 --json benchmarks/results/student_latency.json
OMP_WAIT_POLICY=PASSIVE python benchmarks/student_latency.py --threads 2 --runs 20 \
    --json benchmarks/results/student_latency_2threads.json

Every model is timed round-robin (one forward of each per round, ``--runs`` rounds after warm-up), so load that
comes and goes on a shared machine hits all of them alike; an identical copy of FastDepth ("control") shows how
much of a difference is noise. Randomly initialised weights (latency does not depend on them); batch 1, fp32.

``--spin --pause 0.2`` lets ONNX Runtime's threads busy-wait after a run, as ``disdepth predict`` runs a graph (and,
without ``OMP_WAIT_POLICY=PASSIVE``, torch's OpenMP threads as they do by default), and sleeps 0.2 s before each
timed forward so that one model's spinning threads have gone idle before the next model starts.

``--only 1 2 17`` times only those rows of ``MODELS`` (and FastDepth), for a focused comparison.

``--fastdepth-repo PATH`` adds FastDepth as its authors wrote it (their ``models.MobileNetSkipAdd``, unpruned, from a
checkout of github.com/dwofk/fast-depth outside this repository, run unchanged) and every row's ratio to it
(``ratio_to_authors_fastdepth``): the check that our FastDepth row is the peer, and the default student against the
real FastDepth.

``--predict-runtime`` adds a fourth backend, ``predict_ort``: each model in a ``disdepth.api.DepthPredictor`` with
``runtime="onnxruntime"`` (``deploy/ort_runtime.py``), timed as ``predictor.predict_tensor(image)`` — what
``disdepth predict --runtime onnxruntime`` runs per image (normalisation in PyTorch, the graph exported at the run size
and checked on the first call, its session spinning; give ``--pause`` with more than one thread). The first call's
time, the export and its check, is reported per model (``export_s``).

``--processes N`` repeats the whole measurement in N fresh processes, one after another, and reports the median of
their ratios with the lowest and highest: on some CPUs a ratio differs between processes by more than the rounds
within one process show (where each process's memory happens to lie), so one process is one sample.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.api import DepthPredictor
from disdepth.config import load_config
from disdepth.deploy.bench import cpu_description, inference_forward, time_interleaved
from disdepth.deploy.export import DepthOnly, export_onnx, ort_session
from disdepth.deploy.inference import optimize_for_inference
from disdepth.models.spec import InputSpec
from disdepth.models.student import build_student

B = "model.decoder_upsample=bilinear"  # rows that were measured before nearest upsampling became the default
CF = "model.decoder_conv_first_strides="
# The default student without the decoder's upsampling fused (deploy/upsample_fusion.py) in the eager-optimised and ORT
# columns: what it ran before the fusion, timed in the same rounds.
UNFUSED = "default student, decoder upsampling not fused (before the fusion)"
# FastDepth as the authors built it (results/peer_check_fastdepth.json); rows committed before the pointwise head
# and the skip fix timed the earlier re-implementation (1.19-1.22x the authors' ONNX Runtime time).
FASTDEPTH = ["model.encoder=mobilenetv1_100", "model.decoder=nnconv5", "model.head=pointwise"]
MODELS = {
    "FastDepth (MobileNet + NNConv5)": FASTDEPTH,
    "control: FastDepth again": FASTDEPTH,
    "default student (mobilenetv2_100, U-Net 96/48/24/12, nearest upsampling)": [],
    UNFUSED: [],
    "U-Net 96/48/24/12, bilinear upsampling (mobilenetv2_100)": [B],
    "U-Net 256/128/64/32 student (mobilenetv2_100; the earlier default)": [
        "model.decoder_channels=[256,128,64,32,16]",
        B,
    ],
    "narrow student (mobilenetv2_100, U-Net 128/64/32/16)": ["model.decoder_channels=[128,64,32,16]", B],
    "lite student (mobilenetv2_100, lite decoder)": ["model.decoder=lite"],
    "lite student + LG-Conv": ["model.decoder=lite", "model.lgconv.enabled=true"],
    # Faster candidates that lost accuracy (benchmarks/student_accuracy.py).
    "U-Net 64/32/16/8 (mobilenetv2_100)": ["model.decoder_channels=[64,32,16,8]", B],
    "U-Net 96/48/16/16, nearest upsampling (mobilenetv2_100)": ["model.decoder_channels=[96,48,16,16]"],
    # Monodepth2's block order (each level's first conv before the upsampling) at every level or the finest ones.
    "U-Net 96/48/24/12, conv-first blocks, nearest upsampling (mobilenetv2_100)": [CF + "[16,8,4,2]"],
    "U-Net 96/48/24/12, conv-first blocks at strides 8, 4 and 2, nearest upsampling (mobilenetv2_100)": [
        CF + "[8,4,2]"
    ],
    "U-Net 96/48/24/12, conv-first blocks at strides 4 and 2, nearest upsampling (mobilenetv2_100)": [CF + "[4,2]"],
    "Monodepth2-R18": ["model.encoder=resnet18", "model.decoder=monodepth2"],
    # The default decoder on another encoder with timm ImageNet weights.
    "U-Net 96/48/24/12, nearest upsampling, MobileNetV4-conv-small encoder": ["model.encoder=mobilenetv4_conv_small"],
    "U-Net 128/64/32/16, nearest upsampling, MobileNetV4-conv-small encoder": [
        "model.encoder=mobilenetv4_conv_small",
        "model.decoder_channels=[128,64,32,16]",
    ],
    # EfficientNet-Lite0 (ImageNet weights install offline; latency does not depend on them) under the lite decoder
    # at 96/48/24 and under the default decoder (benchmarks/student_accuracy.py: lite0_lite, lite0_unet).
    "lite decoder 96/48/24, ImageNet EfficientNet-Lite0 encoder": [
        "model.encoder=tf_efficientnet_lite0",
        "model.decoder=lite",
        "model.lite_channels=[96,48,24]",
    ],
    "U-Net 96/48/24/12, nearest upsampling, ImageNet EfficientNet-Lite0 encoder": [
        "model.encoder=tf_efficientnet_lite0"
    ],
    # The lite decoder with a fixed x2 nearest upsampling (model.lite_upsample), on Lite0 and on MobileNetV2
    # (benchmarks/student_accuracy.py: lite0_lite_near, lite_near).
    "lite decoder 96/48/24, nearest upsampling, ImageNet EfficientNet-Lite0 encoder": [
        "model.encoder=tf_efficientnet_lite0",
        "model.decoder=lite",
        "model.lite_channels=[96,48,24]",
        "model.lite_upsample=nearest",
    ],
    "lite decoder 96/48/24, nearest upsampling (mobilenetv2_100)": [
        "model.decoder=lite",
        "model.lite_channels=[96,48,24]",
        "model.lite_upsample=nearest",
    ],
}
REFERENCE = "FastDepth (MobileNet + NNConv5)"
AUTHORS = "FastDepth, the authors' code"


class AuthorsFastDepth(nn.Module):
    """The authors' MobileNet-NNConv5dw-SkipAdd (random init), image (1, 3, H, W) in [0, 1] -> depth (1, 1, H, W)."""

    def __init__(self, repo: Path) -> None:
        super().__init__()
        sys.path.insert(0, str(repo))
        import models  # noqa: PLC0415 - the authors' module, from their checkout

        self.model = models.MobileNetSkipAdd(output_size=(224, 224), pretrained=False).eval()
        self.input_spec = InputSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # it takes the [0, 1] image as it is

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def time_eager_and_ort(
    wrappers: dict[str, nn.Module],
    size: tuple[int, int],
    threads: int,
    warmup: int,
    runs: int,
    spin: bool = False,
    pause_s: float = 0.0,
    predict_runtime: bool = False,
) -> tuple[dict[tuple[str, str], list[float]], tuple[float, ...], tuple[float, ...], dict[str, float]]:
    """Export every wrapper (image (1, 3, H, W) in [0, 1] -> depth) to ONNX at ``size``, then time one eager, one
    optimised eager (BatchNorm folded, channels-last) and one ONNX Runtime forward of each per round, all interleaved
    (``deploy.bench.time_interleaved``).

    Returns ((backend, name) -> wall times in ms, ``backend`` "eager", "eager_opt" or "ort", and "predict_ort" with
    ``predict_runtime``), the 1/5/15-minute load averages before and after the timed rounds, and per model the seconds
    ``predict_ort``'s first call took (export and check; empty without ``predict_runtime``).

    The sessions do not spin (``ort_session``), and with more than one thread torch's OpenMP threads should not either:
    run with ``OMP_WAIT_POLICY=PASSIVE`` (an identical control copy measured 1.74x its original on ORT and 0.83x in
    eager with both spinning, 2 threads on 2 cores).
    ``spin`` lets the sessions spin, as ``disdepth predict`` runs an ``.onnx`` file (``deploy/onnx_model.py``); give it
    a ``pause_s`` (slept before each timed call) so each model starts with the previous one's threads idle.
    """
    image = torch.rand(1, 3, *size)
    image_nhwc = image.contiguous(memory_format=torch.channels_last)
    feed = image.numpy()

    def optimized(name: str, wrapper: nn.Module) -> nn.Module:
        model, ok = optimize_for_inference(wrapper, torch.rand(1, 3, 64, 96), fuse_upsampling=name != UNFUSED)
        if not ok:
            raise RuntimeError("optimize_for_inference changed a model's output")
        return model

    def ort(session):
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: feed})

    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for i, (name, wrapper) in enumerate(wrappers.items()):
            path = Path(tmp) / f"m{i}.onnx"
            export_onnx(wrapper, path, size, fuse_upsampling=name != UNFUSED)
            sessions[name] = ort_session(path, threads, spin=spin)  # not spinning by default: see ort_session
        fns = {("eager", n): inference_forward(m, image) for n, m in wrappers.items()}
        fns.update({("eager_opt", n): inference_forward(optimized(n, m), image_nhwc) for n, m in wrappers.items()})
        fns.update({("ort", n): ort(s) for n, s in sessions.items()})
        export_s = {}
        if predict_runtime:
            for name, wrapper in wrappers.items():  # a student as it is loaded (normalised input); the authors' as is
                model = wrapper.model if isinstance(wrapper, DepthOnly) else wrapper
                fns[("predict_ort", name)], export_s[name] = predictor_on_onnxruntime(model, image)
        load_before = os.getloadavg()
        times = time_interleaved(fns, warmup, runs, pause_s=pause_s)
        load_after = os.getloadavg()
    return times, load_before, load_after, export_s


def predictor_on_onnxruntime(model: nn.Module, image: torch.Tensor) -> tuple[Callable[[], torch.Tensor], float]:
    """``DepthPredictor(model, runtime="onnxruntime").predict_tensor`` on ``image`` (1, 3, H, W) in [0, 1] as a
    zero-argument callable, and the seconds its first call took (the export and the check)."""
    spec = model.input_spec
    predictor = DepthPredictor(model, spec.mean, spec.std, runtime="onnxruntime")
    start = time.perf_counter()
    predictor.predict_tensor(image)
    first_s = time.perf_counter() - start
    if predictor.model.pytorch_sizes:
        raise RuntimeError("the exported graph did not match PyTorch: predict_ort would time PyTorch")
    return (lambda: predictor.predict_tensor(image)), first_s


def wrapped_student(overrides: list[str]) -> DepthOnly:
    """The student of the default config plus ``overrides`` (random weights), wrapped as exported: image (1, 3, H, W)
    in [0, 1] -> depth (1, 1, H, W), normalised with the encoder's mean/std."""
    model = build_student(load_config(overrides=[*STUDENT_UNTIL_0_5, *overrides]).model).eval()
    return DepthOnly.of(model)


def selected_models(rows: list[int] | None) -> dict[str, list[str]]:
    """The rows of ``MODELS`` to time (all without ``rows``), FastDepth always first: every ratio is taken to it."""
    names = list(MODELS)
    keep = names if rows is None else [REFERENCE] + [names[i] for i in sorted(set(rows)) if names[i] != REFERENCE]
    return {name: MODELS[name] for name in keep}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--processes", type=int, default=1, help="repeat in this many fresh processes (module docstring)")
    p.add_argument("--only", nargs="+", type=int, metavar="ROW", choices=range(len(MODELS)),
                   help="time only these rows of MODELS (0-based; FastDepth, row 0, is always timed)")  # fmt: skip
    spin_help = "ONNX Runtime threads busy-wait after a run (its default; how `disdepth predict` runs a graph)"
    p.add_argument("--spin", action="store_true", help=spin_help)
    p.add_argument("--pause", type=float, default=0.0, help="seconds slept (untimed) before each timed forward")
    p.add_argument("--fastdepth-repo", type=Path, default=None, help="also time the authors' FastDepth (docstring)")
    p.add_argument("--predict-runtime", action="store_true", help="add the predict_ort backend (module docstring)")
    args = p.parse_args()
    if args.processes > 1:
        repeat_in_processes(args)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.size
    wrappers = {}
    for name, overrides in selected_models(args.only).items():
        wrappers[name] = wrapped_student(overrides)
    if args.fastdepth_repo:
        wrappers[AUTHORS] = AuthorsFastDepth(args.fastdepth_repo)
    times, load_before, load_after, export_s = time_eager_and_ort(
        wrappers, (h, w), args.threads, args.warmup, args.runs, args.spin, args.pause, args.predict_runtime
    )
    rows = []
    print(f"{h}x{w}, batch 1, fp32, {args.threads} thread(s), {cpu_description()}, {args.runs} interleaved rounds, "
          f"median [p10-p90] ms; load average {load_before[0]:.1f} -> {load_after[0]:.1f} (1 min)")  # fmt: skip
    for backend in ("eager", "eager_opt", "ort") + (("predict_ort",) if args.predict_runtime else ()):
        base = statistics.median(times[(backend, REFERENCE)])
        authors = statistics.median(times[(backend, AUTHORS)]) if AUTHORS in wrappers else None
        for name in wrappers:
            t = sorted(times[(backend, name)])
            med, p10, p90 = statistics.median(t), t[len(t) // 10], t[(len(t) * 9) // 10]
            model = wrappers[name].model
            rows.append({"backend": backend, "model": name, "median_ms": med, "p10_ms": p10, "p90_ms": p90,
                         "ratio_to_fastdepth": med / base,
                         "params_m": sum(q.numel() for q in model.parameters()) / 1e6})  # fmt: skip
            if authors is not None:
                rows[-1]["ratio_to_authors_fastdepth"] = med / authors
            if backend == "predict_ort":
                rows[-1]["export_s"] = export_s[name]
            also = f"  x{med / authors:.2f} the authors' FastDepth" if authors is not None else ""
            print(f"{backend:9s} {name:46s} {med:8.1f} [{p10:.1f}-{p90:.1f}]  x{med / base:.2f} FastDepth{also}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"size": [h, w], "threads": args.threads, "runs": args.runs, "load": [load_before, load_after],
                "cpu": cpu_description(), "ort_spin": args.spin, "pause_s": args.pause,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}  # fmt: skip
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1))


def repeat_in_processes(args: argparse.Namespace) -> None:
    """Run this benchmark ``args.processes`` times, each in a new process, and combine: per (backend, model) the median
    of the processes' medians and ratios, with the ratios' lowest and highest (``ratio_min``, ``ratio_max``)."""
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            out = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, __file__, "--size", *map(str, args.size), "--threads", str(args.threads),
                   "--runs", str(args.runs), "--warmup", str(args.warmup), "--json", str(out)]  # fmt: skip
            if args.only:
                cmd += ["--only", *map(str, args.only)]
            cmd += ["--pause", str(args.pause)] + (["--spin"] if args.spin else [])
            cmd += ["--predict-runtime"] if args.predict_runtime else []
            if args.fastdepth_repo:
                cmd += ["--fastdepth-repo", str(args.fastdepth_repo)]
            print(f"process {i + 1}/{args.processes}", flush=True)
            subprocess.run(cmd, check=True)
            runs.append(json.loads(out.read_text()))
    rows = []
    print(f"{args.processes} processes: median ratio to FastDepth [lowest-highest]")
    for i, first in enumerate(runs[0]["rows"]):
        each = [run["rows"][i] for run in runs]
        ratios = [r["ratio_to_fastdepth"] for r in each]
        row = {**first, "median_ms": statistics.median(r["median_ms"] for r in each),
               "p10_ms": min(r["p10_ms"] for r in each), "p90_ms": max(r["p90_ms"] for r in each),
               "ratio_to_fastdepth": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
               "process_ratios": ratios}  # fmt: skip
        if "export_s" in first:
            row["export_s"] = statistics.median(r["export_s"] for r in each)
        if "ratio_to_authors_fastdepth" in first:
            to_authors = [r["ratio_to_authors_fastdepth"] for r in each]
            row.update(ratio_to_authors_fastdepth=statistics.median(to_authors), authors_ratio_min=min(to_authors),
                       authors_ratio_max=max(to_authors), process_authors_ratios=to_authors)  # fmt: skip
        rows.append(row)
        print(f"{row['backend']:9s} {row['model']:46s} {row['median_ms']:8.1f} ms  "
              f"x{row['ratio_to_fastdepth']:.2f} [{min(ratios):.2f}-{max(ratios):.2f}] FastDepth")  # fmt: skip
    if args.json:
        meta = {k: runs[0][k] for k in ("size", "threads", "runs", "cpu", "ort_spin", "pause_s", "omp_wait_policy")}
        load = [run["load"] for run in runs]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "processes": args.processes, "load": load, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
