"""Distillation losses (docs/method.md §5): attentive feature KD and its attention maps (response KD, the depth
against the teacher's depth: ``tasks/pseudo.py``).

Conventions (docs/distillation.md):

* An attention map ``w`` is (B, 1, h, w), non-negative, and **sums to 1 over positions of each image**.
  Uniform attention (``1 / (h*w)``) turns the attentive loss into plain feature MSE, so "attention: none" is
  exactly the MSE baseline and the loss magnitudes of all variants are comparable.
* The per-level feature loss is ``sum_p w(p) * mean_c (s(p) - t(p))^2``, divided (when ``normalize``) by the
  teacher's mean energy ``mean(t^2)`` (detached) so one weight suits every level and every backbone; or, with the
  cosine distance, ``sum_p w(p) * (1 - cos(s(p), t(p)))`` (already scale-free).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def _standardise(x: torch.Tensor) -> torch.Tensor:
    """Per-image z-score over positions of a (B, 1, h, w) map, so ``tau`` means the same at every level."""
    flat = x.flatten(1)
    mean, std = flat.mean(1, keepdim=True), flat.std(1, keepdim=True, unbiased=False)
    return ((flat - mean) / (std + EPS)).view_as(x)


def softmax_positions(score: torch.Tensor, tau: float = 1.0, floor: float = 0.0) -> torch.Tensor:
    """Softmax over positions of a (B, 1, h, w) score map (standardised first), mixed with uniform by ``floor``.

    Returns:
        (B, 1, h, w) weights, each image summing to 1.
    """
    if tau <= 0:
        raise ValueError(f"distill.tau must be > 0, got {tau}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"distill.attention_floor must be in [0, 1], got {floor}")
    b, _, h, w = score.shape
    weights = torch.softmax(_standardise(score.float()).flatten(1) / tau, dim=1).view(b, 1, h, w)
    return (1.0 - floor) * weights + floor / (h * w)


def uniform_attention(feature: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) all ``1 / (h*w)``: plain MSE."""
    b, _, h, w = feature.shape
    return feature.new_full((b, 1, h, w), 1.0 / (h * w), dtype=torch.float32)


def magnitude_attention(teacher: torch.Tensor, tau: float = 1.0, floor: float = 0.0) -> torch.Tensor:
    """Attention from the teacher feature energy ``mean_c t^2`` (high-activation regions matter more).

    Args:
        teacher: (B, C, h, w) teacher (acclimated) feature.

    Returns:
        (B, 1, h, w) weights summing to 1 per image.
    """
    return softmax_positions(teacher.detach().float().pow(2).mean(1, keepdim=True), tau, floor)


def saliency_attention(grad: torch.Tensor, tau: float = 1.0, floor: float = 0.0) -> torch.Tensor:
    """Task-driven attention from a depth-loss gradient w.r.t. a feature map (``mean_c |dL/dt|``).

    Args:
        grad: (B, C, h, w) gradient of the ghost decoder's depth loss w.r.t. the acclimated feature.
    """
    return softmax_positions(grad.detach().float().abs().mean(1, keepdim=True), tau, floor)


DISTANCES = ("mse", "cosine")


def attentive_feature_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    attention: torch.Tensor | None = None,
    normalize: bool = True,
    distance: str = "mse",
) -> torch.Tensor:
    """Attention-weighted feature distance at one level.

    Args:
        student: (B, C, h, w) student feature (or its adapter output), same shape as ``teacher``.
        teacher: (B, C, h, w) target, no gradient needed.
        attention: (B, 1, h, w) weights summing to 1 per image; None = uniform.
        normalize: divide by ``mean(teacher^2)`` (detached); ``mse`` only (the cosine distance has no scale).
        distance: per position, ``mse`` = ``mean_c (s - t)^2``; ``cosine`` = ``1 - cos(s(p), t(p))`` over the
            channels, in [0, 2]: the direction of each position's feature vector, not its length.

    Returns:
        Scalar: mean over images of ``sum_p w(p) d(p)`` [/ mean(t^2)]; 0 when ``student == teacher``.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"feature KD: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    if distance not in DISTANCES:
        raise ValueError(f"distill.distance: expected one of {DISTANCES}, got {distance!r}")
    teacher = teacher.detach().float()
    if distance == "cosine":
        dist = 1.0 - F.cosine_similarity(student.float(), teacher, dim=1, eps=EPS).unsqueeze(1)  # (B, 1, h, w)
    else:
        dist = (student.float() - teacher).pow(2).mean(1, keepdim=True)  # (B, 1, h, w)
    if attention is None:
        loss = dist.mean()
    else:
        loss = (attention * dist).flatten(1).sum(1).mean()
    if normalize and distance == "mse":
        loss = loss / (teacher.pow(2).mean() + EPS)
    return loss


def standardize_channels(feature: torch.Tensor) -> torch.Tensor:
    """Per image and channel, zero mean and unit variance over positions: (B, C, h, w) -> same shape, float32.

    Used before the feature distance when ``distill.standardize`` (PKD, Cao et al. 2022): the loss then compares
    where each channel is high or low, not its magnitude, which differs by an order of magnitude between a
    student's ImageNet features and a teacher's (acclimated) features. The distance is then ``2 * (1 - r)`` per
    channel with ``r`` the Pearson correlation, in [0, 4].
    """
    x = feature.float().flatten(2)
    mean, std = x.mean(2, keepdim=True), x.std(2, keepdim=True, unbiased=False)
    return ((x - mean) / (std + EPS)).view_as(feature)


def match_size(feature: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``feature`` to ``like``'s grid (ceil-vs-floor stride rounding differs between models)."""
    if feature.shape[-2:] == like.shape[-2:]:
        return feature
    return F.interpolate(feature, size=like.shape[-2:], mode="bilinear", align_corners=False)
