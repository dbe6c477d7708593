"""Distances between sample sets against closed forms."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from kopaths.evaluation import distances as M


def test_frechet_distance_closed_form():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    c1, c2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    # Commuting covariances: ||dmu||^2 + sum (sqrt(a) - sqrt(b))^2.
    want = 8.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert M.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-9)
    assert M.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3)) * 2.0 + 1.0
    assert M.frechet_distance_from_features(a, b) == pytest.approx(3 * 1.0 + 3 * (2 - 1) ** 2, rel=0.1)
    # Non-commuting full-rank covariances: TF-FID's trace of scipy's sqrtm(C1 C2).
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    ca, cb, ma, mb = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6), rng.normal(size=6), rng.normal(size=6)
    tf_fid = (ma - mb) @ (ma - mb) + np.trace(ca) + np.trace(cb) - 2 * np.trace(np.real(scipy.linalg.sqrtm(ca @ cb)))
    assert M.frechet_distance(ma, ca, mb, cb) == pytest.approx(tf_fid, rel=1e-9)
    # Features constant in both sets (dead units) add only their mean difference, with no warning.
    pad = lambda m, v: np.concatenate([m, v])  # noqa: E731
    c1z, c2z = np.zeros((4, 4)), np.zeros((4, 4))
    c1z[:2, :2], c2z[:2, :2] = c1, c2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = M.frechet_distance(pad(mu1, [0.0, 3.0]), c1z, pad(mu2, [0.0, 1.0]), c2z)
    assert got == pytest.approx(want + 4.0, rel=1e-9)
    with pytest.raises(ValueError):
        M.frechet_distance(mu1, c1, mu2[:1], c2)
    with pytest.raises(ValueError):
        M.feature_statistics(np.array([[np.nan, 1.0], [0.0, 1.0]]))


def test_sliced_wasserstein_and_mmd():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (2000, 2))
    shift = jnp.array([3.0, 0.0])
    sw = M.sliced_wasserstein(x, x + shift, jax.random.PRNGKey(1), num_projections=2048)
    assert float(sw) == pytest.approx(3.0 / np.sqrt(2.0), rel=0.05)  # E[w_1^2] = 1/2 on the circle
    assert float(M.sliced_wasserstein(x, x, jax.random.PRNGKey(1))) == pytest.approx(0.0, abs=1e-6)
    y = jax.random.normal(jax.random.PRNGKey(2), (2000, 2))
    same, diff = float(M.mmd_rbf(x[:500], y[:500])), float(M.mmd_rbf(x[:500], y[:500] + 0.5))
    assert abs(same) < 0.01 and diff > 10 * max(abs(same), 1e-3)
    with pytest.raises(ValueError):
        M.sliced_wasserstein(x, x[:10], key)
