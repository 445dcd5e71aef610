"""Value ranges: values of the right type that no run can use, refused when a config is loaded (one error naming every
out-of-range dotted key, its allowed range and the value given).

Each field's own range sits beside it in ``disdepth.config.schema`` (``metadata["allowed"]``); this module walks the
sections and applies them, then the few checks that span several values (depth ranges, per-pair resolutions).
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from disdepth.config.schema import MAX_STEPS, MAX_WIDTH, PACKAGE_ENCODER, PACKAGE_WEIGHTS, Config, ConfigError

__all__ = ["MAX_STEPS", "MAX_WIDTH", "check_ranges"]


def _depth_range_problems(key: str, lo: float | None, hi: float | None, optional: bool = False) -> list[str]:
    """``0 < min_depth < max_depth`` in metres (min finite; max finite, or inf for the eval caps).

    With ``optional`` (eval caps) either may be None, meaning the protocol's value.
    """
    if optional and (lo is None or hi is None):
        given = [(name, v) for name, v in (("min_depth", lo), ("max_depth", hi)) if v is not None]
        return [f"{key}.{name}: must be > 0 (metres) or null, got {v!r}" for name, v in given if not v > 0]
    max_ok = math.isfinite(hi) or (optional and hi == float("inf"))  # type: ignore[arg-type]
    if math.isfinite(lo) and lo > 0 and max_ok and hi > lo:  # type: ignore[arg-type, operator]
        return []
    return [f"{key}.min_depth/max_depth: must be 0 < min_depth < max_depth (metres), got {lo!r}..{hi!r}"]


def _field_problems(section: Any, prefix: str = "") -> list[str]:
    """Every field of ``section`` (recursively) that breaks one of its own rules, in field order."""
    problems = []
    for f in fields(section):
        value, key = getattr(section, f.name), prefix + f.name
        if is_dataclass(value):
            problems += _field_problems(value, key + ".")
            continue
        problems += [
            f"{key}: must be {rule.words}, got {value!r}"
            for rule in f.metadata.get("allowed", ())
            if not rule.ok(value)
        ]
    return problems


def _weights_problems(cfg: Config) -> list[str]:
    """The packaged ImageNet weights (the default ``model.weights``) fit one encoder: say so at load time, not after
    the model is built (another encoder with the default weights is the likely mistake after ``--set model.encoder``).
    """
    m = cfg.model
    if m.pretrained == "file" and m.weights == PACKAGE_WEIGHTS and m.encoder != PACKAGE_ENCODER:
        return [
            f"model.weights: {PACKAGE_WEIGHTS} fits model.encoder={PACKAGE_ENCODER} only, got model.encoder="
            f"{m.encoder!r}: set model.pretrained=none (random weights) or timm (timm's hub weights), or "
            "model.weights to a weights file of that encoder"
        ]
    return []


def _range_problems(cfg: Config) -> list[str]:
    """Every out-of-range value as ``"<dotted key>: must be <allowed>, got <value>"``."""
    problems = _field_problems(cfg)
    for i, hw in enumerate(cfg.bench.resolutions):
        if not (len(hw) == 2 and min(hw) >= 1):
            problems.append(f"bench.resolutions[{i}]: must be [height, width] in pixels, both >= 1, got {hw!r}")
    problems += _depth_range_problems("model", cfg.model.min_depth, cfg.model.max_depth)
    problems += _depth_range_problems("teacher", cfg.teacher.min_depth, cfg.teacher.max_depth)
    problems += _depth_range_problems("eval", cfg.eval.min_depth, cfg.eval.max_depth, optional=True)
    return problems + _weights_problems(cfg)


def check_ranges(cfg: Config) -> Config:
    """Check that every numeric setting is in the range the code can use (after types are checked).

    Returns ``cfg`` unchanged. Zero keeps its documented meaning where a key has one (``eval_every: 0`` = only
    at the end, ``pipeline.<stage>.steps: 0`` = inherit ``train.steps``).

    Raises:
        ConfigError: one line naming every out-of-range dotted key, its allowed range and the value given.
    """
    problems = _range_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg
