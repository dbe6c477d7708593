r"""The paper's practical KO procedure: a small parametric path fitted by gradient descent on the energy.

Theorem 3.1 of Shaul et al. (2023) fixes the radius of every kinetic-optimal path to the
one-parameter family :math:`\rho_t^2 = 1-(b+1-\rho_1^2)t + bt^2`; the angle
:math:`\theta_t = \arctan s_t` is what depends on the data. :class:`BernsteinAnglePath` takes
:math:`\theta_t = \theta_1 F(u_t)` with a monotone polynomial in Bernstein form of a log-warped time,

.. math::  F(u) = \sum_{k=0}^{K} c_k \binom{K}{k} u^k (1-u)^{K-k},\qquad
           0 = c_0 \le c_1 \le \dots \le c_K = 1,\quad c_k - c_{k-1} = \mathrm{softmax}(w)_k,\qquad
           u_t = \frac{\log(1+\kappa t)}{\log(1+\kappa)},

so :math:`\theta_0 = 0`, :math:`\theta_1` is exact and :math:`\dot\theta \ge 0` by construction,
and the speed is bounded: :math:`\dot\theta_t \le K\theta_1\kappa/\log(1+\kappa)`, with the warp
:math:`\kappa \in [1, \kappa_{\max}]` (``max_warp``, default 100). The warp lets the path cross the low-snr region (where :math:`\gamma\approx(m_2-1)\theta^2`
is small and the exact geodesic moves as :math:`\sqrt t`) quickly but at a finite speed. With the
default ``K = 8`` the path has ten parameters (:math:`w`, :math:`\kappa` and :math:`b`), as the
paper's 10-parameter network. :func:`fit_bernstein_path` minimises :func:`kopaths.kinetic_energy`
over all of them with Adam (Optax), differentiating through the :class:`~kopaths.LambdaFit` spline.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kopaths.kinetic import kinetic_energy
from kopaths.lambda_fit import LambdaFit
from kopaths.schedules import PolarOutput, Schedule, SchedulerOutput

__all__ = ["BernsteinAnglePath", "fit_bernstein_path"]


def _bernstein(t: jax.Array, degree: int) -> jax.Array:
    """Basis values ``B_{k,degree}(t)``, shape ``t.shape + (degree + 1,)``."""
    k = np.arange(degree + 1)
    log_binom = np.asarray([math.lgamma(degree + 1) - math.lgamma(i + 1) - math.lgamma(degree - i + 1) for i in k])
    t = t[..., None]
    return jnp.exp(jnp.asarray(log_binom, t.dtype)) * t ** jnp.asarray(k, t.dtype) * (1 - t) ** jnp.asarray(degree - k, t.dtype)


class BernsteinAnglePath(Schedule):
    r"""Theorem 3.1's radius with a monotone Bernstein-polynomial angle (see the module docstring).

    Attributes:
      logits: ``(K,)`` weights :math:`w` of the angle increments.
      warp_logit: the time warp, :math:`\log\kappa = \log\kappa_{\max}\,\mathrm{sigmoid}(\cdot)`.
      b_logit: :math:`b = b_{lo} + (b_{hi} - b_{lo})\,\mathrm{sigmoid}(\cdot)`, with
        :math:`(b_{lo}, b_{hi}) = ((\rho_1-1)^2, 1+\rho_1^2)`, the range where :math:`\rho_t > 0`.
      theta_1, radius_1: end angle :math:`\arctan(1/\sigma_{\min})` and radius
        :math:`\sqrt{1+\sigma_{\min}^2}` (static).
    """

    logits: jax.Array
    warp_logit: jax.Array
    b_logit: jax.Array
    theta_1: float = eqx.field(static=True)
    radius_1: float = eqx.field(static=True)
    max_warp: float = eqx.field(static=True, default=100.0)

    @property
    def kappa(self) -> jax.Array:
        return jnp.exp(math.log(self.max_warp) * jax.nn.sigmoid(self.warp_logit))

    @property
    def b(self) -> jax.Array:
        lo, hi = (self.radius_1 - 1.0) ** 2, 1.0 + self.radius_1**2
        return lo + (hi - lo) * jax.nn.sigmoid(self.b_logit)

    def polar(self, t) -> PolarOutput:
        t = jnp.asarray(t, jnp.result_type(self.logits.dtype, float))
        degree = self.logits.shape[0]
        steps = jax.nn.softmax(self.logits)
        coeffs = jnp.concatenate([jnp.zeros((1,), steps.dtype), jnp.cumsum(steps)])
        kappa = self.kappa
        scale = jnp.log1p(kappa)
        u = jnp.log1p(kappa * t) / scale
        du = kappa / ((1.0 + kappa * t) * scale)
        angle = self.theta_1 * jnp.sum(_bernstein(u, degree) * coeffs, axis=-1)
        d_angle = self.theta_1 * degree * jnp.sum(_bernstein(u, degree - 1) * steps, axis=-1) * du
        b = self.b
        c = b + 1.0 - self.radius_1**2
        r2 = 1.0 - c * t + b * t * t
        radius = jnp.sqrt(r2)
        return PolarOutput(radius, angle, (2.0 * b * t - c) / (2.0 * radius), d_angle)

    def __call__(self, t) -> SchedulerOutput:
        r, th, dr, dth = self.polar(t)
        sin, cos = jnp.sin(th), jnp.cos(th)
        return SchedulerOutput(r * sin, jnp.maximum(r * cos, 0.0), dr * sin + r * cos * dth, dr * cos - r * sin * dth)


def fit_bernstein_path(
    lam: LambdaFit,
    theta_1: float,
    radius_1: float,
    *,
    degree: int = 8,
    steps: int = 3000,
    learning_rate: float = 0.1,
    b_init: float | None = None,
    max_warp: float = 100.0,
) -> tuple[BernsteinAnglePath, list[float]]:
    """Minimises the kinetic energy on ``lam`` over the path's parameters with Adam (float64).

    Starts from :math:`\\theta_t = \\theta_1 u_t` with :math:`\\kappa = 10` and ``b_init``
    (default: the middle of its range), with a cosine-decayed learning rate. Returns the fitted
    path and the energy every 100 steps.
    """
    if degree < 1 or steps < 1:
        raise ValueError(f"degree and steps must be positive, got {degree}, {steps}.")
    with jax.enable_x64(True):
        lo, hi = (radius_1 - 1.0) ** 2, 1.0 + radius_1**2
        frac = 0.5 if b_init is None else float(np.clip((b_init - lo) / (hi - lo), 1e-3, 1 - 1e-3))
        if not max_warp > 10.0:
            raise ValueError(f"max_warp must exceed 10, got {max_warp}.")
        warp = math.log(10.0) / math.log(max_warp)
        path = BernsteinAnglePath(jnp.zeros((degree,), jnp.float64), jnp.asarray(math.log(warp / (1 - warp))),
                                  jnp.asarray(math.log(frac / (1 - frac))), float(theta_1), float(radius_1),
                                  float(max_warp))
        lam64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), lam)
        tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))
        params, static = eqx.partition(path, eqx.is_array)

        def energy(p):
            return kinetic_energy(eqx.combine(p, static), lam64)

        @jax.jit
        def run(p, opt):
            def body(carry, _):
                p, opt = carry
                value, grad = jax.value_and_grad(energy)(p)
                updates, opt = tx.update(grad, opt, p)
                return (optax.apply_updates(p, updates), opt), value

            (p, opt), trace = jax.lax.scan(body, (p, opt), None, length=steps)
            return p, trace

        params, trace = run(params, tx.init(params))
        path = eqx.combine(params, static)
        trace = np.asarray(trace)[::100].tolist() + [float(energy(params))]
    return path, trace
