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

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from kopaths.schedules import hermite_eval, pchip_slopes
from kopaths.separation import LambdaEstimate, validate_table

__all__ = ["LambdaFit", "fit_lambda", "isotonic_regression"]

HALF_PI = 0.5 * math.pi


class LambdaFit(eqx.Module):
    r"""Smooth, monotone, differentiable :math:`\lambda(s)` as a spline in :math:`\theta=\arctan s`.

    :math:`1-\lambda` is a monotone (Fritsch-Carlson) cubic Hermite spline in :math:`\theta` on
    knots :math:`0=\theta_0<\dots<\theta_K<\pi/2`; beyond :math:`\theta_K` the tail keeps
    :math:`g` constant, :math:`1-\lambda = g_K\cos^2\theta` (Gaussian-like). A non-increasing
    table gives a non-increasing :math:`1-\lambda` everywhere.
    """

    theta_knots: jax.Array
    h_values: jax.Array
    h_slopes: jax.Array
    g_tail: jax.Array

    @classmethod
    def from_one_minus(cls, theta, one_minus) -> "LambdaFit":
        """Builds the spline from knots ``theta`` (from 0, increasing, below pi/2) and ``1 - lambda``."""
        theta, h = np.asarray(theta, np.float64), np.asarray(one_minus, np.float64)
        if theta.ndim != 1 or h.shape != theta.shape or theta.size < 2:
            raise ValueError("theta and 1 - lambda must be 1-D of equal length >= 2.")
        if theta[0] != 0.0 or theta[-1] >= HALF_PI or np.any(np.diff(theta) <= 0):
            raise ValueError("theta knots must increase strictly from 0 and stay below pi/2.")
        h = np.clip(h, 0.0, np.cos(theta) ** 2)
        g_tail = h[-1] / np.cos(theta[-1]) ** 2
        dtype = jnp.result_type(float)
        return cls(
            jnp.asarray(theta, dtype), jnp.asarray(h, dtype), jnp.asarray(pchip_slopes(theta, h), dtype),
            jnp.asarray(g_tail, dtype),
        )

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
        knots, h, dh = (v.astype(theta.dtype) for v in (self.theta_knots, self.h_values, self.h_slopes))
        inside, _ = hermite_eval(theta, knots, h, dh)
        tail = self.g_tail.astype(theta.dtype) * jnp.cos(theta) ** 2
        return jnp.clip(jnp.where(theta <= knots[-1], inside, tail), 0.0, 1.0)

    @eqx.filter_jit
    def g(self, theta) -> jax.Array:
        r""":math:`g(\theta) = (1-\lambda)/\cos^2\theta \in [0, 1]`."""
        theta = jnp.asarray(theta)
        last = self.theta_knots[-1].astype(theta.dtype)
        safe = jnp.minimum(theta, last)
        inside = self.one_minus_lambda_theta(safe) / jnp.cos(safe) ** 2
        return jnp.clip(jnp.where(theta <= last, inside, self.g_tail.astype(theta.dtype)), 0.0, 1.0)

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


def fit_lambda(estimate: LambdaEstimate, *, warn: bool = True) -> LambdaFit:
    r"""Fits a :class:`LambdaFit` to a noisy :class:`~kopaths.separation.LambdaEstimate`.

    The estimate is made non-decreasing by weighted isotonic regression (weights
    ``1/stderr^2``), then clipped into :math:`[s^2/(1+s^2), 1]`; a clip larger than three
    standard errors triggers a warning, since it means too few samples or unnormalised data.
    """
    snr = np.asarray(estimate.snr, np.float64)
    one_minus = np.asarray(estimate.one_minus_lam, np.float64)
    stderr = np.asarray(estimate.stderr, np.float64)
    if not (np.all(np.isfinite(one_minus)) and np.all(np.isfinite(snr))):
        raise ValueError("Lambda estimate contains NaN or Inf.")
    if np.any(np.diff(snr) <= 0) or snr[0] < 0:
        raise ValueError("Lambda estimate snr grid must be non-negative and strictly increasing.")
    weights = 1.0 / np.maximum(stderr, 1e-12) ** 2
    one_minus = -isotonic_regression(-one_minus, weights)  # 1 - lambda is non-increasing
    upper = 1.0 / (1.0 + snr**2)
    excess = one_minus - upper
    if warn and np.any(excess > 3 * stderr + 1e-6):
        i = int(np.argmax(excess - 3 * stderr))
        warnings.warn(
            f"lambda-hat falls below the Gaussian bound s^2/(1+s^2) at {int(np.sum(excess > 3 * stderr + 1e-6))} "
            f"snr points (worst at s={snr[i]:.3g} by {excess[i]:.3g}, stderr {stderr[i]:.2g}); clipped.",
            stacklevel=2,
        )
    one_minus = np.clip(one_minus, 0.0, upper)
    return LambdaFit.from_one_minus(*_knots(snr, one_minus))
