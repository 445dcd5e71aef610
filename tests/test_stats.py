"""The paired bootstrap interval: exact at no change, tight around a clear change, containing 0 for noise."""

from __future__ import annotations

import numpy as np
import pytest

from disdepth.eval.stats import paired_bootstrap


def test_no_change_is_zero_with_a_zero_interval():
    base = np.random.default_rng(0).uniform(0.1, 0.3, size=(5, 40))
    change = paired_bootstrap(base, base, n_boot=500)
    assert change.percent == 0.0 and change.low == change.high == 0.0 and not change.measurable


def test_a_clear_paired_change_is_measurable_and_the_interval_holds_it():
    base = np.random.default_rng(1).uniform(0.1, 0.3, size=(5, 40))
    noise = np.random.default_rng(2).normal(0, 0.002, size=base.shape)
    change = paired_bootstrap(0.9 * base + noise, base, n_boot=2000)
    assert change.percent == pytest.approx(-10.0, abs=0.5)
    assert change.low < change.percent < change.high < 0 and change.measurable
    assert "no measurable effect" not in change.format()


def test_noise_alone_is_no_measurable_effect():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.1, 0.3, size=(5, 40))
    other = base * rng.normal(1.0, 0.1, size=base.shape)  # same mean, per-image noise
    change = paired_bootstrap(other, base, n_boot=2000)
    assert change.low < 0 < change.high and "no measurable effect" in change.format()


def test_shapes_must_pair():
    with pytest.raises(ValueError, match="seeds, images"):
        paired_bootstrap(np.ones((2, 3)), np.ones((3, 2)))
