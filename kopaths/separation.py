r"""The data separation function :math:`\lambda(s)` and its estimator.

For normalised data :math:`x_1 \in \mathbb R^d` and :math:`x = s x_1 + \epsilon`,
:math:`\epsilon\sim\mathcal N(0,I)`,

.. math::  \lambda(s) = \tfrac1d\,\mathbb E\|\mathbb E[x_1\mid x]\|^2 = 1 - \mathrm{MMSE}(s)/d .

For a finite dataset the posterior over the points is a softmax with logits
:math:`s\langle x, x^j\rangle - s^2\|x^j\|^2/2`. :func:`estimate_lambda` uses shared
noise: it draws ``k`` data indices :math:`i` and noises :math:`\epsilon_i` once, forms the
two Gram blocks :math:`G = X_I X^\top` and :math:`N = E X^\top` chunk by chunk, and for every
snr evaluates the logits :math:`s^2 (G_{ij} - \|x^j\|^2/2) + s N_{ij}` elementwise, with the
control-variate form

.. math::  1-\hat\lambda(s) = \frac{1}{kd}\sum_i\sum_j w_{ij}(s)\,(\|x^i\|^2 - G_{ij}),

which is exactly zero where the posterior is sharp. The per-sample terms are further
regressed on :math:`\|x^i\|^2/d`, whose population mean is known, which removes the
sampling noise of the norms where the posterior is flat. Memory is bounded by the chunk sizes:
no ``n x n`` or ``k x n x d`` array is formed, and the ``k`` axis is sharded over all devices.

The same pass measures the covariance spectrum :math:`c_1\ge\dots\ge c_d` of the data. The
linear estimator :math:`\mathbb E x_1 + sC(s^2C+I)^{-1}(x - s\,\mathbb E x_1)` is available to
every distribution, and optimal for the Gaussian one, so

.. math::  \mathrm{MMSE}(s)/d \;\le\; \frac1d\sum_k \frac{c_k}{1+s^2c_k}
           \quad\Longleftrightarrow\quad \lambda(s) \ge \lambda_C(s),

with equality to second order at :math:`s\to0`: :math:`\lambda(s) = m_2 s^2 + O(s^4)`,
:math:`m_2 = \operatorname{tr}(C^2)/d`. This *linear-MMSE bound* is much tighter than the
isotropic :math:`s^2/(1+s^2)` for image data (:func:`gaussian_lambda` with the spectrum).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import warnings
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kopaths.io import atomic_write_text

__all__ = [
    "LambdaEstimate",
    "default_blocks",
    "estimate_lambda",
    "locality_order",
    "gaussian_lambda",
    "snr_grid",
    "check_normalized",
    "covariance_spectrum",
    "linear_mmse",
]


def linear_mmse(snr, cov_eigenvalues=None, dim: int | None = None) -> np.ndarray:
    r"""Per-dimension MSE of the best linear estimate of :math:`x_1` from :math:`s x_1 + \epsilon`.

    :math:`\frac1d\sum_k c_k/(1+s^2 c_k)` for covariance eigenvalues :math:`c_k` (the
    eigenvalues not listed are zero; ``dim`` defaults to their number), and
    :math:`1/(1+s^2)` for ``cov_eigenvalues=None`` (standard Gaussian). It is the exact
    :math:`1-\lambda` of Gaussian data and an upper bound on :math:`1-\lambda` of any data with
    that covariance. ``snr`` may be ``inf``.
    """
    snr = np.asarray(snr, np.float64)
    if cov_eigenvalues is None:
        with np.errstate(divide="ignore"):
            return 1.0 / (1.0 + snr**2)
    c = np.asarray(cov_eigenvalues, np.float64)
    d = c.size if dim is None else int(dim)
    s2 = snr.reshape(-1, 1) ** 2
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.where(c > 0, c / (1.0 + s2 * c), 0.0)
    return (terms.sum(axis=1) / d).reshape(snr.shape)


def gaussian_lambda(snr, cov_eigenvalues=None):
    r"""Closed form for Gaussian data: :math:`\lambda(s) = s^2/(1+s^2)` (standard), or
    :math:`1 - \frac1d\sum_k c_k/(1+s^2c_k)` with covariance eigenvalues ``cov_eigenvalues``."""
    if cov_eigenvalues is None:
        snr = jnp.asarray(snr)
        return snr**2 / (1.0 + snr**2)
    return 1.0 - linear_mmse(snr, cov_eigenvalues)


def snr_grid(num: int = 256, *, max_theta: float = 0.5 * math.pi * (1 - 1e-3)) -> np.ndarray:
    r"""``num`` snr values :math:`\tan\theta`, :math:`\theta` uniform on ``[0, max_theta]``."""
    if num < 2:
        raise ValueError(f"snr_grid needs num >= 2, got {num}.")
    return np.tan(np.linspace(0.0, max_theta, num))


@dataclasses.dataclass(frozen=True)
class LambdaEstimate:
    r"""Estimated :math:`\hat\lambda` on an snr grid with per-point standard errors.

    ``one_minus_lam`` is :math:`1-\hat\lambda`, kept separately because it is computed
    directly (no cancellation) and is what the kinetic energy consumes.
    """

    snr: np.ndarray
    one_minus_lam: np.ndarray
    stderr: np.ndarray
    num_data: int
    num_noise: int
    dim: int
    seconds: float = float("nan")
    cov_eigenvalues: np.ndarray | None = None

    @property
    def lam(self) -> np.ndarray:
        return 1.0 - self.one_minus_lam

    @property
    def m2(self) -> float | None:
        r""":math:`m_2 = \operatorname{tr}(C^2)/d`: :math:`\lambda(s) = m_2 s^2 + O(s^4)` as :math:`s\to0`."""
        if self.cov_eigenvalues is None:
            return None
        return float(np.sum(np.asarray(self.cov_eigenvalues, np.float64) ** 2) / self.dim)

    def mmse_bound(self, snr=None) -> np.ndarray:
        r"""Upper bound on :math:`1-\lambda` at ``snr`` (default: the estimate's grid): the
        linear-MMSE bound of the data's covariance, or :math:`1/(1+s^2)` without a spectrum."""
        snr = self.snr if snr is None else snr
        return linear_mmse(snr, self.cov_eigenvalues, self.dim)

    def to_dict(self) -> dict:
        return {
            "snr": self.snr.tolist(),
            "one_minus_lambda": self.one_minus_lam.tolist(),
            "stderr": self.stderr.tolist(),
            "num_data": self.num_data,
            "num_noise": self.num_noise,
            "dim": self.dim,
            "seconds": self.seconds,
            "cov_eigenvalues": None if self.cov_eigenvalues is None else np.asarray(self.cov_eigenvalues).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LambdaEstimate":
        try:
            est = cls(
                snr=np.asarray(d["snr"], np.float64),
                one_minus_lam=np.asarray(d["one_minus_lambda"], np.float64),
                stderr=np.asarray(d["stderr"], np.float64),
                num_data=int(d["num_data"]),
                num_noise=int(d["num_noise"]),
                dim=int(d["dim"]),
                seconds=float(d.get("seconds", float("nan"))),
                cov_eigenvalues=None if d.get("cov_eigenvalues") is None else np.asarray(d["cov_eigenvalues"], np.float64),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Malformed lambda table: {e}") from e
        c = est.cov_eigenvalues
        if c is not None and (c.ndim != 1 or c.size > est.dim or not np.all(np.isfinite(c)) or np.any(c < -1e-6)):
            raise ValueError("Malformed lambda table: cov_eigenvalues must be at most dim finite, non-negative values.")
        if est.stderr.shape != est.snr.shape or est.one_minus_lam.shape != est.snr.shape:
            raise ValueError("Malformed lambda table: snr, one_minus_lambda and stderr must have one shape.")
        if not np.all(np.isfinite(est.stderr)) or np.any(est.stderr < 0):
            raise ValueError("Malformed lambda table: stderr must be finite and non-negative.")
        # A raw estimate may break monotonicity and [0, 1] by its Monte Carlo error, no more.
        validate_table(est.snr, est.lam, tol=4 * est.stderr + 1e-6)
        return est

    def save(self, path: str | os.PathLike) -> None:
        """Writes the table as JSON, atomically (temporary file + rename)."""
        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LambdaEstimate":
        """Reads and validates a table written by :meth:`save`."""
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"Lambda table {path} does not exist.") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"Lambda table {path} is not valid JSON: {e}") from None
        return cls.from_dict(d)


def validate_table(snr, lam, *, tol=1e-6) -> None:
    """Checks an (snr, lambda) table: finite, snr >= 0 increasing, lambda in [0,1] non-decreasing.

    ``tol`` (a scalar or one value per point) is the violation allowed at each point.
    """
    snr, lam = np.asarray(snr, np.float64), np.asarray(lam, np.float64)
    if snr.ndim != 1 or lam.shape != snr.shape or snr.size < 2:
        raise ValueError(f"Lambda table needs 1-D snr and lambda of equal length >= 2, got {snr.shape}, {lam.shape}.")
    if not (np.all(np.isfinite(snr)) and np.all(np.isfinite(lam))):
        raise ValueError("Lambda table contains NaN or Inf.")
    if snr[0] < 0 or np.any(np.diff(snr) <= 0):
        raise ValueError("Lambda table snr values must be non-negative and strictly increasing.")
    tol = np.broadcast_to(np.asarray(tol, np.float64), lam.shape)
    if np.any(lam < -tol) or np.any(lam > 1 + tol):
        raise ValueError("Lambda table values must lie in [0, 1].")
    if np.any(np.diff(lam) < -(tol[1:] + tol[:-1])):
        i = int(np.argmin(np.diff(lam)))
        raise ValueError(
            f"Lambda table is not monotone: lambda({snr[i + 1]:.4g}) = {lam[i + 1]:.6g} < "
            f"lambda({snr[i]:.4g}) = {lam[i]:.6g}. Use kopaths.fit_lambda to fit a noisy estimate."
        )


def check_normalized(sq_norm_mean: float, mean_sq_norm: float, *, tol: float = 0.05) -> None:
    """Raises ``ValueError`` unless E||x||^2/d is 1 and ||E x||^2/d is 0, within ``tol``."""
    if abs(sq_norm_mean - 1.0) > tol or mean_sq_norm > tol:
        raise ValueError(
            "Data are not normalised: E||x||^2/d = "
            f"{sq_norm_mean:.4g} (want 1) and ||E x||^2/d = {mean_sq_norm:.4g} (want 0). "
            "Apply kopaths.normalize first, or pass check=False."
        )


def _row_chunks(x, n: int, chunk: int):
    for lo in range(0, n, chunk):
        yield np.asarray(x[lo : lo + chunk], np.float32).reshape(-1, int(np.prod(x.shape[1:])))


def covariance_spectrum(
    x, *, key: jax.Array | None = None, max_exact_dim: int = 4096, rank: int = 512, chunk: int = 4096
) -> np.ndarray:
    r"""Eigenvalues (descending) of the covariance of the rows of ``x`` (shape ``(n, ...)``).

    Exact (``d x d`` second-moment matrix accumulated in float64, one pass) when
    :math:`d \le` ``max_exact_dim``. Otherwise the top ``rank`` eigenvalues are Rayleigh-Ritz
    values of two streamed subspace iterations (keyed by ``key``) and the remaining trace is
    spread evenly over the other :math:`d - \text{rank}` directions. Ritz values interlace below
    the true ones, so that spectrum is majorised by the true one and the linear-MMSE bound
    :func:`linear_mmse` computed from it is still an upper bound (only looser).
    """
    n = int(x.shape[0])
    d = int(np.prod(x.shape[1:]))
    if n < 2:
        raise ValueError(f"covariance_spectrum needs n >= 2, got {n}.")
    mean = np.zeros(d, np.float64)
    for rows in _row_chunks(x, n, chunk):
        mean += rows.sum(0, dtype=np.float64)
    mean /= n
    if d <= max_exact_dim:
        second = np.zeros((d, d), np.float64)
        for rows in _row_chunks(x, n, chunk):
            second += (rows.T @ rows).astype(np.float64)
        cov = second / n - np.outer(mean, mean)
        return np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
    k = min(int(rank), d - 1, n)
    key = jax.random.key(0) if key is None else key
    q = np.asarray(jax.random.normal(key, (d, k), jnp.float32), np.float64)

    def cov_times(v):
        out = np.zeros_like(v)
        v32 = v.astype(np.float32)
        for rows in _row_chunks(x, n, chunk):
            out += (rows.T @ (rows @ v32)).astype(np.float64)
        return out / n - np.outer(mean, mean @ v)

    trace = 0.0
    for rows in _row_chunks(x, n, chunk):
        trace += float(np.einsum("ij,ij->", rows, rows, dtype=np.float64))
    trace = trace / n - float(mean @ mean)
    for _ in range(2):
        q, _ = np.linalg.qr(cov_times(q))
    ritz = np.clip(np.linalg.eigvalsh(q.T @ cov_times(q))[::-1], 0.0, None)
    tail = max(trace - float(ritz.sum()), 0.0) / (d - k)
    return np.concatenate([ritz, np.full(d - k, tail)])


def default_blocks() -> tuple[int, int]:
    """Per-device ``(noise_chunk, data_chunk)``: the elementwise work per snr point dominates, so
    blocks that stay in cache are about 3x faster on CPU (``scripts/bench_separation.py``)."""
    if jax.default_backend() == "cpu":
        return 128, 256
    return 1024, 4096


def _data_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("k",))


