"""Value ranges: values of the right type that no run can use, refused when a config is loaded (one error naming every
out-of-range dotted key, its allowed range and the value given)."""

from __future__ import annotations

import math
from typing import Any

from disdepth.config.schema import PIPELINE_STAGES, Config, ConfigError, StageBudget


def _finite(x: float) -> bool:
    """Not NaN and not +-inf."""
    return math.isfinite(x)


def _depth_range_problems(key: str, lo: float | None, hi: float | None, optional: bool = False) -> list[str]:
    """``0 < min_depth < max_depth`` in metres (min finite; max finite, or inf for the eval caps).

    With ``optional`` (eval caps) either may be None, meaning the protocol's value.
    """
    if optional and (lo is None or hi is None):
        given = [(name, v) for name, v in (("min_depth", lo), ("max_depth", hi)) if v is not None]
        return [f"{key}.{name}: must be > 0 (metres) or null, got {v!r}" for name, v in given if not v > 0]
    max_ok = _finite(hi) or (optional and hi == float("inf"))  # type: ignore[arg-type]
    if _finite(lo) and lo > 0 and max_ok and hi > lo:  # type: ignore[arg-type, operator]
        return []
    return [f"{key}.min_depth/max_depth: must be 0 < min_depth < max_depth (metres), got {lo!r}..{hi!r}"]


MAX_WIDTH = 8192  # channels, bins, heads...: far above any real model, far below what exhausts memory
MAX_STEPS = 10**9


