"""The browser app (``disdepth app``): upload an image, see every model's depth side by side, download the outputs.

Three parts, each usable without a browser:

* :func:`find_models` - what to show for a path: a ``.pt`` checkpoint, a model folder (disdepth's
  ``config.json`` + ``model.safetensors``), a Hugging Face depth-model folder (a teacher), a run directory
  (``checkpoints/last.pt`` / ``model/``) or a pipeline run directory (``distill/``, ``baseline/``, ``teacher/``;
  a teacher given to the pipeline is read from the stage's ``config.yaml``).
* :func:`predict_view` - one image through every model, the same code as ``disdepth predict``: the image is read
  by :mod:`disdepth.deploy.sources` (EXIF upright, greyscale/alpha rules, 16-bit depth maps refused), checked
  against :mod:`disdepth.deploy.limits`, predicted by :class:`disdepth.api.DepthPredictor` and written by
  :mod:`disdepth.deploy.writers` (16-bit PNG, ``.npy``, ``.ply``). All maps share one colour scale: metres when
  the first model is metric; a relative model is aligned to it by least squares for display only.
* :func:`build_app` - the Gradio page around them. Gradio is imported only there (``pip install disdepth[app]``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disdepth.api import DepthPredictor, round_size
from disdepth.config import TeacherConfig, load_config
from disdepth.data.io import DataError
from disdepth.deploy.limits import MAX_RUN_MEGAPIXELS, check_run_size, is_out_of_memory, out_of_memory_error
from disdepth.deploy.sources import check_image, read_rgb, to_rgb
from disdepth.deploy.weights import load_model, readable_load_errors
from disdepth.deploy.writers import (
    PNG_UNITS,
    RELATIVE,
    RELATIVE_PNG,
    RELATIVE_PNG_TOP,
    WriteOptions,
    auto_png_units,
    nice_ticks,
    parse_intrinsics,
    value_words,
    write_outputs,
)
from disdepth.eval.viz import colorize
from disdepth.runs import MODEL_LABELS, Run
from disdepth.teachers.base import fit_scale_shift

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 50.0  # refuse bigger uploads before decoding them (a 12 MP JPEG is ~5 MB, a 16-bit TIFF ~70 MB)
NO_MODEL = (
    "expected a checkpoint (.pt), a model folder (config.json + model.safetensors), a Hugging Face depth-model "
    "folder, a run directory (checkpoints/last.pt or model/) or a pipeline run directory (distill/, baseline/, "
    "teacher/)"
)


# ---------------------------------------------------------------------------------------------- finding models


def _folder_kind(path: Path) -> str | None:
    """``"disdepth"`` / ``"hf"`` for a model folder (by its config.json), None for anything else."""
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        meta = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    return "disdepth" if isinstance(meta, dict) and meta.get("library") == "disdepth" else "hf"


def _given_teacher(stage: Run) -> str | None:
    """The teacher a pipeline was given (``teacher.checkpoint`` or a local HF folder), from a stage's config.yaml."""
    if not stage.config_path.is_file():
        return None
    teacher = load_config(stage.config_path).teacher
    if teacher.checkpoint and Path(teacher.checkpoint).exists():
        return teacher.checkpoint
    if teacher.kind == "hf" and Path(teacher.name).is_dir():
        return teacher.name
    return None


