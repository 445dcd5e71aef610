"""The common teacher interface, size helpers, and scale-and-shift alignment of relative depth.

Every teacher (timm, hybrid, Hugging Face) is a :class:`Teacher`: an ``nn.Module`` whose ``forward(image)``
returns a dict shaped like the student's, so distillation code treats both alike:

    depth:            (B, 1, H, W) metres at input resolution (relative teachers: see ``is_metric``);
    features:         list of 4 maps (B, C_i, ceil(H/s_i), ceil(W/s_i)) at strides 4, 8, 16, 32, shallow to deep;
    encoder_features: the same list (the key the student uses for its pyramid);
    decoder_features: (timm/hybrid teachers only) DPT fusion outputs, deep to shallow;
    bin_centers:      (B, n_bins) metres, bins head only;
    relative:         (B, 1, H, W) raw output of a relative teacher (disparity-like or depth-like).

Relative teachers (``is_metric=False``) cannot know metres; pass ``target``/``valid`` to ``forward`` (or call
:func:`align_relative`) to fit one scale and shift per image to the ground truth by least squares.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.checkpoint import load_weights_only
from disdepth.models.encoder import FeatureInfo
from disdepth.models.spec import InputSpec

log = logging.getLogger(__name__)

PYRAMID_STRIDES: tuple[int, ...] = (4, 8, 16, 32)
RelativeSpace = Literal["disparity", "depth"]


# --------------------------------------------------------------------------------------------
# Size helpers.
# --------------------------------------------------------------------------------------------


def pyramid_sizes(height: int, width: int, strides: tuple[int, ...] = PYRAMID_STRIDES) -> list[tuple[int, int]]:
    """(ceil(H/s), ceil(W/s)) per stride: the grid a stride-s map of an H x W image has (as in timm CNNs)."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad (bottom/right) a (B, C, H, W) batch so H and W are multiples of ``multiple``.

    Zero is the dataset mean after normalisation, so padding looks like a flat grey border.
    """
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(image, (0, pw, 0, ph)) if ph or pw else image


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to ``size``; anti-aliased when shrinking so strided levels don't alias."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


# --------------------------------------------------------------------------------------------
# Scale-and-shift alignment (relative teachers).
# --------------------------------------------------------------------------------------------


def fit_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, with_shift: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least squares ``scale * pred + shift ~= target`` over valid pixels (MiDaS-style alignment).

    Args:
        pred: (B, 1, H, W) prediction (any units).
        target: (B, 1, H, W) what to match, in the same space as ``pred`` (depth or disparity).
        valid: (B, 1, H, W) bool; default: finite target.
        with_shift: False fits ``scale * pred ~= target`` (a scale-only relative model); shift is then 0.

    Returns:
        scale, shift: (B,) each. An image with fewer than 2 valid pixels gets (1, 0); one whose prediction
        is constant on its valid pixels gets scale 0 and shift = mean target.
    """
    if valid is None:
        valid = torch.isfinite(target)
    # Double precision: the normal equations lose digits when depths are large and nearly constant.
    m = valid.flatten(1).to(torch.float64)
    p = torch.where(valid, pred, torch.zeros_like(pred)).detach().flatten(1).to(torch.float64)
    t = torch.where(valid, target, torch.zeros_like(target)).detach().flatten(1).to(torch.float64)
    n = m.sum(1)
    n_safe = n.clamp(min=1)
    p_mean, t_mean = p.sum(1) / n_safe, t.sum(1) / n_safe
    if not with_shift:  # scale only: the normal equation about the origin
        p_mean, t_mean = torch.zeros_like(p_mean), torch.zeros_like(t_mean)
    pc, tc = (p - p_mean[:, None]) * m, (t - t_mean[:, None]) * m
    var = (pc * pc).sum(1)
    cov = (pc * tc).sum(1)
    degenerate = var <= 1e-12 * n_safe * (p_mean.abs() + 1) ** 2
    scale = torch.where(degenerate, torch.zeros_like(var), cov / var.clamp(min=1e-300))
    shift = t_mean - scale * p_mean
    few = n < 2
    scale = torch.where(few, torch.ones_like(scale), scale)
    shift = torch.where(few, torch.zeros_like(shift), shift)
    return scale.to(pred.dtype), shift.to(pred.dtype)


