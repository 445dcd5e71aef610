"""Golden-value tests for the nine depth metrics (DESIGN.md §2)."""

from __future__ import annotations

import math

import pytest
import torch

from disdepth.eval.metrics import METRIC_NAMES, MetricAggregator, compute_metrics, format_metrics_table


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_hand_computed_values() -> None:
    gt, pred = _t(1.0, 2.0, 4.0), _t(2.0, 2.0, 2.0)
    m = compute_metrics(pred, gt, torch.ones(3, dtype=torch.bool))
    ln2 = math.log(2.0)
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4) / 3)  # 0.5
    assert m["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4) / 3)  # 2/3
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(ln2 * math.sqrt(2 / 3))
    assert m["log10"] == pytest.approx(2 / 3 * math.log10(2.0))
    assert m["silog"] == pytest.approx(100 * ln2 * math.sqrt(2 / 3))  # mean(e) = 0
    # ratios 2, 1, 2: only the exact pixel is within 1.25, 1.5625 and 1.953125
    assert (m["d1"], m["d2"], m["d3"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert set(m) == set(METRIC_NAMES)


def test_silog_subtracts_mean_log_error() -> None:
    # e = ln pred - ln gt = [1, 0]: mean(e^2) = 0.5, mean(e)^2 = 0.25 -> 100 * sqrt(0.25) = 50
    m = compute_metrics(_t(math.e, math.e), _t(1.0, math.e))
    assert m["silog"] == pytest.approx(50.0)
    assert m["rmse_log"] == pytest.approx(math.sqrt(0.5))


def test_perfect_prediction() -> None:
    gt = torch.rand(4, 5) * 9 + 1
    m = compute_metrics(gt.clone(), gt)
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert m[k] == pytest.approx(0.0, abs=1e-6), k
    assert (m["d1"], m["d2"], m["d3"]) == (1.0, 1.0, 1.0)


def test_pred_ten_percent_too_far_gives_abs_rel_point_one() -> None:
    # abs_rel = mean(|gt - pred| / gt): pred = 1.1 gt -> exactly 0.1 (pred = gt / 1.1 would give 0.0909).
    gt = torch.rand(6, 7, dtype=torch.float64) * 20 + 0.5
    m = compute_metrics(gt * 1.1, gt)
    assert m["abs_rel"] == pytest.approx(0.1, abs=1e-12)
    assert m["d1"] == 1.0
    assert compute_metrics(gt, gt * 1.1)["abs_rel"] == pytest.approx(1 - 1 / 1.1, abs=1e-12)


def test_delta_threshold_is_strict() -> None:
    m = compute_metrics(_t(1.25, 1.0), _t(1.0, 1.0))
    assert m["d1"] == 0.5  # ratio exactly 1.25 does not count
    assert m["d2"] == 1.0


def test_valid_mask_restricts_pixels() -> None:
    gt, pred = _t(1.0, 2.0, 100.0), _t(1.0, 2.0, 1.0)
    m = compute_metrics(pred, gt, torch.tensor([True, True, False]))
    assert m["abs_rel"] == 0.0


def test_errors() -> None:
    with pytest.raises(ValueError, match="no valid pixel"):
        compute_metrics(_t(1.0), _t(1.0), torch.tensor([False]))
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(_t(1.0, 2.0), _t(1.0))
    with pytest.raises(ValueError, match="> 0"):
        compute_metrics(_t(0.0), _t(1.0))


def test_aggregator_is_mean_of_images() -> None:
    agg = MetricAggregator()
    agg.add("a", compute_metrics(_t(2.0), _t(1.0)))  # abs_rel 1.0 from a single pixel
    agg.add("b", compute_metrics(_t(1.0, 1.0, 1.0), _t(1.0, 1.0, 1.0)))  # 0.0 over three pixels
    agg.skip("c", "no valid pixel")
    assert agg.mean()["abs_rel"] == pytest.approx(0.5)  # per-image mean, not pixel-weighted (0.25)
    assert agg.count == 2 and agg.skip_reasons() == {"no valid pixel": 1}
    with pytest.raises(ValueError, match="twice"):
        agg.add("a", {})
    assert all(math.isnan(v) for v in MetricAggregator().mean().values())
    assert "abs_rel" in format_metrics_table(agg.mean())
