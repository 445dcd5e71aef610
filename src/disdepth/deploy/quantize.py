"""INT8 ONNX models: ONNX Runtime static quantisation (QDQ, per-channel weights) calibrated on the user's images.

``disdepth export --int8 --calibration DIR`` writes ``<out>.int8.onnx`` next to the fp32 graph and reports both
models' latency (interleaved, ONNX Runtime, CPU) and how far the INT8 depth is from the fp32 depth on the
calibration images — and, with ``--eval-config``, the abs_rel change on a labelled split.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class _Images:
    """ONNX Runtime's calibration reader over (1, 3, H, W) float32 arrays."""

    def __init__(self, input_name: str, images: list[np.ndarray]) -> None:
        self.input_name, self._it = input_name, iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._it, None)
        return None if image is None else {self.input_name: image}


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: list[np.ndarray]) -> Path:
    """Static INT8 quantisation of an fp32 ONNX depth model.

    Args:
        fp32_path: the exported graph (input ``image``).
        out_path: where the INT8 graph goes.
        calibration: (1, 3, H, W) float32 inputs as the graph takes them (at least one; a few dozen typical photos
            of the deployment domain give the activation ranges).

    QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration: ONNX Runtime's recommended CPU
    recipe. The graph is pre-processed (shape inference, fusions) first, as ONNX Runtime's documentation asks.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("--calibration: no images to calibrate the INT8 activation ranges on")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
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
        )
    return out_path


def depth_agreement(fp32_session, int8_session, images: list[np.ndarray]) -> dict[str, float]:
    """How far INT8 depth is from fp32 depth: mean |relative difference| and its 99th percentile, over images."""
    rel = []
    for image in images:
        a = fp32_session.run(None, {"image": image})[0]
        b = int8_session.run(None, {"image": image})[0]
        rel.append(np.abs(b - a) / np.maximum(np.abs(a), 1e-6))
    values = np.concatenate([r.ravel() for r in rel])
    return {"mean_rel_diff": float(values.mean()), "p99_rel_diff": float(np.quantile(values, 0.99))}


def iter_calibration(paths: list[Path], size: tuple[int, int], read) -> Iterator[np.ndarray]:
    """(1, 3, H, W) float32 in [0, 1] at ``size`` from image files, read with ``read(path) -> (H, W, 3) uint8``."""
    import torch
    import torch.nn.functional as F

    for path in paths:
        rgb = torch.from_numpy(read(path)).permute(2, 0, 1).float().div(255.0)[None]
        yield F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True).numpy()
