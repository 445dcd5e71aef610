"""Python API for inference: ``disdepth.load(ckpt)`` -> :class:`DepthPredictor` -> depth in metres.

Example::

    import disdepth
    predictor = disdepth.load("runs/student/checkpoints/best.pt")
    depth = predictor.predict(Image.open("room.jpg"))  # (H, W) float32 metres

Resizing policy (also used by ``disdepth predict``): the network runs at ``size`` (H, W) when given,
otherwise at the image's own size rounded to the nearest multiple of 32 (the encoder's output stride,
so every pyramid level has an integer size); the prediction is resized back (bilinear) to the
image's size, so the output always has one value per input pixel.

On the CPU a student runs with its BatchNorms folded into their convs and channels-last memory
(``deploy.inference.optimize_for_inference``, checked against the unchanged model when loaded): the same depth to
~2e-6 m, 1.7x faster in eager PyTorch for the default student at 480x640 (README "Predict and export").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from disdepth.deploy.inference import depth_of, optimize_for_inference
from disdepth.deploy.onnx_model import OnnxDepthModel
from disdepth.deploy.ort_runtime import RUNTIMES, OrtRuntimeModel
from disdepth.deploy.sources import to_rgb
from disdepth.deploy.weights import load_model
from disdepth.eval.scoring import flip_tta as _flip_tta
from disdepth.models.student import DepthStudent

ImageLike = Any  # PIL.Image.Image | np.ndarray (H, W, 3) uint8 | torch.Tensor (3, H, W) float in [0, 1]

# Every encoder we ship has output stride 32; running at a multiple keeps all pyramid levels aligned.
SIZE_MULTIPLE = 32


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def round_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(H, W) rounded to the nearest multiple of ``multiple`` (halves round up; at least one multiple)."""
    return tuple(max(multiple, int(v / multiple + 0.5) * multiple) for v in (height, width))  # type: ignore[return-value]


def to_tensor(image: ImageLike) -> torch.Tensor:
    """Convert a PIL image, an (H, W, 3) uint8 array or a (3, H, W) float tensor in [0, 1] to (3, H, W) float32 [0, 1].

    A PIL image is converted by :func:`disdepth.deploy.sources.to_rgb`: its EXIF orientation is applied (the
    result is upright, so (H, W) may be swapped relative to the stored pixels), greyscale and palette images
    become RGB, transparency is composited on white, and a 16/32-bit single-channel image is refused.

    Raises:
        TypeError / ValueError: an unsupported type, shape or value range (the message says which).
    """
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, H, W) RGB, got shape {tuple(t.shape)}")
        if t.dtype == torch.uint8:
            return t.float().div(255.0)
        t = t.float()
        if not torch.isfinite(t).all():
            raise ValueError("float image tensor holds NaN or infinite values")
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise ValueError(f"float image tensor must be in [0, 1], got range [{t.min():g}, {t.max():g}]")
        return t
    try:
        from PIL import Image

        if isinstance(image, Image.Image):
            # As ``disdepth predict`` reads files: EXIF orientation applied (a photo opened from a file is
            # predicted upright), greyscale to RGB, alpha on white, 16/32-bit depth-map-like images refused.
            image, _ = to_rgb(image, getattr(image, "filename", "") or "image")
    except ImportError:  # pillow is a dependency; keep the numpy path working without it anyway
        pass
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3) RGB, got shape {image.shape}")
        if image.dtype == np.uint8:  # copy read-only arrays (PIL's) since torch cannot wrap them
            arr = image if image.flags.writeable and image.flags.c_contiguous else np.array(image)
            return torch.from_numpy(arr).permute(2, 0, 1).float().div(255.0)
        if np.issubdtype(image.dtype, np.floating) and (image.size == 0 or (image.min() >= 0 and image.max() <= 1)):
            return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)
        raise ValueError(f"image array must be uint8 or float in [0, 1], got {image.dtype}")
    raise TypeError(f"unsupported image type {type(image).__name__}: use a PIL image, numpy array or torch tensor")


