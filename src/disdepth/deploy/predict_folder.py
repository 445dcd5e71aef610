"""Depth for images, folders and videos, written to a folder: what ``disdepth predict`` does, as a library call.

    import disdepth
    run = disdepth.predict("runs/mine/distill/model", ["photos/"], "preds/", legend=True)
    run.entries[0]["files"]   # ['kitchen.png', 'kitchen.npy', 'kitchen_color.png']

Inputs are found and read by :mod:`disdepth.deploy.sources` (EXIF orientation applied, greyscale to RGB, alpha on
white, 16-bit depth maps refused); resizing follows :class:`disdepth.api.DepthPredictor`; the files are those of
:mod:`disdepth.deploy.writers`, plus ``predictions.json`` and ``README.txt``. Errors are ``ValueError`` /
``FileNotFoundError`` / ``DataError`` with one line naming the file or the option (options are named as the command
line spells them, ``--vmin``, since most users meet them there).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from disdepth.api import DepthPredictor, round_size
from disdepth.deploy.limits import MAX_RUN_MEGAPIXELS, check_run_size, is_out_of_memory, out_of_memory_error
from disdepth.deploy.sources import Frame, Source, collect_sources, iter_frames
from disdepth.deploy.weights import readable_load_errors
from disdepth.deploy.writers import (
    FILE_SUFFIXES,
    FORMATS,
    WriteOptions,
    auto_png_units,
    png_note,
    write_outputs,
    write_summary,
)

DEFAULT_FORMATS = ("color", "png", "npy")


@dataclass
class PredictRun:
    """What :func:`predict` wrote: the folder, one ``predictions.json`` entry per prediction, the units and notes."""

    out_dir: Path
    entries: list[dict] = field(default_factory=list)
    depth_units: str = "m"
    png_note: str = ""
    notes: list[str] = field(default_factory=list)


def requested_formats(
    formats: Sequence[str], panel: bool = False, camera: bool = False, given: str | None = None
) -> frozenset[str]:
    """The formats to write: ``formats`` plus ``panel`` and (with intrinsics or a field of view) ``ply``, checked.

    ``given`` is the text the user typed, for the message when nothing is left."""
    chosen = {f.strip() for f in formats if f.strip()}
    unknown = chosen - set(FORMATS)
    if unknown:
        raise ValueError(f"--formats: unknown {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
    if not chosen and not (panel or camera):
        shown = given if given is not None else ",".join(formats)
        raise ValueError(f"--formats {shown!r}: no output format; choose from {', '.join(FORMATS)}")
    if panel:
        chosen.add("panel")
    if camera:
        chosen.add("ply")
    elif "ply" in chosen:
        raise ValueError("--formats ply needs camera intrinsics: --intrinsics fx,fy,cx,cy or --fov DEGREES")
    return frozenset(chosen)


def refuse_writing_over_inputs(sources: list[Source], out_dir: Path, formats: frozenset[str]) -> None:
    """Refuse, naming the file, when an output would replace an input (``--out`` = the photos' own folder: the
    16-bit depth PNG of ``kitchen.png`` is ``kitchen.png``)."""
    inputs = {s.path.resolve() for s in sources}
    for s in sources:
        for fmt in formats:
            target = (out_dir / (s.name + FILE_SUFFIXES[fmt])).resolve()
            if target in inputs:
                raise ValueError(
                    f"--out {out_dir}: writing {fmt} output {target.name} would overwrite the input {target}; "
                    "choose another output folder"
                )


def check_device(text: str) -> None:
    """Refuse a device torch cannot parse or this machine does not have, naming ``--device``."""
    if text == "auto":
        return
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ValueError(f"--device {text!r}: {str(exc).splitlines()[0]}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {text}: CUDA is not available here; use --device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {text}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")


def _make_out_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot create the output folder ({exc.strerror or exc})") from None
    return out


def _batches(frames: Iterator[Frame], batch_size: int) -> Iterator[list[Frame]]:
    """Consecutive same-size frames, up to ``batch_size`` at a time (a size change flushes the batch)."""
    batch: list[Frame] = []
    for frame in frames:
        if batch and (len(batch) == batch_size or batch[0].rgb.shape != frame.rgb.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    size: tuple[int, int] | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    png_units: str = "auto",
    legend: bool = False,
    panel: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    intrinsics: tuple[float, float, float, float] | None = None,
    fov: float | None = None,
    ply_ascii: bool = False,
    ply_stride: int = 1,
    every: int = 1,
    batch_size: int = 4,
    device: str = "auto",
    flip_tta: bool = False,
    use_ema: bool = True,
    max_megapixels: float = MAX_RUN_MEGAPIXELS,
    runtime: str | None = None,
    progress: bool = True,
    note: Callable[[str], None] = print,
) -> PredictRun:
    """Predict depth for ``inputs`` (image files, folders of images, videos) with ``checkpoint`` (a ``.pt``, a model
    folder or an exported ``.onnx``) and write every requested format into ``out``.

    Args:
        size: (H, W) the network runs at; None = each image's size rounded to /32 (a fixed-size graph: its own).
        formats: subset of color, png, npy, ply, panel (``panel`` and, with ``intrinsics``/``fov``, ``ply`` are
            added by those options).
        png_units: "mm", "kitti" or "auto" (mm unless the model's max depth exceeds 65 m); relative models: rel16.
        vmin, vmax: colour range in the model's units (None: 2nd / 98th percentile of each map).
        intrinsics: (fx, fy, cx, cy) pixels at the input's size, or ``fov`` (degrees), for the point cloud.
        every: video: predict every N-th frame.
        runtime: "torch" or "onnxruntime" for a checkpoint (:class:`disdepth.api.DepthPredictor`); None: PyTorch for a
            checkpoint, ONNX Runtime for an ``.onnx`` graph.
        note: where one-line notes go (the relative-model and fixed-size-graph notices).

    Returns:
        :class:`PredictRun` (the ``predictions.json`` entries are also in the folder).
    """
    chosen = requested_formats(formats, panel, bool(intrinsics or fov))
    if batch_size < 1 or every < 1 or ply_stride < 1:
        raise ValueError("--batch-size, --every and --ply-stride must be >= 1")
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"--vmin {vmin:g} --vmax {vmax:g}: the near end must be below the far end")
    if fov is not None and not 0 < fov < 180:
        raise ValueError(f"--fov {fov:g}: expected 0 < degrees < 180")
    check_device(device)
    out_dir = Path(out)
    sources = collect_sources([str(p) for p in inputs], skip_under=out_dir)
    refuse_writing_over_inputs(sources, out_dir, chosen)
    for s in sources:  # every image's size is known from its header: refuse a too-large one before loading
        if s.size is not None:
            check_run_size(s.path, *s.size, size or round_size(*s.size), max_megapixels)
    with readable_load_errors(checkpoint):
        predictor = DepthPredictor.from_checkpoint(
            checkpoint, device=device, use_ema=use_ema, size=size, flip_tta=flip_tta, runtime=runtime
        )
    spec = predictor.model.input_spec
    run = PredictRun(out_dir=out_dir, depth_units=spec.units)
    if not spec.metric and "ply" in chosen:
        raise ValueError(
            f"{checkpoint}: a relative model (depth {spec.units}) has no metric point cloud; "
            "drop --intrinsics/--fov/--formats ply, or distil with a few labelled frames for a metric student"
        )
    if not spec.metric:
        run.notes.append(f"note: {checkpoint} is a relative model: outputs are depth {spec.units}, not metres")
    size_policy = None
    if predictor.fixed_size is not None:
        fh, fw = predictor.fixed_size
        size_policy = f"network at {fh}x{fw}: the graph's fixed size (each image resized to it and back)"
        run.notes.append(
            f"note: {checkpoint} is a fixed-size graph: every image runs at {fh}x{fw} and its depth is resized "
            "back to the image (export with --dynamic to run each image at its own size)"
        )
    for line in run.notes:
        note(line)
    options = WriteOptions(
        formats=chosen,
        png_units=auto_png_units(predictor.model) if png_units == "auto" else png_units,
        legend=legend,
        vmin=vmin,
        vmax=vmax,
        intrinsics=intrinsics,
        fov=fov,
        ply_ascii=ply_ascii,
        ply_stride=ply_stride,
        depth_units=spec.units,
    )
    _make_out_dir(out_dir)
    run.entries = _predict_sources(predictor, sources, out_dir, options, every, batch_size, max_megapixels, progress)
    runtime = predictor.runtime
    fallback = sorted(getattr(predictor.model, "pytorch_sizes", ()))
    if fallback:  # a size whose exported graph did not match PyTorch (or failed) ran in PyTorch: say which
        runtime += " (in PyTorch at " + ", ".join(f"{h}x{w}" for h, w in fallback) + ": no matching graph)"
    write_summary(
        out_dir, checkpoint, predictor.config, options, size, flip_tta, run.entries, size_policy, runtime=runtime
    )
    run.png_note = png_note(options.png_units, spec.units)
    return run


def _predict_sources(
    predictor: DepthPredictor,
    sources: list[Source],
    out_dir: Path,
    options: WriteOptions,
    every: int,
    batch_size: int,
    max_megapixels: float,
    progress: bool,
) -> list[dict]:
    """The batch loop: frames in same-size batches through the network, each written as it comes."""
    from tqdm import tqdm

    n_images = sum(s.kind == "image" for s in sources)
    total = n_images if n_images == len(sources) else None  # video frame counts are not known up front
    entries: list[dict] = []
    with tqdm(total=total, desc="predict", unit="img", file=sys.stderr, disable=None if progress else True) as bar:
        for batch in _batches(iter_frames(sources, every), batch_size):
            first = batch[0]
            height, width = first.rgb.shape[:2]
            run_size = predictor.run_size(height, width)
            check_run_size(first.source.path, height, width, run_size, max_megapixels)  # video frames
            for frame in batch:
                if "alpha" in frame.notes:
                    tqdm.write(f"note: {frame.source.path}: {frame.notes['alpha']}", file=sys.stderr)
            try:
                images = torch.stack([torch.from_numpy(f.rgb).permute(2, 0, 1) for f in batch]).float().div(255.0)
                depth = predictor.predict_tensor(images)
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                raise out_of_memory_error(first.source.path, height, width, run_size, len(batch)) from None
            if not torch.isfinite(depth).all():
                raise ValueError(
                    f"the model predicted non-finite depth (NaN or inf) for {first.source.path}; its weights are "
                    "probably broken"
                )
            for frame, d in zip(batch, depth, strict=True):
                entry = write_outputs(out_dir, frame.name, d[0].numpy(), frame.rgb, options)
                entry["input"] = str(frame.source.path)
                entry["run_size"] = list(run_size)
                if frame.notes:
                    entry["input_notes"] = frame.notes
                entries.append(entry)
            bar.update(len(batch))
    return entries
