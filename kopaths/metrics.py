r"""Sample-quality and path metrics: Fréchet distance, sliced Wasserstein, MMD, kinetic energy.

* Fréchet distance between Gaussians fitted to features:
  :math:`\|\mu_1-\mu_2\|^2 + \mathrm{tr}\big(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}\big)`.
* Sliced 2-Wasserstein distance (2-D / low-d samples):
  :math:`SW_2^2 = \mathbb E_{\omega\sim U(S^{d-1})} W_2^2(\omega^\top X, \omega^\top Y)`.
* Unbiased MMD² with a sum of Gaussian kernels.
* Kinetic energy of a velocity field along its own sampling trajectories,
  :math:`\mathcal E = \frac1d\,\mathbb E_{x_0}\int_{t_0}^{t_1} \|u_t(x_t)\|^2\,dt` (the time
  mean when ``t1 - t0 = 1``), integrated as an extra ODE state so it costs no extra evaluations.
* Ideal-flow scoring: KE and adaptive-solver NFE of any schedule on the exact marginal field
  of an empirical dataset (:func:`kopaths.ideal.marginal_velocity`), isolating the path's
  effect from the network's.
"""

from __future__ import annotations

from typing import NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.sharding import Mesh

from kopaths.ideal import marginal_velocity
from kopaths.sampling import (
    FIXED_STEP_SOLVERS,
    VelocityFn,
    fixed_step_nfe_to_steps,
    make_solver,
    per_example_map,
    place_on_mesh,
    solve_one_adaptive,
)
from kopaths.schedules import Schedule

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "sliced_wasserstein",
    "mmd_rbf",
    "KineticEnergyResult",
    "kinetic_energy_along_samples",
    "ideal_velocity",
    "ideal_flow_scores",
]


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features`` ``(n, k)``, in float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (n >= 2, k), got {f.shape}.")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or Inf.")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    r"""Fréchet distance between :math:`\mathcal N(\mu_1, C_1)` and :math:`\mathcal N(\mu_2, C_2)`.

    Uses ``scipy.linalg.sqrtm`` of :math:`C_1 C_2` (as TF-FID / pytorch-fid do), adding ``eps I``
    when the product is singular and dropping the imaginary round-off.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"Shape mismatch: mu {mu1.shape}/{mu2.shape}, cov {cov1.shape}/{cov2.shape}.")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(cov1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


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


def _energy_field(vf, x_shape):
    d = int(np.prod(x_shape[1:]))

    def field(t, state):
        x, _ = state
        v = vf(t, x)
        return v, jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) / d

    return field


@eqx.filter_jit
def _ke_fixed(velocity_fn, x0, method, steps, t0, t1):
    field = _energy_field(velocity_fn, x0.shape)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: field(t, y)),
        make_solver(method),
        t0=t0,
        t1=t1,
        dt0=None,
        y0=(x0, jnp.zeros((x0.shape[0],), x0.dtype)),
        stepsize_controller=diffrax.StepTo(ts=jnp.linspace(t0, t1, steps + 1, dtype=x0.dtype)),
        adjoint=diffrax.ForwardMode(),
        max_steps=steps,
    )
    x1, e = sol.ys
    return x1[-1], e[-1]


@eqx.filter_jit
def _ke_adaptive(velocity_fn, x0, method, rtol, atol, t0, t1, max_steps, mesh):
    def one(vf, x):
        field = _energy_field(vf, (1,) + x.shape)

        def f(t, state):
            v, e = field(t, (state[0][None], None))
            return v[0], e[0]

        (x1, e), nfe, _ = solve_one_adaptive(
            f, (x, jnp.zeros((), x.dtype)), method=method, rtol=rtol, atol=atol, t0=t0, t1=t1, max_steps=max_steps
        )
        return x1, e, nfe

    return per_example_map(one, velocity_fn, (x0,), mesh)


def kinetic_energy_along_samples(
    velocity_fn: VelocityFn,
    x0: jax.Array,
    *,
    method: str = "dopri5",
    nfe: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t0: float = 0.0,
    t1: float = 1.0,
    max_steps: int = 4096,
    mesh: Mesh | None = None,
) -> KineticEnergyResult:
    r"""KE per dimension of ``velocity_fn`` along the trajectories it generates from ``x0``.

    Integrates :math:`e' = \|u_t(x_t)\|^2/d` jointly with :math:`x' = u_t(x)`; with
    :math:`t_1 - t_0 = 1` the result is the paper's :math:`\mathbb E_{t, x_t}\|u_t(x_t)\|^2/d`
    (on the model's own trajectories). Fixed-step methods need ``nfe``; adaptive ones use
    ``rtol``/``atol`` per example.
    """
    if x0.ndim < 2:
        raise ValueError(f"x0 must be a batch (batch, *example_shape), got {x0.shape}.")
    if method in FIXED_STEP_SOLVERS:
        if nfe is None:
            raise ValueError(f"Fixed-step method {method!r} needs nfe.")
        steps = fixed_step_nfe_to_steps(method, nfe)
        x1, e = _ke_fixed(velocity_fn, x0, method, steps, float(t0), float(t1))
        n = jnp.full((x0.shape[0],), nfe, jnp.int32)
    else:
        (velocity_fn, x0), mesh = place_on_mesh((velocity_fn, x0), mesh)
        x1, e, n = _ke_adaptive(velocity_fn, x0, method, float(rtol), float(atol), float(t0), float(t1), int(max_steps), mesh)
    return KineticEnergyResult(jnp.mean(e), e, x1, n)


def ideal_velocity(schedule: Schedule, data: jax.Array, chunk_size: int = 4096) -> VelocityFn:
    """Exact marginal velocity of ``schedule`` over ``data`` as a traced pytree callable."""
    return jax.tree_util.Partial(_IdealField(schedule, chunk_size), jnp.asarray(data))


class _IdealField(eqx.Module):
    schedule: Schedule
    chunk_size: int = eqx.field(static=True)

    def __call__(self, data, t, x):
        return marginal_velocity(self.schedule, data, t, x, chunk_size=self.chunk_size)


def ideal_flow_scores(
    schedule: Schedule,
    data: jax.Array,
    key: jax.Array,
    *,
    num_samples: int = 256,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    t_end: float = 1.0 - 1e-3,
    chunk_size: int = 4096,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    r"""KE and adaptive NFE of ``schedule`` on the exact marginal field of ``data``.

    Samples ``num_samples`` noise points, integrates the ideal flow on ``[0, t_end]`` per example
    (``t_end < 1`` because the empirical field is singular at :math:`\sigma_t = 0`) and returns
    ``{"kinetic_energy", "kinetic_energy_stderr", "nfe_mean", "nfe_max", "nfe_median"}`` together
    with the settings used.
    """
    data = jnp.asarray(data)
    x0 = jax.random.normal(key, (num_samples,) + data.shape[1:], data.dtype)
    res = kinetic_energy_along_samples(
        ideal_velocity(schedule, data, chunk_size), x0, method=method, rtol=rtol, atol=atol, t1=t_end, mesh=mesh
    )
    e = np.asarray(res.per_example, np.float64)
    n = np.asarray(res.nfe)
    return {
        "kinetic_energy": float(e.mean()),
        "kinetic_energy_stderr": float(e.std(ddof=1) / np.sqrt(e.size)) if e.size > 1 else float("nan"),
        "nfe_mean": float(n.mean()),
        "nfe_median": float(np.median(n)),
        "nfe_max": int(n.max()),
        "num_samples": int(num_samples),
        "num_data": int(data.shape[0]),
        "method": method,
        "rtol": float(rtol),
        "atol": float(atol),
        "t_end": float(t_end),
    }
