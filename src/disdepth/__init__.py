"""disdepth: small, fast CNN monocular depth estimators distilled from transformer teachers (DisDepth)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from disdepth.api import DepthPredictor
    from disdepth.deploy.export_model import ExportResult
    from disdepth.deploy.predict_folder import PredictRun
    from disdepth.eval.scoring import EvalResult
    from disdepth.runs import Run



def _installed_version() -> str:
    """The one version string: the installed package's metadata (pyproject.toml's ``version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("disdepth")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


__version__ = _installed_version()


def load(checkpoint: str | Path, device: str = "cpu", **kwargs: Any) -> DepthPredictor:
    """Load a checkpoint as a :class:`disdepth.api.DepthPredictor`; ``predictor.predict(image)`` returns (H, W) metres.

    Imports torch and the model code only when called, so ``import disdepth`` stays light.
    Keyword arguments (``size``, ``flip_tta``, ``use_ema``) are those of :func:`disdepth.api.load`.
    """
    from disdepth.api import load as _load

    return _load(checkpoint, device=device, **kwargs)


def predict(checkpoint: str | Path, inputs: list[str | Path], out: str | Path, **options: Any) -> PredictRun:
    """What ``disdepth predict`` does, from Python: depth for images, folders and videos, written to ``out``
    (colour maps, 16-bit PNGs, .npy, point clouds, ``predictions.json``). Options: those of
    :func:`disdepth.deploy.predict_folder.predict` (``size``, ``formats``, ``legend``, ``intrinsics``, ...)."""
    from disdepth.deploy.predict_folder import predict as _predict

    return _predict(checkpoint, inputs, out, **options)


def open_run(path: str | Path) -> Run:
    """A run or pipeline folder (:class:`disdepth.runs.Run`): ``open_run("runs/mine").model("distill")`` is the
    distilled student's model folder, ready for :func:`load`."""
    from disdepth.runs import open_run as _open_run

    return _open_run(path)


def export(checkpoint: str | Path, out: str | Path, **options: Any) -> ExportResult:
    """What ``disdepth export`` does, from Python: the ONNX graph, checked and timed on ONNX Runtime, optional INT8 /
    fp16 variants and their scores. Options: those of :func:`disdepth.deploy.export_model.export`."""
    from disdepth.deploy.export_model import export as _export

    return _export(checkpoint, out, **options)


def evaluate(**options: Any) -> EvalResult:
    """What ``disdepth eval`` does, from Python: a checkpoint's model (``checkpoint=``) or saved predictions
    (``pred_dir=``) scored under a protocol. Options: those of :func:`disdepth.deploy.evaluate.evaluate`."""
    from disdepth.deploy.evaluate import evaluate as _evaluate

    return _evaluate(**options)