#: Entries whose posterior weight is below ``exp(-PRUNE_MARGIN)`` times their own source's are skipped.
PRUNE_MARGIN = 30.0
#: snr points evaluated together in one pass over a block (when it divides the number of points).
SNR_GROUP = 16


@jax.jit
def _initial_accumulators(snr, sqn_i, noise_src):
    r"""Online-softmax state holding only each row's own source point :math:`j = i`: its logit
    :math:`s^2\|x^i\|^2/2 + s\langle\epsilon_i, x^i\rangle`, weight 1 and residual
    :math:`\|x^i\|^2 - \langle x^i, x^i\rangle = 0`."""
    s = snr[:, None]
    logit = s * s * (0.5 * sqn_i)[None, :] + s * noise_src[None, :]
    return logit, jnp.ones_like(logit), jnp.zeros_like(logit)


def _prune_cutoff(gram, noise, sqn_i, noise_src, sqn_n, keep, margin):
    r"""The snr above which no kept entry of the block can matter.

    Relative to its own source, entry :math:`(i, j)` has log-weight
    :math:`-s^2 D_{ij}/2 + s\,\Delta_{ij}` with :math:`D_{ij} = \|x^i - x^j\|^2` and
    :math:`\Delta_{ij} = \langle\epsilon_i, x^j - x^i\rangle`, which is below ``-margin`` for all
    :math:`s > (\Delta + \sqrt{\Delta^2 + 2 D\,\text{margin}})/D`. The float32 rounding of ``D`` and
    :math:`\Delta` is bounded generously (relative 1e-3 of the norms), so the cut-off only errs high.
    """
    slack = 1e-3 * (sqn_i[:, None] + sqn_n[None, :])
    dist = sqn_i[:, None] + sqn_n[None, :] - 2.0 * gram - slack
    delta = jnp.abs(noise - noise_src[:, None]) + 1e-3 * (jnp.abs(noise) + jnp.abs(noise_src)[:, None])
    safe = jnp.where(dist > 0, dist, 1.0)
    s_max = jnp.where(dist > 0, (delta + jnp.sqrt(delta * delta + 2.0 * safe * margin)) / safe, jnp.inf)
    return jnp.max(jnp.where(keep, s_max, -jnp.inf))


