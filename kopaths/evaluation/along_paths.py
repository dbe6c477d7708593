r"""Scoring one trained model sampled along several paths (scale-time transform, from ``t = 0``).

A model trained on schedule A defines one probability flow; :class:`kopaths.sampling.ScheduleTransformedVelocity`
re-expresses it on any schedule B with the same end points. The continuous-time samples are the
same along every B (the trajectories are reparametrised, :math:`x^B_t = c_t x^A_{r_t}`), but a
fixed-step solver sees a different field, so the sampling path changes low-NFE quality, the
adaptive solver's NFE and the kinetic energy along the trajectories. :func:`evaluate_along_paths`
measures exactly those: Euler at each NFE and one dopri5 solve per path that gives the samples,
their NFE and their KE together.

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
    ``{path: {"euler_<n>": {...}, "dopri5": {..., "nfe_mean", "nfe_max", "kinetic_energy", "seconds"}}}``;
    a ``samples`` dict receives each path's dopri5 samples (model space).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, schedule in sampling_paths.items():
        vf = transformed_velocity(velocity_fn, trained_on, schedule)
        rec: dict[str, Any] = {}
        for nfe in euler_nfe:
            start = time.perf_counter()
            x = np.asarray(sample_fixed(vf, x0, method="euler", nfe=int(nfe)).x)
            rec[f"euler_{nfe}"] = {"nfe": int(nfe), **score(x), "seconds": time.perf_counter() - start}
        start = time.perf_counter()
        ke = kinetic_energy_along_samples(vf, x0, method="dopri5", rtol=tol, atol=tol, max_steps=max_steps)
        nfe = np.asarray(ke.nfe)
        if samples is not None:
            samples[name] = np.asarray(ke.samples)
        rec["dopri5"] = {"rtol": tol, "atol": tol, "nfe_mean": float(nfe.mean()), "nfe_max": int(nfe.max()),
                         "kinetic_energy": float(ke.kinetic_energy), **score(np.asarray(ke.samples)),
                         "seconds": time.perf_counter() - start}
        out[name] = rec
    return out