class DepthPredictor:
    """Wraps a trained depth model for inference on raw RGB images.

    Args:
        model: maps (B, 3, h, w) normalised images to a dict with ``depth`` (B, 1, h, w) metres (or to the tensor).
        mean, std: the input normalisation the model was trained with.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        size: (H, W) the network runs at; None = each image's size rounded to a multiple of 32. A fixed-size ONNX
            graph always runs at its own size (``fixed_size``); another ``size`` is refused.
        flip_tta: average with the prediction of the mirrored image (2x the compute).
        config: the checkpoint's resolved config (kept for reference: encoder, head, depth range).
        optimize: on the CPU, run a student with BatchNorm folded and channels-last memory (see the module docstring);
            other models, and any model on a GPU, run as given.
        runtime: ``"torch"`` (eager PyTorch) or ``"onnxruntime"``: on the CPU, the model exported at each run size and
            run by ONNX Runtime (``deploy/ort_runtime.py``: faster for folders and videos, seconds of export per size).
            None: PyTorch for a checkpoint, ONNX Runtime for an ``.onnx`` graph (which runs nowhere else).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        size: tuple[int, int] | None = None,
        flip_tta: bool = False,
        config: Any = None,
        optimize: bool = True,
        runtime: str | None = None,
    ) -> None:
        if runtime is not None and runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.device = resolve_device("cpu" if runtime == "onnxruntime" and str(device) == "auto" else device)
        if runtime == "onnxruntime" and self.device.type != "cpu":
            raise ValueError(f"runtime onnxruntime runs on the CPU, not {self.device}: use device cpu")
        self.model = model.eval().to(self.device)
        self.channels_last = False
        if runtime == "onnxruntime" and not isinstance(model, OnnxDepthModel):  # a graph runs on ONNX Runtime already
            self.model = OrtRuntimeModel(self.model)
        elif optimize and self.device.type == "cpu" and isinstance(model, DepthStudent):
            example = torch.randn(1, 3, 2 * SIZE_MULTIPLE, 3 * SIZE_MULTIPLE)  # any size the student accepts
            self.model, self.channels_last = optimize_for_inference(self.model, example)
        # What runs the network (predictions.json says it): ONNX Runtime for a graph or runtime="onnxruntime".
        self.runtime = "onnxruntime" if isinstance(self.model, (OnnxDepthModel, OrtRuntimeModel)) else "torch"
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        # A fixed-size ONNX graph runs at its own size whatever is asked: say so (run_size, predictions.json)
        # instead of resizing inside the model behind the caller's back.
        self.fixed_size: tuple[int, int] | None = getattr(model, "fixed_size", None)
        if self.fixed_size is not None and size is not None and tuple(size) != tuple(self.fixed_size):
            fh, fw = self.fixed_size
            raise ValueError(
                f"size {size[0]}x{size[1]}: this graph was exported at a fixed {fh}x{fw} and runs only at that size; "
                "export with --dynamic to choose the size when predicting"
            )
        if size is not None and (len(size) != 2 or min(int(v) for v in size) < 1):
            raise ValueError(f"size: expected (height, width) of at least 1 pixel each, got {tuple(size)}")
        self.size = tuple(self.fixed_size or size) if (self.fixed_size or size) is not None else None
        self.flip_tta = flip_tta
        self.config = config
        self._m = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._s = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True, **kwargs: Any
    ) -> DepthPredictor:
        """Load a ``disdepth train``/``distill`` checkpoint or model folder (EMA weights when present), or an ``.onnx``
        file written by ``disdepth export`` (run by ONNX Runtime on the CPU); ``kwargs`` go to the constructor."""
        if str(path).endswith(".onnx"):
            if kwargs.get("runtime") not in (None, "onnxruntime"):
                raise ValueError(f"{path}: an .onnx graph runs on ONNX Runtime only, not runtime {kwargs['runtime']!r}")
            model: nn.Module = OnnxDepthModel(path)  # needs onnxruntime, the `deploy` extra
            spec = model.input_spec
            return cls(model, spec.mean, spec.std, device="cpu", config=None, **kwargs)
        model, cfg = load_model(path, use_ema=use_ema)
        spec = model.input_spec
        return cls(model, spec.mean, spec.std, device=device, config=cfg, **kwargs)

    def run_size(self, height: int, width: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The (h, w) the network runs at for an image of (height, width) (a fixed-size graph: its own size)."""
        if self.fixed_size is not None:
            return tuple(self.fixed_size)  # type: ignore[return-value]
        size = size if size is not None else self.size
        return tuple(size) if size is not None else round_size(height, width)  # type: ignore[return-value]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self._m) / self._s
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return depth_of(self.model(x))

    @torch.inference_mode()
    def predict_tensor(
        self, images: torch.Tensor, size: tuple[int, int] | None = None, flip_tta: bool | None = None
    ) -> torch.Tensor:
        """Batched core: (B, 3, H, W) float RGB in [0, 1] -> (B, 1, H, W) float32 metres on the CPU."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        run_h, run_w = self.run_size(height, width, size)
        x = images.to(self.device, torch.float32)
        if (run_h, run_w) != (height, width):
            x = F.interpolate(x, size=(run_h, run_w), mode="bilinear", align_corners=False, antialias=True)
        use_flip = self.flip_tta if flip_tta is None else flip_tta
        if use_flip:
            depth = _flip_tta(self._forward, x)
        else:
            depth = self._forward(x)
        if depth.shape[-2:] != (height, width):
            depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
        return depth.float().cpu()

    def predict(
        self, image: ImageLike, size: tuple[int, int] | None = None, flip_tta: bool | None = None
    ) -> np.ndarray:
        """One image (PIL / (H, W, 3) uint8 array / (3, H, W) tensor in [0, 1]) -> (H, W) float32 metres."""
        return self.predict_tensor(to_tensor(image)[None], size, flip_tta)[0, 0].numpy()

    def predict_batch(
        self,
        images: Sequence[ImageLike],
        size: tuple[int, int] | None = None,
        flip_tta: bool | None = None,
        batch_size: int = 8,
    ) -> list[np.ndarray]:
        """Several images (any mix of sizes) -> list of (H_i, W_i) float32 metres, in input order.

        Images of the same size are stacked into batches of up to ``batch_size``.
        """
        tensors = [to_tensor(im) for im in images]
        out: list[np.ndarray | None] = [None] * len(tensors)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tensors):
            by_size.setdefault(tuple(t.shape[-2:]), []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                depth = self.predict_tensor(torch.stack([tensors[i] for i in chunk]), size, flip_tta)
                for i, d in zip(chunk, depth, strict=True):
                    out[i] = d[0].numpy()
        return out  # type: ignore[return-value]


def load(
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    size: tuple[int, int] | None = None,
    flip_tta: bool = False,
    use_ema: bool = True,
    runtime: str | None = None,
) -> DepthPredictor:
    """Load a disdepth checkpoint as a :class:`DepthPredictor` (see the module docstring for resizing).

    Args:
        checkpoint: ``.pt`` file written by ``disdepth train`` / ``distill``.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` ...
        size: fixed (H, W) to run the network at; None = image size rounded to a multiple of 32.
        flip_tta: average with the mirrored image's prediction.
        use_ema: use the EMA weights when the checkpoint has them.
        runtime: ``"torch"`` or ``"onnxruntime"`` (a checkpoint exported per run size and run by ONNX Runtime on the
            CPU; needs the ``deploy`` extra); None: PyTorch for a checkpoint, ONNX Runtime for an ``.onnx`` graph.
    """
    return DepthPredictor.from_checkpoint(
        checkpoint, device=device, use_ema=use_ema, size=size, flip_tta=flip_tta, runtime=runtime
    )