@functools.partial(jax.jit, static_argnames=("method", "prune", "snr_group"))
def _accumulate(acc, xi, eps, sqn_i, src_i, noise_src, xn, sqn_n, ids_n, valid_n, snr, method: str, prune: bool,
                snr_group: int):
    """Folds one data chunk into the online-softmax accumulators ``(max, sum, weighted sum)``.

    Each row's source point is already in the accumulators (:func:`_initial_accumulators`) and is
    masked out here. With ``prune`` (shared method only), snr points above the block's
    :func:`_prune_cutoff` leave the accumulators unchanged: the work there cannot change them.
    """
    gram = xi @ xn.T
    diff = sqn_i[:, None] - gram
    keep = valid_n[None, :] & (ids_n[None, :] != src_i[:, None])
    if method == "shared":
        base = gram - 0.5 * sqn_n[None, :]
        noise = eps @ xn.T
    cutoff = (_prune_cutoff(gram, noise, sqn_i, noise_src, sqn_n, keep, PRUNE_MARGIN)
              if prune and method == "shared" else jnp.inf)

    def one_snr(s, run_max, run_sum, run_acc):
        if method == "shared":
            logits = s * s * base + s * noise
        else:  # one GEMM per snr, the reference the benchmark compares against
            logits = s * ((s * xi + eps) @ xn.T) - 0.5 * s * s * sqn_n[None, :]
        logits = jnp.where(keep, logits, -jnp.inf)
        new_max = jnp.maximum(run_max, jnp.max(logits, axis=1))
        scale = jnp.exp(run_max - new_max)
        w = jnp.exp(logits - new_max[:, None])
        return new_max, run_sum * scale + w.sum(1), run_acc * scale + (w * diff).sum(1)

    def per_snr(s, run_max, run_sum, run_acc):  # a group of snr points and their (group, rows) accumulators
        outs = [one_snr(s[g], run_max[g], run_sum[g], run_acc[g]) for g in range(s.shape[0])]
        return tuple(jnp.stack(v) for v in zip(*outs))

    def body(_, inputs):
        s, m, z, a = inputs
        if not prune:
            return None, per_snr(s, m, z, a)
        return None, jax.lax.cond(jnp.min(s) <= cutoff, per_snr, lambda s, m, z, a: (m, z, a), s, m, z, a)

    # Snr points go snr_group at a time: fewer, larger fused passes over the block.
    num = snr.shape[0]
    group = snr_group if num % snr_group == 0 else 1
    grouped = (snr.reshape(-1, group),) + tuple(v.reshape(num // group, group, -1) for v in acc)
    _, out = jax.lax.scan(body, None, grouped)
    return tuple(v.reshape(num, -1) for v in out)


@functools.partial(jax.jit, static_argnums=2)
def _row_noise(key, rows, dim: int):
    """Noise row ``i`` depends only on ``(key, i)``, so chunking never changes the estimate."""
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (dim,), jnp.float32))(rows)


