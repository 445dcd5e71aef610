"""Reduced-precision ONNX graphs (INT8, FP16) next to the fp32 export, and what they change.

The library under ``disdepth export --int8 / --fp16 / --eval-list``:

* :func:`quantize_int8`: ONNX Runtime static quantisation (QDQ, per-channel weights) calibrated on the user's
  images (``--calibration``) -> ``<out>.int8.onnx``;
* :func:`convert_fp16`: float16 weights and compute with the ``image`` input and ``depth`` output kept float32
  (ONNX Runtime's float16 converter, ``keep_io_types=True``) -> ``<out>.fp16.onnx``;
* :func:`compare_to_fp32`: ONNX Runtime CPU latency of the fp32 graph vs a variant (interleaved medians) and how
  far the variant's depth is from the fp32 depth (:func:`depth_agreement`), on the same inputs;
* :func:`labelled_records` and :func:`score_graphs`: abs_rel, rmse and d1 of the fp32 graph and its variants on a
  labelled CSV list (``--eval-list``, the ``data.dataset=csv`` format), protocol ``none`` with the model's depth
  caps, so the accuracy change of INT8 / FP16 is measured against ground truth, not only against fp32.
"""

from __future__ import annotations

import logging
import re
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from disdepth.data.csv import csv_records
from disdepth.data.io import DataError, MissingFileError, Record, load_record
from disdepth.deploy.bench import time_interleaved
from disdepth.eval.alignment import align_to_ground_truth
from disdepth.eval.metrics import MetricAggregator
from disdepth.eval.protocols import evaluate_image, get_protocol
from disdepth.eval.scoring import EvalResult
from disdepth.models.spec import InputSpec

log = logging.getLogger(__name__)


