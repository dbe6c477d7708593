"""Analytic velocity fields shared by the sampling / likelihood / metrics tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kopaths.schedules import Schedule


def gaussian_velocity(schedule: Schedule, c: float):
    r"""Marginal velocity for data :math:`x_1 \sim \mathcal N(0, c^2 I)`.

    :math:`p_t = \mathcal N(0, v_t I)` with :math:`v_t = c^2\alpha_t^2 + \sigma_t^2` and
    :math:`u_t(x) = \tfrac12 (\dot v_t / v_t)\,x`; the flow maps :math:`x_0` to :math:`c\,x_0` at
    :math:`t = 1` when :math:`\sigma_1 = 0`.
    """

    def vf(t, x):
        o = schedule(t)
        v = c**2 * o.alpha**2 + o.sigma**2
        return (c**2 * o.alpha * o.d_alpha + o.sigma * o.d_sigma) / v * x

    return vf


def gaussian_log_prob(x, c: float):
    d = x.shape[-1]
    return -0.5 * jnp.sum(x**2, -1) / c**2 - d * jnp.log(c) - 0.5 * d * jnp.log(2 * jnp.pi)


def mixture_log_prob(x, data, sigma: float):
    """log of the uniform mixture of N(x^j, sigma^2 I) over the rows of ``data``."""
    d = x.shape[-1]
    sq = jnp.sum((x[:, None, :] - data[None]) ** 2, -1)
    comp = -0.5 * sq / sigma**2 - d * jnp.log(sigma) - 0.5 * d * jnp.log(2 * jnp.pi)
    return jax.scipy.special.logsumexp(comp, axis=1) - jnp.log(data.shape[0])


def write_idx(path, array) -> None:
    """Writes ``array`` as a gzipped IDX file (the Fashion-MNIST format), for tests of the data builders."""
    import gzip
    import struct

    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