def _host_rows(x, idx: np.ndarray) -> np.ndarray:
    order = np.argsort(idx)
    rows = np.empty((idx.size, x.shape[1]), np.float32)
    rows[order] = np.asarray(x[idx[order]], np.float32)
    return rows


#: Leading principal components whose scores the locality order splits on.
ORDER_COMPONENTS = 16


def locality_order(x, *, key: jax.Array, leaf: int, components: int = ORDER_COMPONENTS,
                   sample: int = 4096, chunk: int = 4096) -> np.ndarray:
    r"""A permutation of the rows of ``x`` (shape ``(n, d)``) that keeps close rows together.

    The rows are scored on the ``components`` leading principal directions of a random subsample
    of ``sample`` rows (a randomised range finder with two power iterations, keyed by ``key``),
    then split recursively at the median of the score that varies most within each cell, at
    multiples of ``leaf``, down to cells of ``leaf`` rows (a k-d tree on the scores). Consecutive
    ``leaf``-row chunks of the order are then the tree's cells.
    """
    if len(x.shape) != 2:
        raise ValueError(f"locality_order needs rows of shape (n, d), got {tuple(x.shape)}; flatten each example first.")
    n, d = int(x.shape[0]), int(x.shape[1])
    if n <= leaf:
        return np.arange(n)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))  # NumPy: no compile for a host-side pass
    sub = np.sort(rng.choice(n, min(sample, n), replace=False))
    rows = _host_rows(x, sub).astype(np.float64)
    mean = rows.mean(0)
    rows -= mean
    m = max(1, min(components, d, rows.shape[0] - 1))
    q = rng.standard_normal((d, min(2 * m, d)))
    for _ in range(3):  # the range finder and two power iterations
        q, _ = np.linalg.qr(rows.T @ (rows @ q))
    _, _, vt = np.linalg.svd(rows @ q, full_matrices=False)
    basis = (q @ vt.T[:, :m]).astype(np.float32)
    scores = np.concatenate([(c - mean.astype(np.float32)) @ basis for c in _row_chunks(x, n, chunk)])
    order = np.arange(n)
    cells = [(0, n)]
    while cells:
        lo, hi = cells.pop()
        size = hi - lo
        if size <= leaf:
            continue
        mid = min(max(leaf, leaf * round(size / (2 * leaf))), size - 1)
        seg = order[lo:hi]
        cell = scores[seg]
        axis = int(np.argmax(cell.var(axis=0)))
        order[lo:hi] = seg[np.argpartition(cell[:, axis], mid)]
        cells += [(lo, lo + mid), (lo + mid, hi)]
    return order


