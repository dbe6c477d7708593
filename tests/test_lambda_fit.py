"""Tests for LambdaFit: closed-form cases, the integral identity and fitting noisy estimates."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import rademacher_lambda
from kopaths.lambda_fit import LambdaFit, fit_lambda, isotonic_regression
from kopaths.separation import LambdaEstimate, gaussian_lambda


def test_gaussian_and_constant_one():
    s = jnp.array([0.0, 0.5, 1.0, 3.0, 100.0])
    np.testing.assert_allclose(LambdaFit.gaussian()(s), gaussian_lambda(s), atol=1e-6)
    np.testing.assert_allclose(LambdaFit.constant_one()(s), 1.0, atol=1e-7)
    np.testing.assert_allclose(LambdaFit.gaussian().integral_one_minus_lambda(), np.pi / 2, rtol=1e-4)
    assert LambdaFit.constant_one().integral_one_minus_lambda() == 0.0


def test_from_table_interpolates_rademacher(rademacher_fit):
    s = np.array([0.1, 0.7, 1.3, 2.9])
    np.testing.assert_allclose(rademacher_fit(jnp.asarray(s)), rademacher_lambda(s), atol=2e-5)
    gamma = rademacher_fit.gamma(jnp.linspace(0, np.pi / 2, 50))
    assert np.all((gamma >= 0) & (gamma <= 1))


def test_integral_matches_direct_quadrature(rademacher_fit):
    from scipy.integrate import quad

    direct = quad(lambda s: 1 - rademacher_lambda(np.array([s]))[0], 0, 40, limit=200)[0]
    assert abs(rademacher_fit.integral_one_minus_lambda() - direct) < 1e-4


def test_fit_noisy_estimate_is_monotone_and_warns_on_dips():
    s = np.tan(np.linspace(0, 1.5, 40))
    rng = np.random.default_rng(0)
    truth = 1.0 / (1.0 + s**2) * np.exp(-s)  # a valid 1 - lambda, below the Gaussian bound
    noisy = truth + 0.01 * rng.standard_normal(s.size)
    est = LambdaEstimate(s, noisy, np.full(s.size, 0.01), 100, 100, 4)
    with pytest.warns(UserWarning, match="below its lower bound"):
        noisy_dip = LambdaEstimate(s, noisy + 0.2 / (1 + s**2), np.full(s.size, 0.001), 100, 100, 4)
        fit_lambda(noisy_dip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_lambda(est)
    dense = jnp.tan(jnp.linspace(0, 1.5, 500))
    lam = np.asarray(fit(dense))
    assert np.all(np.diff(lam) >= -1e-6)
    assert np.all(lam >= np.asarray(gaussian_lambda(dense)) - 1e-6)
    assert np.max(np.abs(np.asarray(fit(jnp.asarray(s))) - (1 - truth))) < 0.05


def test_from_table_rejects_bad_tables():
    with pytest.raises(ValueError, match="not monotone"):
        LambdaFit.from_table([0, 1, 2], [0, 0.8, 0.7])
    with pytest.raises(ValueError, match="Gaussian bound"):
        LambdaFit.from_table([0, 1, 2], [0, 0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LambdaFit.from_table([0, 1, 2], [0, 0.8, 1.5])


def test_isotonic_regression():
    np.testing.assert_allclose(isotonic_regression([1, 3, 2, 4]), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(isotonic_regression([3, 2, 1]), [2, 2, 2])


def test_lambda_fit_is_a_pytree_under_jit_and_grad(rademacher_fit):
    f = jax.jit(lambda fit, s: fit(s))
    assert np.isfinite(float(f(rademacher_fit, 1.0)))
    ds = jax.grad(lambda s: rademacher_fit(s))(1.0)
    h = 1e-3
    fd = (rademacher_fit(1.0 + h) - rademacher_fit(1.0 - h)) / (2 * h)
    np.testing.assert_allclose(ds, fd, rtol=1e-2)


def test_fit_follows_small_snr_asymptotics_and_never_clips_gamma_to_zero():
    # Anisotropic data: gamma ~ (m2 - 1) theta^2 near 0 with m2 = tr(C^2)/d measured from the data,
    # even where the estimate is noisy; clipping at the linear-MMSE bound keeps gamma > 0 everywhere.
    from kopaths.normalization import normalize
    from kopaths.separation import estimate_lambda, snr_grid

    rng = np.random.default_rng(0)
    x = normalize(rng.standard_normal((4000, 16)) * np.geomspace(4.0, 0.2, 16))[0]
    est = estimate_lambda(x, snr_grid(64), key=jax.random.key(0), num_noise=128)  # few samples: noisy
    fit = fit_lambda(est, warn=False)
    with jax.enable_x64(True):
        theta = jnp.asarray([1e-5, 1e-4, 1e-3], jnp.float64)
        ratio = np.asarray(fit.gamma(theta)) / ((est.m2 - 1.0) * np.asarray(theta) ** 2)
        np.testing.assert_allclose(ratio, 1.0, rtol=5e-3)
        dense = jnp.linspace(1e-4, 0.5 * np.pi * 0.999, 4000, dtype=jnp.float64)
        assert float(jnp.min(fit.gamma(dense))) > 0.0
    # the fitted lambda never falls below the data's linear-MMSE bound
    s = np.tan(np.linspace(0.0, 1.5, 200))
    assert np.all(np.asarray(fit.one_minus_lambda(jnp.asarray(s))) <= est.mmse_bound(s) / est.mmse_bound(np.zeros(1))[0] + 1e-5)


def test_fit_without_spectrum_uses_the_isotropic_bound():
    s = np.tan(np.linspace(0, 1.4, 30))
    est = LambdaEstimate(s, 1.0 / (1.0 + s**2) * np.exp(-s), np.full(s.size, 1e-3), 100, 100, 4)
    fit = fit_lambda(est)
    assert np.all(np.asarray(fit(jnp.asarray(s))) >= np.asarray(gaussian_lambda(s)) - 1e-6)
