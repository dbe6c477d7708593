r"""Smooth fits of the data separation function in the angle :math:`\theta = \arctan s`.

A :class:`LambdaFit` is a monotone spline of :math:`1-\lambda` in :math:`\theta`. The
kinetic energy needs the *Gaussian-relative MMSE*

.. math::  g(\theta) = (1-\lambda(\tan\theta))\,(1+\tan^2\theta) = \frac{1-\lambda}{\cos^2\theta}\in[0,1],

and :math:`\lambda = 1 - g\cos^2\theta`, the metric weight of the kinetic energy in polar
coordinates is :math:`\gamma(\theta) = 1-g(\theta)`, and
:math:`\int_0^\infty (1-\lambda(s))\,ds = \int_0^{\pi/2} g(\theta)\,d\theta`.
Standard Gaussian data have :math:`g\equiv1` and :math:`\lambda\equiv1` gives :math:`g\equiv0`.
:math:`g\le1` is the bound :math:`\lambda(s)\ge s^2/(1+s^2)` that every normalised dataset
satisfies; :math:`g` is evaluated without dividing by a vanishing cosine.
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from kopaths.schedules import HALF_PI, hermite_eval, pchip_slopes
from kopaths.separation import LambdaEstimate, validate_table

__all__ = ["LambdaFit", "fit_lambda", "isotonic_regression"]


class LambdaFit(eqx.Module):
    r"""Smooth, monotone, differentiable :math:`\lambda(s)` as a spline in :math:`\theta=\arctan s`.

    :math:`1-\lambda` is a monotone (Fritsch-Carlson) cubic Hermite spline in :math:`\theta` on
    knots :math:`0=\theta_0<\dots<\theta_K<\pi/2`; beyond :math:`\theta_K` the tail keeps
    :math:`g` constant, :math:`1-\lambda = g_K\cos^2\theta` (Gaussian-like). A non-increasing
    table gives a non-increasing :math:`1-\lambda` everywhere. The table is kept in float64
    (NumPy), so solvers running with ``jax.enable_x64`` see :math:`\gamma\approx(m_2-1)\theta^2`
    at small :math:`\theta` without float32 cancellation.
    """

    theta_knots: jax.Array
    h_values: jax.Array
    h_slopes: jax.Array
    g_tail: jax.Array

    @classmethod
    def from_one_minus(cls, theta, one_minus, slopes=None) -> "LambdaFit":
        """Builds the spline from knots ``theta`` (from 0, increasing, below pi/2) and ``1 - lambda``.

        ``slopes`` (optional, NaN where unknown) gives exact derivatives at some knots; the others
        get shape-preserving (Fritsch-Carlson) slopes.
        """
        theta, h = np.asarray(theta, np.float64), np.asarray(one_minus, np.float64)
        if theta.ndim != 1 or h.shape != theta.shape or theta.size < 2:
            raise ValueError("theta and 1 - lambda must be 1-D of equal length >= 2.")
        if theta[0] != 0.0 or theta[-1] >= HALF_PI or np.any(np.diff(theta) <= 0):
            raise ValueError("theta knots must increase strictly from 0 and stay below pi/2.")
        h = np.clip(h, 0.0, np.cos(theta) ** 2)
        g_tail = h[-1] / np.cos(theta[-1]) ** 2
        dh = pchip_slopes(theta, h)
        if slopes is not None:
            given = np.asarray(slopes, np.float64)
            dh = np.where(np.isfinite(given), given, dh)
        return cls(theta, h, dh, np.asarray(g_tail, np.float64))

    @classmethod
    def gaussian(cls) -> "LambdaFit":
        r"""Standard Gaussian data: :math:`\lambda(s) = s^2/(1+s^2)`, :math:`\gamma\equiv0`."""
        theta = np.linspace(0.0, HALF_PI * (1 - 1e-3), 513)
        return cls.from_one_minus(theta, np.cos(theta) ** 2)

    @classmethod
    def constant_one(cls) -> "LambdaFit":
        r""":math:`\lambda\equiv1` (perfectly separated data): :math:`\gamma\equiv1`, KO is Cond-OT."""
        return cls.from_one_minus([0.0, 1.0], [0.0, 0.0])

    @classmethod
    def from_table(cls, snr, lam) -> "LambdaFit":
        """Exact fit through a validated (monotone, [0, 1]-valued) table of lambda at snr values."""
        validate_table(snr, lam)
        snr, lam = np.asarray(snr, np.float64), np.asarray(lam, np.float64)
        lower = snr**2 / (1.0 + snr**2)
        if np.any(lam < lower - 1e-6):
            raise ValueError(
                "Lambda table dips below the Gaussian bound s^2/(1+s^2), impossible for normalised "
                "data; use kopaths.fit_lambda to fit a noisy estimate."
            )
        return cls.from_one_minus(*_knots(snr, 1.0 - lam))

    @eqx.filter_jit
    def one_minus_lambda_theta(self, theta) -> jax.Array:
        r""":math:`1-\lambda(\tan\theta)`."""
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            theta = theta.astype(jnp.result_type(float))
        knots, h, dh = (jnp.asarray(v, theta.dtype) for v in (self.theta_knots, self.h_values, self.h_slopes))
        inside, _ = hermite_eval(theta, knots, h, dh)
        tail = jnp.asarray(self.g_tail, theta.dtype) * jnp.cos(theta) ** 2
        return jnp.clip(jnp.where(theta <= knots[-1], inside, tail), 0.0, 1.0)

    @eqx.filter_jit
    def g(self, theta) -> jax.Array:
        r""":math:`g(\theta) = (1-\lambda)/\cos^2\theta \in [0, 1]`."""
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            theta = theta.astype(jnp.result_type(float))
        last = jnp.asarray(self.theta_knots[-1], theta.dtype)
        safe = jnp.minimum(theta, last)
        inside = self.one_minus_lambda_theta(safe) / jnp.cos(safe) ** 2
        return jnp.clip(jnp.where(theta <= last, inside, jnp.asarray(self.g_tail, theta.dtype)), 0.0, 1.0)

    def gamma(self, theta) -> jax.Array:
        r""":math:`\gamma(\theta) = 1 - (1-\lambda(\tan\theta))/\cos^2\theta = 1 - g(\theta)`."""
        return 1.0 - self.g(theta)

    def one_minus_lambda(self, snr) -> jax.Array:
        r""":math:`1-\lambda(s)`, computed directly (accurate where :math:`\lambda\approx1`)."""
        return self.one_minus_lambda_theta(jnp.arctan(jnp.asarray(snr)))

    def __call__(self, snr) -> jax.Array:
        r""":math:`\lambda(s)`."""
        return 1.0 - self.one_minus_lambda(snr)

    def integral_one_minus_lambda(self, num: int = 8193) -> float:
        r""":math:`\int_0^\infty(1-\lambda(s))\,ds = \int_0^{\pi/2} g(\theta)\,d\theta` (Simpson)."""
        num = num + 1 - num % 2
        theta = np.linspace(0.0, HALF_PI, num)
        g = np.asarray(self.g(jnp.asarray(theta)), np.float64)
        h = theta[1] - theta[0]
        return float(h / 3 * (g[0] + g[-1] + 4 * g[1:-1:2].sum() + 2 * g[2:-1:2].sum()))


def isotonic_regression(y, w=None) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    y = np.asarray(y, np.float64)
    w = np.ones_like(y) if w is None else np.asarray(w, np.float64)
    vals, wts, counts = [], [], []
    for yi, wi in zip(y, w):
        vals.append(yi)
        wts.append(wi)
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, c2 = vals.pop(), wts.pop(), counts.pop()
            wsum = wts[-1] + w2
            vals[-1] = (vals[-1] * wts[-1] + v2 * w2) / wsum
            wts[-1] = wsum
            counts[-1] += c2
    return np.repeat(vals, counts)


def _knots(snr: np.ndarray, one_minus: np.ndarray):
    theta = np.arctan(snr)
    keep = theta < HALF_PI - 1e-6
    theta, one_minus = theta[keep], one_minus[keep]
    if theta.size == 0 or theta[0] > 0:
        theta, one_minus = np.concatenate([[0.0], theta]), np.concatenate([[1.0], one_minus])
    return theta, one_minus


#: Knots (uniform and geometric, each) on the small-snr range where the linear-MMSE bound is used.
SMALL_THETA_KNOTS = 48


def _bound_in_theta(estimate: LambdaEstimate, theta: np.ndarray, total: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The estimate's MMSE bound :math:`\frac1d\sum_k c_k\cos^2\theta/(\cos^2\theta + c_k\sin^2\theta)`
    (over ``total``) and its exact :math:`\theta`-derivative :math:`-\frac1d\sum_k c_k^2\sin2\theta/(\cos^2\theta+c_k\sin^2\theta)^2`."""
    c = np.ones(1) if estimate.cov_eigenvalues is None else np.asarray(estimate.cov_eigenvalues, np.float64)
    d = 1 if estimate.cov_eigenvalues is None else estimate.dim
    u, v = np.cos(theta)[:, None] ** 2, np.sin(theta)[:, None] ** 2
    denominator = u + c * v
    value = np.sum(c * u / denominator, axis=1) / d
    slope = -np.sum(c**2 * np.sin(2 * theta)[:, None] / denominator**2, axis=1) / d
    return value / total, slope / total


