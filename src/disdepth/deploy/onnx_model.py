"""An exported ONNX graph used like a depth model: ``disdepth predict model.onnx ...`` and ``disdepth.load``.

The graph's metadata (written by ``disdepth export``) says its input convention, size and input spec, so the same
resizing, writers and labels as for a checkpoint apply; ONNX Runtime (CPU) runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.deploy.export import ort_session, read_metadata, require_onnxruntime
from disdepth.models.spec import InputSpec


def spec_from_metadata(meta: dict[str, str]) -> InputSpec:
    """The input spec an export recorded (``input_spec``; older exports: mean, std and depth range)."""
    if "input_spec" in meta:
        return InputSpec.from_dict(json.loads(meta["input_spec"]))
    return InputSpec(
        tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"])),
        float(json.loads(meta["min_depth_m"])), float(json.loads(meta["max_depth_m"])),
    )  # fmt: skip


class OnnxDepthModel(nn.Module):
    """``forward(image)`` with image (B, 3, H, W) normalised for ``input_spec`` -> ``{"depth": (B, 1, H, W)}``.

    A graph that normalises inside gets the image back in [0, 1]; a fixed-size graph gets it resized to its size
    and its depth resized back (bilinear).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        require_onnxruntime(f"{path}: running an .onnx graph")  # not "not a readable ONNX model" without the extra
        try:
            meta = read_metadata(path)
        except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
            raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
        if "output" not in meta or "input" not in meta:
            raise ValueError(f"{path}: not exported by `disdepth export` (no input/output metadata)")
        try:
            self.input_spec = spec_from_metadata(meta)
        except (ValueError, KeyError, TypeError) as exc:  # edited or foreign metadata: name the file
            raise ValueError(f"{path}: its disdepth metadata does not read ({type(exc).__name__}: {exc})") from None
        self.normalized_input = "normalised: (rgb - mean) / std" in meta["input"]
        size = meta.get("input_size", "dynamic")
        self.fixed_size = None if size == "dynamic" else tuple(int(v) for v in size.split("x"))
        try:
            self.session = ort_session(path, threads, spin=True)  # one session running alone: let it spin
        except Exception as exc:  # onnxruntime's own exception types (e.g. external data outside the folder)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ValueError(f"{path}: ONNX Runtime cannot load this graph ({first_line})") from None
        self.path = path

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = self.input_spec  # the graph normalises inside unless exported with --normalized-input
        x = image if self.normalized_input else image * _view(spec.std, image) + _view(spec.mean, image)
        size = tuple(x.shape[-2:])
        if self.fixed_size and size != self.fixed_size:
            x = F.interpolate(x, size=self.fixed_size, mode="bilinear", align_corners=False, antialias=True)
        depth = torch.from_numpy(self.session.run(None, {"image": x.detach().cpu().float().numpy()})[0])
        if depth.shape[-2:] != size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        return {"depth": depth.to(image.device)}


def _view(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
