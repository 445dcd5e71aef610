"""Tasks: ``nn.Module``s mapping a batch to a dict of named losses (``loss`` = total), driven by one loop.

A task states everything the training loop needs to know about what it trains:

* ``model``: the trainable module; the loop wraps exactly this attribute in DistributedDataParallel (a frozen
  teacher lives elsewhere on the task and is never wrapped);
* :meth:`Task.parameter_groups`: which parameters learn at which learning-rate scale (no name-prefix rules);
* :meth:`Task.deployable`: the checkpoint kind and the module a user deploys (a student without its training-only
  KD adapters, a teacher), or no module for a training-only state (acclimation);
* ``predict``: depth for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from disdepth.checkpoint import CheckpointKind
from disdepth.models.encoder import is_from_scratch
from disdepth.models.spec import InputSpec
from disdepth.tasks.losses import bins_chamfer_loss, l1_depth_loss, resize_like, silog_loss
from disdepth.tasks.pseudo import loss_to_teacher, teacher_depth, unlabelled


@dataclass
class ParamGroup:
    """Parameters that share a learning rate: ``train.lr * lr_scale`` (weight decay is split off by the engine)."""

    name: str
    params: list[nn.Parameter]
    lr_scale: float = 1.0


def pretrained_groups(model: nn.Module, pretrained: nn.Module | None, lr_scale: float) -> list[ParamGroup]:
    """Two groups: ``pretrained`` (the ImageNet weights under ``pretrained``) at ``lr_scale``, ``new`` (the rest).

    Modules marked ``from_scratch`` inside ``pretrained`` (``models.encoder.mark_from_scratch``: LG-Conv global
    branches, a hybrid teacher's transformer) have no pretrained weights to protect and join ``new``.
    """
    protected: set[int] = set()
    if pretrained is not None:
        scratch = {id(p) for m in pretrained.modules() if is_from_scratch(m) for p in m.parameters()}
        protected = {id(p) for p in pretrained.parameters()} - scratch
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        ParamGroup("pretrained", [p for p in trainable if id(p) in protected], lr_scale),
        ParamGroup("new", [p for p in trainable if id(p) not in protected], 1.0),
    ]
    return [g for g in groups if g.params]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


DEPTH_LOSSES = ("silog", "l1")


def checked_depth_loss(name: str) -> str:
    """``name`` when it is one of :data:`DEPTH_LOSSES` (``train.depth_loss``); otherwise a one-line error naming it."""
    if name not in DEPTH_LOSSES:
        raise ValueError(f"train.depth_loss: expected one of {DEPTH_LOSSES}, got {name!r}")
    return name


def depth_losses(
    out: dict,
    batch: dict,
    variance_focus: float = 0.85,
    silog_scale: float = 10.0,
    chamfer_weight: float = 0.1,
    depth_loss: str = "silog",
) -> dict[str, torch.Tensor]:
    """Depth supervision of a model output on valid pixels: ``silog`` (or ``l1``, ``depth_loss="l1"``), plus
    ``chamfer`` for a bins head.

    Args:
        out: model output with ``depth`` (B, 1, h, w) metres and optionally ``bin_centers`` (B, K).
        batch: with ``depth`` (B, 1, H, W) metres and ``valid`` (B, 1, H, W) bool.
    """
    gt, valid = batch["depth"], batch["valid"]
    depth = resize_like(out["depth"], gt)
    if depth_loss == "l1":
        losses = {"l1": l1_depth_loss(depth, gt, valid)}
    else:
        losses = {"silog": silog_loss(depth, gt, valid, variance_focus, silog_scale)}
    if "bin_centers" in out and chamfer_weight > 0:
        losses["chamfer"] = chamfer_weight * bins_chamfer_loss(out["bin_centers"], gt, valid)
    return losses


class Task(nn.Module):
    """Base: ``model`` is the trainable module; ``forward(batch)`` returns losses; ``predict`` returns depth."""

    model: nn.Module

    def parameter_groups(self) -> list[ParamGroup]:
        """Every trainable parameter of ``model`` at the full learning rate; tasks with a pretrained part override."""
        return [ParamGroup("all", [p for p in self.model.parameters() if p.requires_grad])]

    def deployable(self, trained: nn.Module) -> tuple[CheckpointKind, nn.Module | None]:
        """(kind, module to deploy) for ``trained`` (``model`` or its EMA copy, unwrapped)."""
        raise NotImplementedError

    def set_progress(self, done: float) -> None:
        """Called before every training step with the share of the steps done, in [0, 1) (also when resuming):
        tasks whose loss weights follow a schedule override it; others ignore it."""

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """image: (B, 3, H, W) normalised -> depth (B, 1, H, W) metres from the (unwrapped) trained model."""
        return unwrap(self.model)(image)["depth"]


class SupervisedTask(Task):
    """Depth supervision: SILog (or L1, ``depth_loss``) on valid pixels (+ AdaBins chamfer loss for a bins head).

    Works for any model whose forward returns ``{"depth": (B, 1, H, W) metres[, "bin_centers": (B, K)]}``:
    baseline students and trainable teachers alike.

    Images without ground truth (label-free training, ``data.require_depth=false``) learn from ``teacher`` when one
    is given: loss ``pseudo_depth`` = the student's depth against the frozen teacher's (``tasks/pseudo.py``).

    Args:
        kind: what ``model`` is (student or teacher), stored in its checkpoints.
        pretrained: the submodule holding ImageNet weights (a student's ``encoder``, a teacher's ``backbone``),
            which learns at ``train.lr * pretrained_lr_scale``; None = everything at ``train.lr``.
        teacher: a frozen ``Teacher`` for images without ground truth; ``model_spec``: the input spec the batches
            are normalised for (the teacher re-normalises).
    """

    def __init__(
        self,
        model: nn.Module,
        kind: CheckpointKind = CheckpointKind.STUDENT,
        pretrained: nn.Module | None = None,
        pretrained_lr_scale: float = 1.0,
        variance_focus: float = 0.85,
        silog_scale: float = 10.0,
        chamfer_weight: float = 0.1,
        teacher: nn.Module | None = None,
        model_spec: InputSpec | None = None,
        depth_loss: str = "silog",
    ) -> None:
        super().__init__()
        self.depth_loss = checked_depth_loss(depth_loss)
        self.model, self.kind = model, kind
        self.__dict__["pretrained"] = pretrained  # a view into ``model``, not a second registration
        self.pretrained_lr_scale = pretrained_lr_scale
        self.variance_focus, self.silog_scale, self.chamfer_weight = variance_focus, silog_scale, chamfer_weight
        self.teacher = teacher  # frozen; registered here (not on ``model``) so DDP never wraps it
        self.model_spec = model_spec

    def parameter_groups(self) -> list[ParamGroup]:
        return pretrained_groups(self.model, self.pretrained, self.pretrained_lr_scale)

    def deployable(self, trained: nn.Module) -> tuple[CheckpointKind, nn.Module | None]:
        return self.kind, trained

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self.model(batch["image"])
        losses = depth_losses(out, batch, self.variance_focus, self.silog_scale, self.chamfer_weight, self.depth_loss)
        todo = unlabelled(batch)
        if self.teacher is not None and todo.any():
            target = teacher_depth(self.teacher, batch["image"][todo], self.model_spec)
            losses["pseudo_depth"] = loss_to_teacher(out["depth"][todo], target, self.variance_focus, self.silog_scale)
        losses["loss"] = sum(losses.values())
        return losses
