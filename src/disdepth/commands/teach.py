"""``disdepth teach``: run a distillation's teacher once over every training view and write the target store.

disdepth teach -c configs/nyu/disdepth.yaml --store stores/nyu_vitb \
    --set distill.acclimated_checkpoint=runs/nyu_acclimate/acclimated.pt
torchrun --nproc_per_node 8 -m disdepth teach -c ... --store ...   (each rank a disjoint share of the shards)
disdepth distill -c ... --set distill.target_store=stores/nyu_vitb   (reads it, memory-mapped, on every rank)

Interrupted or crashed: run the same command again; finished shards are kept, the rest are computed.
"""

from __future__ import annotations

import argparse
import json

from disdepth.commands.common import add_config_arguments, add_threads_argument, add_trust_argument
from disdepth.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--store", help="the store folder (default: distill.target_store)")
    parser.add_argument(
        "--views-per-shard", type=int, default=64, help="views per shard file (keep it when finishing a store)"
    )
    parser.add_argument("--batch-size", type=int, default=0, help="frames per teacher batch (0 = data.batch_size)")
    add_trust_argument(parser)
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    from disdepth.engine import dist
    from disdepth.engine.logging import setup_console_logging
    from disdepth.pipeline import stages
    from disdepth.pipeline.teach import teach_stage

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        from disdepth.config import dump_yaml

        print(dump_yaml(cfg), end="")
        return 0
    store = args.store or cfg.distill.target_store
    if not store:
        raise ValueError("disdepth teach: give --store DIR (or set distill.target_store)")
    if args.views_per_shard < 1 or args.batch_size < 0:
        raise ValueError("disdepth teach: --views-per-shard must be >= 1 and --batch-size >= 0")
    info = dist.setup(cfg.train.device)
    setup_console_logging(info.is_main)
    try:
        train_set = stages.config_datasets(cfg, "train", stages.model_spec(cfg, "student"))
        out = teach_stage(cfg, store, train_set, info, args.views_per_shard, args.batch_size)
    finally:
        dist.cleanup()
    if info.is_main:
        print(json.dumps(out, indent=2))
        print(f"store: {out['store']}  {out['views']} views in {out['shards']} shards; teacher runs this time: "
              f"{out['views_computed']}; distil with --set distill.target_store={out['store']}")  # fmt: skip
    return 0
