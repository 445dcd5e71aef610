"""ONNX export of a depth model, checked and timed with ONNX Runtime (the library under ``disdepth export``).

The exported graph (:class:`DepthOnly`) takes ``image``: (B, 3, H, W) float32 **RGB in [0, 1]** and
normalises it inside with the encoder's mean/std (``normalized_input=True`` exports a graph that takes an
already-normalised image instead); it returns ``depth``: (B, 1, H, W) float32 metres at the input
resolution. Feature lists and bin centres are dropped. The batch axis is always dynamic; H and W are
fixed at the export size unless ``dynamic``. The input convention, encoder, head, depth range, mean/std
and size are written to the model's ``metadata_props``.

Exporter: ``exporter="auto"`` tries torch's default (dynamo, which needs ``onnxscript``) and falls back
to the TorchScript exporter (``dynamo=False``); the one used is printed and stored in the metadata. The dynamo
exporter writes opset 18 or later (:data:`DYNAMO_MIN_OPSET`); :func:`graph_opset` reads what a file holds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import disdepth
from disdepth.data.synthetic import render_sample
from disdepth.deploy.bench import inference_forward, time_interleaved
from disdepth.deploy.inference import depth_of, optimize_for_inference
from disdepth.deploy.upsample_fusion import fuse_decoder_upsampling
from disdepth.models.student import DepthStudent

DEFAULT_SIZES = {"kitti": (352, 1216), "nyu": (480, 640)}  # benchmark resolutions (KB crop, full NYU frame)
# torch's dynamo exporter implements opset >= 18 only; asked for less it converts down, which fails for Resize
# (a traceback on stderr, and the file stays at 18), so it is asked for 18 directly.
DYNAMO_MIN_OPSET = 18


class DepthOnly(nn.Module):
    """Export wrapper: image -> depth (B, 1, H, W) metres only.

    Args:
        model: returns a dict with ``depth`` (or the depth tensor) for a normalised (B, 3, H, W) image.
        mean, std: input normalisation, applied inside unless ``normalized_input``.
        normalized_input: the graph input is already normalised (no normalisation inside).
    """

    def __init__(
        self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], normalized_input: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.normalized_input = normalized_input
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def of(cls, model: nn.Module, normalized_input: bool = False) -> DepthOnly:
        """The wrapper of a model with an ``input_spec`` (students, teachers), in eval mode, normalised as it says."""
        return cls(model, model.input_spec.mean, model.input_spec.std, normalized_input).eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image if self.normalized_input else (image - self.mean) / self.std
        return depth_of(self.model(x))


# The dynamo exporter's graph optimiser logs every folded initializer at INFO ("Replaced initializer ..."); a user
# running `disdepth export` (INFO logging) should see the export's result, not its internals.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Raise the named loggers to WARNING for the duration (restored after)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(
    wrapper: nn.Module,
    path: str | Path,
    size: tuple[int, int],
    dynamic: bool = False,
    opset: int = 17,
    exporter: str = "auto",
    fuse_upsampling: bool = True,
) -> str:
    """Export ``wrapper`` ((B, 3, H, W) -> (B, 1, H, W)) to ``path``; returns the exporter used.

    A graph of fixed height and width (``dynamic=False``) is exported with the decoder's nearest upsampling fused
    (``deploy/upsample_fusion.py``: an exact rewrite, faster on ONNX Runtime) unless ``fuse_upsampling=False``; a
    dynamic one as the model is, since the fused block picks its path from the sizes.
    ``opset`` is exact for the TorchScript exporter; the dynamo exporter uses ``max(opset, DYNAMO_MIN_OPSET)``.

    Raises:
        ValueError: the export failed (message has the exporter's error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = wrapper.eval().cpu()
    if fuse_upsampling and not dynamic:
        wrapper, _ = fuse_decoder_upsampling(wrapper)
    # A batch of 2, not 1: torch.export treats an example dimension of size 1 as possibly constant ("0/1
    # specialisation"), and a graph traced at batch 1 can then carry batch-1 shapes into ops such as Resize.
    example = (torch.rand(2, 3, *size),)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    errors = []
    for kind in ["dynamo", "torchscript"] if exporter == "auto" else [exporter]:
        try:
            with warnings.catch_warnings(), _quiet_loggers(*EXPORTER_LOGGERS):
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation / tracer warnings
                if kind == "dynamo":
                    from torch.export import Dim

                    dims = {i: Dim.AUTO for i in axes}
                    torch.onnx.export(
                        wrapper,
                        example,
                        str(path),
                        input_names=["image"],
                        output_names=["depth"],
                        opset_version=max(opset, DYNAMO_MIN_OPSET),
                        dynamo=True,
                        verbose=False,  # no progress lines on stdout
                        dynamic_shapes={"image": dims},
                        external_data=False,
                    )
                else:
                    torch.onnx.export(
                        wrapper,
                        example,
                        str(path),
                        input_names=["image"],
                        output_names=["depth"],
                        opset_version=opset,
                        dynamo=False,
                        dynamic_axes={"image": axes, "depth": axes},
                    )
            return kind
        except Exception as exc:  # ImportError (onnxscript missing) or an export failure: try the next
            errors.append(f"{kind}: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            if exporter == "auto" and kind == "dynamo":
                print(f"export: dynamo exporter unavailable ({errors[-1]}); using dynamo=False", file=sys.stderr)
    raise ValueError(f"{path}: ONNX export failed ({'; '.join(errors)})")


def write_metadata(path: str | Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` (values JSON-encoded unless str) in the ONNX model's ``metadata_props``."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))


def graph_opset(path: str | Path) -> int:
    """The default-domain (``ai.onnx``) opset an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict of strings."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def require_onnxruntime(what: str) -> None:
    """Raise ``ValueError("<what> needs ONNX Runtime: pip install ...")`` unless onnx and onnxruntime (the ``deploy``
    extra) import: one line naming what to install, before any work, instead of an ImportError mid-run."""
    try:
        import onnx  # noqa: F401, PLC0415
        import onnxruntime  # noqa: F401, PLC0415
    except ImportError:
        raise ValueError(f"{what} needs ONNX Runtime: pip install 'disdepth[deploy]'") from None


def ort_session(path: str | Path, threads: int | None = None, spin: bool = False):
    """A CPU ONNX Runtime session with as many intra-op threads as torch uses (fair eager vs ORT timing).

    Its worker threads do not busy-wait after a run unless ``spin=True`` (ONNX Runtime's own default, fastest for one
    session running alone, as in ``deploy/onnx_model.py``). Every timing here alternates a session with other work
    (eager PyTorch, another session), and threads one session leaves spinning take the cores from the next: with
    2 threads on 2 cores an identical control copy measured 1.74x its original (issue 15). With one thread there
    are no worker threads and the flag changes nothing.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(session, wrapper: nn.Module, image: torch.Tensor) -> float:
    """Max |ORT - PyTorch| in metres for ``image`` (B, 3, H, W)."""
    with torch.inference_mode():
        ref = wrapper(image).numpy()
    out = session.run(["depth"], {"image": image.numpy()})[0]
    if out.shape != ref.shape:
        raise ValueError(f"ONNX output shape {out.shape} differs from PyTorch {ref.shape}")
    return float(np.abs(out - ref).max())


def latency(session, wrapper: nn.Module, height: int, width: int, warmup: int = 3, runs: int = 10) -> dict:
    """Median batch-1 latency (ms) at (height, width) of eager PyTorch (inference mode) and ONNX Runtime CPU.

    A student is timed in eager twice, as trained and as ``disdepth predict`` runs it on the CPU (BatchNorm folded,
    channels-last: ``eager_opt_ms``, None for other models or when the optimisation did not keep the depth), all
    interleaved with the ORT runs.
    """
    x = torch.rand(1, 3, height, width)
    feed = {"image": x.numpy()}

    fns = {"eager": inference_forward(wrapper, x), "ort": lambda: session.run(None, feed)}
    if isinstance(getattr(wrapper, "model", None), DepthStudent):
        optimized, ok = optimize_for_inference(wrapper, torch.rand(1, 3, 64, 96))
        if ok:
            fns["eager_opt"] = inference_forward(optimized, x.contiguous(memory_format=torch.channels_last))
    times = time_interleaved(fns, warmup, runs)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "eager_ms": med["eager"],
        "eager_opt_ms": med.get("eager_opt"),
        "ort_ms": med["ort"],
        "speedup": med["eager"] / med["ort"],
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "runs": runs,
    }


def realistic_image(height: int, width: int, preset: str = "indoor", index: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: rendered synthetic scene ``index`` (textures, edges, sky), a real-ish parity input."""

    return render_sample(preset, index, height, width)["image"][None].clamp(0, 1)


def check_and_time(
    path: str | Path,
    wrapper: nn.Module,
    size: tuple[int, int],
    dynamic: bool,
    normalized: bool,
    image: torch.Tensor | None = None,
    warmup: int = 3,
    runs: int = 10,
    preset: str = "indoor",
) -> dict:
    """Parity (random and real-ish input; plus another size when dynamic) and eager vs ORT latency at ``size``.

    Returns:
        {"max_abs_diff_m": {input: metres}, "eager_ms", "eager_opt_ms", "ort_ms" (medians; see :func:`latency`),
        "speedup", "threads"}.
    """
    session = ort_session(path)
    h, w = size
    real = image if image is not None else realistic_image(h, w, preset)
    mean, std = wrapper.mean.view(1, 3, 1, 1), wrapper.std.view(1, 3, 1, 1)
    prep = (lambda x: (x - mean) / std) if normalized else (lambda x: x)  # noqa: E731
    torch.manual_seed(0)
    inputs = {"random": torch.rand(1, 3, h, w), "real": real}
    if dynamic:  # a second size, not a multiple of 32, and a batch of 2, to exercise the dynamic axes
        inputs["random_2x(h+16)x(w+48)"] = torch.rand(2, 3, h + 16, w + 48)
    diffs = {name: parity(session, wrapper, prep(x.float())) for name, x in inputs.items()}
    return {"max_abs_diff_m": diffs, **latency(session, wrapper, h, w, warmup, runs)}


def default_size(cfg: Any) -> tuple[int, int]:
    """The export size for a config: the benchmark resolution (KITTI, NYU), the synthetic render size, else 480x640."""
    data = getattr(cfg, "data", None)
    name = getattr(data, "dataset", "")
    if name == "synthetic":
        return data.synthetic.height, data.synthetic.width
    return DEFAULT_SIZES.get(name, (480, 640))


def build_metadata(
    model: nn.Module,
    cfg: Any,
    checkpoint: str | Path,
    exporter: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    normalized_input: bool,
    dynamic: bool,
    size: tuple[int, int],
) -> dict[str, Any]:
    """The ``metadata_props`` of an exported model: producer, exporter, model, depth range, input convention, size."""

    # A teacher checkpoint exports too (same depth contract); its metadata comes from the teacher section.
    mcfg = getattr(cfg, "model" if isinstance(model, DepthStudent) else "teacher", None)
    return {
        "producer": f"disdepth {disdepth.__version__} (torch {torch.__version__})",
        "exporter": "torch.onnx dynamo" if exporter == "dynamo" else "torch.onnx TorchScript (dynamo=False)",
        "checkpoint": Path(checkpoint).name,
        "model": type(model).__name__,
        "encoder": getattr(mcfg, "encoder", getattr(mcfg, "name", "?")),
        "head": getattr(mcfg, "head", "?"),
        "lgconv": bool(getattr(getattr(mcfg, "lgconv", None), "enabled", False)),
        "min_depth_m": getattr(mcfg, "min_depth", None),
        "max_depth_m": getattr(mcfg, "max_depth", None),
        "mean": list(mean),
        "std": list(std),
        "input_spec": model.input_spec.to_dict(),
        "input": "image (B,3,H,W) float32 "
        + ("normalised: (rgb - mean) / std" if normalized_input else "RGB in [0,1]; normalised inside the graph"),
        "output": "depth (B,1,H,W) float32 " + ("metres" if model.input_spec.metric else model.input_spec.units),
        "input_size": "dynamic" if dynamic else f"{size[0]}x{size[1]}",
        "export_size": f"{size[0]}x{size[1]}",
    }
