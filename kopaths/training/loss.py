"""Flow-matching loss on an arbitrary Gaussian path, with pluggable time sampling."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from kopaths.paths import conditional_velocity, sample_xt
from kopaths.schedules import Schedule

__all__ = ["TimeSampler", "make_time_sampler", "flow_matching_loss"]

TimeSampler = Callable[[jax.Array, int], jax.Array]
"""``sampler(key, batch_size) -> t`` of shape ``(batch_size,)`` in ``[t_min, t_max]``."""


def make_time_sampler(cfg: Mapping[str, Any]) -> TimeSampler:
    """Builds a time sampler from ``cfg.name`` in {"uniform", "logit_normal"}.

    ``t_min``/``t_max`` (default 0 and 1) restrict the support, which schedules whose
    derivatives blow up at an end point (VP at t=1) need. ``logit_normal`` uses ``loc`` and
    ``scale``: ``t = sigmoid(loc + scale * n)``, ``n ~ N(0, 1)``, then mapped affinely into
    ``[t_min, t_max]``.
    """
    name = cfg.get("name", "uniform")
    t_min, t_max = float(cfg.get("t_min", 0.0)), float(cfg.get("t_max", 1.0))
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"time_sampling needs 0 <= t_min < t_max <= 1, got {t_min}, {t_max}.")
    if name == "uniform":
        def sample(key, n):
            return jax.random.uniform(key, (n,), minval=t_min, maxval=t_max)
    elif name == "logit_normal":
        loc, scale = float(cfg.get("loc", 0.0)), float(cfg.get("scale", 1.0))

        def sample(key, n):
            u = jax.nn.sigmoid(loc + scale * jax.random.normal(key, (n,)))
            return t_min + (t_max - t_min) * u
    else:
        raise ValueError(f"Unknown time sampler {name!r}; choose 'uniform' or 'logit_normal'.")
    return sample


def flow_matching_loss(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: Schedule,
    x1: jax.Array,
    key: jax.Array,
    time_sampler: TimeSampler,
) -> jax.Array:
    r"""Conditional flow-matching loss :math:`E\|v(x_t,t) - (\dot\alpha_t x_1 + \dot\sigma_t x_0)\|^2 / d`.

    Args:
      velocity_fn: ``(x_t, t) -> v`` of ``x_t``'s shape.
      schedule: the Gaussian path.
      x1: data batch ``(B, ...)``.
      key: PRNG key for ``t`` and ``x0``.
      time_sampler: draws ``t``.

    Returns:
      Scalar mean squared error per dimension, averaged over the batch.
    """
    k_t, k_x0 = jax.random.split(key)
    t = time_sampler(k_t, x1.shape[0])
    x0 = jax.random.normal(k_x0, x1.shape, x1.dtype)
    xt = sample_xt(schedule, t, x0, x1)
    target = conditional_velocity(schedule, t, x0, x1)
    pred = velocity_fn(xt, t)
    return jnp.mean(jnp.square(pred - target))
