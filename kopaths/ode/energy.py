r"""Kinetic energy along a model's own sampling trajectories, and ideal-flow scores.

:math:`\mathcal E = \frac1d\,\mathbb E_{x_0}\int_{t_0}^{t_1} \|u_t(x_t)\|^2\,dt` is integrated as an
extra ODE state beside :math:`x_t`, so it costs no extra velocity evaluations and comes with the
samples and their NFE (the solve is :func:`kopaths.ode._core.integrate`). Ideal-flow scoring runs
the same on the exact marginal field of an empirical dataset (:func:`kopaths.ideal.marginal_velocity`),
which isolates the path's effect from the network's.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from kopaths.ideal import marginal_velocity
from kopaths.ode._core import integrate
from kopaths.ode.sampling import VelocityFn
from kopaths.schedules import Schedule

__all__ = ["KineticEnergyResult", "kinetic_energy_along_samples", "ideal_velocity", "ideal_flow_scores"]


class KineticEnergyResult(NamedTuple):
    """Kinetic energy per dimension along sampling trajectories.

    Attributes:
      kinetic_energy: mean over examples of :math:`\\frac1d\\int\\|u_t(x_t)\\|^2 dt`.
      per_example: the per-example integrals ``(batch,)``.
      samples: the end points ``x(t1)``.
      nfe: velocity evaluations per example ``(batch,)``.
    """

    kinetic_energy: jax.Array
    per_example: jax.Array
    samples: jax.Array
    nfe: jax.Array


def _energy_field(velocity_fn, t, state, _):
    x, _ = state
    v = velocity_fn(t, x)
    return v, jnp.mean(v.reshape(v.shape[0], -1) ** 2, axis=1)


def kinetic_energy_along_samples(
    velocity_fn: VelocityFn, x0: jax.Array, *, method: str = "dopri5", nfe: int | None = None, rtol: float = 1e-5,
    atol: float = 1e-5, t0: float = 0.0, t1: float = 1.0, max_steps: int = 4096, mesh: Mesh | None = None,
) -> KineticEnergyResult:
    r"""KE per dimension of ``velocity_fn`` along the trajectories it generates from ``x0``.

    Integrates :math:`e' = \|u_t(x_t)\|^2/d` jointly with :math:`x' = u_t(x)`; with
    :math:`t_1 - t_0 = 1` the result is the paper's :math:`\mathbb E_{t, x_t}\|u_t(x_t)\|^2/d`
    on the model's own trajectories. Fixed-step methods need ``nfe``; adaptive ones use
    ``rtol``/``atol`` per example.
    """
    if x0.ndim < 2:
        raise ValueError(f"x0 must be a batch (batch, *example_shape), got {x0.shape}.")
    (x1, e), n, _ = integrate(_energy_field, velocity_fn, (x0, jnp.zeros((x0.shape[0],), x0.dtype)), method=method,
                              nfe=nfe, rtol=rtol, atol=atol, t0=t0, t1=t1, max_steps=max_steps, mesh=mesh)
    return KineticEnergyResult(jnp.mean(e), e, x1, n)


class _IdealField(eqx.Module):
    schedule: Schedule
    chunk_size: int = eqx.field(static=True)

    def __call__(self, data, t, x):
        return marginal_velocity(self.schedule, data, t, x, chunk_size=self.chunk_size)


def ideal_velocity(schedule: Schedule, data: jax.Array, chunk_size: int = 4096) -> VelocityFn:
    """Exact marginal velocity of ``schedule`` over ``data`` as a traced pytree callable."""
    return jax.tree_util.Partial(_IdealField(schedule, chunk_size), jnp.asarray(data))


def ideal_flow_scores(
    schedule: Schedule, data: jax.Array, key: jax.Array, *, num_samples: int = 256, rtol: float = 1e-5,
    atol: float = 1e-5, method: str = "dopri5", t_end: float = 1.0 - 1e-3, chunk_size: int = 4096,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    r"""KE and adaptive NFE of ``schedule`` on the exact marginal field of ``data``.

    Samples ``num_samples`` noise points, integrates the ideal flow on ``[0, t_end]`` per example
    (``t_end < 1`` because the empirical field is singular at :math:`\sigma_t = 0`) and returns
    ``{"kinetic_energy", "kinetic_energy_stderr", "nfe_mean", "nfe_max", "nfe_median"}`` with the
    settings used.
    """
    data = jnp.asarray(data)
    x0 = jax.random.normal(key, (num_samples,) + data.shape[1:], data.dtype)
    res = kinetic_energy_along_samples(ideal_velocity(schedule, data, chunk_size), x0, method=method, rtol=rtol,
                                       atol=atol, t1=t_end, mesh=mesh)
    e, n = np.asarray(res.per_example, np.float64), np.asarray(res.nfe)
    return {
        "kinetic_energy": float(e.mean()),
        "kinetic_energy_stderr": float(e.std(ddof=1) / np.sqrt(e.size)) if e.size > 1 else float("nan"),
        "nfe_mean": float(n.mean()), "nfe_median": float(np.median(n)), "nfe_max": int(n.max()),
        "num_samples": int(num_samples), "num_data": int(data.shape[0]), "method": method, "rtol": float(rtol),
        "atol": float(atol), "t_end": float(t_end),
    }
