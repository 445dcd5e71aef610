"""Optimiser, learning-rate schedules and EMA weights for the training loop."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from disdepth.config import TrainConfig
from disdepth.tasks.supervised import ParamGroup


def build_optimizer(groups: list[ParamGroup], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over a task's parameter groups: each at ``cfg.lr * lr_scale``.

    Norm weights and biases (1-D parameters) get no weight decay (the usual AdamW practice), so each group is
    split in two.
    """
    torch_groups = []
    for group in groups:
        for no_decay in (False, True):
            params = [p for p in group.params if (p.ndim <= 1) == no_decay]
            if params:
                torch_groups.append(
                    {
                        "params": params,
                        "lr": cfg.lr * group.lr_scale,
                        "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                        "name": f"{group.name}{'_no_decay' if no_decay else ''}",
                    }
                )
    if not torch_groups:
        raise ValueError("the model has no trainable parameter")
    return torch.optim.AdamW(torch_groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule over ``cfg.steps`` optimizer steps.

    poly (BTS/NeWCRFs): ``(1 - t)^power`` from 1 to ``end_lr_ratio`` after a linear warm-up;
    onecycle (AdaBins): torch's OneCycleLR (cosine annealing, peak at 30%);
    constant: flat after warm-up.
    """
    if cfg.schedule == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lrs, total_steps=max(cfg.steps, 2), pct_start=0.3, anneal_strategy="cos"
        )
    steps, warmup, power, end = max(cfg.steps, 1), cfg.warmup_steps, cfg.poly_power, cfg.end_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        t = min((step - warmup) / max(steps - warmup, 1), 1.0)
        return end + (1.0 - end) * math.pow(1.0 - t, power)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """Exponential moving average of weights and buffers (BN statistics included), or None when decay is 0."""
    if decay <= 0:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"train.ema_decay must be in [0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
