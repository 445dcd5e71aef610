"""Model evaluation under a named protocol, DDP-correct: every image is scored exactly once.

Ranks take disjoint shards (no padding duplicates), per-image metrics are gathered to every rank, and
the total of scored + skipped images is checked against the dataset length. Scoring is
``disdepth.eval.scoring.score_pairs`` — the same code as ``disdepth eval --pred-dir``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from disdepth.engine import dist
from disdepth.engine.sampling import ShardSampler
from disdepth.eval.alignment import align_to_ground_truth, alignment_note
from disdepth.eval.metrics import MetricAggregator
from disdepth.eval.protocols import Protocol
from disdepth.eval.scoring import EvalResult, flip_tta, score_pairs
from disdepth.eval.viz import denormalize, depth_panel


@torch.inference_mode()
def predict_depth(model: nn.Module, image: torch.Tensor, use_flip_tta: bool = False) -> torch.Tensor:
    """image (B, 3, H, W) normalised -> depth (B, 1, H, W) metres; flip TTA averages with the mirrored pass."""
    predict = lambda x: model(x)["depth"]  # noqa: E731
    return flip_tta(predict, image) if use_flip_tta else predict(image)


class _WithIndex(Dataset):
    """Adds the sample index, so full-frame ground truth can be fetched for the KITTI full-frame protocols."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        return {**self.inner[index], "index": index}


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    protocol: Protocol,
    use_flip_tta: bool = False,
    info: dist.DistInfo | None = None,
    n_panels: int = 0,
    num_workers: int = 0,
    extra: dict | None = None,
) -> tuple[EvalResult, list[np.ndarray]]:
    """Score ``model`` on every sample of ``dataset`` (all ranks get the same complete result).

    Returns:
        (result, panels): panels are up to ``n_panels`` RGB | prediction | GT | error images (rank 0).
    """
    info = info or dist.DistInfo.single(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    spec = model.input_spec  # every depth model states its normalisation (models/spec.py)
    full_frame_gt = protocol.full_map and hasattr(dataset, "load_gt")
    # Batch 1: evaluation images may differ in size (KITTI frames are 375x1242 or 370x1224).
    sampler = ShardSampler(len(dataset), info.rank, info.world_size)
    loader = DataLoader(_WithIndex(dataset), batch_size=1, sampler=sampler, num_workers=num_workers)
    panels: list[np.ndarray] = []

    def pairs():
        for batch in loader:
            pred = predict_depth(model, batch["image"].to(info.device), use_flip_tta)[0, 0].float().cpu()
            gt, valid = batch["depth"][0, 0], batch["valid"][0, 0]
            if not spec.metric and valid.any():  # a relative model is scored after alignment, and says so
                pred = align_to_ground_truth(pred, gt, valid, spec)
            if info.is_main and len(panels) < n_panels:
                image = denormalize(batch["image"][0], spec.mean, spec.std)
                panels.append(depth_panel(image, pred.numpy(), gt.numpy(), valid.numpy()))
            if full_frame_gt:  # KITTI garg_full / eigen score the uncropped frame
                full = dataset.load_gt(int(batch["index"][0]))
                gt, valid = full["depth"][0], full["valid"][0]
            yield batch["id"][0], pred, gt, valid

    # A bad file on one rank must not leave the others waiting in the gather below (gloo traceback or a hang).
    error: Exception | None = None
    try:
        shard = score_pairs(pairs(), protocol, use_flip_tta)
    except Exception as exc:
        error = exc
    finally:
        model.train(was_training)
    dist.raise_if_any_failed(error)

    agg = MetricAggregator()
    for per_image, skipped in dist.all_gather_objects((shard.per_image, shard.skipped)):
        for sample_id, metrics in per_image.items():
            agg.add(sample_id, metrics)  # raises if an image was scored twice
        for sample_id, reason in skipped:
            agg.skip(sample_id, reason)
    total = agg.count + len(agg.skipped)
    if total != len(dataset):
        raise RuntimeError(f"evaluation counted {total} images but the dataset has {len(dataset)}")
    result = EvalResult(
        agg.mean(), protocol, use_flip_tta, agg.count, list(agg.skipped), dict(agg.per_image), dict(extra or {}),
        alignment="" if spec.metric else alignment_note(spec),
    )  # fmt: skip
    return result, panels


def summary_of(result: EvalResult) -> dict:
    """Flat dict for logs: mean metrics plus image counts (and the alignment note of a relative model)."""
    out = {**result.metrics, "images": result.n_evaluated, "skipped": len(result.skipped)}
    if result.alignment:
        out["alignment"] = result.alignment
    return out
