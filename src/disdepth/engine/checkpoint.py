"""Checkpoints: written atomically (temp file + rename) so an interrupted write never leaves a broken file.

A checkpoint is a dict:
    kind:      "student" | "teacher" (which builder rebuilds ``model`` from ``config``)
    model:     state dict of the trained model (unwrapped from DDP)
    ema:       state dict of the EMA model or None
    optimizer, scheduler, scaler: state dicts (None where unused)
    step:      optimizer steps done
    best:      {"metric": name, "value": float | None}
    rng:       python / numpy / torch (and CUDA) RNG states
    config:    the resolved config as a plain dict
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing or unreadable file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise ValueError(f"{path}: not a readable disdepth checkpoint ({exc})") from exc
    missing = {"model", "config"} - set(state) if isinstance(state, dict) else {"model", "config"}
    if missing:
        raise ValueError(f"{path}: not a disdepth checkpoint (missing keys: {', '.join(sorted(missing))})")
    return state


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_model_for(kind: str, cfg) -> nn.Module:
    """The model a checkpoint of ``kind`` holds, built from its config (weights not loaded; ``cfg`` is not changed)."""
    cfg = copy.deepcopy(cfg)  # the caller's config keeps saying how the model was initialised
    if kind == "student":
        from disdepth.models.student import build_student

        model_cfg = cfg.model
        # Weights come from the checkpoint; do not reach for the hub or a local ImageNet file again.
        model_cfg.pretrained, model_cfg.weights = "none", ""
        return build_student(model_cfg)
    if kind == "teacher":
        from disdepth.teachers.build import build_teacher

        cfg.teacher.pretrained, cfg.teacher.weights = "none", ""
        return build_teacher(cfg.teacher)
    raise ValueError(f"unknown checkpoint kind {kind!r} (expected 'student' or 'teacher')")


def load_model_from_checkpoint(path: str | Path, use_ema: bool = True) -> tuple[nn.Module, Any]:
    """Rebuild the trained model of a checkpoint (EMA weights when present) in eval mode, with its Config."""
    from disdepth.config import config_from_dict

    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    model = build_model_for(state.get("kind", "student"), cfg)
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    model.load_state_dict(weights)
    return model.eval(), cfg
