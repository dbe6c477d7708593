"""ADM-style U-Net velocity model (Dhariwal & Nichol 2021), in Flax linen, NHWC.

The layout mirrors guided-diffusion's ``UNetModel`` (also shipped by ``torchcfm``): for
equal hyper-parameters both have the same modules and the same parameter count, which
is what the throughput benchmark relies on.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from kopaths.models.layers import attention, convolution, timestep_embedding, zeros_init

__all__ = ["UNet", "ResBlock", "AttentionBlock"]


def _groups(channels: int, max_groups: int) -> int:
    return math.gcd(channels, max_groups)


class _GroupNormStats(nn.Module):
    """Per-group normalisation with per-channel affine parameters ``scale`` and ``bias``."""

    groups: int
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        per_group = c // self.groups
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        count = x.shape[1] * x.shape[2] * per_group
        # Channel-to-group sums and group-to-channel copies as products with a 0/1 matrix: XLA does
        # not fuse a dot into the elementwise loop, which would otherwise index channels by c // per_group.
        member = (jnp.arange(c)[None, :] // per_group == jnp.arange(self.groups)[:, None]).astype(x.dtype)
        to_groups = lambda v: jnp.dot(v, member.T, precision=lax.Precision.HIGHEST) / count  # noqa: E731
        to_channels = lambda v: jnp.dot(v, member, precision=lax.Precision.HIGHEST)  # noqa: E731
        mean = to_groups(x.sum((1, 2)))
        var = jnp.maximum(to_groups(jnp.square(x).sum((1, 2))) - jnp.square(mean), 0.0)
        gain = to_channels(lax.rsqrt(var + self.epsilon)) * scale
        offset = bias - to_channels(mean) * gain
        return x * gain[:, None, None, :] + offset[:, None, None, :]


class GroupNorm(nn.Module):
    r"""GroupNorm of NHWC activations in float32 (as ADM's ``GroupNorm32``), cast back to the input dtype.

    :math:`y = (x - \mu_{bg}) / \sqrt{\sigma^2_{bg} + \epsilon}\,\gamma_c + \beta_c` with the mean and
    variance of each example's group of channels over all pixels, as :class:`flax.linen.GroupNorm`
    (same parameters, same values to float32 rounding). The statistics come from per-channel sums
    over ``(H, W)``, which reduce along the contiguous channel axis, and the normalisation is one
    per-channel multiply-add. On CPU the U-Net train step is 1.1-1.2x faster than with flax's
    reduction of the ``(B, H, W, groups, C/groups)`` view, which XLA fuses back into the
    elementwise loop (``scripts/bench_train_step.py``; the README's benchmark notes).
    """

    max_groups: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"GroupNorm expects NHWC activations, got shape {x.shape}.")
        # Named as flax's GroupNorm submodule was, so checkpoints written before this module keep loading.
        norm = _GroupNormStats(groups=_groups(x.shape[-1], self.max_groups), name="GroupNorm_0")
        return norm(x.astype(jnp.float32)).astype(x.dtype)


def _conv(features: int, kernel: int = 3, stride: int = 1, dtype=jnp.float32, zero: bool = False, name=None):
    pad = (kernel - 1) // 2
    kwargs = dict(kernel_init=zeros_init) if zero else {}
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        dtype=dtype, name=name, conv_general_dilated=convolution, **kwargs,
    )


def _upsample(x: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _avgpool(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class ResBlock(nn.Module):
    """Residual block with a time-embedding injection (additive, or FiLM scale-shift).

    Attributes:
      out_channels: output channels.
      dropout: dropout rate before the second convolution.
      use_scale_shift_norm: FiLM conditioning ``norm(h) * (1 + scale) + shift``.
      up / down: resample (nearest up / average-pool down) inside the block.
      max_groups: GroupNorm groups (reduced to a divisor of the channel count).
      dtype: computation dtype.
    """

    out_channels: int
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    up: bool = False
    down: bool = False
    max_groups: int = 32
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
        h = nn.silu(GroupNorm(self.max_groups)(x))
        if self.up:
            h, x = _upsample(h), _upsample(x)
        elif self.down:
            h, x = _avgpool(h), _avgpool(x)
        h = _conv(self.out_channels, dtype=self.dtype)(h)
        emb_width = 2 * self.out_channels if self.use_scale_shift_norm else self.out_channels
        emb_out = nn.Dense(emb_width, dtype=self.dtype)(nn.silu(emb))[:, None, None, :]
        if self.use_scale_shift_norm:
            scale, shift = jnp.split(emb_out, 2, axis=-1)
            h = GroupNorm(self.max_groups)(h) * (1 + scale) + shift
        else:
            h = GroupNorm(self.max_groups)(h + emb_out)
        h = nn.Dropout(self.dropout)(nn.silu(h), deterministic=not train)
        h = _conv(self.out_channels, dtype=self.dtype, zero=True)(h)
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, kernel=1, dtype=self.dtype, name="skip")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Spatial multi-head self-attention with a zero-initialised output projection
    (:func:`kopaths.models.layers.attention`)."""

    num_heads: int = 1
    num_head_channels: int = -1
    max_groups: int = 32
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, hgt, wid, c = x.shape
        heads = self.num_heads if self.num_head_channels == -1 else c // self.num_head_channels
        if c % heads:
            raise ValueError(f"Attention channels {c} are not divisible by {heads} heads.")
        qkv = nn.Dense(3 * c, dtype=self.dtype, name="qkv")(GroupNorm(self.max_groups)(x))
        qkv = qkv.reshape(b, hgt * wid, heads, 3 * (c // heads))
        q, k, v = jnp.split(qkv, 3, axis=-1)
        h = attention(q, k, v).reshape(b, hgt, wid, c)
        h = nn.Dense(c, dtype=self.dtype, kernel_init=zeros_init, name="proj_out")(h)
        return x + h


class UNet(nn.Module):
    """ADM U-Net predicting a velocity ``v(x_t, t)`` of the input's shape.

    Attributes:
      model_channels: base channel count.
      channel_mult: channel multiplier per resolution level.
      num_res_blocks: residual blocks per level on the way down (one more on the way up).
      attention_resolutions: downsampling factors (1, 2, 4, ...) with self-attention.
      dropout: dropout rate in residual blocks.
      num_heads / num_head_channels: attention heads, or fixed channels per head if != -1.
      use_scale_shift_norm: FiLM time conditioning in residual blocks.
      resblock_updown: resample with residual blocks instead of (de)convolutions.
      conv_resample: learned 3x3 convolutions when resampling (else plain pooling/repeat).
      time_scale: times in [0, 1] are multiplied by this before the sinusoidal embedding.
      max_groups: GroupNorm groups.
      dtype: computation dtype (parameters stay float32).
    """

    model_channels: int = 64
    channel_mult: Sequence[int] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = (2,)
    dropout: float = 0.0
    num_heads: int = 4
    num_head_channels: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    conv_resample: bool = True
    time_scale: float = 1000.0
    max_groups: int = 32
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, train: bool = False) -> jax.Array:
        """Velocity at ``x`` (``(B, H, W, C)``) and times ``t`` (``(B,)`` or scalar)."""
        levels = len(self.channel_mult)
        factor = 2 ** (levels - 1)
        if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"UNet with {levels} levels needs NHWC input with H and W divisible by {factor}; "
                f"got shape {x.shape}."
            )
        t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
        ch = self.model_channels
        emb_dim = 4 * ch
        emb = timestep_embedding(t * self.time_scale, ch)
        emb = nn.Dense(emb_dim, dtype=self.dtype)(emb)
        emb = nn.Dense(emb_dim, dtype=self.dtype)(nn.silu(emb))

        res = dict(dropout=self.dropout, use_scale_shift_norm=self.use_scale_shift_norm,
                   max_groups=self.max_groups, dtype=self.dtype)
        attn = dict(num_heads=self.num_heads, num_head_channels=self.num_head_channels,
                    max_groups=self.max_groups, dtype=self.dtype)

        h = _conv(int(self.channel_mult[0] * ch), dtype=self.dtype)(x.astype(self.dtype))
        skips = [h]
        ds = 1
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                h = ResBlock(int(mult * ch), **res)(h, emb, train)
                if ds in self.attention_resolutions:
                    h = AttentionBlock(**attn)(h)
                skips.append(h)
            if level != levels - 1:
                if self.resblock_updown:
                    h = ResBlock(h.shape[-1], down=True, **res)(h, emb, train)
                elif self.conv_resample:
                    h = _conv(h.shape[-1], stride=2, dtype=self.dtype)(h)
                else:
                    h = _avgpool(h)
                skips.append(h)
                ds *= 2

        h = ResBlock(h.shape[-1], **res)(h, emb, train)
        h = AttentionBlock(**attn)(h)
        h = ResBlock(h.shape[-1], **res)(h, emb, train)

        for level, mult in list(enumerate(self.channel_mult))[::-1]:
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = ResBlock(int(mult * ch), **res)(h, emb, train)
                if ds in self.attention_resolutions:
                    h = AttentionBlock(**attn)(h)
                if level and i == self.num_res_blocks:
                    if self.resblock_updown:
                        h = ResBlock(h.shape[-1], up=True, **res)(h, emb, train)
                    else:
                        h = _upsample(h)
                        if self.conv_resample:
                            h = _conv(h.shape[-1], dtype=self.dtype)(h)
                    ds //= 2

        h = nn.silu(GroupNorm(self.max_groups)(h))
        out = _conv(x.shape[-1], dtype=self.dtype, zero=True, name="out")(h)
        return out.astype(jnp.float32)
