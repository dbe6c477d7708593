"""Seed intervals against Student-t values computed by hand."""

import numpy as np
import pytest

from kopaths.evaluation.intervals import mean_interval, paired_difference


def test_mean_interval_matches_the_t_formula():
    v = [1.0, 2.0, 4.0]
    iv = mean_interval(v)
    # t_{0.975, 2} = 4.302653; s = 1.527525
    assert iv.mean == pytest.approx(7 / 3) and iv.half_width == pytest.approx(4.302653 * 1.527525 / np.sqrt(3), rel=1e-5)
    assert not iv.excludes_zero and iv.format(1) == "2.3 ± 3.8"
    assert np.isnan(mean_interval([3.0]).half_width) and mean_interval([3.0]).format() == "3.00"


def test_paired_difference_removes_shared_variance():
    a = np.array([10.0, 20.0, 30.0, 40.0])
    b = a + np.array([1.0, 1.2, 0.9, 1.1])
    unpaired = mean_interval(a - 0.0).half_width
    d = paired_difference(b, a)
    assert d.mean == pytest.approx(1.05) and d.excludes_zero and d.half_width < unpaired / 10
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        mean_interval([1.0, np.nan])