def align_relative(
    relative: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    space: RelativeSpace = "disparity",
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    fit: str = "scale_shift",
) -> torch.Tensor:
    """Metric depth from a relative prediction, aligned per image to ground truth (``fit="scale"``: no shift).

    ``space="disparity"`` (Depth Anything relative, DPT/MiDaS): fit ``s * relative + t ~= 1 / target`` on valid
    pixels, depth = 1 / (s * relative + t). ``space="depth"``: fit ``s * relative + t ~= target`` directly.

    Args:
        relative: (B, 1, H, W) raw teacher output.
        target: (B, 1, H, W) ground-truth depth, metres.
        valid: (B, 1, H, W) bool, where ``target`` is ground truth (> 0).
        space: what ``relative`` is proportional to (up to an affine map).
        min_depth, max_depth: metres; the result is clamped to this range.

    Returns:
        depth: (B, 1, H, W) metres.
    """
    valid = valid & (target > 0) & torch.isfinite(target)
    if space == "disparity":
        scale, shift = fit_scale_shift(relative, 1.0 / target.clamp(min=1e-6), valid, fit == "scale_shift")
        disp = scale.view(-1, 1, 1, 1) * relative + shift.view(-1, 1, 1, 1)
        depth = 1.0 / disp.clamp(min=1.0 / max_depth)
    elif space == "depth":
        scale, shift = fit_scale_shift(relative, target, valid, fit == "scale_shift")
        depth = scale.view(-1, 1, 1, 1) * relative + shift.view(-1, 1, 1, 1)
    else:
        raise ValueError(f"relative space must be 'disparity' or 'depth', got {space!r}")
    return depth.clamp(min_depth, max_depth)


# --------------------------------------------------------------------------------------------
# The interface.
# --------------------------------------------------------------------------------------------


