r"""Kinetic energy of Gaussian paths.

The kinetic energy per dimension of the marginal velocity field is

.. math::  \mathcal E = \frac1d\int_0^1 \mathbb E_{x\sim p_t}\|u_t(x)\|^2 dt
           = \int_0^1 \big[\dot\alpha^2 + \dot\sigma^2 - \beta_t^2 (1-\lambda(\alpha_t/\sigma_t))\big]dt,
           \qquad \beta_t = \dot\alpha_t - \alpha_t\dot\sigma_t/\sigma_t .

:func:`kinetic_energy` evaluates it in the polar form that stays finite where
:math:`\sigma_t\to0`: with :math:`r^2=\alpha^2+\sigma^2`,
:math:`\theta = \operatorname{atan2}(\alpha,\sigma)` and :math:`\gamma = 1-g` (see
:mod:`kopaths.lambda_fit`), the integrand is
:math:`[(\alpha\dot\alpha+\sigma\dot\sigma)^2 + \gamma(\theta)(\sigma\dot\alpha-\alpha\dot\sigma)^2]/r^2`,
integrated by composite Gauss-Legendre quadrature on intervals graded geometrically towards
both ends. :func:`kinetic_energy_monte_carlo` is an independent estimator that averages
:math:`\|u_t(x)\|^2/d` of the exact marginal velocity of an empirical dataset.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from kopaths.ideal import marginal_velocity
from kopaths.lambda_fit import LambdaFit
from kopaths.paths import sample_xt
from kopaths.schedules import Schedule

__all__ = [
    "conditional_energy",
    "kinetic_energy",
    "kinetic_energy_density",
    "kinetic_energy_monte_carlo",
    "quadrature_nodes",
]


@functools.lru_cache(maxsize=32)
def quadrature_nodes(t_max: float = 1.0, *, order: int = 24, levels: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights on ``[0, t_max]``: 32 uniform panels, refined
    geometrically towards both ends."""
    if not 0.0 < t_max <= 1.0:
        raise ValueError(f"t_max must lie in (0, 1], got {t_max}.")
    geo = 0.5 ** np.arange(levels, 0, -1)  # 2^-levels ... 1/2
    left = np.concatenate([[0.0], geo * 0.5 * t_max])
    right = t_max - geo[::-1] * 0.5 * t_max
    breaks = np.unique(np.concatenate([left, right[1:], np.linspace(0.0, t_max, 33)]))
    x, w = np.polynomial.legendre.leggauss(order)
    a, b = breaks[:-1, None], breaks[1:, None]
    nodes = 0.5 * (b - a) * x[None, :] + 0.5 * (a + b)
    weights = 0.5 * (b - a) * w[None, :]
    return nodes.ravel(), weights.ravel()


def _nodes(t_max: float, dtype):
    nodes, weights = quadrature_nodes(float(t_max))
    return jnp.asarray(nodes, dtype), jnp.asarray(weights, dtype)


def conditional_energy(schedule: Schedule, *, t_max: float = 1.0) -> jax.Array:
    r""":math:`\mathcal E_c = \int_0^{t_{\max}} (\dot\alpha_t^2 + \dot\sigma_t^2)\,dt`."""
    t, w = _nodes(t_max, jnp.result_type(float))
    out = schedule(t)
    return jnp.sum(w * (out.d_alpha**2 + out.d_sigma**2))


def kinetic_energy_density(schedule: Schedule, lam: LambdaFit, t) -> jax.Array:
    r""":math:`\frac1d\mathbb E_{x\sim p_t}\|u_t(x)\|^2` of the marginal field at ``t``:
    :math:`[(\alpha\dot\alpha + \sigma\dot\sigma)^2 + \gamma(\theta)(\sigma\dot\alpha - \alpha\dot\sigma)^2]/\rho^2`."""
    a, s, da, ds = schedule(t)
    r2 = a * a + s * s
    radial = a * da + s * ds
    angular = s * da - a * ds
    gamma = lam.gamma(jnp.arctan2(a, s))
    return (radial**2 + gamma * angular**2) / r2


def kinetic_energy(schedule: Schedule, lam: LambdaFit, *, t_max: float = 1.0) -> jax.Array:
    r"""Kinetic energy per dimension of the marginal flow of ``schedule`` on data with separation ``lam``.

    Pure and differentiable in both arguments. ``t_max < 1`` truncates the time integral, which
    is needed for paths whose :math:`\dot\sigma_t` is not square integrable (VP, linear-VP).
    """
    t, w = _nodes(t_max, jnp.result_type(float))
    return jnp.sum(w * kinetic_energy_density(schedule, lam, t))


def kinetic_energy_monte_carlo(
    schedule: Schedule,
    data: jax.Array,
    *,
    key: jax.Array,
    num_samples: int = 65536,
    batch_size: int = 4096,
    t_max: float = 1.0,
) -> tuple[float, float]:
    r"""Monte Carlo :math:`\mathcal E` with the exact marginal velocity of the empirical ``data``.

    Samples :math:`t\sim U[0,t_{\max}]`, :math:`x_1` from ``data`` and :math:`x_0\sim\mathcal N(0,I)`,
    and averages :math:`t_{\max}\|u_t(x_t)\|^2/d`. Returns ``(estimate, standard error)``.
    """
    data = jnp.asarray(data).reshape(data.shape[0], -1)
    n, d = data.shape
    if num_samples < 2:
        raise ValueError("num_samples must be >= 2.")

    @jax.jit
    def batch_terms(k):
        kt, ki, k0 = jax.random.split(k, 3)
        t = jax.random.uniform(kt, (batch_size,), data.dtype, 0.0, t_max)
        x1 = data[jax.random.randint(ki, (batch_size,), 0, n)]
        x0 = jax.random.normal(k0, (batch_size, d), data.dtype)
        xt = sample_xt(schedule, t, x0, x1)
        u = marginal_velocity(schedule, data, t, xt)
        return t_max * jnp.sum(u * u, axis=1) / d

    num_batches = -(-num_samples // batch_size)
    terms = np.concatenate([np.asarray(batch_terms(k)) for k in jax.random.split(key, num_batches)])
    terms = terms.astype(np.float64)
    return float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(terms.size))
