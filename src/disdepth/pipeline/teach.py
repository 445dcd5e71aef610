"""The teacher pass: run a distillation's teacher side once over every training view and write the target store.

``teach_stage`` builds exactly the teacher side ``disdepth distill`` would build from the same config (the acclimated
teacher with its FAMs and ghost decoder, or a raw teacher for classic or response KD), enumerates the training set's
un-augmented frames (and their mirror images when training flips) and writes their targets with
:func:`disdepth.tasks.target_store.write_store`. Under ``torchrun`` each rank computes a disjoint share of the shards;
a restart skips every finished shard.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

from torch.utils.data import Dataset

from disdepth.config import Config
from disdepth.engine import dist
from disdepth.pipeline.stages import add_unlabelled, build_distillation, store_identity
from disdepth.tasks.target_store import View, plan_views, write_store
from disdepth.tasks.teacher_cache import frame_source

log = logging.getLogger(__name__)


def teach_stage(
    cfg: Config,
    store: str | Path,
    train_set: Dataset,
    info: dist.DistInfo,
    views_per_shard: int = 64,
    batch_size: int = 0,
) -> dict:
    """Write (or finish) the teacher-target store of ``cfg``'s distillation in ``store``.

    Args:
        cfg: the distillation's config (its ``distill`` section decides the teacher side and what is kept).
        store: the store folder.
        train_set: the training split as the distillation reads it (its frames are found by sample id).
        info: this process's rank and world size; each rank computes shards ``k % world_size == rank``.
        views_per_shard: views per shard file (part of the store's plan: keep it when resuming).
        batch_size: frames per teacher batch; 0 = ``data.batch_size``.

    Returns:
        {store, shards, views, computed_shards, skipped_shards, views_computed, seconds} summed over ranks.

    Raises:
        ValueError: the config's distillation needs no teacher, or its frames cannot be found by id.
        StoreError: ``store`` holds a store of another teacher, setting or view plan.
    """
    start = time.perf_counter()
    cfg = copy.deepcopy(cfg)
    cfg.distill.target_store = ""  # the store being written is not read
    train_set = add_unlabelled(cfg, train_set)
    targets = build_distillation(cfg, train_set).targets
    if targets is None:
        raise ValueError("disdepth teach: this distillation uses no teacher (no feature or response KD, all depth "
                         "labelled); there is nothing to store")  # fmt: skip
    source = frame_source(train_set)
    if source is None:
        raise ValueError(f"disdepth teach: the frames of data.dataset={cfg.data.dataset} cannot be found by id")
    augment = cfg.data.augment
    views = plan_views(source.ids(), mirrored=augment.enabled and augment.hflip)
    targets.to(info.device)

    def compute(batch: list[View]) -> list:
        entries = targets.frame_targets(batch, info.device)
        return [entries[v] for v in batch]

    def progress(k: int) -> None:
        log.info("teach: shard %d written (%d views so far on this rank)", k, targets.views_computed)

    report = write_store(
        store, store_identity(cfg, targets), views, compute, info.rank, info.world_size, views_per_shard,
        batch_size or cfg.data.batch_size, progress,
    )  # fmt: skip
    dist.barrier()
    per_rank = dist.all_gather_objects(report)
    return {
        "store": str(store),
        "shards": report.shards,
        "views": len(views),
        "computed_shards": sum(r.computed for r in per_rank),
        "skipped_shards": sum(r.skipped for r in per_rank),
        "views_computed": sum(r.views_computed for r in per_rank),
        "seconds": round(time.perf_counter() - start, 2),
    }