class Teacher(nn.Module):
    """Base class of all teachers.

    Attributes:
        feature_info: 4 levels (channels, stride) at strides 4, 8, 16, 32.
        is_metric: True when ``depth`` is metric without alignment.
        relative_space: for relative teachers, what the raw output ``relative`` is affine in.
        mean, std: RGB normalisation the teacher expects (applied to a [0, 1] image).
        min_depth, max_depth: metres; depth outputs are clamped to this range.
    """

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        min_depth: float,
        max_depth: float,
        is_metric: bool = True,
        relative_space: RelativeSpace = "disparity",
    ) -> None:
        super().__init__()
        if [f.stride for f in feature_info] != list(PYRAMID_STRIDES):
            raise ValueError(f"teacher pyramid must have strides {PYRAMID_STRIDES}, got {feature_info}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"teacher min_depth/max_depth: need 0 < min < max, got {min_depth}, {max_depth}")
        self.feature_info = list(feature_info)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.is_metric, self.relative_space = is_metric, relative_space
        self.relative_fit = "scale_shift"  # or "scale": what a relative output is known up to (teacher.relative_fit)
        self._frozen = False

    # Input sides that keep the pyramid aligned; subclasses with other rules (ViT patch 14/16) override it.
    size_multiple: int = 32

    @property
    def input_spec(self) -> InputSpec:
        """The teacher's own normalisation and depth range (``metric=False`` for a relative teacher)."""
        return InputSpec(
            self.mean, self.std, self.min_depth, self.max_depth, self.size_multiple, self.is_metric,
            self.relative_space, self.relative_fit,
        )  # fmt: skip

    # -- normalisation ---------------------------------------------------------------------------

    def normalize_input(
        self,
        image: torch.Tensor,
        student_mean: tuple[float, float, float] | list[float],
        student_std: tuple[float, float, float] | list[float],
    ) -> torch.Tensor:
        """Re-normalise a batch normalised for the student into this teacher's normalisation.

        Only colour: size rules (multiples of 14 / 32, fixed square inputs) are applied inside ``forward``,
        which always answers at the size it was given.

        Args:
            image: (B, 3, H, W), ``(x - student_mean) / student_std`` with x in [0, 1].

        Returns:
            (B, 3, H, W), ``(x - self.mean) / self.std``; ``image`` itself when both normalisations agree.
        """
        return self.input_spec.renormalize(image, InputSpec(tuple(student_mean), tuple(student_std)))

    # -- frozen-ness -----------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        return self._frozen

    def freeze(self) -> Teacher:
        """Eval mode and no gradients, kept through later ``.train()`` calls (e.g. an outer ``model.train()``)."""
        self._frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        return self

    def unfreeze(self) -> Teacher:
        """Make every parameter trainable again (e.g. fine-tuning the teacher at a small learning rate)."""
        self._frozen = False
        for p in self.parameters():
            p.requires_grad_(True)
        return self

    def train(self, mode: bool = True) -> Teacher:
        # A frozen teacher must not switch BN statistics / dropout on when its owner calls .train().
        return super().train(mode and not self._frozen)

    # -- outputs ---------------------------------------------------------------------------------

    def _finish(
        self,
        out: dict,
        target: torch.Tensor | None,
        valid: torch.Tensor | None,
    ) -> dict:
        """Common output post-processing: pyramid aliases, relative -> depth, alignment when GT is given."""
        out["encoder_features"] = out["features"]
        if not self.is_metric:
            relative = out["relative"]
            if target is not None:
                if valid is None:
                    valid = target > 0
                out["depth"] = align_relative(
                    relative, target, valid, self.relative_space, self.min_depth, self.max_depth
                )
                out["aligned"] = True
            else:
                # Unaligned: only the ordering is meaningful (identity scale/shift in the model's own space).
                out["depth"] = self.relative_to_depth(relative)
                out["aligned"] = False
        return out

    def relative_to_depth(self, relative: torch.Tensor) -> torch.Tensor:
        """Unaligned depth-like map from a relative output (identity scale/shift), clamped to the depth range."""
        if self.relative_space == "disparity":
            return (1.0 / relative.clamp(min=1.0 / self.max_depth)).clamp(self.min_depth, self.max_depth)
        return relative.clamp(self.min_depth, self.max_depth)

    def align(self, out: dict, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Metric depth (B, 1, H, W) for a ``forward`` output: aligned to ``target`` if relative, else as is."""
        if self.is_metric:
            return out["depth"]
        if valid is None:
            valid = target > 0
        return align_relative(out["relative"], target, valid, self.relative_space, self.min_depth, self.max_depth)

    def extra_repr(self) -> str:
        kind = "metric" if self.is_metric else f"relative ({self.relative_space})"
        levels = ", ".join(f"{f.channels}@{f.stride}" for f in self.feature_info)
        return f"{kind}, depth [{self.min_depth}, {self.max_depth}] m, pyramid [{levels}], frozen={self._frozen}"


# --------------------------------------------------------------------------------------------
# Weights and complexity.
# --------------------------------------------------------------------------------------------


def load_teacher_checkpoint(teacher: nn.Module, path: str | Path) -> None:
    """Load a whole-teacher state dict (a bare state dict, or a checkpoint dict with a ``model`` entry).

    Raises:
        FileNotFoundError / ValueError naming the file when it is missing or does not fit this teacher.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher.checkpoint: file not found: {path}")
    try:
        state = load_weights_only(path)
    except ValueError as exc:
        raise ValueError(f"teacher.checkpoint: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"teacher.checkpoint {path}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        result = teacher.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise ValueError(f"teacher.checkpoint {path}: does not match this teacher config: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"teacher.checkpoint {path}: does not match this teacher "
            f"(missing {result.missing_keys[:5]}..., unexpected {result.unexpected_keys[:5]}...); "
            "was it trained with the same teacher config?"
        )


def measure_complexity(model: nn.Module, height: int = 480, width: int = 640) -> dict[str, float]:
    """Parameters (millions) and GFLOPs of one forward pass on a (1, 3, H, W) CPU input.

    FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs).
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, height, width, device=device))
    model.train(was_training)
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops": counter.get_total_flops() / 1e9,
    }