def _range_problems(cfg: Config) -> list[str]:
    """Every out-of-range value as ``"<dotted key>: must be <allowed>, got <value>"``."""
    d, t, dc, ac = cfg.data, cfg.train, cfg.distill, cfg.acclimate
    rules: list[tuple[str, Any, bool, str]] = [
        ("seed", cfg.seed, 0 <= cfg.seed < 2**32, "in [0, 2**32) (the generators' seed range)"),
        ("data.synthetic.seed", d.synthetic.seed, 0 <= d.synthetic.seed < 2**32, "in [0, 2**32)"),
        ("data.batch_size", d.batch_size, d.batch_size >= 1, ">= 1"),
        ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0"),
        (
            "data.depth_scale",
            d.depth_scale,
            _finite(d.depth_scale) and d.depth_scale >= 0,
            "finite and >= 0 (0 = dataset default)",
        ),
        (
            "eval.pred_scale",
            cfg.eval.pred_scale,
            _finite(cfg.eval.pred_scale) and cfg.eval.pred_scale >= 0,
            "finite and >= 0 (0 = the dataset's)",
        ),
        ("train.steps", t.steps, t.steps >= 1, ">= 1"),
        ("train.log_every", t.log_every, t.log_every >= 1, ">= 1"),
        ("train.eval_every", t.eval_every, t.eval_every >= 0, ">= 0 (0 = only at the end)"),
        ("train.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 0, ">= 0"),
        ("train.lr", t.lr, _finite(t.lr) and t.lr > 0, "finite and > 0"),
        (
            "train.encoder_lr_scale",
            t.encoder_lr_scale,
            _finite(t.encoder_lr_scale) and t.encoder_lr_scale >= 0,
            "finite and >= 0",
        ),
        ("train.weight_decay", t.weight_decay, _finite(t.weight_decay) and t.weight_decay >= 0, "finite and >= 0"),
        ("train.grad_clip", t.grad_clip, _finite(t.grad_clip) and t.grad_clip >= 0, "finite and >= 0 (0 = off)"),
        ("train.ema_decay", t.ema_decay, 0 <= t.ema_decay < 1, "in [0, 1) (0 = off)"),
        ("train.max_bad_steps", t.max_bad_steps, t.max_bad_steps >= 1, ">= 1"),
        ("train.warmup_steps", t.warmup_steps, t.warmup_steps >= 0, ">= 0"),
        ("distill.tau", dc.tau, _finite(dc.tau) and dc.tau > 0, "finite and > 0"),
        (
            "distill.feature_weight",
            dc.feature_weight,
            _finite(dc.feature_weight) and dc.feature_weight >= 0,
            "finite and >= 0",
        ),
        (
            "distill.response_weight",
            dc.response_weight,
            _finite(dc.response_weight) and dc.response_weight >= 0,
            "finite and >= 0",
        ),
        ("distill.ghost_weight", dc.ghost_weight, _finite(dc.ghost_weight) and dc.ghost_weight >= 0, "finite and >= 0"),
        ("distill.attention_floor", dc.attention_floor, 0 <= dc.attention_floor <= 1, "in [0, 1]"),
        ("distill.unlabelled_fraction", dc.unlabelled_fraction, 0 <= dc.unlabelled_fraction < 1, "in [0, 1)"),
        (
            "distill.cache_max_gb",
            dc.cache_max_gb,
            _finite(dc.cache_max_gb) and dc.cache_max_gb >= 0,
            "finite and >= 0 GiB (0 = no bound)",
        ),
        (
            "acclimate.anchor_weight",
            ac.anchor_weight,
            _finite(ac.anchor_weight) and ac.anchor_weight >= 0,
            "finite and >= 0",
        ),
        (
            "acclimate.teacher_loss_weight",
            ac.teacher_loss_weight,
            _finite(ac.teacher_loss_weight) and ac.teacher_loss_weight >= 0,
            "finite and >= 0",
        ),
        (
            "acclimate.teacher_lr_scale",
            ac.teacher_lr_scale,
            _finite(ac.teacher_lr_scale) and ac.teacher_lr_scale >= 0,
            "finite and >= 0",
        ),
    ]
    m, te, lg = cfg.model, cfg.teacher, cfg.model.lgconv
    # Architecture sizes: a positive count, capped so a hostile saved config fails here, not out of memory.
    for key, value, low in (
        ("model.n_bins", m.n_bins, 1), ("model.lgconv.heads", lg.heads, 1), ("model.lgconv.reduction", lg.reduction, 1),
        ("model.lgconv.min_width", lg.min_width, 1), ("model.lgconv.min_channels", lg.min_channels, 0),
        ("teacher.n_bins", te.n_bins, 1), ("teacher.decoder_channels", te.decoder_channels, 1),
        ("teacher.hybrid_dim", te.hybrid_dim, 1), ("teacher.hybrid_depth", te.hybrid_depth, 1),
        ("teacher.hybrid_heads", te.hybrid_heads, 1), ("acclimate.fam_hidden", ac.fam_hidden, 0),
        ("bench.runs", cfg.bench.runs, 1), ("bench.warmup", cfg.bench.warmup, 0),
        ("bench.threads", cfg.bench.threads, 0),
    ):  # fmt: skip
        rules.append((key, value, low <= value <= MAX_WIDTH, f"in [{low}, {MAX_WIDTH}]"))
    for name, widths in (("model.decoder_channels", m.decoder_channels), ("model.lite_channels", m.lite_channels)):
        ok = bool(widths) and all(1 <= c <= MAX_WIDTH for c in widths)
        rules.append((name, widths, ok, f"a non-empty list of widths in [1, {MAX_WIDTH}]"))
    rules.append(("model.head_upsample", m.head_upsample, m.head_upsample in (1, 2, 4, 8), "one of 1, 2, 4, 8"))
    finest_ok = m.decoder_finest_stride in (2, 4, 8, 16)
    rules.append(("model.decoder_finest_stride", m.decoder_finest_stride, finest_ok, "one of 2, 4, 8, 16"))
    conv_first_ok = all(v in (2, 4, 8, 16) for v in m.decoder_conv_first_strides)
    rules.append(("model.decoder_conv_first_strides", m.decoder_conv_first_strides, conv_first_ok, "among 2, 4, 8, 16"))
    strides_ok = bool(lg.strides) and all(v in (2, 4, 8, 16, 32) for v in lg.strides)
    rules.append(("model.lgconv.strides", lg.strides, strides_ok, "encoder strides among 2, 4, 8, 16, 32"))
    rules += [
        ("train.steps", t.steps, t.steps <= MAX_STEPS, f"<= {MAX_STEPS:g}"),
        ("train.warmup_steps", t.warmup_steps, t.warmup_steps <= MAX_STEPS, f"<= {MAX_STEPS:g}"),
        ("train.betas", t.betas, len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "two numbers in [0, 1)"),
        ("train.poly_power", t.poly_power, _finite(t.poly_power) and t.poly_power > 0, "finite and > 0"),
        ("train.silog_scale", t.silog_scale, _finite(t.silog_scale) and t.silog_scale > 0, "finite and > 0"),
        ("train.silog_variance_focus", t.silog_variance_focus, 0 <= t.silog_variance_focus <= 1, "in [0, 1]"),
        ("train.end_lr_ratio", t.end_lr_ratio, 0 <= t.end_lr_ratio <= 1, "in [0, 1]"),
        ("teacher.drop_path", te.drop_path, 0 <= te.drop_path < 1, "in [0, 1)"),
    ]
    levels_ok = bool(dc.levels) and all(v > 0 and v & (v - 1) == 0 for v in dc.levels)
    rules.append(
        ("distill.levels", dc.levels, levels_ok, "a non-empty list of encoder strides (powers of two: 4, 8, 16, 32)")
    )
    for i, hw in enumerate(cfg.bench.resolutions):
        rules.append(
            (f"bench.resolutions[{i}]", hw, len(hw) == 2 and min(hw) >= 1, "[height, width] in pixels, both >= 1")
        )
    p = cfg.pipeline.bench_resolution
    rules.append(("pipeline.bench_resolution", p, len(p) == 2 and min(p) >= 1, "[height, width] in pixels, both >= 1"))
    for stage in PIPELINE_STAGES:
        b: StageBudget = getattr(cfg.pipeline, stage)
        key = f"pipeline.{stage}"
        rules.append((f"{key}.steps", b.steps, b.steps >= 0, ">= 0 (0 = train.steps)"))
        rules.append((f"{key}.lr", b.lr, _finite(b.lr) and b.lr >= 0, "finite and >= 0 (0 = train.lr)"))
        rules.append((f"{key}.batch_size", b.batch_size, b.batch_size >= 0, ">= 0 (0 = data.batch_size)"))
    problems = [f"{key}: must be {allowed}, got {value!r}" for key, value, ok, allowed in rules if not ok]
    problems += _depth_range_problems("model", cfg.model.min_depth, cfg.model.max_depth)
    problems += _depth_range_problems("teacher", cfg.teacher.min_depth, cfg.teacher.max_depth)
    problems += _depth_range_problems("eval", cfg.eval.min_depth, cfg.eval.max_depth, optional=True)
    return problems


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