class _Images:
    """ONNX Runtime's calibration reader over (1, 3, H, W) float32 arrays."""

    def __init__(self, input_name: str, images: list[np.ndarray]) -> None:
        self.input_name, self._it = input_name, iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._it, None)
        return None if image is None else {self.input_name: image}


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calibration: list[np.ndarray], reduce_range: bool = True
) -> Path:
    """Static INT8 quantisation of an fp32 ONNX depth model.

    Args:
        fp32_path: the exported graph (input ``image``).
        out_path: where the INT8 graph goes.
        calibration: (1, 3, H, W) float32 inputs as the graph takes them (at least one; a few dozen typical photos
            of the deployment domain give the activation ranges).
        reduce_range: 7-bit weights (the default). On x86 CPUs without VNNI (AVX2; AVX-512 without VNNI) ONNX
            Runtime's uint8 x int8 kernels add pairs of products in int16, which saturates with 8-bit weights:
            on this project's AVX2 machine the default student's abs_rel on 7-Scenes test frames rose 7.4 %
            (120x160) and 13.5 % (480x640) over fp32 with 8-bit weights, and moved -3.9 % and -0.2 % with 7-bit
            ones (README "Predict and export"). False keeps 8 bits, for targets with VNNI or ARM.

    QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration: ONNX Runtime's recommended CPU
    recipe. The graph is pre-processed (shape inference, fusions) first, as ONNX Runtime's documentation asks.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("--calibration: no images to calibrate the INT8 activation ranges on")
    out_path = Path(out_path)
    per_tensor = _PerTensorFallbacks()
    with tempfile.TemporaryDirectory() as tmp, per_tensor:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            _Images("image", calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=reduce_range,
        )
    if per_tensor.names:
        log.info(
            "INT8: %d weight tensor(s) of rank below the per-channel axis (e.g. %s) quantised per tensor, as ONNX "
            "Runtime does for them", len(per_tensor.names), per_tensor.names[0],
        )  # fmt: skip
    return out_path


class _PerTensorFallbacks(logging.Filter):
    """While active, swallows ONNX Runtime's root-logger warning "Axis N is out-of-range for weight ..." (one per
    small weight, e.g. a 1-D bias, that it then quantises per tensor: expected, not a problem) and keeps the names,
    so the user reads one explained line instead of dozens of bare warnings."""

    PATTERN = re.compile(r"Axis -?\d+ is out-of-range for weight '(.+)' with rank")

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        match = self.PATTERN.match(record.getMessage())
        if match:
            self.names.append(match.group(1))
        return match is None

    def __enter__(self) -> _PerTensorFallbacks:
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeFilter(self)


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Float16 copy of an fp32 ONNX depth model whose ``image`` input and ``depth`` output stay float32.

    Weights and activations become float16; Cast nodes at the graph's edges convert the float32 input and output
    (``keep_io_types=True``), so callers feed and read float32 exactly as for the fp32 graph. Ops that ONNX Runtime's
    converter keeps in float32 by default (its ``DEFAULT_OP_BLOCK_LIST``) stay float32 with casts around them.
    The converter ships with ``onnxruntime`` (``onnxruntime.transformers.float16``): no extra dependency.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_path = Path(out_path)
    onnx.save(convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True), str(out_path))
    return out_path


def depth_agreement(fp32_session: Any, other_session: Any, images: list[np.ndarray]) -> dict[str, float]:
    """How far a variant's depth is from fp32 depth: mean |relative difference| and its 99th percentile.

    Args:
        fp32_session, other_session: ONNX Runtime sessions of the fp32 graph and the variant (input ``image``).
        images: (1, 3, H, W) float32 graph inputs (at least one).

    Returns:
        ``{"mean_rel_diff", "p99_rel_diff"}``: fractions (0.01 = 1 %) over every pixel of every image.
    """
    rel = []
    for image in images:
        a = fp32_session.run(None, {"image": image})[0]
        b = other_session.run(None, {"image": image})[0]
        rel.append(np.abs(b - a) / np.maximum(np.abs(a), 1e-6))
    values = np.concatenate([r.ravel() for r in rel])
    return {"mean_rel_diff": float(values.mean()), "p99_rel_diff": float(np.quantile(values, 0.99))}


def compare_to_fp32(
    fp32_session: Any, other_session: Any, images: list[np.ndarray], warmup: int, runs: int
) -> dict[str, float]:
    """Latency of the fp32 graph vs a variant, and their depth agreement, on ``images``.

    Args:
        fp32_session, other_session: ONNX Runtime sessions (same thread count for a fair ratio).
        images: (1, 3, H, W) float32 graph inputs; the last one is the timed input.
        warmup, runs: untimed and timed runs per graph; the two graphs alternate run by run (``time_interleaved``).

    Returns:
        ``fp32_ms``, ``other_ms`` (medians, milliseconds), ``speed_ratio`` (fp32_ms / other_ms: > 1 means the
        variant is faster) and :func:`depth_agreement`'s ``mean_rel_diff``, ``p99_rel_diff``.
    """
    feed = {"image": images[-1]}
    times = time_interleaved(
        {"fp32": lambda: fp32_session.run(None, feed), "other": lambda: other_session.run(None, feed)}, warmup, runs
    )
    fp32_ms, other_ms = statistics.median(times["fp32"]), statistics.median(times["other"])
    return {
        "fp32_ms": fp32_ms,
        "other_ms": other_ms,
        "speed_ratio": fp32_ms / other_ms,
        **depth_agreement(fp32_session, other_session, images),
    }


def iter_calibration(paths: list[Path], size: tuple[int, int], read) -> Iterator[np.ndarray]:
    """(1, 3, H, W) float32 in [0, 1] at ``size`` from image files, read with ``read(path) -> (H, W, 3) uint8``."""
    for path in paths:
        rgb = torch.from_numpy(read(path)).permute(2, 0, 1).float().div(255.0)[None]
        yield F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True).numpy()


def labelled_records(csv_file: str | Path) -> list[Record]:
    """The rows of a labelled CSV list (``--eval-list``) that have ground truth, their files checked to exist.

    The format is ``data.dataset=csv``'s (:mod:`disdepth.data.csv`): ``rgb`` and ``depth`` columns, paths relative to
    the CSV's folder; PNG depth needs a ``depth_scale`` column (PNG units per metre), ``.npy`` depth holds metres.

    Raises:
        MissingFileError: the CSV, or an image or depth file it lists, does not exist (names the file).
        DataError: naming the CSV (or ``file:line``): malformed, no ``depth`` column, no row with depth, a bad cell.
    """
    records = csv_records(csv_file)
    labelled = [r for r in records if r.depth is not None]
    if not labelled:
        raise DataError(csv_file, f"{len(records)} rows, none with a depth file: --eval-list needs ground truth")
    for record in labelled:
        for path in (record.rgb, record.depth):
            if not path.is_file():
                raise MissingFileError(path, f"file not found (listed at {record.source})")
    return labelled


def _graph_input(image: torch.Tensor, size: tuple[int, int], spec: InputSpec, normalized_input: bool) -> np.ndarray:
    """(1, 3, h, w) float32 graph input from a (3, H, W) image in [0, 1]: resized to ``size``, normalised if asked."""
    x = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    if normalized_input:
        x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    return x.numpy()


def score_graphs(
    sessions: dict[str, Any],
    records: list[Record],
    size: tuple[int, int],
    spec: InputSpec,
    normalized_input: bool = False,
) -> dict[str, EvalResult]:
    """Score ONNX depth graphs on labelled frames: protocol ``none`` with the model's depth caps.

    Each frame is read once (image [0, 1], ground truth in metres, float64), resized to ``size`` (the export size;
    bilinear, antialiased) for every graph, and each graph's depth is resized back to the ground truth's size
    (bilinear) and scored there: valid pixels are ``min_depth < gt < max_depth`` of ``spec``, predictions are
    clamped to that range. A relative model (``spec.metric`` False) is aligned to the ground truth per image first.

    Args:
        sessions: name -> ONNX Runtime session (input ``image`` (1, 3, h, w) float32, output ``depth`` metres).
        records: labelled frames (:func:`labelled_records`).
        size: (h, w) the graphs run at.
        spec: the model's input spec (depth caps, normalisation, metric or relative).
        normalized_input: the graphs take a mean/std-normalised image.

    Returns:
        name -> :class:`EvalResult` (mean of per-image metrics; frames with no valid pixel are skipped and counted).
    """
    protocol = get_protocol("none", spec.min_depth, spec.max_depth)
    aggregators = {name: MetricAggregator() for name in sessions}
    for record in records:
        raw = load_record(record, depth_dtype=torch.float64)
        x = _graph_input(raw["image"], size, spec, normalized_input)
        gt, valid = raw["depth"][0], raw["valid"][0]
        for name, session in sessions.items():
            depth = torch.from_numpy(session.run(["depth"], {"image": x})[0])
            pred = F.interpolate(depth, size=tuple(gt.shape), mode="bilinear", align_corners=False)[0, 0]
            if not spec.metric and bool(valid.any()):
                pred = align_to_ground_truth(pred, gt, valid, spec)
            metrics, reason = evaluate_image(pred, gt, valid, protocol)
            if metrics is None:
                aggregators[name].skip(record.id, reason)
            else:
                aggregators[name].add(record.id, metrics)
    return {
        name: EvalResult(agg.mean(), protocol, False, agg.count, list(agg.skipped), dict(agg.per_image))
        for name, agg in aggregators.items()
    }