def fit_lambda(estimate: LambdaEstimate, *, warn: bool = True, significance: float = 3.0) -> LambdaFit:
    r"""Fits a :class:`LambdaFit` to a noisy :class:`~kopaths.separation.LambdaEstimate`.

    1. The estimate of :math:`1-\lambda` is made non-increasing by weighted isotonic regression
       (weights ``1/stderr^2``).
    2. It is clipped below the estimate's upper bound :meth:`LambdaEstimate.mmse_bound`: the
       linear-MMSE bound of the data's covariance spectrum, or :math:`1/(1+s^2)` for an estimate
       without one. A clip larger than ``significance`` standard errors warns, since it means too
       few samples or unnormalised data.
    3. Small snr: wherever the estimate does not yet differ from the bound by ``significance``
       standard errors (a prefix of the grid), the bound itself is used, and extra knots from it
       are placed on a geometric grid below the first positive snr. The bound equals
       :math:`1-\lambda` to second order, so the fit follows
       :math:`\gamma(\theta)\approx(m_2-1)\theta^2`, :math:`m_2=\operatorname{tr}(C^2)/d`, and is
       positive wherever the covariance is not isotropic: clipping never leaves an interval with
       :math:`\hat\gamma = 0`.
    """
    snr = np.asarray(estimate.snr, np.float64)
    one_minus = np.asarray(estimate.one_minus_lam, np.float64)
    stderr = np.asarray(estimate.stderr, np.float64)
    if not (np.all(np.isfinite(one_minus)) and np.all(np.isfinite(snr))):
        raise ValueError("Lambda estimate contains NaN or Inf.")
    if np.any(np.diff(snr) <= 0) or snr[0] < 0:
        raise ValueError("Lambda estimate snr grid must be non-negative and strictly increasing.")
    upper = estimate.mmse_bound(snr)
    total = 1.0
    if estimate.cov_eigenvalues is not None:
        # tr(C)/d = 1 for normalised data; dividing by it removes float32 round-off at s = 0.
        total = float(estimate.mmse_bound(np.zeros(1))[0])
        upper, one_minus, stderr = upper / total, one_minus / total, stderr / total
    weights = 1.0 / np.maximum(stderr, 1e-12) ** 2
    one_minus = -isotonic_regression(-one_minus, weights)  # 1 - lambda is non-increasing
    excess = one_minus - upper
    clipped = excess > significance * stderr + 1e-6
    if warn and np.any(clipped):
        i = int(np.argmax(excess - significance * stderr))
        warnings.warn(
            f"lambda-hat falls below its lower bound (the linear-MMSE bound of the data covariance) at "
            f"{int(np.sum(clipped))} snr points (worst at s={snr[i]:.3g} by {excess[i]:.3g}, stderr {stderr[i]:.2g}); "
            "clipped. Too few noise samples, or data that are not normalised?",
            stacklevel=2,
        )
    one_minus = np.minimum(np.clip(one_minus, 0.0, None), upper)
    theta_grid = np.arctan(snr)
    usable = theta_grid < HALF_PI - 1e-6
    separated = ((upper - one_minus) > significance * stderr + 1e-12) & (snr > 0) & usable
    first = int(np.argmax(separated)) if np.any(separated) else int(np.sum(usable))
    resolved = np.flatnonzero(usable)[np.flatnonzero(usable) >= first]
    # Up to the first resolved point the bound itself is used, on dense knots (uniform, plus
    # geometric towards theta = 0); beyond it, the estimate.
    end = theta_grid[resolved[0]] if resolved.size else theta_grid[usable][-1]
    dense = np.unique(np.concatenate([np.linspace(0.0, end, SMALL_THETA_KNOTS, endpoint=False),
                                      np.geomspace(end * 1e-4, end, SMALL_THETA_KNOTS, endpoint=False)]))
    if not resolved.size:
        dense = np.append(dense, end)
    bound, bound_slope = _bound_in_theta(estimate, dense, total)
    theta = np.concatenate([dense, theta_grid[resolved]])
    h = np.minimum.accumulate(np.concatenate([bound, one_minus[resolved]]))
    slopes = np.concatenate([bound_slope, np.full(resolved.size, np.nan)])
    for _ in range(6):  # where the spline overshoots the bound between knots, add the bound as a knot
        fit = LambdaFit.from_one_minus(theta, h, slopes)
        mid = 0.5 * (theta[1:] + theta[:-1])
        with jax.enable_x64(True):
            at_mid = np.asarray(fit.one_minus_lambda_theta(jnp.asarray(mid, jnp.float64)), np.float64)
        limit, limit_slope = _bound_in_theta(estimate, mid, total)
        over = at_mid > limit + 1e-9
        if not np.any(over):
            return fit
        order = np.argsort(np.concatenate([theta, mid[over]]))
        theta = np.concatenate([theta, mid[over]])[order]
        h = np.minimum.accumulate(np.concatenate([h, limit[over]])[order])
        slopes = np.concatenate([slopes, limit_slope[over]])[order]
    return LambdaFit.from_one_minus(theta, h, slopes)
