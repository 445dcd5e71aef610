"""The nine standard monocular-depth metrics (Eigen et al. 2014; as computed by BTS's ``compute_errors``).

Per image, over the valid pixels, with ``gt`` and ``pred`` in metres (both > 0):

    abs_rel  = mean(|gt - pred| / gt)
    sq_rel   = mean((gt - pred)^2 / gt)
    rmse     = sqrt(mean((gt - pred)^2))                      [m]
    rmse_log = sqrt(mean((ln gt - ln pred)^2))
    log10    = mean(|log10 gt - log10 pred|)
    silog    = 100 * sqrt(mean(e^2) - mean(e)^2),  e = ln pred - ln gt
    d1/d2/d3 = fraction with max(gt/pred, pred/gt) < 1.25^k   (strict)

Dataset scores are the mean of the per-image values (not a pixel-weighted mean), as in BTS and the
papers we compare with.

Exactness of the deltas. Depth PNGs hold integers (mm, or 1/256 m), so many pixels have a ratio that is
*exactly* 1.25^k (gt 800 mm, pred 1000 mm). Those must not count (the test is strict), as in exact
arithmetic and in BTS's float32 evaluation. Two things make that hold here:

* decoding: ground truth and saved predictions are decoded in float64 (``read_depth``, ``load_gt``) and
  stay float64 through the protocols. Decoding in float32 and promoting would compare 1.0 / 0.8000000119
  = 1.2499999814 < 1.25 and count the pixel;
* comparison: even in float64, ``fl(fl(a/s) / fl(b/s))`` lands one ulp below 1.25^k for about one exact
  pair in ten (mm). So a ratio counts only when it is below 1.25^k by more than a relative
  :data:`DELTA_RTOL` = 1e-14. The rounding of a ratio of decoded values is < 4e-16, far inside it; a ratio
  that is *not* exactly 1.25^k is farther away than that: >= 1e-7 for two 16-bit codes of one scale, >= 5e-10
  for two float32 values, >= 1e-14 for a 16-bit code (scale <= 48000) against a float32 prediction.

So the deltas equal exact arithmetic on the decoded values for integer-coded and float32 inputs (checked
against integer arithmetic for every exact-ratio code pair in tests/test_metrics.py). Inputs decoded in
float32 upstream (training batches) are scored as the float32 values they hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

METRIC_NAMES: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
# Lower is better for the errors, higher for the delta accuracies.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"d1", "d2", "d3"})
# A ratio within this relative distance below 1.25^k is the threshold itself, off by float rounding
# (see the module docstring): not a hit under the strict test.
DELTA_RTOL = 1e-14


def delta_hits(ratio: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of ``ratio < 1.25**k`` (strict) that does not count rounding-error hits of exact ratios.

    Args:
        ratio: max(gt / pred, pred / gt) >= 1, float64.
        k: 1, 2 or 3.
    """
    return ratio < 1.25**k * (1.0 - DELTA_RTOL)


def compute_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """All nine metrics for one image.

    Args:
        pred: (..., H, W) predicted depth, metres, > 0 on valid pixels (already clamped by the protocol);
            float64 where it was decoded from a PNG (see the module docstring).
        gt: same shape, ground-truth depth, metres (float64 from the decoder for exact deltas).
        valid: same shape bool mask of pixels to score (default: gt > 0).

    Returns:
        ``{name: value}`` for :data:`METRIC_NAMES`; d1-d3 as fractions in [0, 1].

    Raises:
        ValueError: shapes differ, no valid pixel, or a non-positive depth on a valid pixel.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != gt shape {tuple(gt.shape)}")
    if valid is None:
        valid = gt > 0
    elif valid.shape != gt.shape:
        raise ValueError(f"valid shape {tuple(valid.shape)} != gt shape {tuple(gt.shape)}")
    p = pred[valid].double()
    g = gt[valid].double()
    if g.numel() == 0:
        raise ValueError("no valid pixel to score")
    if not (g > 0).all() or not (p > 0).all():
        raise ValueError("pred and gt must be > 0 on valid pixels (clamp predictions to the protocol's caps)")
    ratio = torch.maximum(g / p, p / g)
    diff = g - p
    log_diff = torch.log(p) - torch.log(g)
    silog_var = (log_diff.pow(2).mean() - log_diff.mean().pow(2)).clamp_min(0.0)  # float noise can go < 0
    out = {
        "abs_rel": (diff.abs() / g).mean(),
        "sq_rel": (diff.pow(2) / g).mean(),
        "rmse": diff.pow(2).mean().sqrt(),
        "rmse_log": log_diff.pow(2).mean().sqrt(),
        "log10": (torch.log10(g) - torch.log10(p)).abs().mean(),
        "silog": 100.0 * silog_var.sqrt(),
        "d1": delta_hits(ratio, 1).double().mean(),
        "d2": delta_hits(ratio, 2).double().mean(),
        "d3": delta_hits(ratio, 3).double().mean(),
    }
    return {k: float(v) for k, v in out.items()}


class MetricAggregator:
    """Mean of per-image metrics, plus the images skipped and why.

    Example:
        >>> agg = MetricAggregator()
        >>> agg.add("img0", compute_metrics(pred, gt, valid))
        >>> agg.skip("img1", "no valid pixel inside the crop")
        >>> agg.mean()["abs_rel"], agg.count, agg.skipped
    """

    def __init__(self) -> None:
        self.per_image: dict[str, dict[str, float]] = {}
        self.skipped: list[tuple[str, str]] = []

    def add(self, sample_id: str, metrics: Mapping[str, float]) -> None:
        if sample_id in self.per_image:
            raise ValueError(f"{sample_id}: scored twice")
        self.per_image[sample_id] = dict(metrics)

    def skip(self, sample_id: str, reason: str) -> None:
        self.skipped.append((sample_id, reason))

    @property
    def count(self) -> int:
        return len(self.per_image)

    def mean(self) -> dict[str, float]:
        """Per-metric mean over scored images (NaN for every metric when none was scored)."""
        if not self.per_image:
            return {k: math.nan for k in METRIC_NAMES}
        n = len(self.per_image)
        names = next(iter(self.per_image.values())).keys()
        return {k: math.fsum(m[k] for m in self.per_image.values()) / n for k in names}

    def skip_reasons(self) -> dict[str, int]:
        """How many images were skipped for each reason."""
        out: dict[str, int] = {}
        for _, reason in self.skipped:
            out[reason] = out.get(reason, 0) + 1
        return out


def format_metrics_table(metrics: Mapping[str, float], title: str = "") -> str:
    """Two-line table in the usual paper order (abs_rel ... d3), deltas as fractions."""
    names = [k for k in METRIC_NAMES if k in metrics]
    head = " ".join(f"{k:>9}" for k in names)
    vals = " ".join(f"{metrics[k]:>9.4f}" for k in names)
    return (f"{title}\n" if title else "") + f"{head}\n{vals}"
