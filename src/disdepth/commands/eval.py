"""``disdepth eval``: score saved predictions (``--pred-dir``) or a checkpoint's model under a named protocol.

Argument parsing and printing only: the work is :func:`disdepth.deploy.evaluate.evaluate` (``disdepth.evaluate``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from disdepth.commands.common import add_config_arguments, add_threads_argument, add_trust_argument, positive_float
from disdepth.config import dump_yaml
from disdepth.deploy.evaluate import evaluate, resolve_config


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
    resolved = resolve_config(args.checkpoint, args.config, args.overrides, use_ema=not args.no_ema)
    if args.print_config:
        print(dump_yaml(resolved[1]), end="")
        return 0
    result = evaluate(
        checkpoint=args.checkpoint,
        pred_dir=args.pred_dir,
        protocol=args.protocol,
        split=args.split,
        flip_tta=args.flip_tta,
        pred_scale=args.pred_scale,
        allow_missing=args.allow_missing,
        resolved=resolved,
    )
    if result is None:  # a rank other than 0 of a torchrun evaluation: rank 0 reports
        return 0
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
