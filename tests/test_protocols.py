"""Evaluation protocols: crop pixel counts, caps, clamping, KB-crop alignment (docs/data.md)."""

from __future__ import annotations

import math

import pytest
import torch

from disdepth.eval.protocols import (
    PROTOCOLS,
    align,
    clamp_prediction,
    crop_box,
    crop_mask,
    evaluate_image,
    get_protocol,
    kb_crop_map,
)


@pytest.mark.parametrize(
    ("crop", "hw", "box", "count"),
    [
        # Garg crop on the KB-cropped map (kitti_eigen_garg): int(0.40810811*352)=143 ... int(0.96405229*1216)=1172
        ("garg", (352, 1216), (143, 349, 43, 1172), 206 * 1129),
        # Garg / Eigen on the full 375x1242 frame (BTS eval_with_pngs --garg_crop / --eigen_crop)
        ("garg", (375, 1242), (153, 371, 44, 1197), 218 * 1153),
        ("eigen", (375, 1242), (124, 342, 44, 1197), 218 * 1153),
        # NYU Eigen crop [45:471, 41:601]
        ("nyu_eigen", (480, 640), (45, 471, 41, 601), 426 * 560),
        ("none", (480, 640), (0, 480, 0, 640), 480 * 640),
    ],
)
def test_crop_pixel_counts(crop: str, hw: tuple[int, int], box: tuple[int, ...], count: int) -> None:
    assert crop_box(crop, *hw) == box
    assert int(crop_mask(crop, *hw).sum()) == count


def test_protocol_table() -> None:
    assert set(PROTOCOLS) == {"none", "nyu_eigen", "kitti_eigen_garg", "kitti_garg_full", "kitti_eigen"}
    assert PROTOCOLS["nyu_eigen"].max_depth == 10.0 and PROTOCOLS["kitti_eigen"].max_depth == 80.0
    assert get_protocol("kitti_eigen", max_depth=50.0).max_depth == 50.0
    with pytest.raises(ValueError, match="unknown eval protocol"):
        get_protocol("kitti")
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        get_protocol("none", 5.0, 1.0)
    d = PROTOCOLS["none"].to_dict()
    assert d["max_depth"] is None and d["crop_box"] == "none"


def test_caps_are_strict_and_predictions_clamped() -> None:
    p = get_protocol("none", 1.0, 10.0)
    gt = torch.tensor([[1.0, 5.0, 10.0, 12.0]])  # 1.0 and 10.0 are excluded (strict), 12 beyond the cap
    pred = torch.tensor([[3.0, 20.0, 3.0, 3.0]])  # 20 clamps to 10
    m, reason = evaluate_image(pred, gt, gt > 0, p)
    assert reason == "" and m["abs_rel"] == pytest.approx(1.0)  # only gt=5, pred clamped to 10
    c = clamp_prediction(torch.tensor([math.nan, math.inf, -1.0, 0.0]), p)
    assert c.tolist() == [1.0, 10.0, 1.0, 1.0]


def test_no_valid_pixel_gives_none_and_reason() -> None:
    gt = torch.zeros(480, 640)
    gt[0:10] = 3.0  # only outside the NYU Eigen crop
    m, reason = evaluate_image(torch.ones(480, 640), gt, gt > 0, "nyu_eigen")
    assert m is None and "no valid" in reason


def test_kitti_alignment() -> None:
    full = torch.rand(375, 1242) * 70 + 2
    valid = torch.ones(375, 1242, dtype=torch.bool)
    p = get_protocol("kitti_eigen_garg")
    # full-size GT + KB-cropped prediction: GT is KB-cropped
    pred, gt, v = align(kb_crop_map(full), full, valid, p)
    assert pred.shape == gt.shape == (352, 1216) and torch.equal(gt, kb_crop_map(full))
    m, _ = evaluate_image(kb_crop_map(full), full, valid, p)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    # full-frame protocols put a 352x1216 prediction back into the frame (BTS do_kb_crop)
    for name in ("kitti_garg_full", "kitti_eigen"):
        m, _ = evaluate_image(kb_crop_map(full), full[None], valid[None], name)
        assert m["abs_rel"] == pytest.approx(0.0, abs=1e-7), name
    with pytest.raises(ValueError, match="KB-cropped"):
        evaluate_image(kb_crop_map(full), kb_crop_map(full), kb_crop_map(valid), "kitti_garg_full")
    with pytest.raises(ValueError, match="prediction is"):
        evaluate_image(torch.ones(10, 10), torch.ones(12, 10), torch.ones(12, 10, dtype=torch.bool), "none")
