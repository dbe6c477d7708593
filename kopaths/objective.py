r"""The flow-matching objective: which times are trained and how much each counts.

The loss on a path with time sampler :math:`t\sim p(t)` and per-example weight :math:`w_t` is

.. math::  \mathcal L = \mathbb E_{t, x_0, x_1}\, w_t\,\|v_\theta(x_t, t) - (\dot\alpha_t x_1 + \dot\sigma_t x_0)\|^2/d .

Written per log-snr :math:`\ell = \log(\alpha_t/\sigma_t)`, with :math:`\hat\epsilon` the noise
prediction implied by :math:`v_\theta`, every such loss is

.. math::  \mathcal L = \int p(\ell)\, W(\ell)\; \mathbb E\|\hat\epsilon - \epsilon\|^2/d \; d\ell,
           \qquad W(\ell) = w_t\,\sigma_t^2\,\dot\ell_t^2,\qquad
           \dot\ell_t = \frac{\dot\theta_t}{\sin\theta_t\cos\theta_t},

so a path with uniform :math:`t` and :math:`w \equiv 1` *is* a choice of snr density
:math:`p(\ell) = 1/|\dot\ell_t|` and weight :math:`W(\ell)`. For Cond-OT these are
:math:`p(\ell) = \mathrm{sigmoid}(\ell)\,\mathrm{sigmoid}(-\ell)` and :math:`W(\ell) = (1+e^{-\ell})^2`
(the product is :math:`e^{-\ell}`). The KO time-parametrisation moves fast through low snr, so
with uniform :math:`t` it weights low snr far more than Cond-OT does.

:class:`SnrMatchedSampler` decouples the two choices: it trains the velocity of any path with the
snr density and weight of a *reference* (Cond-OT by default in the configs). It draws the
reference's time :math:`r`, moves to the path's time of equal snr, :math:`t = \theta^{-1}(\theta_{\rm ref}(r))`,
and weights by :math:`w = (\rho_{\rm ref}\dot\theta_{\rm ref}(r) / \rho\,\dot\theta(t))^2`
(:math:`\rho = \sqrt{\alpha^2+\sigma^2}`), which makes :math:`p(\ell)` and :math:`W(\ell)` those
of the reference. The two models then differ only in how the network's output is parametrised.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from kopaths.paths import conditional_velocity, sample_xt
from kopaths.schedules import Schedule, path_spec

__all__ = [
    "TimeSampler",
    "UniformTimes",
    "LogitNormalTimes",
    "SnrMatchedSampler",
    "make_time_sampler",
    "flow_matching_loss",
    "log_snr_weighting",
]

TimeSampler = Callable[[jax.Array, int], tuple[jax.Array, jax.Array]]
"""``sampler(key, batch_size) -> (t, weight)``, both of shape ``(batch_size,)``."""


def _check_support(t_min: float, t_max: float) -> tuple[float, float]:
    t_min, t_max = float(t_min), float(t_max)
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"time sampling needs 0 <= t_min < t_max <= 1, got {t_min}, {t_max}.")
    return t_min, t_max


class UniformTimes(eqx.Module):
    """:math:`t \\sim U[t_{\\min}, t_{\\max}]`, weight 1."""

    t_min: float = eqx.field(static=True, default=0.0)
    t_max: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        _check_support(self.t_min, self.t_max)

    def __call__(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        t = jax.random.uniform(key, (n,), minval=self.t_min, maxval=self.t_max)
        return t, jnp.ones_like(t)

    def density(self, t) -> jax.Array:
        t = jnp.asarray(t)
        inside = (t >= self.t_min) & (t <= self.t_max)
        return jnp.where(inside, 1.0 / (self.t_max - self.t_min), 0.0)


class LogitNormalTimes(eqx.Module):
    """:math:`t = t_{\\min} + (t_{\\max}-t_{\\min})\\,\\mathrm{sigmoid}(\\mu + s n)`, :math:`n\\sim\\mathcal N(0,1)`, weight 1."""

    loc: float = eqx.field(static=True, default=0.0)
    scale: float = eqx.field(static=True, default=1.0)
    t_min: float = eqx.field(static=True, default=0.0)
    t_max: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        _check_support(self.t_min, self.t_max)
        if not self.scale > 0:
            raise ValueError(f"logit_normal scale must be positive, got {self.scale}.")

    def __call__(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        u = jax.nn.sigmoid(self.loc + self.scale * jax.random.normal(key, (n,)))
        t = self.t_min + (self.t_max - self.t_min) * u
        return t, jnp.ones_like(t)

    def density(self, t) -> jax.Array:
        width = self.t_max - self.t_min
        u = jnp.clip((jnp.asarray(t) - self.t_min) / width, 1e-12, 1 - 1e-12)
        z = (jnp.log(u) - jnp.log1p(-u) - self.loc) / self.scale
        return jnp.exp(-0.5 * z * z) / (self.scale * jnp.sqrt(2 * jnp.pi) * u * (1 - u) * width)


def _angular_rate(schedule: Schedule, t) -> tuple[jax.Array, jax.Array]:
    """``(theta_t, rho_t * dtheta_t)``; :math:`\\rho\\dot\\theta = \\sigma\\dot s\\cos\\theta` is finite at both ends."""
    p = schedule.polar(t)
    return p.angle, p.radius * p.d_angle


class SnrMatchedSampler(eqx.Module):
    r"""Times on ``schedule`` with the snr density and loss weight of ``base`` on ``reference``.

    See the module docstring: :math:`t = \theta^{-1}(\theta_{\rm ref}(r))` for :math:`r` from
    ``base``, weight :math:`w_r\,(\rho_{\rm ref}\dot\theta_{\rm ref}(r)/\rho\,\dot\theta(t))^2`.
    """

    schedule: Schedule
    reference: Schedule
    base: Any = eqx.field(default_factory=UniformTimes)

    def __call__(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        r, w = self.base(key, n)
        angle, rate_ref = _angular_rate(self.reference, r)
        t = self.schedule.angle_inverse(angle)
        _, rate = _angular_rate(self.schedule, t)
        return t, w * (rate_ref / rate) ** 2


def make_time_sampler(cfg: Mapping[str, Any], schedule: Schedule | None = None) -> TimeSampler:
    """Builds the time sampler of a config: ``name`` ("uniform" or "logit_normal", with ``loc``
    and ``scale``) on ``[t_min, t_max]``, and ``reference``: empty for the training path's own
    time, or a registry path name (e.g. "cond_ot") whose snr density and weighting are matched
    (:class:`SnrMatchedSampler`; needs ``schedule``)."""
    name = cfg.get("name", "uniform")
    t_min, t_max = _check_support(cfg.get("t_min", 0.0), cfg.get("t_max", 1.0))
    if name == "uniform":
        base: Any = UniformTimes(t_min, t_max)
    elif name == "logit_normal":
        base = LogitNormalTimes(float(cfg.get("loc", 0.0)), float(cfg.get("scale", 1.0)), t_min, t_max)
    else:
        raise ValueError(f"Unknown time sampler {name!r}; choose 'uniform' or 'logit_normal'.")
    reference = cfg.get("reference") or ""
    if not reference:
        return base
    if schedule is None:
        raise ValueError("An snr-matched time sampler needs the training schedule.")
    return SnrMatchedSampler(schedule, path_spec(reference).build(), base)


def flow_matching_loss(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: Schedule,
    x1: jax.Array,
    key: jax.Array,
    time_sampler: TimeSampler,
) -> jax.Array:
    r"""Weighted conditional flow-matching loss :math:`\mathbb E\,w_t\|v(x_t,t) - (\dot\alpha_t x_1 + \dot\sigma_t x_0)\|^2 / d`.

    Args:
      velocity_fn: ``(x_t, t) -> v`` of ``x_t``'s shape.
      schedule: the Gaussian path the velocity is expressed on.
      x1: data batch ``(B, ...)``.
      key: PRNG key for ``t`` and ``x0``.
      time_sampler: draws ``(t, weight)`` (:func:`make_time_sampler`).

    Returns:
      The batch mean of the weighted squared error per dimension.
    """
    k_t, k_x0 = jax.random.split(key)
    t, weight = time_sampler(k_t, x1.shape[0])
    x0 = jax.random.normal(k_x0, x1.shape, x1.dtype)
    xt = sample_xt(schedule, t, x0, x1)
    target = conditional_velocity(schedule, t, x0, x1)
    pred = velocity_fn(xt, t)
    per_example = jnp.mean(jnp.square(pred - target).reshape(x1.shape[0], -1), axis=1)
    return jnp.mean(weight * per_example)


def log_snr_weighting(schedule: Schedule, log_snr, sampler: Any = None) -> tuple[np.ndarray, np.ndarray]:
    r"""``(p(ell), W(ell))`` of the objective at log-snr values ``log_snr`` (module docstring).

    ``sampler`` is a :class:`UniformTimes`, :class:`LogitNormalTimes` or
    :class:`SnrMatchedSampler` (default: uniform times on ``schedule``); the training time density
    and weight are mapped to the density of :math:`\ell` and the :math:`\epsilon`-prediction weight.
    """
    sampler = UniformTimes() if sampler is None else sampler
    angle = jnp.arctan(jnp.exp(jnp.asarray(log_snr)))
    if isinstance(sampler, SnrMatchedSampler):
        own, base = sampler.reference, sampler.base
    else:
        own, base = schedule, sampler
    t = own.angle_inverse(angle)
    p = own.polar(t)
    dell = p.d_angle / (jnp.sin(p.angle) * jnp.cos(p.angle))
    sigma = p.radius * jnp.cos(p.angle)
    density = base.density(t) / jnp.abs(dell)
    return np.asarray(density, np.float64), np.asarray(sigma**2 * dell**2, np.float64)
