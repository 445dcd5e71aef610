"""Error bars a reviewer accepts: a paired bootstrap over test images and seeds for a relative change in a metric.

Two models (a row and its baseline) are scored on the same test images with the same seeds. The statistic is the
relative change of the mean, ``mean(row) / mean(baseline) - 1``; its 95 % interval comes from resampling seeds and
images with replacement *together* (the same draw for both models), so the pairing of image and seed is kept and
both sources of variation (which images, which initialisation) are in the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Change:
    """A relative change in percent with its bootstrap interval."""

    percent: float
    low: float
    high: float

    @property
    def measurable(self) -> bool:
        """False when the interval contains 0: then it is "no measurable effect"."""
        return not self.low <= 0.0 <= self.high

    def format(self) -> str:
        text = f"{self.percent:+.1f} % [{self.low:+.1f}, {self.high:+.1f}]"
        return text if self.measurable else f"{text} (no measurable effect)"


def paired_bootstrap(
    row: np.ndarray, baseline: np.ndarray, n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> Change:
    """Relative change of ``row`` against ``baseline`` with a paired bootstrap interval.

    Args:
        row, baseline: (seeds, images) per-image metric (e.g. abs_rel), the same images in the same order.
        n_boot: bootstrap resamples.
        level: interval coverage (percentile interval).
        seed: the resampling RNG seed (the interval is reproducible).

    Returns:
        :class:`Change` in percent.
    """
    row, baseline = np.asarray(row, np.float64), np.asarray(baseline, np.float64)
    if row.shape != baseline.shape or row.ndim != 2:
        raise ValueError(f"row and baseline must both be (seeds, images), got {row.shape} and {baseline.shape}")
    n_seeds, n_images = row.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    images = rng.integers(0, n_images, size=(n_boot, n_images))
    # Mean over the resampled (seed, image) grid of each draw: index seeds, then images, per draw.
    row_means = np.array([row[s][:, i].mean() for s, i in zip(seeds, images, strict=True)])
    base_means = np.array([baseline[s][:, i].mean() for s, i in zip(seeds, images, strict=True)])
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = 100.0 * (row_means / base_means - 1.0)
    # A draw whose baseline mean is 0 (only images where the baseline scores 0, e.g. its δ1) has no relative change.
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha]) if draws.size else (np.nan, np.nan)
    return Change(100.0 * (row.mean() / baseline.mean() - 1.0), float(low), float(high))


def per_image_matrix(metrics_per_seed: list[dict], metric: str = "abs_rel") -> np.ndarray:
    """(seeds, images) of one per-image metric from stage results' ``metrics`` (their ``per_image`` entries), the
    images in one fixed (sorted id) order for every seed, as :func:`paired_bootstrap` pairs them."""
    ids = sorted(metrics_per_seed[0]["per_image"])
    return np.array([[m["per_image"][i][metric] for i in ids] for m in metrics_per_seed])


def change_on_images(row: dict[str, dict], baseline: dict[str, dict], metric: str = "abs_rel") -> Change:
    """One seed's relative change of ``metric`` with a paired bootstrap interval over the images both scored.

    Args:
        row, baseline: ``per_image`` entries of two stage results (image id -> {metric: value}) on the same set.

    Raises:
        ValueError: the two were scored on different images.
    """
    ids = sorted(row)
    if sorted(baseline) != ids or not ids:
        raise ValueError("the two models were not scored on the same (non-empty) set of images")
    values = np.array([[row[i][metric] for i in ids]]), np.array([[baseline[i][metric] for i in ids]])
    return paired_bootstrap(*values)
