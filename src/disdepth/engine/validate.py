"""Model evaluation under a named protocol, DDP-correct: every image is scored exactly once.

Ranks take disjoint shards (no padding duplicates), per-image metrics are gathered to every rank, and
the total of scored + skipped images is checked against the dataset length. Scoring reuses
``disdepth.eval.protocols.evaluate_image`` and ``MetricAggregator`` (the same code as ``disdepth eval
--pred-dir``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.deploy.viz import denormalize, depth_panel
from disdepth.engine import dist
from disdepth.engine.sampling import ShardSampler
from disdepth.eval.metrics import MetricAggregator
from disdepth.eval.protocols import Protocol, evaluate_image


@torch.inference_mode()
def predict_depth(model: nn.Module, image: torch.Tensor, flip_tta: bool = False) -> torch.Tensor:
    """image (B, 3, H, W) normalised -> depth (B, 1, H, W) metres; flip TTA averages with the mirrored pass."""
    depth = model(image)["depth"]
    if flip_tta:
        depth = 0.5 * (depth + model(image.flip(-1))["depth"].flip(-1))
    return depth


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    protocol: Protocol,
    flip_tta: bool = False,
    info: dist.DistInfo | None = None,
    n_panels: int = 0,
    num_workers: int = 0,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Score ``model`` on every sample of ``dataset``.

    Returns:
        (summary, panels): summary has the mean metrics, ``images`` scored, ``skipped``, ``skip_reasons``,
        ``protocol`` (dict), ``flip_tta``; panels are up to ``n_panels`` RGB|pred|GT|error images (rank 0).
    """
    info = info or dist.DistInfo(0, 1, 0, next(model.parameters()).device)
    was_training = model.training
    model.eval()
    mean = getattr(getattr(model, "encoder", None), "mean", IMAGENET_MEAN)
    std = getattr(getattr(model, "encoder", None), "std", IMAGENET_STD)
    # Batch 1: evaluation images may differ in size (KITTI frames are 375x1242 or 370x1224).
    loader = DataLoader(
        dataset, batch_size=1, sampler=ShardSampler(len(dataset), info.rank, info.world_size), num_workers=num_workers
    )
    scored: list[tuple[str, dict[str, float] | None, str]] = []
    panels: list[np.ndarray] = []
    for batch in loader:
        image = batch["image"].to(info.device)
        pred = predict_depth(model, image, flip_tta)[0, 0].float().cpu()
        gt, valid = batch["depth"][0, 0], batch["valid"][0, 0]
        metrics, reason = evaluate_image(pred, gt, valid, protocol)
        scored.append((batch["id"][0], metrics, reason))
        if info.is_main and len(panels) < n_panels:
            panels.append(
                depth_panel(denormalize(batch["image"][0], mean, std), pred.numpy(), gt.numpy(), valid.numpy())
            )
    model.train(was_training)

    agg = MetricAggregator()
    for shard in dist.all_gather_objects(scored):
        for sample_id, metrics, reason in shard:
            if metrics is None:
                agg.skip(sample_id, reason)
            else:
                agg.add(sample_id, metrics)
    total = agg.count + len(agg.skipped)
    if total != len(dataset):
        raise RuntimeError(f"evaluation counted {total} images but the dataset has {len(dataset)}")
    summary: dict[str, Any] = dict(agg.mean())
    summary.update(
        images=agg.count,
        skipped=len(agg.skipped),
        skip_reasons=agg.skip_reasons(),
        protocol=protocol.to_dict(),
        flip_tta=flip_tta,
    )
    return summary, panels
