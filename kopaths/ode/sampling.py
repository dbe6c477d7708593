r"""ODE sampling of flow-matching models with diffrax, entirely under ``jit``.

A velocity model defines the probability-flow ODE

.. math::  \frac{dx_t}{dt} = u_t(x_t),\qquad x_0 \sim \mathcal N(0, I),\quad t: 0 \to 1,

whose solution at :math:`t = 1` is a sample (noise at 0, data at 1). Everything here is
written against a plain *velocity callable* ``velocity_fn(t, x) -> v`` with ``t`` a scalar
and ``x`` a batch ``(batch, *example_shape)``. To let model parameters be traced rather
than baked into the compiled program as constants, pass a pytree callable
(``jax.tree_util.Partial(apply_fn, params)`` or an :class:`equinox.Module`); plain Python
functions work too and are treated as static.

Fixed-step solvers (``euler``, ``midpoint``, ``heun``) are called at a number of function
evaluations (NFE) for the whole batch; adaptive ones (``dopri5``, ``tsit5``) solve every example
with its own step sizes, sharded over a 1-D device mesh (:mod:`kopaths.ode._core`, whose solve is
shared with :mod:`kopaths.ode.energy` and :mod:`kopaths.ode.likelihood`). NFE accounting was
checked against an ``io_callback`` call counter in the tests.

:class:`ScheduleTransformedVelocity` samples a model trained on one path along any other.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from kopaths.ode._core import (
    ADAPTIVE_SOLVERS,
    FIXED_STEP_SOLVERS,
    default_mesh,
    fixed_step_nfe_to_steps,
    integrate,
)
from kopaths.schedules import Schedule

__all__ = [
    "VelocityFn",
    "SampleResult",
    "FIXED_STEP_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "default_mesh",
    "sample_fixed",
    "sample_adaptive",
    "sample",
    "ScheduleTransformedVelocity",
]

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


class SampleResult(NamedTuple):
    """Output of a sampler.

    Attributes:
      x: final states at ``t1``, shape ``(batch, *example_shape)``.
      nfe: velocity evaluations each example needed, int32 ``(batch,)``.
      nfe_max: evaluations actually executed for the batch (max over examples), int32 scalar.
      success: per-example solver success flags (False e.g. when ``max_steps`` was hit).
    """

    x: jax.Array
    nfe: jax.Array
    nfe_max: jax.Array
    success: jax.Array


def _check_batch(x0) -> None:
    if not hasattr(x0, "ndim") or x0.ndim < 2:
        raise ValueError(f"x0 must be a batch of shape (batch, *example_shape), got {getattr(x0, 'shape', x0)}.")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"x0 must be floating point, got {x0.dtype}.")


def _velocity_field(velocity_fn, t, x, _):
    return velocity_fn(t, x)


def sample_fixed(velocity_fn: VelocityFn, x0: jax.Array, *, method: str = "euler", nfe: int, t0: float = 0.0,
                 t1: float = 1.0) -> SampleResult:
    r"""Integrates :math:`\dot x = u_t(x)` from ``t0`` to ``t1`` with a fixed-step solver.

    Uses ``nfe // stages`` uniform steps for the whole batch, so exactly ``nfe`` velocity
    evaluations are made (``euler``: 1 per step, ``midpoint``/``heun``: 2).
    """
    fixed_step_nfe_to_steps(method, nfe)
    _check_batch(x0)
    x1, n, ok = integrate(_velocity_field, velocity_fn, x0, method=method, nfe=nfe, t0=t0, t1=t1)
    return SampleResult(x1, n, jnp.asarray(nfe, jnp.int32), ok)


def sample_adaptive(velocity_fn: VelocityFn, x0: jax.Array, *, method: str = "dopri5", rtol: float = 1e-5,
                    atol: float = 1e-5, t0: float = 0.0, t1: float = 1.0, max_steps: int = 4096,
                    mesh: Mesh | None = None) -> SampleResult:
    r"""Integrates :math:`\dot x = u_t(x)` per example with an adaptive solver (``dopri5``/``tsit5``).

    ``nfe`` is per example; ``nfe_max`` is the maximum over the batch (what the batch cost).
    """
    _check_batch(x0)
    if method not in ADAPTIVE_SOLVERS:
        raise ValueError(f"Unknown adaptive method {method!r}; choose one of {sorted(ADAPTIVE_SOLVERS)}.")
    x1, n, ok = integrate(_velocity_field, velocity_fn, x0, method=method, rtol=rtol, atol=atol, t0=t0, t1=t1,
                          max_steps=max_steps, mesh=mesh)
    return SampleResult(x1, n, jnp.max(n), ok)


def sample(velocity_fn: VelocityFn, x0: jax.Array, *, method: str, nfe: int | None = None, **kwargs) -> SampleResult:
    """Dispatches to :func:`sample_fixed` (needs ``nfe``) or :func:`sample_adaptive` (``rtol``/``atol``)."""
    if method in FIXED_STEP_SOLVERS:
        if nfe is None:
            raise ValueError(f"Fixed-step method {method!r} needs nfe.")
        return sample_fixed(velocity_fn, x0, method=method, nfe=nfe, **kwargs)
    if method in ADAPTIVE_SOLVERS:
        if nfe is not None:
            raise ValueError(f"Adaptive method {method!r} chooses its own NFE; pass rtol/atol instead.")
        return sample_adaptive(velocity_fn, x0, method=method, **kwargs)
    raise ValueError(f"Unknown method {method!r}; choose one of {sorted({**FIXED_STEP_SOLVERS, **ADAPTIVE_SOLVERS})}.")


class ScheduleTransformedVelocity(eqx.Module):
    r"""Velocity of a model trained on schedule A, re-expressed for schedule B (scale-time).

    Both paths share their end points up to a reparametrisation. With the angle
    :math:`\theta = \arctan s` and radius :math:`\rho = \sqrt{\alpha^2+\sigma^2}`, let
    :math:`r_t = \theta_A^{-1}(\theta_B(t))` (equal signal-to-noise ratio) and
    :math:`c_t = \rho_B(t)/\rho_A(r_t)`; then :math:`x^B_t = c_t\,x^A_{r_t}`, hence

    .. math::  u^B_t(x) = \frac{\dot c_t}{c_t}\,x + c_t\,\dot r_t\,u^A_{r_t}(x / c_t),\qquad
               \dot r_t = \dot\theta_B(t)/\dot\theta_A(r_t),\quad
               \dot c_t = \big(\dot\rho_B(t) - c_t\,\dot\rho_A(r_t)\,\dot r_t\big)/\rho_A(r_t).

    This is exact for the ideal marginal field (Meta's ``ScheduleTransformedModel`` does the same
    in :math:`(s, \sigma)`). The polar form stays finite at both ends, so the transform works from
    ``t = 0`` and between any schedules, tabulated KO paths included. Time is clipped to
    ``[0, 1 - t_eps]`` only for schedules whose :math:`\dot\sigma` is infinite at ``t = 1`` (VP).
    """

    velocity_fn: Any
    original: Schedule
    new: Schedule
    t_eps: float = eqx.field(static=True, default=0.0)

    def coefficients(self, t) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(r_t, c_t, dr_t, dc_t)`` of the reparametrisation at ``t``."""
        pb = self.new.polar(t)
        r = self.original.angle_inverse(pb.angle)
        pa = self.original.polar(r)
        dr = pb.d_angle / pa.d_angle
        c = pb.radius / pa.radius
        dc = (pb.d_radius - c * pa.d_radius * dr) / pa.radius
        return r, c, dr, dc

    def __call__(self, t, x: jax.Array) -> jax.Array:
        """Velocity under the new schedule at scalar time ``t`` for a batch ``x``."""
        t = jnp.clip(jnp.asarray(t, x.dtype), 0.0, 1.0 - self.t_eps)
        r, c, dr, dc = (jnp.asarray(v, x.dtype) for v in self.coefficients(t))
        return (dc / c) * x + (c * dr) * self.velocity_fn(r, x / c)
