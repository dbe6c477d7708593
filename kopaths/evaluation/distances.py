r"""Distances between sample sets: Fréchet distance, sliced Wasserstein, MMD.

* Fréchet distance between Gaussians fitted to features:
  :math:`\|\mu_1-\mu_2\|^2 + \mathrm{tr}\big(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}\big)`.
* Sliced 2-Wasserstein distance (2-D / low-d samples):
  :math:`SW_2^2 = \mathbb E_{\omega\sim U(S^{d-1})} W_2^2(\omega^\top X, \omega^\top Y)`.
* Unbiased MMD² with a sum of Gaussian kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "sliced_wasserstein",
    "mmd_rbf",
]


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features`` ``(n, k)``, in float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (n >= 2, k), got {f.shape}.")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or Inf.")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    r"""Fréchet distance between :math:`\mathcal N(\mu_1, C_1)` and :math:`\mathcal N(\mu_2, C_2)`,

    .. math::  \|\mu_1-\mu_2\|^2 + \operatorname{tr} C_1 + \operatorname{tr} C_2
               - 2 \operatorname{tr}\big(C_1^{1/2} C_2 C_1^{1/2}\big)^{1/2}.

    The trace term equals TF-FID's / pytorch-fid's :math:`\operatorname{tr}\sqrt{C_1 C_2}`, but is
    taken from the eigenvalues of the symmetric PSD matrix :math:`C_1^{1/2} C_2 C_1^{1/2}`, so
    singular covariances (dead units of a feature network, fewer samples than features) need no
    regularising offset and raise no warning.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"Shape mismatch: mu {mu1.shape}/{mu2.shape}, cov {cov1.shape}/{cov2.shape}.")
    diff = mu1 - mu2
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root1 @ cov2 @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (inner + inner.T)), 0.0, None)).sum()
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root)


def frechet_distance_from_features(features_a, features_b) -> float:
    """:func:`frechet_distance` between Gaussians fitted to two feature sets ``(n, k)``."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def _check_pair(x, y):
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"Need two sample sets (n, d) and (m, d); got {x.shape} and {y.shape}.")
    return x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)


def sliced_wasserstein(x, y, key: jax.Array, num_projections: int = 256) -> jax.Array:
    r"""Monte-Carlo sliced 2-Wasserstein distance :math:`SW_2` between equal-size sample sets.

    ``num_projections`` random unit directions; each 1-D :math:`W_2^2` is the mean squared
    difference of the sorted projections.
    """
    x, y = _check_pair(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced_wasserstein needs equal sample sizes, got {x.shape[0]} and {y.shape[0]}.")
    w = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
    w = w / jnp.linalg.norm(w, axis=0, keepdims=True)
    px, py = jnp.sort(x @ w, axis=0), jnp.sort(y @ w, axis=0)
    return jnp.sqrt(jnp.mean((px - py) ** 2))


def mmd_rbf(x, y, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0)) -> jax.Array:
    r"""Unbiased MMD² with :math:`k(a,b) = \sum_h \exp(-\|a-b\|^2 / (2h^2))`.

    .. math:: \widehat{\mathrm{MMD}}^2 = \frac{\sum_{i\ne j} k(x_i,x_j)}{n(n-1)}
              + \frac{\sum_{i\ne j} k(y_i,y_j)}{m(m-1)} - \frac{2}{nm}\sum_{i,j} k(x_i,y_j).
    """
    x, y = _check_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("mmd_rbf needs at least two samples per set.")
    h = jnp.asarray(bandwidths, x.dtype)

    def kern(a, b):
        sq = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None] - 2 * a @ b.T
        sq = jnp.maximum(sq, 0.0)
        return jnp.sum(jnp.exp(-sq[..., None] / (2 * h**2)), -1)

    kxx, kyy, kxy = kern(x, x), kern(y, y), kern(x, y)
    sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return sxx + syy - 2 * jnp.mean(kxy)
