"""disdepth: small, fast CNN monocular depth estimators distilled from transformer teachers (DisDepth)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from disdepth.api import DepthPredictor

__version__ = "0.1.0"


def load(checkpoint: str | Path, device: str = "cpu", **kwargs: Any) -> DepthPredictor:
    """Load a checkpoint as a :class:`disdepth.api.DepthPredictor`; ``predictor.predict(image)`` returns (H, W) metres.

    Imports torch and the model code only when called, so ``import disdepth`` stays light.
    Keyword arguments (``size``, ``flip_tta``, ``use_ema``) are those of :func:`disdepth.api.load`.
    """
    from disdepth.api import load as _load

    return _load(checkpoint, device=device, **kwargs)
