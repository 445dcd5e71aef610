"""Export → check → INT8 / fp16 → evaluate: what ``disdepth export`` does, as a library call.

    import disdepth
    result = disdepth.export("runs/mine/distill/model", "mine.onnx", size=(480, 640), int8=True,
                             calibration=["photos/"], eval_list="my/test.csv")
    result.check["ort_ms"], result.variants["int8"], result.evaluation["int8"].metrics["abs_rel"]

Nothing is printed: the command formats the :class:`ExportResult`. The pieces are :mod:`disdepth.deploy.export`
(the graph, its metadata, parity and timing) and :mod:`disdepth.deploy.quantize` (INT8, fp16, scoring graphs).
Bad inputs (the output path, the image, the calibration images, the labelled list) fail before the slow export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from disdepth.deploy.export import (
    DepthOnly,
    build_metadata,
    check_and_time,
    default_size,
    export_onnx,
    graph_opset,
    ort_session,
    read_metadata,
    realistic_image,
    write_metadata,
)
from disdepth.deploy.quantize import (
    compare_to_fp32,
    convert_fp16,
    iter_calibration,
    labelled_records,
    quantize_int8,
    score_graphs,
)
from disdepth.deploy.sources import collect_sources, read_rgb
from disdepth.deploy.weights import load_model
from disdepth.eval.scoring import EvalResult

# Opsets torch.onnx exports (TorchScript exporter from 7; the dynamo exporter writes at least 18).
MIN_OPSET, MAX_OPSET = 7, 23
FP16_PRECISION = "float16 weights and compute (onnxruntime float16 converter, keep_io_types); image/depth float32"


@dataclass
class VariantReport:
    """An INT8 / fp16 graph against the fp32 one: latency and depth change (``compare_to_fp32``'s dict)."""

    name: str
    path: Path
    note: str
    comparison: dict[str, float]
    compared_on: str


@dataclass
class ExportResult:
    """What :func:`export` wrote and measured.

    Attributes:
        metadata: the graph's disdepth metadata (exporter, input size, input spec, ...).
        check: ``check_and_time``'s report (parity per input, eager/ORT latency), None with ``check=False``.
        variants: {"fp32": path, "int8": path, "fp16": path}, the variants only when asked for.
        evaluation: per graph, its scores on ``eval_list`` (None without one).
    """

    path: Path
    metadata: dict[str, Any]
    opset: int
    size: tuple[int, int]
    metric: bool
    check: dict[str, Any] | None = None
    variants: dict[str, Path] = field(default_factory=dict)
    variant_reports: list[VariantReport] = field(default_factory=list)
    evaluation: dict[str, EvalResult] | None = None


def check_out_path(out: Path, checkpoint: Path) -> None:
    """``out`` must be a new ``.onnx`` file or an earlier export: never the checkpoint or another existing file
    (``export best.pt --out best.pt`` would replace the trained weights with the graph)."""
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out {out}: expected a .onnx file name")
    if out.exists() and checkpoint.exists() and out.resolve() == checkpoint.resolve():
        raise ValueError(f"--out {out}: is the checkpoint being exported")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give a .onnx file name")


def read_image(path: str | Path) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: ``path`` read as ``disdepth predict`` reads it (upright RGB; errors name the file)."""
    rgb, _ = read_rgb(path)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None]


def calibration_paths(calibration: Sequence[str | Path], limit: int, needed: bool) -> list[Path]:
    """The calibration image files (at most ``limit``); INT8 (``needed``) needs at least 2."""
    paths = [s.path for s in collect_sources([str(c) for c in calibration]) if s.kind == "image"][:limit]
    if needed and len(paths) < 2:
        raise ValueError("--int8 needs --calibration with at least 2 images (the deployment domain's photos)")
    return paths


def export(
    checkpoint: str | Path,
    out: str | Path,
    *,
    size: tuple[int, int] | None = None,
    dynamic: bool = False,
    opset: int = 17,
    exporter: str = "auto",
    normalized_input: bool = False,
    use_ema: bool = True,
    check: bool = True,
    image: str | Path | None = None,
    warmup: int = 3,
    runs: int = 10,
    int8: bool = False,
    calibration: Sequence[str | Path] = (),
    int8_full_range: bool = False,
    calibration_images: int = 32,
    fp16: bool = False,
    eval_list: str | Path | None = None,
) -> ExportResult:
    """Export ``checkpoint`` (a ``.pt`` or a model folder) to ``out`` (ONNX), check it against PyTorch on ONNX
    Runtime and time both; optionally write and compare INT8 / fp16 graphs and score every graph on a labelled CSV.

    Args:
        size: (H, W) of a fixed-size graph and of the example input (default: the dataset's usual size).
        dynamic: dynamic height and width (no fused decoder; each image runs at its own size).
        image: a real image for the parity check (default: synthetic renders only).
        int8: also write ``<out>.int8.onnx`` calibrated on ``calibration`` (images or folders of the deployment
            domain); ``int8_full_range`` keeps 8-bit weights (VNNI / ARM only; docs/deploy.md).
        fp16: also write ``<out>.fp16.onnx``.
        eval_list: a labelled CSV (rgb, depth, depth_scale) to score every graph on.
    """
    out = Path(out)
    check_out_path(out, Path(checkpoint))
    if not MIN_OPSET <= opset <= MAX_OPSET:  # the dynamo exporter would write 18 anyway; say so instead
        raise ValueError(f"--opset {opset}: expected {MIN_OPSET}..{MAX_OPSET} (ONNX opsets torch can export)")
    example = read_image(image) if image and check else None
    cal = calibration_paths(calibration, calibration_images, int8) if int8 or calibration else []
    labelled = labelled_records(eval_list) if eval_list else []
    model, cfg = load_model(checkpoint, use_ema=use_ema)
    mean, std = model.input_spec.mean, model.input_spec.std
    size = tuple(size) if size else default_size(cfg)  # type: ignore[assignment]
    wrapper = DepthOnly(model, mean, std, normalized_input).eval()
    used = export_onnx(wrapper, out, size, dynamic, opset, exporter)
    metadata = build_metadata(model, cfg, checkpoint, used, mean, std, normalized_input, dynamic, size)
    write_metadata(out, metadata)
    result = ExportResult(out, metadata, graph_opset(out), size, model.input_spec.metric)  # type: ignore[arg-type]
    preset = "outdoor" if getattr(getattr(cfg, "data", None), "dataset", "") == "kitti" else "indoor"
    if check:
        if example is not None:
            example = F.interpolate(example, size=size, mode="bilinear", align_corners=False, antialias=True)
            example = example.clamp(0, 1)
        result.check = check_and_time(out, wrapper, size, dynamic, normalized_input, example, warmup, runs, preset)
    result.variants = {"fp32": out}
    if int8 or fp16:
        _write_variants(result, wrapper, cal, preset, normalized_input, int8, int8_full_range, fp16, warmup, runs)
    if labelled:
        sessions = {name: ort_session(path) for name, path in result.variants.items()}
        result.evaluation = score_graphs(sessions, labelled, size, model.input_spec, normalized_input)
    return result


def _write_variants(
    result: ExportResult,
    wrapper: DepthOnly,
    calibration: list[Path],
    preset: str,
    normalized: bool,
    int8: bool,
    int8_full_range: bool,
    fp16: bool,
    warmup: int,
    runs: int,
) -> None:
    """Write the INT8 / fp16 graphs (fp32 metadata kept) and compare each with fp32 (``result`` is filled in).

    INT8 calibrates on the first three quarters of the calibration images; both variants are compared with the fp32
    graph on the rest (on all of them without INT8), else on 4 synthetic renders.
    """
    out, size = result.path, result.size
    rgb = [torch.from_numpy(x) for x in iter_calibration(calibration, size, lambda p: read_rgb(p)[0])]
    images = _graph_inputs(rgb, wrapper, normalized)
    n_cal = max(1, len(images) * 3 // 4) if int8 else 0
    cal, compare = images[:n_cal], images[n_cal:]
    where = f"{len(compare)} held-out images"
    if not compare:
        compare = _graph_inputs([realistic_image(*size, preset, i) for i in range(4)], wrapper, normalized)
        where = "4 synthetic renders"
    metadata = read_metadata(out)
    notes = {}
    if int8:
        reduce_range = not int8_full_range
        bits = 7 if reduce_range else 8
        result.variants["int8"] = quantize_int8(out, out.with_suffix(".int8.onnx"), cal, reduce_range)
        write_metadata(
            result.variants["int8"],
            {**metadata, "quantization": f"int8 static QDQ per-channel, {bits}-bit weights, {len(cal)} images"},
        )
        notes["int8"] = f"calibrated on {len(cal)} images"
    if fp16:
        result.variants["fp16"] = convert_fp16(out, out.with_suffix(".fp16.onnx"))
        write_metadata(result.variants["fp16"], {**metadata, "precision": FP16_PRECISION})
        notes["fp16"] = "float16 weights and compute, float32 image/depth"
    fp32 = ort_session(out)
    for name, note in notes.items():
        comparison = compare_to_fp32(fp32, ort_session(result.variants[name]), compare, warmup, runs)
        result.variant_reports.append(VariantReport(name, result.variants[name], note, comparison, where))


def _graph_inputs(images: list[torch.Tensor], wrapper: DepthOnly, normalized: bool) -> list[np.ndarray]:
    """(1, 3, H, W) float32 arrays as the graph takes them: RGB in [0, 1], or mean/std-normalised."""
    if normalized:
        images = [(x - wrapper.mean.view(1, 3, 1, 1)) / wrapper.std.view(1, 3, 1, 1) for x in images]
    return [x.float().numpy() for x in images]
