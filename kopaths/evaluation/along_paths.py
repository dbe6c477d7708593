r"""Scoring one trained model sampled along several paths (scale-time transform, from ``t = 0``).

A model trained on schedule A defines one probability flow; :class:`kopaths.sampling.ScheduleTransformedVelocity`
re-expresses it on any schedule B with the same end points. The continuous-time samples are the
same along every B (the trajectories are reparametrised, :math:`x^B_t = c_t x^A_{r_t}`), but a
fixed-step solver sees a different field, so the sampling path changes low-NFE quality, the
adaptive solver's NFE and the kinetic energy along the trajectories. :func:`evaluate_along_paths`
measures exactly those: Euler at each NFE and one dopri5 solve per path that gives the samples,
their NFE and their KE together.

A sample distance such as FD says how close samples are to the *data*; a coarse solver error can
land closer to the data than the model's own flow does. The solver error of an Euler sampler is
therefore measured separately, as the root-mean-square per-coordinate distance between each
Euler sample and the dopri5 sample from the same noise along the same path,

.. math:: \mathrm{RMSE} = \Big(\frac{1}{n d}\sum_{i=1}^n \lVert x^{\text{Euler}}_i - x^{\text{dopri5}}_i\rVert^2\Big)^{1/2},

which is zero exactly when the sampler reproduces the model's flow map.

Sample distances are Fréchet distances in a feature space (:func:`frechet_with_bootstrap` gives
the standard error over the generated samples by bootstrap).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from kopaths.evaluation.distances import feature_statistics, frechet_distance
from kopaths.ode.energy import kinetic_energy_along_samples
from kopaths.ode.sampling import ScheduleTransformedVelocity, sample_fixed
from kopaths.schedules import Schedule

__all__ = ["frechet_with_bootstrap", "transformed_velocity", "evaluate_along_paths"]


def frechet_with_bootstrap(features, reference_stats: tuple[np.ndarray, np.ndarray], *, seed: int = 0,
                           num_bootstrap: int = 100) -> dict[str, float]:
    """FD of ``features`` against fixed reference statistics, with its bootstrap standard error."""
    features = np.asarray(features, np.float64)
    mu_r, cov_r = reference_stats
    fd = frechet_distance(*feature_statistics(features), mu_r, cov_r)
    rng = np.random.default_rng(seed)
    boot = [frechet_distance(*feature_statistics(features[rng.integers(0, len(features), len(features))]), mu_r, cov_r)
            for _ in range(num_bootstrap)]
    return {"fd": float(fd), "fd_bootstrap_se": float(np.std(boot, ddof=1)), "num_samples": int(len(features))}


def transformed_velocity(velocity_fn: Any, trained_on: Schedule, sample_along: Schedule) -> Any:
    """``velocity_fn`` itself when the two schedules are the same object, else its scale-time transform."""
    if sample_along is trained_on:
        return velocity_fn
    return ScheduleTransformedVelocity(velocity_fn, trained_on, sample_along)


def evaluate_along_paths(
    velocity_fn: Any,
    trained_on: Schedule,
    sampling_paths: Mapping[str, Schedule],
    x0: jax.Array,
    *,
    euler_nfe: tuple[int, ...],
    tol: float,
    score: Callable[[np.ndarray], dict[str, float]],
    max_steps: int = 4096,
    samples: dict[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Samples ``velocity_fn`` (trained on ``trained_on``) from ``x0`` along every path in ``sampling_paths``.

    For each path: Euler at every ``euler_nfe`` and one dopri5 solve at ``rtol = atol = tol``;
    ``score(samples)`` turns model-space samples into distances. Returns
    ``{path: {"euler_<n>": {..., "solver_rmse"}, "dopri5": {..., "nfe_mean", "nfe_max", "kinetic_energy",
    "seconds"}}}``, where ``solver_rmse`` is the RMS per-coordinate distance of the Euler samples to
    that path's dopri5 samples from the same noise; a ``samples`` dict receives each path's dopri5
    samples (model space).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, schedule in sampling_paths.items():
        vf = transformed_velocity(velocity_fn, trained_on, schedule)
        start = time.perf_counter()
        ke = kinetic_energy_along_samples(vf, x0, method="dopri5", rtol=tol, atol=tol, max_steps=max_steps)
        nfe = np.asarray(ke.nfe)
        reference = np.asarray(ke.samples)
        if samples is not None:
            samples[name] = reference
        dopri5 = {"rtol": tol, "atol": tol, "nfe_mean": float(nfe.mean()), "nfe_max": int(nfe.max()),
                  "kinetic_energy": float(ke.kinetic_energy), **score(reference), "seconds": time.perf_counter() - start}
        rec: dict[str, Any] = {}
        for n in euler_nfe:
            start = time.perf_counter()
            x = np.asarray(sample_fixed(vf, x0, method="euler", nfe=int(n)).x)
            rmse = float(np.sqrt(np.mean(np.square(x.astype(np.float64) - reference))))
            rec[f"euler_{n}"] = {"nfe": int(n), **score(x), "solver_rmse": rmse, "seconds": time.perf_counter() - start}
        rec["dopri5"] = dopri5
        out[name] = rec
    return out
