r"""Sampling a Gaussian path and converting between parametrisations of its velocity.

With :math:`x_t = \alpha_t x_1 + \sigma_t x_0`, the conditional target velocity is
:math:`u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0`. A velocity model, an :math:`x_1`
(data) predictor and an :math:`\epsilon = x_0` predictor are related by the linear maps
below, valid wherever :math:`\alpha_t\dot\sigma_t - \sigma_t\dot\alpha_t \neq 0`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kopaths.schedules import Schedule

__all__ = [
    "sample_xt",
    "conditional_velocity",
    "velocity_to_x1",
    "velocity_to_epsilon",
    "x1_to_velocity",
    "epsilon_to_velocity",
]


def _bcast(v: jax.Array, x: jax.Array) -> jax.Array:
    v = jnp.asarray(v, x.dtype)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def sample_xt(schedule: Schedule, t, x0: jax.Array, x1: jax.Array) -> jax.Array:
    r""":math:`x_t = \alpha_t x_1 + \sigma_t x_0`; ``t`` is a scalar or has the batch shape of ``x``."""
    out = schedule(t)
    return _bcast(out.alpha, x1) * x1 + _bcast(out.sigma, x0) * x0


def conditional_velocity(schedule: Schedule, t, x0: jax.Array, x1: jax.Array) -> jax.Array:
    r"""Flow-matching regression target :math:`\dot\alpha_t x_1 + \dot\sigma_t x_0`."""
    out = schedule(t)
    return _bcast(out.d_alpha, x1) * x1 + _bcast(out.d_sigma, x0) * x0


def _coefficients(schedule: Schedule, t, x):
    out = schedule(t)
    a, s, da, ds = (_bcast(v, x) for v in out)
    return a, s, da, ds, a * ds - s * da


def velocity_to_x1(schedule: Schedule, t, x: jax.Array, velocity: jax.Array) -> jax.Array:
    r""":math:`\hat x_1 = (\dot\sigma_t x - \sigma_t v) / (\alpha_t\dot\sigma_t - \sigma_t\dot\alpha_t)`."""
    a, s, da, ds, det = _coefficients(schedule, t, x)
    return (ds * x - s * velocity) / det


def velocity_to_epsilon(schedule: Schedule, t, x: jax.Array, velocity: jax.Array) -> jax.Array:
    r""":math:`\hat x_0 = (\alpha_t v - \dot\alpha_t x) / (\alpha_t\dot\sigma_t - \sigma_t\dot\alpha_t)`."""
    a, s, da, ds, det = _coefficients(schedule, t, x)
    return (a * velocity - da * x) / det


def x1_to_velocity(schedule: Schedule, t, x: jax.Array, x1_pred: jax.Array) -> jax.Array:
    r""":math:`v = \dot\alpha_t \hat x_1 + \dot\sigma_t (x - \alpha_t \hat x_1)/\sigma_t`."""
    a, s, da, ds, _ = _coefficients(schedule, t, x)
    return da * x1_pred + ds * (x - a * x1_pred) / s


def epsilon_to_velocity(schedule: Schedule, t, x: jax.Array, eps_pred: jax.Array) -> jax.Array:
    r""":math:`v = \dot\alpha_t (x - \sigma_t\hat x_0)/\alpha_t + \dot\sigma_t \hat x_0`."""
    a, s, da, ds, _ = _coefficients(schedule, t, x)
    return da * (x - s * eps_pred) / a + ds * eps_pred
