"""Golden tests for kopaths.likelihood: closed-form NLLs, Hutchinson vs exact, bits/dim accounting."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from _fields import gaussian_log_prob, gaussian_velocity, mixture_log_prob
from kopaths.ode import likelihood as L
from kopaths.ideal import marginal_velocity
from kopaths.normalization import AffineStats
from kopaths.schedules import CondOTSchedule, CosineSchedule


@pytest.mark.parametrize("schedule", [CondOTSchedule(), CosineSchedule()], ids=["condot", "si"])
def test_gaussian_data_gives_exact_nll(schedule):
    c = 1.7
    x = c * jax.random.normal(jax.random.PRNGKey(0), (12, 3))
    res = L.log_prob(gaussian_velocity(schedule, c), x)
    np.testing.assert_allclose(res.log_prob, gaussian_log_prob(x, c), atol=2e-3)
    assert res.num_probes == 0 and bool(jnp.all(res.success)) and bool(jnp.all(res.nfe > 6))


DATA = jax.random.normal(jax.random.PRNGKey(1), (8, 2))
SIGMA_MIN = 0.3
MIX_FIELD = jax.tree_util.Partial(
    lambda d, t, x: marginal_velocity(CondOTSchedule(sigma_min=SIGMA_MIN), d, t, x), DATA
)


def test_mixture_ideal_field_gives_exact_nll():
    # With sigma_min > 0, p_1 of the ideal field is the mixture of N(x^j, sigma_min^2 I).
    idx = jax.random.randint(jax.random.PRNGKey(2), (6,), 0, DATA.shape[0])
    x = DATA[idx] + SIGMA_MIN * jax.random.normal(jax.random.PRNGKey(3), (6, 2))
    res = L.log_prob(MIX_FIELD, x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.log_prob, mixture_log_prob(x, DATA, SIGMA_MIN), atol=5e-3)


def test_hutchinson_agrees_with_exact_within_its_error():
    x = DATA[:3] + SIGMA_MIN * jax.random.normal(jax.random.PRNGKey(4), (3, 2))
    exact = L.log_prob(MIX_FIELD, x).log_prob
    reps = 24
    xs = jnp.tile(x, (reps, 1))
    est = L.log_prob(MIX_FIELD, xs, divergence="hutchinson", key=jax.random.PRNGKey(5), num_probes=1, probe="gaussian")
    assert est.num_probes == 1
    vals = np.asarray(est.log_prob).reshape(reps, 3)
    mean, se = vals.mean(0), vals.std(0, ddof=1) / math.sqrt(reps)
    assert np.all(se > 1e-4), se  # the estimator is genuinely random here
    assert np.all(np.abs(mean - np.asarray(exact)) < 4 * se + 1e-3), (mean, exact, se)
    # More probes -> smaller spread.
    est8 = L.log_prob(MIX_FIELD, xs, divergence="hutchinson", key=jax.random.PRNGKey(6), num_probes=8, probe="gaussian")
    se8 = np.asarray(est8.log_prob).reshape(reps, 3).std(0, ddof=1) / math.sqrt(reps)
    assert np.mean(se8) < np.mean(se)


def test_likelihood_bad_inputs():
    x = DATA[:2]
    with pytest.raises(ValueError, match="key"):
        L.log_prob(MIX_FIELD, x, divergence="hutchinson", num_probes=2)
    with pytest.raises(ValueError, match="no key"):
        L.log_prob(MIX_FIELD, x, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="divergence"):
        L.log_prob(MIX_FIELD, x, divergence="trace")


def test_bits_per_dim_matches_discrete_gaussian_mass():
    # Model: x ~ N(0, I) on x = (z - mean)/scale with z = (q + u)/256. The exact 8-bit mass is a
    # product of normal-CDF differences; K dequantisation samples approach it from below.
    d, scale = 4, 0.2
    mean = np.full((d,), 0.5, np.float32)
    stats = AffineStats(mean, scale)
    q = jax.random.randint(jax.random.PRNGKey(7), (5, d), 100, 156)

    def analytic_log_prob(x, key):
        del key
        return L.LikelihoodResult(gaussian_log_prob(x, 1.0), jnp.ones(x.shape[0], jnp.int32), jnp.ones(x.shape[0], bool), 0)

    res = L.bits_per_dim(analytic_log_prob, q, jax.random.PRNGKey(8), stats=stats, dequant_scale=1 / 256, num_importance_samples=16)
    lo = ((np.asarray(q) / 256.0) - mean) / scale
    hi = ((np.asarray(q) + 1) / 256.0 - mean) / scale
    exact_bpd = -np.sum(np.log(norm.cdf(hi) - norm.cdf(lo)), axis=1) / (d * np.log(2))
    np.testing.assert_allclose(np.asarray(res.bpd), exact_bpd, atol=2e-3)
    assert res.num_importance_samples == 16 and "K=16" in str(res)
    with pytest.raises(ValueError, match="integers"):
        L.bits_per_dim(analytic_log_prob, q + 0.5, jax.random.PRNGKey(0), stats=stats, dequant_scale=1 / 256)
    with pytest.raises(ValueError, match="num_importance"):
        L.bits_per_dim(analytic_log_prob, q, jax.random.PRNGKey(0), stats=stats, dequant_scale=1 / 256, num_importance_samples=0)


def test_bits_per_dim_through_the_ode():
    # Gaussian data N(0, c^2 I) in model space; the ODE estimate equals the analytic one.
    d, c = 3, 1.3
    stats = AffineStats(np.full((d,), 127.5, np.float32), 40.0)
    q = jax.random.randint(jax.random.PRNGKey(9), (4, d), 60, 200)
    vf = gaussian_velocity(CosineSchedule(), c)
    ode = L.bits_per_dim(lambda x, k: L.log_prob(vf, x), q, jax.random.PRNGKey(10), stats=stats, dequant_scale=1.0)
    analytic = L.bits_per_dim(
        lambda x, k: L.LikelihoodResult(gaussian_log_prob(x, c), jnp.ones(4, jnp.int32), jnp.ones(4, bool), 0),
        q, jax.random.PRNGKey(10), stats=stats, dequant_scale=1.0,
    )
    np.testing.assert_allclose(ode.bpd, analytic.bpd, atol=1e-3)
    expected = -(gaussian_log_prob(stats.apply(q + 0.5), c) - d * np.log(40.0)) / (d * np.log(2))
    np.testing.assert_allclose(analytic.bpd, expected, atol=5e-3)
