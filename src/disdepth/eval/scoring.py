"""``disdepth eval``: score depth predictions against a dataset's ground truth under a named protocol.

Reusable pieces (model evaluation with ``--checkpoint`` builds on them):

* :func:`score_pairs` scores any iterable of ``(id, pred, gt, valid)`` and returns an :class:`EvalResult`
  (mean metrics, count, skipped images with reasons, protocol, crop, caps, flip-TTA flag);
* :func:`flip_tta` averages a prediction with the un-flipped prediction of the flipped image;
* :func:`prediction_pairs` pairs a folder of saved predictions with a dataset's ground truth (BTS's
  offline ``eval_with_pngs.py``: prediction ``<image stem>.png``, value / pred_scale = metres).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from disdepth.data.io import DataError, read_depth
from disdepth.eval.metrics import MetricAggregator, format_metrics_table
from disdepth.eval.protocols import Protocol, align, evaluate_image, get_protocol

Pair = tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class EvalResult:
    """Everything a results table must name (docs/data.md): metrics, protocol, crop, caps, counts, flip-TTA."""

    metrics: dict[str, float]
    protocol: Protocol
    flip_tta: bool
    n_evaluated: int
    skipped: list[tuple[str, str]]
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # source info: pred_dir, dataset, split, checkpoint ...
    alignment: str = ""  # a relative model's per-image alignment to ground truth (eval/alignment.py); "" = metric

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metrics": self.metrics,
            "protocol": self.protocol.name,
            "crop": self.protocol.to_dict()["crop_box"],
            "caps": {"min_depth": self.protocol.min_depth, "max_depth": self.protocol.to_dict()["max_depth"]},
            "protocol_detail": self.protocol.to_dict(),
            "flip_tta": self.flip_tta,
            "alignment": self.alignment or "none (metric)",
            "n_evaluated": self.n_evaluated,
            "n_skipped": len(self.skipped),
            "skip_reasons": dict(Counter(r for _, r in self.skipped)),
            "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
            **self.extra,
        }
        out["metrics"] = {k: (v if math.isfinite(v) else None) for k, v in self.metrics.items()}
        if per_image:
            out["per_image"] = self.per_image
        return out

    def format(self) -> str:
        p = self.protocol
        cap = f"{p.min_depth:g}-{p.max_depth:g} m"
        head = (
            f"protocol {p.name} | crop {p.crop} | caps {cap} | images {self.n_evaluated} "
            f"(skipped {len(self.skipped)}) | flip-TTA {'yes' if self.flip_tta else 'no'}"
            + (f" | {self.alignment}" if self.alignment else "")
        )
        lines = [head, format_metrics_table(self.metrics)]
        for reason, n in Counter(r for _, r in self.skipped).items():
            lines.append(f"skipped {n}: {reason}")
        return "\n".join(lines)


def score_pairs(
    pairs: Iterable[Pair],
    protocol: Protocol | str,
    flip_tta: bool = False,
    aggregator: MetricAggregator | None = None,
    extra: dict[str, Any] | None = None,
) -> EvalResult:
    """Score ``(id, pred, gt, valid)`` pairs (metres; (H, W) or (1, H, W)) under ``protocol``.

    Args:
        pairs: the predictions and ground truth; may be a generator (one image in memory at a time).
        protocol: a :class:`Protocol` (caps already applied) or its name.
        flip_tta: whether the predictions used flip test-time augmentation - recorded, not applied.
        aggregator: pass one to add skips found while producing ``pairs`` (e.g. no GT in the list).
        extra: source fields copied into the result (``pred_dir``, ``checkpoint`` ...).

    Images with no valid pixel after caps and crop are skipped and counted with the reason.
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    agg = aggregator or MetricAggregator()
    for sample_id, pred, gt, valid in pairs:
        try:
            metrics, reason = evaluate_image(pred, gt, valid, protocol)
        except ValueError as exc:
            raise ValueError(f"{sample_id}: {exc}") from None
        if metrics is None:
            agg.skip(sample_id, reason)
        else:
            agg.add(sample_id, metrics)
    return EvalResult(
        agg.mean(), protocol, flip_tta, agg.count, list(agg.skipped), dict(agg.per_image), dict(extra or {})
    )


