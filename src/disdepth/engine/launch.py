"""The start shared by the training commands (``train``, ``acclimate``, ``distill``, ``pipeline``)."""

from __future__ import annotations

import argparse

from disdepth.config import Config, dump_yaml, load_config
from disdepth.engine import dist
from disdepth.engine.logging import setup_console_logging


def start_command(args: argparse.Namespace) -> tuple[Config, dist.DistInfo] | None:
    """Resolve the config from ``--config``/``--set``; with ``--print-config`` print it and return None.

    Otherwise join the process group (``torchrun`` environment, or a single process) and set up console logging
    on the main rank. The caller must call ``dist.cleanup()`` when done.
    """
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg))
        return None
    info = dist.setup(cfg.train.device)
    setup_console_logging(info.is_main)
    return cfg, info
