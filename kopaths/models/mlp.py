"""Small MLP velocity model for low-dimensional (e.g. 2-D) data."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kopaths.models.layers import timestep_embedding

__all__ = ["MLP"]


class MLP(nn.Module):
    """Velocity MLP ``v(x, t)`` on flat inputs ``(B, D)``.

    The time is embedded sinusoidally, mapped by a small MLP and added to every hidden
    layer's pre-activation (a cheap form of conditioning that works well in 2-D).

    Attributes:
      hidden_sizes: widths of the hidden layers.
      time_embed_dim: width of the sinusoidal time embedding.
      time_scale: times in [0, 1] are multiplied by this before embedding.
      dropout: dropout rate after each hidden activation.
      dtype: computation dtype.
    """

    hidden_sizes: Sequence[int] = (256, 256, 256)
    time_embed_dim: int = 64
    time_scale: float = 1000.0
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, train: bool = False) -> jax.Array:
        """Velocity at ``x`` (``(B, D)``) and times ``t`` (``(B,)`` or scalar)."""
        if x.ndim != 2:
            raise ValueError(f"MLP expects inputs of shape (B, D); got {x.shape}.")
        t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
        emb = timestep_embedding(t * self.time_scale, self.time_embed_dim)
        emb = nn.silu(nn.Dense(self.time_embed_dim, dtype=self.dtype)(emb))
        h = x.astype(self.dtype)
        for width in self.hidden_sizes:
            h = nn.Dense(width, dtype=self.dtype)(h) + nn.Dense(width, dtype=self.dtype)(emb)
            h = nn.Dropout(self.dropout)(nn.silu(h), deterministic=not train)
        return nn.Dense(x.shape[-1], dtype=self.dtype)(h).astype(jnp.float32)
