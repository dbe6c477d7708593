"""The affine normalisation: exact moments, an invertible map with its log-determinant, clear errors."""

import json

import jax
import numpy as np
import pytest

from kopaths.normalization import AffineStats, NormalizedArray, normalize, validate_data


def test_normalised_moments_and_inverse():
    y = np.random.default_rng(0).uniform(0, 255, size=(500, 4, 4, 1)).astype(np.float32)
    x, stats = normalize(y)
    flat = x.reshape(len(x), -1).astype(np.float64)
    assert np.abs(flat.mean(0)).max() < 1e-4 and abs(np.mean(np.sum(flat**2, 1)) / 16 - 1.0) < 1e-5
    np.testing.assert_allclose(stats.invert(x), y, rtol=1e-5, atol=1e-3)
    assert stats.dim == 16 and stats.log_det_jacobian() == pytest.approx(-16 * np.log(stats.scale))
    # applying saved statistics reproduces the map exactly
    again, same = normalize(y[:10], stats=stats)
    np.testing.assert_array_equal(again, x[:10])
    back = AffineStats.from_dict(json.loads(stats.to_json()))
    np.testing.assert_array_equal(back.mean, stats.mean) and back.scale == stats.scale


def test_density_change_of_variables():
    # a uniform density on [0, 256)^d in y-space, seen in x-space, integrates the same
    d = 6
    stats = AffineStats(np.full((d,), 127.5, np.float32), 70.0)
    log_py = -d * np.log(256.0)
    log_px = log_py - stats.log_det_jacobian()
    assert log_px == pytest.approx(-d * np.log(256.0 / 70.0))


@pytest.mark.parametrize("y, error, message", [
    (np.ones((5,)), ValueError, "shape"),
    (np.full((5, 2), np.nan), ValueError, "NaN"),
    (np.ones((1, 3)), ValueError, "at least 2"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "real numeric"),
    (np.full((4, 3), 2.0), ValueError, "zero variance"),
])
def test_bad_inputs(y, error, message):
    with pytest.raises(error, match=message):
        normalize(y)
    with pytest.raises(ValueError, match="Malformed AffineStats"):
        AffineStats.from_dict({"mean": [0.0], "shape": [1], "scale": -1.0})
    with pytest.raises(ValueError, match="examples of shape"):
        normalize(np.ones((3, 2)), stats=AffineStats(np.zeros((4,), np.float32), 1.0))
    assert validate_data(np.ones((2, 1))).shape == (2, 1)


def test_examples_of_different_shapes_are_named():
    with pytest.raises(ValueError, match=r"example 0 has shape \(2, 2\), example 2 has \(2, 3\)"):
        validate_data([np.zeros((2, 2)), np.ones((2, 2)), np.ones((2, 3))])
    with pytest.raises(TypeError, match="dtype object"):
        validate_data(np.array([np.zeros(2), np.zeros(3)], dtype=object))


def test_declared_range_and_first_bad_example():
    y = np.random.default_rng(0).uniform(0, 1, size=(10, 3))
    assert validate_data(y, value_range=(0.0, 1.0)) is y
    with pytest.raises(ValueError, match=r"values in \[.*\], outside the declared range \[0, 0.5\]"):
        validate_data(y, value_range=(0.0, 0.5))
    y[7, 1] = np.inf
    with pytest.raises(ValueError, match="first in example 7"):
        validate_data(y)


class _RowLimited:
    """A memmap that fails when more than ``limit`` rows are read at once (a stand-in for > RAM)."""

    def __init__(self, raw, limit, reads=None):
        self.raw, self.limit, self.shape, self.ndim, self.dtype = raw, limit, raw.shape, raw.ndim, raw.dtype
        self.reads = [] if reads is None else reads

    def __getitem__(self, index):
        rows = self.raw[index]
        self.reads.append(len(rows))
        assert len(rows) <= self.limit, f"read {len(rows)} rows at once"
        return rows

    def reshape(self, *shape):
        return _RowLimited(self.raw.reshape(*shape), self.limit, self.reads)


def test_a_memmap_is_normalised_and_estimated_by_streaming(tmp_path):
    from kopaths.separation import estimate_lambda, snr_grid

    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 2.0, size=(10_000, 2, 2)).astype(np.float32)
    path = tmp_path / "big.npy"
    np.save(path, y)
    mm = np.load(path, mmap_mode="r")
    limited = _RowLimited(mm, limit=4096)
    lazy = NormalizedArray.fit(limited)
    x, stats = normalize(y)
    np.testing.assert_allclose(lazy.stats.mean, stats.mean, rtol=1e-5, atol=1e-5)
    assert lazy.stats.scale == pytest.approx(stats.scale, rel=1e-6)
    np.testing.assert_allclose(lazy[5:9], x[5:9], atol=1e-5)
    assert lazy.shape == y.shape and np.asarray(NormalizedArray(mm, lazy.stats)).shape == y.shape
    snr = snr_grid(8)
    a = estimate_lambda(lazy, snr, key=jax.random.key(0), num_noise=64, data_chunk=512, spectrum=True)
    b = estimate_lambda(x, snr, key=jax.random.key(0), num_noise=64, data_chunk=512, spectrum=True)
    np.testing.assert_allclose(a.one_minus_lam, b.one_minus_lam, rtol=1e-4, atol=1e-6)
    assert len(limited.reads) > 10 and max(limited.reads) <= 4096