def find_models(path: str | Path, teacher: str | Path | None = None) -> dict[str, str]:
    """Label -> checkpoint (file, model folder or HF folder) of every model to show, in display order.

    A pipeline run directory gives ``distilled``, ``baseline`` and ``teacher``; anything else one model,
    labelled ``student`` (``teacher`` for an HF folder). ``teacher`` adds (or replaces) the teacher.

    Raises:
        FileNotFoundError: ``path`` (or ``teacher``) does not exist.
        ValueError: ``path`` holds nothing we can load (names what was expected).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found ({NO_MODEL})")
    if teacher and not Path(teacher).exists():
        raise FileNotFoundError(f"--teacher {teacher}: not found")
    found: dict[str, str] = {}
    if path.is_file():
        found["student"] = str(path)
    elif _folder_kind(path):
        found["teacher" if _folder_kind(path) == "hf" else "student"] = str(path)
    elif deployable := Run(path).deployable():
        found["student"] = str(deployable)
    else:
        run = Run(path)
        for label, stage in MODEL_LABELS.items():
            ckpt = run.stage(stage).deployable()
            if ckpt:
                found[label] = str(ckpt)
        if found and "teacher" not in found:
            stages = (run.stage(s) for s in ("distill", "acclimate", "baseline"))
            given = next(filter(None, (_given_teacher(stage) for stage in stages)), None)
            if given:
                found["teacher"] = given
        if not found:
            raise ValueError(f"{path}: no model found; {NO_MODEL}")
    if teacher:
        found["teacher"] = str(teacher)
    return found


@dataclass
class LoadedModel:
    """One model of the page: ``label`` (distilled, baseline, teacher, student), where it came from, its predictor."""

    label: str
    source: str
    predictor: DepthPredictor
    metric: bool
    png_units: str
    description: str
    units: str = "m"  # InputSpec.units: "m" or the relative note every label of this model's outputs uses
    # Timed answers per network size (ms): the page shows their median and range, not one number. Each size is run
    # once untimed first, so no model pays the first-call set-up inside its figure (whichever ran first used to).
    latencies: dict[tuple[int, int], list[float]] = field(default_factory=dict)


def load_models(found: dict[str, str], device: str = "cpu") -> list[LoadedModel]:
    """Load every model of :func:`find_models` as a :class:`DepthPredictor` (HF folders as HF teachers)."""
    models = []
    for label, source in found.items():
        if Path(source).is_dir() and _folder_kind(Path(source)) == "hf":
            from disdepth.teachers.build import build_teacher

            model = build_teacher(TeacherConfig(kind="hf", name=source), load_weights=True).freeze().eval()
            desc = f"Hugging Face {model.hf.config.model_type}" if hasattr(model, "hf") else "Hugging Face teacher"
        else:
            with readable_load_errors(source):
                model, cfg = load_model(source)
            desc = cfg.model.encoder if label != "teacher" and hasattr(cfg, "model") else f"{cfg.teacher.kind} teacher"
        spec = model.input_spec
        predictor = DepthPredictor(model, spec.mean, spec.std, device=device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        desc = f"{desc}, {params:.2f} M params, {'metric' if spec.metric else 'relative'}"
        models.append(LoadedModel(label, source, predictor, spec.metric, auto_png_units(model), desc, spec.units))
    return models


# ---------------------------------------------------------------------------------------------- one prediction


@dataclass
class View:
    """What the page shows for one image (see :func:`predict_view`).

    Attributes:
        error: one line for the page when the image was refused (everything else is then empty).
        rgb: (H, W, 3) uint8, the upright input.
        depth: label -> (H, W) float32 model output (metres; a relative model's own units).
        shown: label -> (H, W) float32 on the shared colour scale (relative models aligned to the reference).
        color: label -> (H, W, 3) uint8 colour map; ``colour_bar`` the shared bar; ``vmin``/``vmax``/``unit``.
        latency_ms: label -> model time on this machine; ``total_ms`` the whole answer.
        files: downloads (16-bit PNG, NPY, PLY per model); ``notes``: what was converted or assumed.
    """

    error: str = ""
    name: str = "image"
    rgb: np.ndarray | None = None
    depth: dict[str, np.ndarray] = field(default_factory=dict)
    shown: dict[str, np.ndarray] = field(default_factory=dict)
    color: dict[str, np.ndarray] = field(default_factory=dict)
    colour_bar: np.ndarray | None = None
    vmin: float = 0.0
    vmax: float = 1.0
    unit: str = "m"
    latency_ms: dict[str, float] = field(default_factory=dict)
    total_ms: float = 0.0
    run_size: tuple[int, int] = (0, 0)
    files: list[str] = field(default_factory=list)
    png_ranges: dict[str, list[float]] = field(default_factory=dict)  # relative models' rel16 PNG [lo, hi]
    notes: list[str] = field(default_factory=list)


def _read_input(image: Any, max_megapixels: float, max_mb: float) -> tuple[str, np.ndarray, dict[str, str]]:
    """An upload (path), a PIL image or an (H, W, 3) uint8 array -> (name, upright RGB, notes), checked."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_file() and path.stat().st_size > max_mb * 1e6:
            raise DataError(path.name, f"file is {path.stat().st_size / 1e6:.1f} MB, above the {max_mb:g} MB limit")
        try:
            h, w = check_image(path)  # header only: refuse a depth map or a too-large image before decoding
            _check_size(path.name, h, w, max_megapixels)
            rgb, notes = read_rgb(path)
        except DataError as exc:  # name the upload, not the server's temporary copy
            raise DataError(path.name, exc.message.replace(str(path), path.name), exc.problem) from None
        return path.stem, rgb, notes
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError("image", f"expected (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        rgb, notes = (image if image.flags.writeable else image.copy()), {}
    else:
        rgb, notes = to_rgb(image, "image")
    _check_size("image", *rgb.shape[:2], max_megapixels)
    return "image", rgb, notes


def _check_size(name: str, height: int, width: int, max_megapixels: float) -> None:
    """:func:`check_run_size` at the size the network runs at, worded for the app (no ``--size`` here)."""
    try:
        check_run_size(name, height, width, round_size(height, width), max_megapixels)
    except DataError as exc:
        raise DataError(
            name,
            f"image is {width}x{height} pixels ({height * width / 1e6:.1f} MP), above this app's "
            f"{max_megapixels:.1f} MP limit (disdepth app --max-megapixels); make it smaller first",
            exc.problem,
        ) from None


def _shared_scale(depth: dict[str, np.ndarray], metric: dict[str, bool]) -> tuple[dict[str, np.ndarray], str]:
    """Maps on one scale: the reference is the first metric model (else the first model); others that are
    relative are fitted to it (least squares scale and shift, for display only). Returns (maps, unit)."""
    labels = list(depth)
    ref = next((k for k in labels if metric[k]), labels[0])
    shown = {}
    for k in labels:
        if k == ref or metric[k]:
            shown[k] = depth[k]
            continue
        pred, target = (torch.from_numpy(depth[x])[None, None] for x in (k, ref))
        scale, shift = fit_scale_shift(pred, target, torch.isfinite(target) & (target > 0))
        shown[k] = (float(scale) * depth[k] + float(shift)).astype(np.float32)
    return shown, "m" if metric[ref] else "relative"


def colour_bar(vmin: float, vmax: float, unit: str, width: int = 640, height: int = 56) -> np.ndarray:
    """A horizontal colour bar (near = red on the left) with tick labels in ``unit``: (height, width, 3) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    pad, bar_h = 12, 18
    row = np.linspace(vmin, vmax, width - 2 * pad, dtype=np.float32)[None]
    bar = colorize(np.repeat(row, bar_h, axis=0), vmin, vmax, np.ones((bar_h, width - 2 * pad), bool))
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    panel.paste(Image.fromarray(bar), (pad, 4))
    draw = ImageDraw.Draw(panel)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    ticks = nice_ticks(vmin, vmax, 6)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    for t in ticks:
        x = pad + (t - vmin) / max(vmax - vmin, 1e-9) * (width - 2 * pad - 1)
        draw.line([(x, 4 + bar_h), (x, 8 + bar_h)], fill=(0, 0, 0))
        draw.text((x, 10 + bar_h), f"{t:.{decimals}f}", fill=(0, 0, 0), font=font, anchor="mt")
    label = "depth, metres" if unit == "m" else "depth, relative (not metres)"
    draw.text((width - pad, height - 2), label, fill=(60, 60, 60), font=font, anchor="rd")
    return np.asarray(panel)


def colour_map(depth: np.ndarray, vmin: float, vmax: float, levels: int = 1024) -> np.ndarray:
    """(H, W) -> (H, W, 3) uint8 in the colours of :func:`disdepth.eval.viz.colorize` (what ``disdepth predict``
    writes), looked up in a ``levels``-step table of it: the same picture for the eye, ~10x faster on a large map."""
    ramp = np.linspace(vmin, vmax, levels, dtype=np.float32)[None]
    table = colorize(ramp, vmin, vmax, np.ones(ramp.shape, bool))[0]
    valid = np.isfinite(depth) & (depth > 0)
    index = np.clip(np.nan_to_num((depth - vmin) * ((levels - 1) / (vmax - vmin))), 0, levels - 1)
    out = table[(index + 0.5).astype(np.intp)]
    out[~valid] = 0
    return out


def predict_view(
    models: list[LoadedModel],
    image: Any,
    intrinsics: str = "",
    fov: float | None = None,
    out_dir: str | Path | None = None,
    max_megapixels: float = MAX_RUN_MEGAPIXELS,
    max_mb: float = MAX_UPLOAD_MB,
    downloads: bool = True,
) -> View:
    """One image through every model: depth, one shared colour scale, latencies and the download files.

    Args:
        models: from :func:`load_models`.
        image: an uploaded file path, a PIL image or an (H, W, 3) uint8 array; None = nothing uploaded.
        intrinsics: ``"fx,fy,cx,cy"`` pixels at the input's size for the point cloud (blank: use ``fov``).
        fov: horizontal field of view in degrees for the point cloud when no intrinsics (None/0: no ``.ply``).
        out_dir: where the downloads go (None: a new temporary folder).
        max_megapixels, max_mb: refuse larger images / files (:mod:`disdepth.deploy.limits`).
        downloads: write the downloads now (the page writes them in a second step, :func:`write_downloads`, so
            the depth is on screen first).

    Returns:
        A :class:`View`; a refused input or bad field gives ``View(error=...)``, never an exception.
    """
    start = time.perf_counter()
    if image is None:
        return View(error="Upload an image (or take a webcam snapshot) first.")
    try:
        parse_intrinsics(intrinsics)
        if fov is not None and fov != 0 and not 0 < fov < 180:
            raise ValueError(f"field of view: expected 0 < degrees < 180, got {fov:g}")
        name, rgb, notes = _read_input(image, max_megapixels, max_mb)
    except (DataError, FileNotFoundError, ValueError, TypeError) as exc:
        return View(error=str(exc))
    view = View(name=name, rgb=rgb, notes=list(notes.values()))
    height, width = rgb.shape[:2]
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255.0)  # exactly as ``disdepth predict``
    for m in models:
        view.run_size = m.predictor.run_size(height, width)
        try:
            if view.run_size not in m.latencies:  # warm-up at this size, untimed (see LoadedModel.latencies)
                m.predictor.predict_tensor(tensor)
                m.latencies[view.run_size] = []
            t0 = time.perf_counter()
            view.depth[m.label] = m.predictor.predict_tensor(tensor)[0, 0].numpy()
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            return View(error=str(out_of_memory_error(name, height, width, view.run_size)))
        view.latency_ms[m.label] = (time.perf_counter() - t0) * 1e3
        m.latencies[view.run_size].append(view.latency_ms[m.label])
        if not np.isfinite(view.depth[m.label]).all():
            return View(error=f"{m.label} ({m.source}) predicted non-finite depth (NaN or inf): broken weights?")
    view.shown, view.unit = _shared_scale(view.depth, {m.label: m.metric for m in models})
    # The colour range: 2nd-98th percentile of every map (on a 1-in-4 pixel grid: a display range, not a statistic).
    values = [d[::2, ::2][np.isfinite(d[::2, ::2]) & (d[::2, ::2] > 0)] for d in view.shown.values()]
    values = np.concatenate([*values, np.ones(1, np.float32)])
    view.vmin, view.vmax = (float(v) for v in np.percentile(values, [2, 98]))
    view.vmax = max(view.vmax, view.vmin + 1e-3)
    for label, d in view.shown.items():
        view.color[label] = colour_map(d, view.vmin, view.vmax)
        if d is not view.depth[label]:
            view.notes.append(
                f"{label} is a relative model: shown aligned (least-squares scale and shift) to the "
                f"{next(iter(view.shown))} map; its downloads hold its own relative values"
            )
    view.colour_bar = colour_bar(view.vmin, view.vmax, view.unit)
    if downloads:
        write_downloads(view, models, intrinsics, fov, out_dir)
    view.total_ms = (time.perf_counter() - start) * 1e3
    return view


def write_downloads(
    view: View, models: list[LoadedModel], intrinsics: str = "", fov: float | None = None, out_dir=None
) -> list[str]:
    """Write each model's 16-bit PNG, ``.npy`` and (with intrinsics or a field of view) ``.ply`` for ``view``
    with :func:`disdepth.deploy.writers.write_outputs`, as ``disdepth predict`` does; sets and returns
    ``view.files``."""
    k = parse_intrinsics(intrinsics)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="disdepth-app-"))
    camera = bool(k or fov)
    view.files, view.png_ranges = [], {}
    for m in models:
        # A relative model has no metric point cloud: as in ``disdepth predict``, none is written for it.
        formats = frozenset({"png", "npy"} | ({"ply"} if camera and m.metric else set()))
        options = WriteOptions(
            formats=formats, png_units=m.png_units, intrinsics=k, fov=fov or None, depth_units=m.units
        )
        entry = write_outputs(out, f"{view.name}_{m.label}", view.depth[m.label], view.rgb, options)
        if "png_range" in entry:
            view.png_ranges[m.label] = entry["png_range"]
        view.files += [str(out / f) for f in entry["files"]]
    if not camera:
        view.notes.append("no point cloud: give intrinsics or a field of view")
    return view.files


def depth_at(view: View, x: int, y: int) -> str:
    """The readout for pixel (x, y) (column, row of the input): each model's depth there, one line."""
    if view.rgb is None:
        return ""
    h, w = view.rgb.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        return f"pixel ({x}, {y}) is outside the {w}x{h} image"
    unit = " m" if view.unit == "m" else " (relative)"
    parts = [f"**{label}** {d[y, x]:.3f}{unit}" for label, d in view.shown.items()]
    return f"depth at pixel x={x}, y={y}: " + " · ".join(parts)


def downloads_note(view: View, models: list[LoadedModel]) -> str:
    """How to read each model's downloads, in the words ``disdepth predict`` uses (:mod:`disdepth.deploy.writers`):
    a metric model's PNG is metres x scale; a relative model's is rel16 with this image's range, never metres."""
    parts = []
    for m in models:
        if m.metric:
            parts.append(f"{m.label}.png = metres x {PNG_UNITS[m.png_units]:g} (0 = no depth), .npy float32 metres")
            continue
        lo, hi = view.png_ranges.get(m.label, (float("nan"), float("nan")))
        parts.append(
            f"{m.label}.png = {RELATIVE_PNG}: value = {lo:.6g} + (png - 1) / {RELATIVE_PNG_TOP - 1} x ({hi:.6g} - "
            f"{lo:.6g}) (0 = no depth), .npy float32 {RELATIVE} values; {value_words(m.units)[1]}, no point cloud"
        )
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- the page


def _header(models: list[LoadedModel], run_note: str = "") -> str:
    rows = "\n".join(f"| **{m.label}** | `{m.source}` | {m.description} |" for m in models)
    return (
        "# disdepth: depth in the browser\n"
        "Upload a photo (or take a webcam snapshot): every model predicts its depth on this machine "
        f"({models[0].predictor.device.type}), shown on one colour scale.\n\n"
        f"| model | checkpoint | what |\n|---|---|---|\n{rows}\n" + (f"\n{run_note}\n" if run_note else "")
    )


def latency_cell(times: list[float]) -> str:
    """Median [lowest-highest] over n timed answers (one answer: its figure alone, with n = 1)."""
    if len(times) <= 1:
        return f"{times[0]:.1f} ms (n = 1)" if times else "-"
    return f"{np.median(times):.1f} ms [{min(times):.1f}-{max(times):.1f}] (n = {len(times)})"


def _latency_table(view: View, models: list[LoadedModel]) -> str:
    h, w = view.run_size
    rows = "\n".join(
        f"| {m.label} | {view.latency_ms[m.label]:.1f} ms | {latency_cell(m.latencies.get(view.run_size, []))} |"
        for m in models
    )
    threads = torch.get_num_threads()
    plural = "s" if threads > 1 else ""
    notes = "".join(f"\n- {n}" for n in view.notes)
    return (
        f"| model | this answer | median [range] of the answers so far |\n|---|---|---|\n{rows}\n\n"
        f"Network at {h}x{w} (HxW), {threads} thread{plural}; every model was warmed up at this size "
        "before its first timed answer. "
        f"Whole answer: {view.total_ms:.0f} ms (reading the image, every model, colouring). "
        f"Colour scale: {view.vmin:.3g}-{view.vmax:.3g} {'m' if view.unit == 'm' else '(relative)'}, "
        f"2nd-98th percentile of all maps.{notes}"
    )


def build_app(
    models: list[LoadedModel],
    fov: float | None = 60.0,
    max_megapixels: float = MAX_RUN_MEGAPIXELS,
    max_mb: float = MAX_UPLOAD_MB,
    keep_answers: int = 16,
    run_note: str = "",
) -> Any:
    """The Gradio Blocks page for ``models`` (needs the ``app`` extra); launch it with :func:`launch_app`.

    ``run_note``: markdown under the model table (``disdepth app`` puts the run report's distilled-vs-baseline
    change there, with its interval)."""
    import shutil
    from collections import deque

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
    import gradio as gr

    work = Path(tempfile.mkdtemp(prefix="disdepth-app-"))
    answers: deque[Path] = deque()

    def on_predict(path: str | None, intrinsics: str, fov_value: float | None) -> list:
        try:
            view = predict_view(models, path, intrinsics, fov_value, None, max_megapixels, max_mb, downloads=False)
        except Exception as exc:  # noqa: BLE001 - the page gets one line, the terminal the traceback
            log.exception("prediction failed")
            view = View(error=f"prediction failed ({exc.__class__.__name__}: {exc})")
        if view.error:
            return [f"**Cannot use this input.** {view.error}", *[None] * (len(models) + 2), "", None, "", None]
        notes = "".join(f" {n}." for n in view.notes[:3]) if view.notes else ""
        status = f"**{view.name}**: {view.rgb.shape[1]}x{view.rgb.shape[0]} pixels.{notes}"
        colours = [view.color[m.label] for m in models]
        kept = View(name=view.name, rgb=view.rgb, depth=view.depth, shown=view.shown, unit=view.unit)
        readout = "Click a picture to read the depth at that pixel."
        # The upload itself when nothing was converted (no re-encoding), else the upright RGB the models saw.
        shown_input = path if isinstance(path, str) and not view.notes else view.rgb
        return [status, shown_input, *colours, view.colour_bar, _latency_table(view, models), kept, readout, None]

    def on_downloads(view: View | None, intrinsics: str, fov_value: float | None) -> tuple[list[str] | None, str]:
        """The second step: the downloads of the answer on screen (its depth is kept in the session's state)."""
        if view is None:
            return None, ""
        out = Path(tempfile.mkdtemp(dir=work))
        answers.append(out)
        while len(answers) > keep_answers:  # old answers' downloads go; the page only offers the last one
            shutil.rmtree(answers.popleft(), ignore_errors=True)
        t0 = time.perf_counter()
        try:
            files = write_downloads(view, models, intrinsics, fov_value, out)
        except Exception as exc:  # noqa: BLE001
            log.exception("writing the downloads failed")
            return None, f"**Could not write the downloads** ({exc.__class__.__name__}: {exc})"
        ply = "" if any(f.endswith(".ply") for f in files) else " No point cloud: give intrinsics or a field of view."
        note = f"Written in {(time.perf_counter() - t0) * 1e3:.0f} ms. {downloads_note(view, models)}.{ply}"
        return files, note

    def on_select(view: View | None, evt: gr.SelectData) -> str:
        if view is None or not evt.index:
            return ""
        return depth_at(view, int(evt.index[0]), int(evt.index[1]))

    on_select.__annotations__["evt"] = gr.SelectData  # gradio finds the event argument by its type, not a string

    with gr.Blocks(title="disdepth", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        state = gr.State(None)
        gr.Markdown(_header(models, run_note))
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                with gr.Tab("Upload"):
                    upload = gr.File(label="Image file", file_count="single", type="filepath", elem_id="upload")
                with gr.Tab("Webcam"):
                    webcam = gr.Image(sources=["webcam"], type="filepath", label="Snapshot", elem_id="webcam")
                with gr.Accordion("Camera for the point cloud (.ply)", open=False):
                    intrinsics = gr.Textbox(label="Intrinsics fx,fy,cx,cy (pixels, at the image's size)")
                    fov_box = gr.Number(label="or horizontal field of view, degrees", value=fov)
                button = gr.Button("Predict", variant="primary", elem_id="predict")
            with gr.Column(scale=4):
                status = gr.Markdown("Upload an image to start.", elem_id="status")
                with gr.Row(equal_height=True):
                    images = [
                        gr.Image(label="input", interactive=False, format="jpeg", height=280, elem_id="img-input")
                    ]
                    images += [
                        gr.Image(
                            label=f"{m.label} depth",
                            interactive=False,
                            format="jpeg",
                            height=280,
                            elem_id=f"depth-{m.label}",
                        )
                        for m in models
                    ]
                bar = gr.Image(show_label=False, interactive=False, format="png", height=64, elem_id="colour-bar")
                readout = gr.Markdown("", elem_id="readout")
                latency = gr.Markdown("", elem_id="latency")
                files = gr.File(
                    label="Downloads: 16-bit PNG, .npy, .ply",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
                files_note = gr.Markdown("", elem_id="downloads-note")
        outputs = [status, *images, bar, latency, state, readout, files]
        params = [intrinsics, fov_box]
        for event, inputs, fn, api in (
            (upload.upload, [upload], on_predict, "predict"),
            (webcam.change, [webcam], on_predict, False),
            (button.click, [upload, webcam], lambda f, w, *p: on_predict(f or w, *p), False),
        ):
            answered = event(fn, [*inputs, *params], outputs, api_name=api)
            answered.then(on_downloads, [state, *params], [files, files_note], api_name="downloads" if api else False)
        for image in images:
            image.select(on_select, [state], [readout], api_name=False)
    demo.disdepth_work_dir = work
    return demo


def launch_app(demo: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True, max_mb: float = MAX_UPLOAD_MB):
    """Serve ``demo`` (no public link, no analytics, one prediction at a time); returns the local URL."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts to fetch
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, share=False, show_error=True,
        quiet=True, ssr_mode=False, max_file_size=f"{int(2 * max_mb)}mb", theme=theme,
    )  # fmt: skip
    return f"http://{host}:{port}/"
