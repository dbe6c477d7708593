r"""Exact marginal velocity of a Gaussian path over an empirical dataset.

For data :math:`\{x^j\}_{j=1}^n` the marginal :math:`p_t` is a mixture of
:math:`\mathcal N(\alpha_t x^j, \sigma_t^2 I)`, its posterior over the points is a softmax
with logits :math:`(\alpha_t\langle x, x^j\rangle - \alpha_t^2\|x^j\|^2/2)/\sigma_t^2`, and

.. math::  u_t(x) = \dot\alpha_t\,\hat x_1 + \dot\sigma_t\,(x - \alpha_t\hat x_1)/\sigma_t,
           \qquad \hat x_1 = \mathbb E[x_1\mid x_t=x].

This is the field an infinitely expressive flow-matching model would learn. Computation
streams over the dataset in chunks with an online log-sum-exp, so memory is
``O(batch * (chunk + d))`` whatever ``n``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kopaths.schedules import Schedule

__all__ = ["posterior_mean", "marginal_velocity"]


_MASKED = -1e30  # finite, so that exp(max_old - max_new) never sees inf - inf


def _pad_chunks(data: jax.Array, chunk_size: int):
    n = data.shape[0]
    chunk_size = max(1, min(chunk_size, n))
    num_chunks = -(-n // chunk_size)
    pad = num_chunks * chunk_size - n
    padded = jnp.pad(data, ((0, pad), (0, 0)))
    valid = jnp.arange(num_chunks * chunk_size) < n
    return padded.reshape(num_chunks, chunk_size, -1), valid.reshape(num_chunks, chunk_size)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def posterior_mean(x: jax.Array, alpha, sigma, data: jax.Array, *, chunk_size: int = 4096) -> jax.Array:
    r""":math:`\mathbb E[x_1 \mid \alpha x_1 + \sigma x_0 = x]` with :math:`x_1` uniform on ``data``.

    Args:
      x: points, shape ``(batch, d)``.
      alpha, sigma: scalars or arrays of shape ``(batch,)`` (``sigma > 0``).
      data: the dataset, shape ``(n, d)``.
    """
    chunks, valid = _pad_chunks(data.astype(x.dtype), chunk_size)
    alpha = jnp.reshape(jnp.asarray(alpha, x.dtype), (-1, 1))
    inv_var = 1.0 / jnp.reshape(jnp.asarray(sigma, x.dtype), (-1, 1)) ** 2
    b = x.shape[0]

    def step(carry, inputs):
        run_max, run_sum, run_mean = carry
        xs, ok = inputs
        sq_dist = jnp.sum(x * x, -1, keepdims=True) - 2 * alpha * (x @ xs.T) + alpha**2 * jnp.sum(xs * xs, -1)[None, :]
        logits = jnp.where(ok, -0.5 * jnp.maximum(sq_dist, 0.0) * inv_var, _MASKED)
        new_max = jnp.maximum(run_max, jnp.max(logits, axis=-1))
        scale = jnp.exp(run_max - new_max)
        w = jnp.exp(logits - new_max[:, None])
        return (new_max, run_sum * scale + w.sum(-1), run_mean * scale[:, None] + w @ xs), None

    init = (jnp.full((b,), 2 * _MASKED, x.dtype), jnp.zeros((b,), x.dtype), jnp.zeros_like(x))
    (_, total, weighted), _ = jax.lax.scan(step, init, (chunks, valid))
    return weighted / total[:, None]


def marginal_velocity(schedule: Schedule, data: jax.Array, t, x: jax.Array, *, chunk_size: int = 4096) -> jax.Array:
    r"""Exact marginal velocity :math:`u_t(x)` of ``schedule`` over the empirical ``data``.

    ``x`` has shape ``(batch, *example_shape)`` and ``data`` ``(n, *example_shape)``;
    ``t`` is a scalar or has shape ``(batch,)``, in ``[0, 1)`` (``sigma_t > 0`` is required).
    """
    shape = x.shape
    flat_x = x.reshape(shape[0], -1)
    flat_data = data.reshape(data.shape[0], -1)
    out = schedule(jnp.asarray(t, x.dtype))
    x1_hat = posterior_mean(flat_x, out.alpha, out.sigma, flat_data, chunk_size=chunk_size)
    a, s, da, ds = (jnp.reshape(v, (-1, 1)) for v in out)
    v = da * x1_hat + ds * (flat_x - a * x1_hat) / s
    return v.reshape(shape)