def flip_tta(predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: mean of ``predict(image)`` and the flipped-back ``predict(flip(image))``.

    Args:
        predict: (B, 3, H, W) normalised images -> (B, 1, H, W) metres.
        image: (B, 3, H, W).
    """
    return 0.5 * (predict(image) + predict(image.flip(-1)).flip(-1))


def read_prediction(path: Path, scale: float) -> torch.Tensor:
    """(H, W) float64 metres from a saved prediction (16-bit PNG / ``scale``, or ``.npy`` metres).

    Raises:
        DataError: an unreadable file, an 8-bit PNG (``problem="8bit"``) or one with no valid pixel
            (``problem="no_valid"``); :func:`prediction_pairs` skips the image with ``exc.reason``.
    """
    depth, _ = read_depth(path, scale, require_valid=True)
    return depth[0]


def _prediction_file(pred_dir: Path, rgb: Path, sample_id: str, stem_unique: bool) -> Path | None:
    """``<stem>.png`` as BTS's test script writes it; ``<id>.png`` (path-flattened) where stems repeat."""
    names = [f"{rgb.stem}.png", f"{rgb.stem}.npy"] if stem_unique else []
    names += [f"{sample_id}.png", f"{sample_id}.npy"]
    for name in names:
        if (pred_dir / name).is_file():
            return pred_dir / name
    return None


def prediction_pairs(
    dataset: Any,
    pred_dir: str | Path,
    pred_scale: float,
    aggregator: MetricAggregator,
    protocol: Protocol | None = None,
    allow_missing: bool = False,
) -> Iterator[Pair]:
    """Yield ``(id, pred, gt, valid)`` for a file dataset (:class:`~disdepth.data.io.FileDepthDataset`).

    Ground truth is read at native resolution (``dataset.load_gt``); frames without ground truth are
    skipped into ``aggregator``. With ``protocol`` given, a prediction whose size cannot be matched to
    its ground truth raises an error naming the prediction file.

    Raises:
        FileNotFoundError: the folder or (unless ``allow_missing``) prediction files are missing.
        ValueError: a prediction of the wrong size (names the file).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: prediction folder not found")
    records = getattr(dataset, "records", None)
    if records is None:
        raise ValueError("--pred-dir needs a file dataset (kitti, nyu or csv); set data.dataset and the lists")
    stems = Counter(r.rgb.stem for r in records)
    files = [
        _prediction_file(pred_dir, r.rgb, r.id, stems[r.rgb.stem] == 1) if r.depth is not None else None
        for r in records
    ]
    missing = [r for r, f in zip(records, files, strict=True) if r.depth is not None and f is None]
    if missing and not allow_missing:
        names = ", ".join(f"{r.rgb.stem if stems[r.rgb.stem] == 1 else r.id}.png" for r in missing[:5])
        raise FileNotFoundError(
            f"{pred_dir}: {len(missing)} of {len(records)} prediction file(s) missing, e.g. {names} "
            "(use --allow-missing to skip and count them)"
        )
    for i, (r, path) in enumerate(zip(records, files, strict=True)):
        if r.depth is None:
            aggregator.skip(r.id, "no ground truth in the list")
            continue
        if path is None:
            aggregator.skip(r.id, "prediction file missing")
            continue
        try:
            pred = read_prediction(path, pred_scale)
        except DataError as exc:
            if exc.problem not in ("8bit", "no_valid"):
                raise
            aggregator.skip(r.id, f"prediction: {exc.reason}")  # counted and reported with the other skips
            continue
        gt = dataset.load_gt(i)
        if protocol is not None:
            try:
                align(pred, gt["depth"], gt["valid"], protocol)
            except ValueError as exc:
                raise ValueError(f"{path}: wrong size for {r.depth}: {exc}") from None
        yield r.id, pred, gt["depth"], gt["valid"]
