r"""Gaussian probability-path schedules.

A schedule defines the conditional path

.. math::  p_t(x \mid x_1) = \mathcal N(\alpha_t x_1, \sigma_t^2 I),\qquad t\in[0,1],

with noise at :math:`t=0` (:math:`\alpha_0=0, \sigma_0=1`) and data at :math:`t=1`
(:math:`\alpha_1=1, \sigma_1=\sigma_{\min}`). Calling a schedule on ``t`` returns
``SchedulerOutput(alpha, sigma, d_alpha, d_sigma)``. Every schedule is an
:class:`equinox.Module`, hence a pytree: it can be passed through ``jax.jit``,
``jax.vmap`` and ``jax.grad`` (with respect to ``t`` or to its array fields).
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

__all__ = [
    "SchedulerOutput",
    "Schedule",
    "CondOTSchedule",
    "VPSchedule",
    "CosineSchedule",
    "LinearVPSchedule",
    "PolynomialSchedule",
    "TabulatedSchedule",
    "get_schedule",
]


class SchedulerOutput(NamedTuple):
    """Values and time derivatives of a schedule at ``t``."""

    alpha: jax.Array
    sigma: jax.Array
    d_alpha: jax.Array
    d_sigma: jax.Array


def _as_time(t) -> jax.Array:
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t


def check_sigma_min(sigma_min: float) -> float:
    """Validates ``sigma_min`` in ``[0, 1)`` and returns it as a float."""
    sigma_min = float(sigma_min)
    if not np.isfinite(sigma_min) or not 0.0 <= sigma_min < 1.0:
        raise ValueError(f"sigma_min must lie in [0, 1), got {sigma_min!r}.")
    return sigma_min


class Schedule(eqx.Module):
    r"""Abstract Gaussian-path schedule :math:`t \mapsto (\alpha_t, \sigma_t)`.

    Subclasses implement :meth:`__call__`; :meth:`snr_inverse` defaults to a
    bisection root find (optimistix) on the monotone signal-to-noise ratio
    :math:`s_t = \alpha_t/\sigma_t` and is overridden where a closed form exists.
    """

    @abc.abstractmethod
    def __call__(self, t) -> SchedulerOutput:
        """Returns ``(alpha, sigma, d_alpha, d_sigma)`` at ``t`` (any shape)."""

    def snr(self, t) -> jax.Array:
        r"""Signal-to-noise ratio :math:`s_t = \alpha_t / \sigma_t` (``inf`` where sigma is 0)."""
        out = self(t)
        return out.alpha / out.sigma

    def snr_inverse(self, snr) -> jax.Array:
        """Time ``t`` with ``self.snr(t) == snr`` (elementwise; snr must be reachable)."""
        snr = _as_time(snr)

        def solve(s):
            def fn(t, _):
                out = self(t)
                return out.alpha - s * out.sigma

            sol = optx.root_find(
                fn,
                optx.Bisection(rtol=0.0, atol=64 * jnp.finfo(snr.dtype).eps),
                jnp.asarray(0.5, snr.dtype),
                options=dict(lower=jnp.asarray(0.0, snr.dtype), upper=jnp.asarray(1.0, snr.dtype)),
                max_steps=128,
                throw=False,
            )
            return sol.value

        flat = jax.vmap(solve)(snr.reshape(-1))
        return flat.reshape(snr.shape)


class CondOTSchedule(Schedule):
    r"""Conditional optimal transport: :math:`\alpha_t = t,\ \sigma_t = 1-(1-\sigma_{\min})t`."""

    sigma_min: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        check_sigma_min(self.sigma_min)

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        c = 1.0 - self.sigma_min
        return SchedulerOutput(t, 1.0 - c * t, jnp.ones_like(t), jnp.full_like(t, -c))

    def snr_inverse(self, snr) -> jax.Array:
        snr = _as_time(snr)
        return jnp.where(jnp.isinf(snr), 1.0, snr / (1.0 + (1.0 - self.sigma_min) * snr))


class VPSchedule(Schedule):
    r"""DDPM / variance preserving path in the noise-at-0 convention.

    .. math::
        T(t) = \tfrac12 (1-t)^2(\beta_{\max}-\beta_{\min}) + (1-t)\beta_{\min},\quad
        \alpha_t = e^{-T(t)/2},\quad \sigma_t = \sqrt{1-\alpha_t^2}.

    ``sigma_1 = 0`` and :math:`\sigma'_t \to -\infty` as :math:`t\to1`, so energies of this
    path are finite only on :math:`[0, 1-\epsilon]`.
    """

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)

    def __check_init__(self):
        if not 0.0 < self.beta_min < self.beta_max:
            raise ValueError(
                f"VPSchedule needs 0 < beta_min < beta_max, got {self.beta_min}, {self.beta_max}."
            )

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        u = 1.0 - t
        db = self.beta_max - self.beta_min
        big_t = 0.5 * u**2 * db + u * self.beta_min
        d_big_t = -(u * db + self.beta_min)
        alpha = jnp.exp(-0.5 * big_t)
        one_minus_a2 = -jnp.expm1(-big_t)
        sigma = jnp.sqrt(one_minus_a2)
        d_alpha = -0.5 * d_big_t * alpha
        d_sigma = -alpha * d_alpha / sigma
        return SchedulerOutput(alpha, sigma, d_alpha, d_sigma)

    def snr_inverse(self, snr) -> jax.Array:
        snr = _as_time(snr)
        big_t = jnp.log1p(1.0 / snr**2)
        db = self.beta_max - self.beta_min
        u = (jnp.sqrt(self.beta_min**2 + 2.0 * db * big_t) - self.beta_min) / db
        return 1.0 - u


class CosineSchedule(Schedule):
    r"""Stochastic-interpolant / trigonometric path: :math:`\alpha_t=\sin(\pi t/2),\ \sigma_t=\cos(\pi t/2)`."""

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        h = 0.5 * jnp.pi
        return SchedulerOutput(
            jnp.sin(h * t), jnp.cos(h * t), h * jnp.cos(h * t), -h * jnp.sin(h * t)
        )

    def snr_inverse(self, snr) -> jax.Array:
        return jnp.arctan(_as_time(snr)) / (0.5 * jnp.pi)


class LinearVPSchedule(Schedule):
    r"""Linear variance-preserving path: :math:`\alpha_t = t,\ \sigma_t=\sqrt{1-t^2}`."""

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        sigma = jnp.sqrt(1.0 - t**2)
        return SchedulerOutput(t, sigma, jnp.ones_like(t), -t / sigma)

    def snr_inverse(self, snr) -> jax.Array:
        snr = _as_time(snr)
        return jnp.where(jnp.isinf(snr), 1.0, snr / jnp.sqrt(1.0 + snr**2))


class PolynomialSchedule(Schedule):
    r"""Polynomial path: :math:`\alpha_t = t^n,\ \sigma_t = 1-t^n` (``n > 0``)."""

    exponent: float = eqx.field(static=True, default=2.0)

    def __check_init__(self):
        if not self.exponent > 0:
            raise ValueError(f"PolynomialSchedule needs exponent > 0, got {self.exponent}.")

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        n = self.exponent
        tn = t**n
        dtn = n * t ** (n - 1)
        return SchedulerOutput(tn, 1.0 - tn, dtn, -dtn)

    def snr_inverse(self, snr) -> jax.Array:
        snr = _as_time(snr)
        return jnp.where(jnp.isinf(snr), 1.0, (snr / (1.0 + snr)) ** (1.0 / self.exponent))


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson shape-preserving slopes of a monotone cubic Hermite interpolant."""
    h = np.diff(x)
    delta = np.diff(y) / h
    m = np.zeros_like(y)
    if len(x) == 2:
        return np.full_like(y, delta[0])
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = (delta[:-1] * delta[1:]) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    m[1:-1] = np.where(same_sign, harmonic, 0.0)

    def end_slope(h0, h1, d0, d1):
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(s) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(s) > abs(3 * d0):
            return 3 * d0
        return s

    m[0] = end_slope(h[0], h[1], delta[0], delta[1])
    m[-1] = end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return m


