"""INT8 on ONNX Runtime: what stays in fp32 in the default student's quantised graph, and whether a graph that
quantises further is faster end to end; every graph timed beside FastDepth's fp32 graph.

    python benchmarks/int8_graphs.py [--size 480 640] [--rounds 20] [--threads 1] \
        [--fastdepth-repo PATH]   # the authors' fast-depth checkout (fetched outside this repository)
    python benchmarks/int8_graphs.py --accuracy-only --checkpoint runs/x/model --size 120 160 \
        --frames ../shared/data/seven_scenes_redkitchen/index.csv   # a trained student: abs_rel of each graph

Graphs of the default student (random weights: latency and graph structure do not depend on the values; the
accuracy of INT8 is measured on a trained student in docs/results.md, "The browser app: latency, and INT8"):

* fp32, decoder upsampling fused (what ``disdepth export`` writes for a fixed size) and unfused (nearest Resize);
* INT8 of each: ``deploy/quantize.quantize_int8`` as ``export --int8 --int8-full-range`` runs it (QDQ, per-channel
  8-bit weights, uint8 activations, MinMax on 8 synthetic renders).

With ``--checkpoint`` (a trained student) and ``--frames`` (the 7-Scenes index) the graphs are calibrated on the
training frames of the distillation benchmark's split (every 4th of rows 0-129) and scored on its test frames (rows
175-233), protocol ``none`` with the model's caps; each INT8 graph's abs_rel is paired with the fp32 graph's on the
same frames (bootstrap 95 % interval over frames).

For each graph ONNX Runtime's optimised graph (what it runs on this CPU) is read back and its ops counted: which run
in int8 (QLinear*), which in fp32, and the quantise/dequantise and layout (Transpose, Reorder) ops between them.
Latency: batch 1, one forward of every graph per round in a new random order each round (so load hits them alike);
the median per-round ratio to the default fp32 graph and to the authors' FastDepth fp32 graph (their
MobileNet-NNConv5dw-SkipAdd, unpruned, run from their code unchanged when ``--fastdepth-repo`` is given).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinned import STUDENT_UNTIL_0_5  # noqa: E402

from disdepth.config import load_config
from disdepth.deploy.export import DepthOnly, export_onnx, realistic_image
from disdepth.deploy.quantize import quantize_int8
from disdepth.models.student import build_student

ROOT = Path(__file__).resolve().parents[1]
INT8_OPS = ("QLinear", "QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantize")
LAYOUT_OPS = ("Transpose", "ReorderInput", "ReorderOutput")


def session(path: Path, threads: int, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_census(path: Path, threads: int, work: Path) -> dict:
    """Op counts of the graph ONNX Runtime runs after its optimisations: int8 ops, layout ops, and the rest
    (fp32 compute) by type."""
    optimized = work / f"{path.stem}.optimized.onnx"
    session(path, threads, optimized)
    counts = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    int8 = {k: v for k, v in counts.items() if k.startswith(INT8_OPS)}
    layout = {k: v for k, v in counts.items() if k in LAYOUT_OPS}
    fp32 = {k: v for k, v in counts.items() if k not in int8 and k not in layout}
    return {"int8_ops": int8, "layout_ops": layout, "other_ops": fp32}


def fastdepth_authors(repo: Path) -> torch.nn.Module:
    """The authors' MobileNet-NNConv5dw-SkipAdd (unpruned), random weights, from their ``models.py``."""
    sys.path.insert(0, str(repo))
    import models  # noqa: PLC0415 - the authors' module, from their checkout

    return models.MobileNetSkipAdd(output_size=(224, 224), pretrained=False).eval()


