"""Tasks: ``nn.Module``s mapping a batch to a dict of named losses (``loss`` = total), driven by one loop.

A task keeps the part it trains in ``self.model``; the training loop wraps exactly that attribute in
DistributedDataParallel (a frozen teacher lives elsewhere on the task and is never wrapped) and reads
``predict`` for evaluation. The acclimation and distillation tasks join this file with the
distillation issue.
"""

from __future__ import annotations

import torch
from torch import nn

from disdepth.tasks.losses import bins_chamfer_loss, resize_like, silog_loss


def depth_losses(
    out: dict, batch: dict, variance_focus: float = 0.85, silog_scale: float = 10.0, chamfer_weight: float = 0.1
) -> dict[str, torch.Tensor]:
    """Depth supervision of a model output: ``silog`` on valid pixels, plus ``chamfer`` for a bins head.

    Args:
        out: model output with ``depth`` (B, 1, h, w) metres and optionally ``bin_centers`` (B, K).
        batch: with ``depth`` (B, 1, H, W) metres and ``valid`` (B, 1, H, W) bool.
    """
    gt, valid = batch["depth"], batch["valid"]
    losses = {"silog": silog_loss(resize_like(out["depth"], gt), gt, valid, variance_focus, silog_scale)}
    if "bin_centers" in out and chamfer_weight > 0:
        losses["chamfer"] = chamfer_weight * bins_chamfer_loss(out["bin_centers"], gt, valid)
    return losses


class Task(nn.Module):
    """Base: ``model`` is the trainable module; ``forward(batch)`` returns losses; ``predict`` returns depth."""

    model: nn.Module

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """image: (B, 3, H, W) normalised -> depth (B, 1, H, W) metres from the (unwrapped) trained model."""
        model = self.model.module if hasattr(self.model, "module") else self.model
        return model(image)["depth"]


class SupervisedTask(Task):
    """Depth supervision: SILog on valid pixels (+ AdaBins chamfer loss for a bins head).

    Works for any model whose forward returns ``{"depth": (B, 1, H, W) metres[, "bin_centers": (B, K)]}``:
    baseline students and trainable teachers alike.
    """

    def __init__(
        self, model: nn.Module, variance_focus: float = 0.85, silog_scale: float = 10.0, chamfer_weight: float = 0.1
    ) -> None:
        super().__init__()
        self.model = model
        self.variance_focus, self.silog_scale, self.chamfer_weight = variance_focus, silog_scale, chamfer_weight

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        losses = depth_losses(
            self.model(batch["image"]), batch, self.variance_focus, self.silog_scale, self.chamfer_weight
        )
        losses["loss"] = sum(losses.values())
        return losses