@jax.jit
def hermite_eval(x, knots, values, slopes):
    """Evaluates a cubic Hermite interpolant and its derivative at ``x`` (clamped to the knots)."""
    x = jnp.clip(x, knots[0], knots[-1])
    i = jnp.clip(jnp.searchsorted(knots, x, side="right") - 1, 0, knots.shape[0] - 2)
    x0, x1 = knots[i], knots[i + 1]
    h = x1 - x0
    u = (x - x0) / h
    y0, y1, m0, m1 = values[i], values[i + 1], slopes[i] * h, slopes[i + 1] * h
    u2, u3 = u * u, u * u * u
    val = (2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * y1 + (u3 - u2) * m1
    der = ((6 * u2 - 6 * u) * y0 + (3 * u2 - 4 * u + 1) * m0 + (-6 * u2 + 6 * u) * y1 + (3 * u2 - 2 * u) * m1) / h
    return val, der


class TabulatedSchedule(Schedule):
    r"""Schedule given by a table on knots :math:`t_i`, for paths known only numerically (KO).

    The table is interpolated by monotone (Fritsch-Carlson) cubic Hermite splines, which are
    :math:`C^1`, never overshoot a monotone table, and whose returned derivatives are the
    exact derivatives of the returned values. With ``coordinates="polar"`` the splines
    interpolate :math:`r=\sqrt{\alpha^2+\sigma^2}` and :math:`\theta=\operatorname{atan2}(\alpha,\sigma)`
    instead of :math:`(\alpha,\sigma)`; this keeps :math:`r` exact where :math:`\theta` moves fast,
    as KO paths do near :math:`t=0`. Build one with :meth:`from_table`.
    """

    knots: jax.Array
    values: jax.Array
    slopes: jax.Array
    coordinates: str = eqx.field(static=True, default="cartesian")

    @classmethod
    def from_table(cls, t, alpha, sigma, *, coordinates: str = "cartesian", **kwargs) -> "TabulatedSchedule":
        """Builds the interpolant, validating the table (increasing knots covering [0, 1])."""
        t, alpha, sigma = (np.asarray(v, dtype=np.float64) for v in (t, alpha, sigma))
        if t.ndim != 1 or alpha.shape != t.shape or sigma.shape != t.shape or t.size < 2:
            raise ValueError(
                "TabulatedSchedule needs 1-D t, alpha and sigma of equal length >= 2; got shapes "
                f"{t.shape}, {alpha.shape}, {sigma.shape}."
            )
        if not np.all(np.isfinite(t) & np.isfinite(alpha) & np.isfinite(sigma)):
            raise ValueError("TabulatedSchedule table contains NaN or Inf.")
        if np.any(np.diff(t) <= 0):
            raise ValueError("TabulatedSchedule knots t must be strictly increasing.")
        if abs(t[0]) > 1e-12 or abs(t[-1] - 1.0) > 1e-12:
            raise ValueError(f"TabulatedSchedule knots must span [0, 1], got [{t[0]}, {t[-1]}].")
        if np.any(sigma < -1e-6):
            raise ValueError("TabulatedSchedule sigma must be non-negative.")
        sigma = np.maximum(sigma, 0.0)
        if coordinates == "cartesian":
            rows = np.stack([alpha, sigma])
        elif coordinates == "polar":
            rows = np.stack([np.hypot(alpha, sigma), np.arctan2(alpha, sigma)])
        else:
            raise ValueError(f"coordinates must be 'cartesian' or 'polar', got {coordinates!r}.")
        slopes = np.stack([pchip_slopes(t, row) for row in rows])
        dtype = jnp.result_type(float)
        return cls(jnp.asarray(t, dtype), jnp.asarray(rows, dtype), jnp.asarray(slopes, dtype), coordinates, **kwargs)

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        knots, values, slopes = (v.astype(t.dtype) for v in (self.knots, self.values, self.slopes))
        u, du = hermite_eval(t, knots, values[0], slopes[0])
        v, dv = hermite_eval(t, knots, values[1], slopes[1])
        if self.coordinates == "cartesian":
            return SchedulerOutput(u, v, du, dv)
        sin, cos = jnp.sin(v), jnp.cos(v)
        sigma = jnp.maximum(u * cos, 0.0)  # cos(pi/2) is -4e-8 in float32
        return SchedulerOutput(u * sin, sigma, du * sin + u * cos * dv, du * cos - u * sin * dv)


_REGISTRY = {
    "cond_ot": CondOTSchedule,
    "condot": CondOTSchedule,
    "vp": VPSchedule,
    "ddpm": VPSchedule,
    "cosine": CosineSchedule,
    "si": CosineSchedule,
    "linear_vp": LinearVPSchedule,
    "polynomial": PolynomialSchedule,
}


def get_schedule(name: str, **kwargs) -> Schedule:
    """Builds an analytic schedule by name: cond_ot, vp/ddpm, cosine/si, linear_vp, polynomial."""
    try:
        cls = _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"Unknown schedule {name!r}; choose one of {sorted(_REGISTRY)} or 'ko'.") from None
    return cls(**kwargs)
