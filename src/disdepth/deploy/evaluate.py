"""Scoring a model or a folder of saved predictions under a named protocol: what ``disdepth eval`` does, as a call.

    import disdepth
    result = disdepth.evaluate(checkpoint="runs/mine/distill/model", flip_tta=True)   # its run's test list
    result = disdepth.evaluate(pred_dir="preds/", config="configs/nyu/base.yaml", pred_scale=1000)
    print(result.format()); result.metrics["abs_rel"]

A checkpoint is scored with its own saved config (``config``/``overrides`` change the data and evaluation settings on
top), sharded over ranks under ``torchrun``; saved predictions are read as BTS's test script writes them
(``<image stem>.png`` / ``.npy``). Every result names its protocol, crop, caps, image count and flip-TTA
(:class:`disdepth.eval.scoring.EvalResult`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from disdepth.config import Config, load_config
from disdepth.data.build import build_dataset, list_for_split
from disdepth.deploy.weights import load_model
from disdepth.engine import dist
from disdepth.engine.evaluation import evaluate_model
from disdepth.eval.metrics import MetricAggregator
from disdepth.eval.protocols import get_protocol
from disdepth.eval.scoring import EvalResult, prediction_pairs, score_pairs

# PNG units per metre of saved predictions when neither --pred-scale nor the config gives one.
DATASET_PRED_SCALE = {"kitti": 256.0, "nyu": 1000.0}


def resolve_config(
    checkpoint: str | Path | None = None,
    config: str | Path | Sequence[str | Path] | None = None,
    overrides: Sequence[str] = (),
    use_ema: bool = True,
):
    """(model or None, config): a checkpoint's model with its saved config under ``config``/``overrides``, or the
    config alone."""
    if checkpoint is None:
        return None, load_config(config, list(overrides))
    model, saved = load_model(checkpoint, use_ema=use_ema)
    return model, load_config(config, list(overrides), base=saved)  # data/eval changes on top of the saved run


def evaluate(
    *,
    checkpoint: str | Path | None = None,
    pred_dir: str | Path | None = None,
    config: str | Path | Sequence[str | Path] | None = None,
    overrides: Sequence[str] = (),
    protocol: str | None = None,
    split: str | None = None,
    flip_tta: bool | None = None,
    pred_scale: float | None = None,
    allow_missing: bool = False,
    use_ema: bool = True,
    resolved: tuple | None = None,
) -> EvalResult:
    """Score ``checkpoint``'s model, or the predictions in ``pred_dir``, on ``split`` under ``protocol``.

    Args:
        protocol, split: default ``eval.protocol`` / ``eval.split`` of the (saved) config.
        flip_tta: checkpoint: apply flip TTA; predictions: record that they used it (default ``eval.flip_tta``).
        pred_scale: PNG units per metre of saved predictions (default ``eval.pred_scale``, else the dataset's).
        resolved: (model, config) already resolved by :func:`resolve_config` (the command prints the config first).

    Raises:
        ValueError / FileNotFoundError naming the option or the folder.
    """
    if pred_dir is not None and not Path(pred_dir).is_dir():
        raise FileNotFoundError(f"--pred-dir {pred_dir}: prediction folder not found")
    if pred_dir is None and checkpoint is None and (resolved is None or resolved[0] is None):
        raise ValueError("nothing to evaluate: give --pred-dir (saved PNG predictions) or --checkpoint (a model)")
    model, cfg = resolved if resolved is not None else resolve_config(checkpoint, config, overrides, use_ema)
    split = split or cfg.eval.split
    proto = get_protocol(protocol or cfg.eval.protocol, cfg.eval.min_depth, cfg.eval.max_depth)
    if model is not None:
        return _evaluate_model(model, cfg, checkpoint, split, proto, cfg.eval.flip_tta or bool(flip_tta))
    dataset = build_dataset(cfg, split)
    scale = _prediction_scale(cfg, pred_scale)
    flip = cfg.eval.flip_tta if flip_tta is None else flip_tta
    agg = MetricAggregator()
    extra = {
        "pred_dir": str(pred_dir),
        "pred_scale": scale,
        "dataset": cfg.data.dataset,
        "split": split,
        "list": list_for_split(cfg, split) if cfg.data.dataset != "synthetic" else "",
    }
    pairs = prediction_pairs(dataset, pred_dir, scale, agg, proto, allow_missing=allow_missing)
    return score_pairs(pairs, proto, flip_tta=flip, aggregator=agg, extra=extra)


def _prediction_scale(cfg: Config, given: float | None) -> float:
    scale = given if given is not None else cfg.eval.pred_scale
    if not scale:
        scale = cfg.data.depth_scale or DATASET_PRED_SCALE.get(cfg.data.dataset, 0.0)
    if not scale or scale <= 0:
        raise ValueError("--pred-scale: give the PNG units per metre of the predictions (e.g. 256 KITTI, 1000 NYU)")
    return scale


def _evaluate_model(model, cfg: Config, checkpoint, split: str, protocol, flip: bool) -> EvalResult | None:
    """Run the model on the split (sharded under torchrun) and score it like saved predictions; None on ranks > 0."""
    info = dist.setup(cfg.train.device)
    try:
        dataset = build_dataset(cfg, split, model.input_spec.mean, model.input_spec.std)
        extra = {"checkpoint": str(checkpoint), "dataset": cfg.data.dataset, "split": split}
        result, _ = evaluate_model(model.to(info.device), dataset, protocol, flip, info, extra=extra)
    finally:
        dist.cleanup()
    return result if info.is_main else None
