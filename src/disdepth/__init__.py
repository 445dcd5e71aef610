"""disdepth: small, fast CNN monocular depth estimators distilled from transformer teachers (DisDepth)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from disdepth.api import DepthPredictor



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
