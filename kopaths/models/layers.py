"""Building blocks shared by kopaths' velocity networks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["timestep_embedding", "zeros_init"]


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding ``[cos(t f_i), sin(t f_i)]`` of a batch of (fractional) times.

    Args:
      t: times of shape ``(B,)``.
      dim: embedding width; an odd width is zero-padded by one column.
      max_period: controls the lowest frequency, ``f_i = max_period ** (-i / (dim // 2))``.

    Returns:
      ``(B, dim)`` float32 embedding (the ADM / guided-diffusion convention).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


zeros_init = jax.nn.initializers.zeros