def estimate_lambda(
    x,
    snr: Sequence[float] | np.ndarray | None = None,
    *,
    key: jax.Array,
    num_noise: int = 2048,
    noise_chunk: int | None = None,
    data_chunk: int | None = None,
    method: Literal["shared", "naive"] = "shared",
    prune: bool = True,
    order: bool = True,
    check: bool = True,
    progress: bool = False,
    spectrum: bool = True,
) -> LambdaEstimate:
    r"""Estimates :math:`\lambda(s)` of the empirical distribution of ``x`` on an snr grid.

    Args:
      x: normalised data, shape ``(n, ...)``; any array-like with row slicing (a NumPy
        memmap works), streamed to the devices ``data_chunk`` rows at a time.
      snr: non-negative increasing grid (default: :func:`snr_grid` with 256 points).
      key: ``jax.random`` key for the data indices and the shared noise.
      num_noise: ``k``, the number of (index, noise) samples.
      noise_chunk: rows of the ``k`` axis processed together (split over devices); default
        :func:`default_blocks` (cache-sized on CPU, large on accelerators).
      data_chunk: rows of the data processed together; default :func:`default_blocks`.
      method: ``"shared"`` (two Gram blocks, O(kn) per snr) or ``"naive"`` (one GEMM per snr;
        identical result, for benchmarks).
      prune: skip, per (noise chunk, data chunk) block, the snr points at which every entry's
        posterior weight is below ``exp(-PRUNE_MARGIN)`` of its own source point's (high snr,
        where the posterior is one-hot). The result is unchanged to float32 rounding; it is much
        faster for separated data. Shared method only.
      order: visit the data chunks in :func:`locality_order` and the noise rows sorted by their
        source's place in it, so that close pairs meet in few blocks and the others are pruned
        at lower snr (1.7x less elementwise work on Fashion-MNIST). The pairs summed are the
        same, so only the float32 summation order changes. With ``prune`` only.
      check: verify finiteness and normalisation first.
      spectrum: also measure the covariance spectrum (:func:`covariance_spectrum`), which gives
        :func:`kopaths.fit_lambda` the linear-MMSE bound and the exact small-snr behaviour.

    Returns:
      :class:`LambdaEstimate` with :math:`1-\hat\lambda`, its standard error over the ``k``
      samples, the covariance spectrum and the wall time.
    """
    start = time.perf_counter()
    if method not in ("shared", "naive"):
        raise ValueError(f"method must be 'shared' or 'naive', got {method!r}.")
    if not hasattr(x, "shape") or len(x.shape) < 2:
        raise ValueError("x must be an array of shape (n, ...).")
    n = int(x.shape[0])
    dim = int(np.prod(x.shape[1:]))
    if n < 2:
        raise ValueError(f"Need at least 2 data points to estimate lambda, got n={n}.")
    if num_noise < 2:
        raise ValueError(f"num_noise must be >= 2, got {num_noise}.")
    x = x.reshape(n, dim) if hasattr(x, "reshape") else np.asarray(x).reshape(n, dim)  # lazy for memmaps
    snr = snr_grid() if snr is None else np.asarray(snr, np.float64)
    if snr.ndim != 1 or snr.size < 1 or not np.all(np.isfinite(snr)) or np.any(snr < 0):
        raise ValueError("snr must be a non-empty 1-D array of finite, non-negative values.")

    sqn = np.empty(n, np.float32)
    mean = np.zeros(dim, np.float64)
    for lo in range(0, n, 4096):
        rows = np.asarray(x[lo : lo + 4096], np.float32)
        if check and not np.all(np.isfinite(rows)):
            raise ValueError("Data contain NaN or Inf values.")
        sqn[lo : lo + rows.shape[0]] = np.einsum("ij,ij->i", rows, rows)
        mean += rows.sum(0, dtype=np.float64)
    mean /= n
    if check:
        check_normalized(float(sqn.mean()) / dim, float(mean @ mean) / dim)

    mesh = _data_mesh()
    ndev = mesh.devices.size
    default_noise, default_data = default_blocks()
    noise_chunk = default_noise * ndev if noise_chunk is None else int(noise_chunk)
    data_chunk = default_data if data_chunk is None else int(data_chunk)
    if noise_chunk < 1 or data_chunk < 1:
        raise ValueError("noise_chunk and data_chunk must be positive.")
    noise_chunk = max(ndev, -(-min(noise_chunk, num_noise) // ndev) * ndev)
    data_chunk = min(data_chunk, n)
    k_pad = -(-num_noise // noise_chunk) * noise_chunk
    key_idx, key_eps = jax.random.split(key)
    idx = np.asarray(jax.random.randint(key_idx, (num_noise,), 0, n))
    row_ids = np.arange(num_noise)  # noise row i depends on (key, row id) only
    data_order = None
    if order and prune and method == "shared" and n > data_chunk:
        data_order = locality_order(x, key=jax.random.fold_in(key, 3), leaf=data_chunk)
        rank = np.empty(n, np.int64)
        rank[data_order] = np.arange(n)
        row_ids = np.argsort(rank[idx], kind="stable")
        idx = idx[row_ids]
    idx = np.concatenate([idx, idx[: k_pad - num_noise]])
    row_ids = np.concatenate([row_ids, row_ids[: k_pad - num_noise]])
    rows_sharding = NamedSharding(mesh, P("k"))
    replicated = NamedSharding(mesh, P())
    acc_sharding = NamedSharding(mesh, P(None, "k"))
    snr_dev = jax.device_put(jnp.asarray(snr, jnp.float32), replicated)

    chunks = []
    for c in range(k_pad // noise_chunk):
        sel = idx[c * noise_chunk : (c + 1) * noise_chunk]
        xi = jax.device_put(_host_rows(x, sel), rows_sharding)
        eps = jax.device_put(_row_noise(key_eps, row_ids[c * noise_chunk : (c + 1) * noise_chunk], dim), rows_sharding)
        chunks.append((xi, eps, jax.device_put(sqn[sel], rows_sharding),
                       jax.device_put(sel.astype(np.int32), rows_sharding), jnp.sum(xi * eps, axis=1)))  # <eps_i, x^i>
    accs = [
        tuple(jax.device_put(a, acc_sharding) for a in _initial_accumulators(snr_dev, sqn_i, noise_src))
        for _, _, sqn_i, _, noise_src in chunks
    ]
    data_starts = range(0, n, data_chunk)
    if progress:
        try:
            from tqdm.auto import tqdm  # noqa: PLC0415 - an optional dependency (the train extra)
        except ImportError:
            tqdm = None
        if tqdm is not None:
            data_starts = tqdm(data_starts, desc=f"lambda-hat ({method})", unit="chunk")
    for lo in data_starts:
        if data_order is None:
            sel = np.arange(lo, min(lo + data_chunk, n))
            rows = np.asarray(x[lo : lo + data_chunk], np.float32)
        else:
            sel = data_order[lo : lo + data_chunk]
            rows = _host_rows(x, sel)
        m = rows.shape[0]
        valid = np.arange(data_chunk) < m
        if m < data_chunk:
            rows = np.pad(rows, ((0, data_chunk - m), (0, 0)))
        sq = np.pad(sqn[sel], (0, data_chunk - m))
        ids = np.pad(sel, (0, data_chunk - m), constant_values=-1).astype(np.int32)
        xn, sqn_n, ids_n, valid_n = (jax.device_put(v, replicated) for v in (rows, sq, ids, valid))
        for c, (xi, eps, sqn_i, src_i, noise_src) in enumerate(chunks):
            accs[c] = _accumulate(accs[c], xi, eps, sqn_i, src_i, noise_src, xn, sqn_n, ids_n, valid_n, snr_dev,
                                  method, prune, SNR_GROUP)

    per_sample = np.concatenate([np.asarray(a[2] / a[1]) for a in accs], axis=1)[:, :num_noise]
    per_sample = per_sample.astype(np.float64) / dim
    # Second control variate: ||x^i||^2/d has the known population mean, so regress it out
    # per snr. It removes the sampling noise of ||x^i||^2 where the posterior is flat.
    z = sqn[idx[:num_noise]].astype(np.float64) / dim
    z -= sqn.astype(np.float64).mean() / dim
    zc = z - z.mean()
    var_z = float(zc @ zc)
    if var_z > 0:
        coef = ((per_sample - per_sample.mean(1, keepdims=True)) @ zc) / var_z
        per_sample = per_sample - coef[:, None] * z[None, :]
    one_minus = per_sample.mean(axis=1)
    stderr = per_sample.std(axis=1, ddof=2) / np.sqrt(num_noise)
    # At s = 0 the posterior is the prior: MMSE/d = (E||x||^2 - ||E x||^2)/d exactly. The sampled
    # value there has a standard error of float32 rounding only, which no summation order can match.
    at_zero = snr == 0
    one_minus[at_zero] = (sqn.astype(np.float64).mean() - mean @ mean) / dim
    stderr[at_zero] = 0.0
    eigenvalues = covariance_spectrum(x, key=jax.random.fold_in(key, 2)) if spectrum else None
    return LambdaEstimate(
        snr=snr,
        one_minus_lam=one_minus,
        stderr=stderr,
        num_data=n,
        num_noise=num_noise,
        dim=dim,
        seconds=time.perf_counter() - start,
        cov_eigenvalues=eigenvalues,
    )