def accuracy(args: argparse.Namespace, work: Path) -> dict:
    """abs_rel of the fp32 and both INT8 graphs of a trained student on the 7-Scenes test frames, paired."""
    from disdepth.deploy.export import ort_session
    from disdepth.deploy.quantize import iter_calibration, labelled_records, score_graphs
    from disdepth.deploy.sources import read_rgb
    from disdepth.deploy.weights import load_model
    from disdepth.eval.stats import paired_bootstrap

    model, _ = load_model(args.checkpoint)
    wrapper = DepthOnly.of(model)
    records = labelled_records(args.frames)
    train, test = records[0:130:4], records[175:234]
    calibration = list(iter_calibration([r.rgb for r in train], tuple(args.size), lambda p: read_rgb(p)[0]))
    graphs = {}
    for fused in (True, False):
        name = "fused" if fused else "unfused"
        fp32 = work / f"trained_fp32_{name}.onnx"
        export_onnx(wrapper, fp32, tuple(args.size), fuse_upsampling=fused)
        graphs[f"int8, upsampling {name}"] = quantize_int8(fp32, work / f"trained_int8_{name}.onnx", calibration,
                                                          reduce_range=False)  # fmt: skip
        if fused:
            graphs["fp32, upsampling fused"] = fp32
    sessions = {name: ort_session(path, args.threads) for name, path in graphs.items()}
    scores = score_graphs(sessions, test, tuple(args.size), model.input_spec)
    ids = sorted(scores["fp32, upsampling fused"].per_image)
    base = np.array([[scores["fp32, upsampling fused"].per_image[k]["abs_rel"] for k in ids]])
    out = {}
    for name, result in scores.items():
        row = np.array([[result.per_image[k]["abs_rel"] for k in ids]])
        change = paired_bootstrap(row, base)
        out[name] = {"abs_rel": result.metrics["abs_rel"], "frames": result.n_evaluated,
                     "vs_fp32_pct": [change.percent, change.low, change.high]}  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=[480, 640])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fastdepth-repo", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_graphs.json")
    p.add_argument("--checkpoint", default="", help="a trained student (model folder or .pt) for --accuracy-only")
    p.add_argument("--frames", default="", help="the 7-Scenes index.csv (calibration and test frames)")
    p.add_argument("--accuracy-only", action="store_true", help="only score the graphs of --checkpoint")
    args = p.parse_args()
    if args.accuracy_only:
        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            result = {"checkpoint": args.checkpoint, "size": args.size, "rows": accuracy(args, Path(tmp))}
        print(json.dumps(result, indent=1))
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        return
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    torch.manual_seed(0)
    student = build_student(load_config(overrides=STUDENT_UNTIL_0_5).model).eval()
    wrapper = DepthOnly.of(student)
    calibration = [realistic_image(*size, index=i).numpy() for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        graphs: dict[str, Path] = {}
        for fused in (True, False):
            name = "fused" if fused else "unfused"
            graphs[f"fp32, upsampling {name}"] = path = work / f"fp32_{name}.onnx"
            export_onnx(wrapper, path, size, fuse_upsampling=fused)
            graphs[f"int8, upsampling {name}"] = work / f"int8_{name}.onnx"
            quantize_int8(path, graphs[f"int8, upsampling {name}"], calibration, reduce_range=False)
        if args.fastdepth_repo is not None:
            graphs["FastDepth (authors' code), fp32"] = path = work / "fastdepth.onnx"
            torch.onnx.export(fastdepth_authors(args.fastdepth_repo), (torch.rand(1, 3, *size),), str(path),
                              opset_version=17, dynamo=False)  # fmt: skip
        census = {name: op_census(path, args.threads, work) for name, path in graphs.items()}
        sessions = {name: session(path, args.threads) for name, path in graphs.items()}
        feeds = {name: {s.get_inputs()[0].name: np.random.rand(1, 3, *size).astype(np.float32)}
                 for name, s in sessions.items()}  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in sessions}
        rng = random.Random(0)
        for r in range(args.rounds + 2):  # two warm-up rounds
            order = list(sessions)
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                sessions[name].run(None, feeds[name])
                if r >= 2:
                    times[name].append(1e3 * (time.perf_counter() - start))
    ref = "fp32, upsampling fused"
    fastdepth = "FastDepth (authors' code), fp32"
    rows = {}
    for name, ts in times.items():
        row = {"ms_median": round(statistics.median(ts), 1), "ms_min": round(min(ts), 1), "ms_max": round(max(ts), 1)}
        row["ratio_to_default_fp32"] = round(statistics.median(a / b for a, b in zip(ts, times[ref], strict=True)), 3)
        if fastdepth in times:
            row["ratio_to_fastdepth_fp32"] = round(
                statistics.median(a / b for a, b in zip(ts, times[fastdepth], strict=True)), 3
            )
        rows[name] = {**row, **census[name]}
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    result = {
        "cpu": f"{platform.processor() or platform.machine()} ({isa}, {os.cpu_count()} cores)",
        "load_average": os.getloadavg(),
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "size": list(size),
        "rounds": args.rounds,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
