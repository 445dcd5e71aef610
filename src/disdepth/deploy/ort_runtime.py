"""A checkpoint's model run by ONNX Runtime instead of eager PyTorch (``disdepth predict --runtime onnxruntime``,
``disdepth.load(..., runtime="onnxruntime")``).

Why: on the CPU, ONNX Runtime runs our students 1.2-2.1x faster than PyTorch's eager kernels, even with every exact
eager rewrite of ``deploy/inference.py`` applied (docs/results.md, "The student"). ``disdepth export`` then
``disdepth predict model.onnx`` gets that speed once a graph is deployed; this module gets it from a checkpoint
directly, without a file to keep in step with the weights.

How: the first batch at a new run size exports the model (image already normalised -> depth) to a temporary ONNX
file at that size, with the decoder's upsampling fused as ``disdepth export`` does, opens an ONNX Runtime session on
it and checks it against the PyTorch model on that very batch. A graph that disagrees, or an export or session that
fails, is not used: that size runs in PyTorch, and the log says why. An export costs seconds (10-15 s for a
student at 480x640 on one thread), so this pays for folders and videos, not for one photo. Sessions are kept for the
last ``max_sizes`` run sizes.
"""

from __future__ import annotations

import logging
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from disdepth.deploy.export import DepthOnly, export_onnx, ort_session, require_onnxruntime
from disdepth.deploy.inference import depth_of

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")
# The exporters in `disdepth export`'s order, so the graph is the one it would ship. The TorchScript exporter is
# about 3x faster to export, but its graph of timm's SAME-padded convs (EfficientNet-Lite0) keeps explicit Pad ops
# and layout reorders that the dynamo exporter's does not: 2.4x the ONNX Runtime time for the Lite0 lite student.
EXPORTERS = ("dynamo", "torchscript")


class OrtRuntimeModel(nn.Module):
    """``forward(x)`` with x (B, 3, h, w) normalised for ``model.input_spec`` -> ``{"depth": (B, 1, h, w)}``, run by
    ONNX Runtime on the CPU (one graph per (h, w), see the module docstring).

    Args:
        model: maps a normalised (B, 3, h, w) image to depth (a dict with ``depth``, or the tensor); has
            ``input_spec``. Kept in eval mode on the CPU for the check and the fallback.
        threads: ONNX Runtime intra-op threads (None: as many as torch uses).
        max_sizes: how many run sizes keep their session.
        rtol, atol: allowed difference (model units: metres for a metric model) between ONNX Runtime and PyTorch on
            the first batch at each size.
    """

    def __init__(
        self,
        model: nn.Module,
        threads: int | None = None,
        max_sizes: int = 4,
        rtol: float = 1e-3,
        atol: float = 1e-4,
    ) -> None:
        super().__init__()
        require_onnxruntime("runtime onnxruntime")  # when loading, not at the first image
        self.model = model.eval().cpu()
        self.input_spec = model.input_spec
        self.threads, self.max_sizes, self.rtol, self.atol = threads, max_sizes, rtol, atol
        self.sessions: OrderedDict[tuple[int, int], Any] = OrderedDict()  # size -> session, None = runs in PyTorch
        self.pytorch_sizes: set[tuple[int, int]] = set()  # run sizes with no usable graph (run in PyTorch)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        x = x.detach().float().cpu().contiguous()
        if size in self.sessions:
            self.sessions.move_to_end(size)
            session = self.sessions[size]
        else:
            session = self._graph_for(size, x)
            self.sessions[size] = session
            if session is None:
                self.pytorch_sizes.add(size)
            if len(self.sessions) > self.max_sizes:
                self.sessions.popitem(last=False)
        if session is None:
            with torch.inference_mode():
                return {"depth": depth_of(self.model(x))}
        return {"depth": torch.from_numpy(session.run(None, {"image": x.numpy()})[0])}

    def _graph_for(self, size: tuple[int, int], x: torch.Tensor) -> Any:
        """An ONNX Runtime session for ``size`` that matches the PyTorch model on ``x``; None where none does."""
        wrapper = DepthOnly.of(self.model, normalized_input=True)
        with torch.inference_mode():
            want = depth_of(self.model(x))  # what every exporter's graph must give
        errors = []
        with tempfile.TemporaryDirectory(prefix="disdepth-ort-") as tmp:
            for exporter in EXPORTERS:
                path = Path(tmp) / f"{exporter}.onnx"
                try:
                    export_onnx(wrapper, path, size, exporter=exporter)
                    session = ort_session(path, self.threads, spin=True)  # one session running alone: let it spin
                    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
                except Exception as exc:  # an export or a session that fails: try the next exporter, else PyTorch
                    errors.append(f"{exporter}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")
                    continue
                if got.shape == want.shape and torch.allclose(got, want, rtol=self.rtol, atol=self.atol):
                    log.info("runtime onnxruntime: %dx%d graph exported (%s) and checked", *size, exporter)
                    return session
                diff = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
                errors.append(f"{exporter}: differs from PyTorch by up to {diff:.3g}")
        log.warning("runtime onnxruntime: no usable graph at %dx%d (%s); this size runs in PyTorch", *size,
                    "; ".join(errors))  # fmt: skip
        return None
