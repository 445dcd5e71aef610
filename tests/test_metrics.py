"""Golden-value tests for the nine depth metrics (docs/data.md, "Metrics and protocols")."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.data.io import read_depth
from disdepth.eval.metrics import METRIC_NAMES, MetricAggregator, compute_metrics, format_metrics_table
from disdepth.eval.protocols import evaluate_image


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


# --- exact-ratio pixels (integer PNG encodings): the strict delta test must match exact arithmetic -------


def _exact_ratio_codes(k: int, limit: int = 60000) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) integer code pairs whose ratio is exactly 1.25^k, both ways round, and their +-1 neighbours.

    Codes start at 8 so every depth is above the 1 mm cap even at /5000 (no pixel is dropped or clamped).
    """
    n, m = 4**k, 5**k
    small = np.arange(8, limit * n // m, dtype=np.int64)
    small = small[(small * m) % n == 0]
    big = small * m // n
    gt = np.concatenate([big, small, big + 1, big - 1, small + 1])
    pred = np.concatenate([small, big, small, small, big])
    return gt, pred


def _exact_deltas(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """d1..d3 in integer arithmetic: max(a, b) / min(a, b) < 5^k / 4^k  <=>  max * 4^k < min * 5^k."""
    hi, lo = np.maximum(gt, pred), np.minimum(gt, pred)
    return {f"d{k}": float((hi * 4**k < lo * 5**k).mean()) for k in (1, 2, 3)}


@pytest.mark.parametrize("scale", [1000.0, 256.0, 5000.0])  # mm (NYU), KITTI /256, TUM /5000
@pytest.mark.parametrize("k", [1, 2, 3])
def test_deltas_of_decoded_pngs_match_exact_arithmetic(tmp_path: Path, scale: float, k: int) -> None:
    gt_codes, pred_codes = _exact_ratio_codes(k)
    for name, codes in (("gt", gt_codes), ("pred", pred_codes)):
        Image.fromarray(codes.astype(np.uint16)[None]).save(tmp_path / f"{name}.png")
    gt, valid = read_depth(tmp_path / "gt.png", scale)
    pred, _ = read_depth(tmp_path / "pred.png", scale)
    metrics, _ = evaluate_image(pred, gt, valid, "none")
    exact = _exact_deltas(gt_codes, pred_codes)
    assert metrics is not None and {key: metrics[key] for key in exact} == exact
    assert 0 < exact[f"d{k}"] < 1  # the set really straddles the threshold


def test_eight_hundred_mm_against_one_metre_is_a_miss(tmp_path: Path) -> None:
    """The protocol bug: gt 800 mm, pred 1000 mm has ratio exactly 1.25, not < 1.25 (BTS float32 agrees)."""
    Image.fromarray(np.array([[800]], np.uint16)).save(tmp_path / "gt.png")
    Image.fromarray(np.array([[1000]], np.uint16)).save(tmp_path / "pred.png")
    gt, valid = read_depth(tmp_path / "gt.png", 1000.0)
    pred, _ = read_depth(tmp_path / "pred.png", 1000.0)
    assert compute_metrics(pred, gt)["d1"] == 0.0
    metrics, _ = evaluate_image(pred, gt, valid, "none")
    assert metrics is not None and metrics["d1"] == 0.0 and metrics["d2"] == 1.0
    # Why decoding must be float64: 0.8 in float32 is 0.8000000119, and 1 / that is 1.24999998 < 1.25.
    assert compute_metrics(pred.float(), gt.float())["d1"] == 1.0


def test_eval_pred_dir_scores_exact_ratios(tmp_path: Path) -> None:
    """``disdepth eval --pred-dir`` end to end: ground truth and predictions decoded exactly."""
    from disdepth.cli import main

    gt_codes, pred_codes = _exact_ratio_codes(1, limit=4000)
    Image.fromarray(np.zeros((1, gt_codes.size, 3), np.uint8)).save(tmp_path / "im.png")
    Image.fromarray(gt_codes.astype(np.uint16)[None]).save(tmp_path / "gt.png")
    (tmp_path / "pred").mkdir()
    Image.fromarray(pred_codes.astype(np.uint16)[None]).save(tmp_path / "pred" / "im.png")
    (tmp_path / "index.csv").write_text("rgb,depth,depth_scale\nim.png,gt.png,1000\n")
    out = tmp_path / "eval.json"
    args = ["eval", "--set", "data.dataset=csv", "--set", f"data.test_list={tmp_path / 'index.csv'}"]
    assert main([*args, "--pred-dir", str(tmp_path / "pred"), "--pred-scale", "1000", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert {k: metrics[k] for k in ("d1", "d2", "d3")} == _exact_deltas(gt_codes, pred_codes)
