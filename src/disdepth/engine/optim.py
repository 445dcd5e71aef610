"""Optimiser, learning-rate schedules and EMA weights for the training loop."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from disdepth.config import TrainConfig
from disdepth.models.encoder import is_from_scratch

# Parameter-name prefixes of a pretrained ImageNet encoder (student: encoder.*; timm teachers: backbone.*).
ENCODER_PREFIXES: tuple[str, ...] = ("encoder.", "backbone.")


def param_groups(model: nn.Module, cfg: TrainConfig, pretrained_encoder: bool) -> list[dict]:
    """AdamW groups: a pretrained encoder learns at ``lr * encoder_lr_scale``; the rest at ``lr``.

    Modules marked ``from_scratch`` inside the encoder (``models.encoder.mark_from_scratch``: LG-Conv global
    branches, a hybrid teacher's transformer) have no pretrained weights to protect and get the full ``lr``.
    Norm weights and biases get no weight decay (the usual AdamW practice).
    """
    scale = cfg.encoder_lr_scale if pretrained_encoder else 1.0
    scratch = {id(p) for m in model.modules() if is_from_scratch(m) for p in m.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_encoder = name.startswith(ENCODER_PREFIXES) and id(param) not in scratch
        no_decay = param.ndim <= 1
        groups.setdefault((is_encoder, no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": cfg.lr * (scale if is_encoder else 1.0),
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "name": f"{'encoder' if is_encoder else 'decoder'}{'_no_decay' if no_decay else ''}",
        }
        for (is_encoder, no_decay), params in sorted(groups.items())
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, pretrained_encoder: bool) -> torch.optim.AdamW:
    groups = param_groups(model, cfg, pretrained_encoder)
    if not groups:
        raise ValueError("the model has no trainable parameter")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


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
