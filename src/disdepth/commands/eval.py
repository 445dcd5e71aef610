"""``disdepth eval``: score saved predictions (``--pred-dir``) or a checkpoint's model under a named protocol."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from disdepth.commands.common import add_config_arguments, add_threads_argument, add_trust_argument, positive_float
from disdepth.config import dump_yaml, load_config
from disdepth.data.build import build_dataset, list_for_split
from disdepth.deploy.weights import load_model
from disdepth.engine import dist
from disdepth.engine.evaluation import evaluate_model
from disdepth.eval.metrics import MetricAggregator
from disdepth.eval.protocols import Protocol, get_protocol
from disdepth.eval.scoring import EvalResult, prediction_pairs, score_pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trust_argument(parser)
    add_threads_argument(parser)

    add_config_arguments(parser)
    parser.add_argument("--pred-dir", help="folder of saved predictions <image stem>.png (BTS offline eval)")
    parser.add_argument(
        "--checkpoint",
        help="evaluate this checkpoint's model (its saved config; --config/--set change data and eval settings)",
    )
    parser.add_argument("--no-ema", action="store_true", help="--checkpoint: use the raw weights, not the EMA ones")
    parser.add_argument(
        "--pred-scale",
        type=positive_float,
        default=None,
        help="PNG value / scale = metres (default: eval.pred_scale, else the dataset's depth scale)",
    )
    parser.add_argument(
        "--protocol",
        default=None,
        help="override eval.protocol (none, nyu_eigen, kitti_eigen_garg, kitti_garg_full, kitti_eigen)",
    )
    parser.add_argument(
        "--split", choices=["train", "val", "test"], default=None, help="ground-truth split (default eval.split)"
    )
    parser.add_argument(
        "--flip-tta",
        action="store_true",
        default=None,
        help="--pred-dir: record that the predictions used flip TTA; --checkpoint: apply it",
    )
    parser.add_argument("--allow-missing", action="store_true", help="skip (and count) missing prediction files")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--per-image", action="store_true", help="include per-image metrics in the JSON")


def run(args: argparse.Namespace) -> int:

    model = None
    if args.checkpoint:
        model, saved = load_model(args.checkpoint, use_ema=not args.no_ema)
        cfg = load_config(args.config, args.overrides, base=saved)  # data/eval changes on top of the saved run
    else:
        cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.pred_dir and not Path(args.pred_dir).is_dir():
        raise FileNotFoundError(f"--pred-dir {args.pred_dir}: prediction folder not found")
    if not args.pred_dir and model is None:
        raise ValueError("nothing to evaluate: give --pred-dir (saved PNG predictions) or --checkpoint (a model)")
    split = args.split or cfg.eval.split
    protocol = get_protocol(args.protocol or cfg.eval.protocol, cfg.eval.min_depth, cfg.eval.max_depth)
    if model is not None:
        return _evaluate_checkpoint(args, cfg, model, split, protocol)
    dataset = build_dataset(cfg, split)
    scale = args.pred_scale if args.pred_scale is not None else cfg.eval.pred_scale
    if not scale:
        scale = cfg.data.depth_scale or {"kitti": 256.0, "nyu": 1000.0}.get(cfg.data.dataset, 0.0)
    if not scale or scale <= 0:
        raise ValueError("--pred-scale: give the PNG units per metre of the predictions (e.g. 256 KITTI, 1000 NYU)")
    flip = cfg.eval.flip_tta if args.flip_tta is None else True
    agg = MetricAggregator()
    extra = {
        "pred_dir": str(args.pred_dir),
        "pred_scale": scale,
        "dataset": cfg.data.dataset,
        "split": split,
        "list": list_for_split(cfg, split) if cfg.data.dataset != "synthetic" else "",
    }
    pairs = prediction_pairs(dataset, args.pred_dir, scale, agg, protocol, allow_missing=args.allow_missing)
    result = score_pairs(pairs, protocol, flip_tta=flip, aggregator=agg, extra=extra)
    return _report(result, args)


def _report(result: EvalResult, args: argparse.Namespace) -> int:
    """Print the table, write the JSON, and fail when nothing could be scored."""
    print(result.format())
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_dict(per_image=args.per_image), indent=2))
        print(f"wrote {path}")
    if result.n_evaluated == 0:
        print("disdepth: error: no image could be evaluated", flush=True)
        return 1
    return 0


def _evaluate_checkpoint(args: argparse.Namespace, cfg, model, split: str, protocol: Protocol) -> int:
    """``--checkpoint``: run the model on the split (sharded under torchrun) and score it like saved predictions."""

    info = dist.setup(cfg.train.device)
    try:
        dataset = build_dataset(cfg, split, model.input_spec.mean, model.input_spec.std)
        flip = cfg.eval.flip_tta or bool(args.flip_tta)
        extra = {"checkpoint": str(args.checkpoint), "dataset": cfg.data.dataset, "split": split}
        result, _ = evaluate_model(model.to(info.device), dataset, protocol, flip, info, extra=extra)
    finally:
        dist.cleanup()
    return _report(result, args) if info.is_main else 0
