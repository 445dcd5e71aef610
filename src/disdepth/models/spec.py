"""The input contract of a depth model: how to normalise its input and what its output means.

Every student and teacher states an :class:`InputSpec` (``model.input_spec``); every checkpoint stores it, so
evaluation, prediction and export never guess a normalisation or a depth range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What a depth model expects and returns.

    Attributes:
        mean, std: RGB normalisation of a [0, 1] image: ``(x - mean) / std``.
        min_depth, max_depth: metres; the model's depth output lies in this range.
        size_multiple: input sides that keep every pyramid level aligned (32 for stride-32 encoders); other sizes
            still run (models pad or interpolate), but resizing to a multiple is what ``disdepth predict`` does.
        metric: False for a relative model (depth known only up to scale and shift).
        relative_space: for a relative model, the space its output is affine in: "disparity" (Depth Anything,
            MiDaS/DPT) or "depth"; it is aligned to ground truth there (``eval/alignment.py``).
        relative_fit: "scale_shift" (affine: MiDaS, Depth Anything) or "scale" (known up to scale only).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    min_depth: float = 1e-3
    max_depth: float = 10.0
    size_multiple: int = 32
    metric: bool = True
    relative_space: str = "disparity"
    relative_fit: str = "scale_shift"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"input spec: mean/std must be 3 values with std > 0, got {self.mean}, {self.std}")
        if self.relative_fit not in ("scale_shift", "scale"):
            raise ValueError(f"input spec: relative_fit must be 'scale_shift' or 'scale', got {self.relative_fit!r}")
        if self.relative_space not in ("disparity", "depth"):
            raise ValueError(f"input spec: relative_space must be 'disparity' or 'depth', got {self.relative_space!r}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"input spec: need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, floats), so a checkpoint holding it loads with ``weights_only=True``."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(**{k: tuple(v) if k in ("mean", "std") else v for k, v in data.items()})

    @property
    def units(self) -> str:
        """What the depth output is measured in, for labels: "m" or a relative note."""
        unknown = "scale and shift" if self.relative_fit == "scale_shift" else "scale"
        return "m" if self.metric else f"relative ({self.relative_space}, unknown {unknown})"

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the model's input."""
        return (image - self._view(self.mean, image)) / self._view(self.std, image)

    def renormalize(self, image: torch.Tensor, source: InputSpec) -> torch.Tensor:
        """(B, 3, H, W) normalised for ``source`` -> normalised for this spec (``image`` itself when they agree)."""
        if (source.mean, source.std) == (self.mean, self.std):
            return image
        return self.normalize(image * self._view(source.std, image) + self._view(source.mean, image))

    @staticmethod
    def _view(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
