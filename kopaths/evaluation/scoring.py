r"""Scoring checkpoints: samples, NFE, KE, bits/dim and sample distances, as JSON.

For each checkpoint step (``last3`` = the three newest, as the paper averages over three late
checkpoints) the EMA velocity model is loaded (:func:`kopaths.evaluation.runs.load_run`) and scored:

* samples from the same noise with Euler at each NFE and with dopri5 at ``tol`` (per-example NFE:
  mean and max), optionally along other paths too (:mod:`kopaths.evaluation.along_paths`);
* KE per dimension along the dopri5 trajectories, :math:`\frac1d\mathbb E\int_0^1\|v_t(x_t)\|^2dt`;
* NLL on held-out data: bits/dim of the 8-bit data with ``K`` uniform-dequantisation samples
  (images) or nats/dim of the continuous density (2-D data), exact divergence for ``d <= 64``
  unless Hutchinson probes are asked for;
* for low-dimensional data: sliced Wasserstein and MMD to held-out data (in model space);
* for images: Fréchet distances in the feature spaces given (:mod:`kopaths.evaluation.classifier`,
  :mod:`kopaths.evaluation.inception`), against as many held-out images.

``kopaths evaluate --workdir W`` writes one JSON with per-step results and their mean over steps.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kopaths.evaluation import distances as M
from kopaths.evaluation.along_paths import evaluate_along_paths
from kopaths.evaluation.runs import LoadedRun, load_run, select_steps
from kopaths.io import write_json
from kopaths.ode import likelihood as L
from kopaths.schedules import Schedule

__all__ = ["evaluate_run", "mean_over_steps", "evaluate_checkpoints"]


def _held_out(config, n: int):
    """(model-space held-out data, raw 8-bit values or None, stats, dequantization)."""
    from kopaths.data import data_spec, load_array, open_split  # noqa: PLC0415

    data_cfg = config.data
    split = data_cfg.get("eval_split") or "test"
    x, stats = load_array(data_cfg, split=split, max_examples=n)
    spec = data_spec(data_cfg)
    raw = None
    if spec.dequantization.kind != "continuous":
        src = open_split(data_cfg, split)
        raw = np.asarray(src.read(0, min(n, len(src))))
    return x, raw, stats, spec.dequantization


def evaluate_run(
    run: LoadedRun,
    *,
    key: jax.Array,
    num_samples: int,
    euler_nfe: list[int],
    tol: float,
    num_bpd: int,
    num_importance: int,
    num_probes: int,
    feature_fns: dict[str, Any] | None = None,
    sampling_paths: dict[str, Schedule] | None = None,
    num_reference: int | None = None,
    samples: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Scores one restored checkpoint; returns a JSON-able dict (see module docstring).

    A ``samples`` dict receives the dopri5 samples (model space) along each sampling path, keyed
    like ``"sampled_along"`` (the run's own path under its path name).

    ``sampling_paths`` adds ``"sampled_along"``: the same model sampled along each of those paths
    by the scale-time transform (:mod:`kopaths.evaluation.along_paths`), Euler and dopri5 alike.
    Feature distances compare ``num_samples`` samples with ``num_reference`` held-out images
    (default: as many as samples).
    """
    k_noise, k_sw, k_bpd = jax.random.split(key, 3)
    num_reference = num_samples if num_reference is None else int(num_reference)
    held, raw, stats, deq = _held_out(run.config, max(num_samples, num_bpd, num_reference))
    shape = held.shape[1:]
    d = int(np.prod(shape))
    x0 = jax.random.normal(k_noise, (num_samples, *shape), jnp.float32)
    out: dict[str, Any] = {"step": run.step, "path": run.config.path.name, "dim": d, "num_samples": num_samples,
                           "num_reference": num_reference}
    low_dim = d <= 16
    ref = jnp.asarray(held[:num_samples])

    feature_fns = feature_fns or {}
    ref_stats = {}
    if raw is not None and feature_fns:
        ref_stats = {name: M.feature_statistics(fn(raw[:num_reference])) for name, fn in feature_fns.items()}

    def distances(x):
        if raw is not None and feature_fns:
            from kopaths.data import to_uint8  # noqa: PLC0415

            imgs = to_uint8(np.asarray(x), stats)
            return {name: M.frechet_distance(*M.feature_statistics(fn(imgs)), *ref_stats[name])
                    for name, fn in feature_fns.items()}
        if not low_dim or ref.shape[0] != x.shape[0]:
            return {}
        return {
            "sliced_w2": float(M.sliced_wasserstein(x, ref, k_sw, 512)),
            "mmd_rbf": float(M.mmd_rbf(x[:2000], ref[:2000])),
        }

    own = run.config.path.name
    paths = {own: run.schedule, **{k: v for k, v in (sampling_paths or {}).items() if k != own}}
    along = evaluate_along_paths(run.velocity, run.schedule, paths, x0, euler_nfe=tuple(euler_nfe), tol=tol,
                                 score=distances, samples=samples)
    out.update(along[own])
    out["kinetic_energy"] = along[own]["dopri5"]["kinetic_energy"]
    if sampling_paths:
        out["sampled_along"] = along
    if num_bpd > 0:
        xb = jnp.asarray(held[:num_bpd])
        use_hutch = num_probes > 0 or d > 64
        probes = num_probes if num_probes > 0 else 1

        def lp(x, k):
            if use_hutch:
                return L.log_prob(run.velocity, x, divergence="hutchinson", key=k, num_probes=probes, rtol=tol, atol=tol)
            return L.log_prob(run.velocity, x, rtol=tol, atol=tol)

        t = time.perf_counter()
        if raw is not None and deq.kind == "uniform":
            r = L.bits_per_dim(lp, jnp.asarray(raw[:num_bpd]), k_bpd, stats=stats, dequant_scale=deq.dequant_scale,
                               num_importance_samples=num_importance)
            out["nll"] = {"bits_per_dim": r.mean_bpd, "K": r.num_importance_samples, "probes": r.num_probes,
                          "nfe_mean": r.mean_nfe, "num_examples": num_bpd, "seconds": time.perf_counter() - t}
            print(f"[step {run.step}] NLL {r}")
        else:
            res = lp(xb, k_bpd)
            nll = -np.asarray(res.log_prob) / d
            # Continuous data: nats/dim of the model-space density, and of the raw data (affine-corrected).
            out["nll"] = {
                "nats_per_dim_model_space": float(nll.mean()),
                "nats_per_dim_data_space": float(nll.mean() - stats.log_det_jacobian() / d),
                "probes": res.num_probes, "K": None, "nfe_mean": float(jnp.mean(res.nfe)),
                "num_examples": num_bpd, "seconds": time.perf_counter() - t,
            }
            print(f"[step {run.step}] NLL {nll.mean():.4f} nats/dim (model space; probes={res.num_probes}, no dequantisation)")
    return out


def mean_over_steps(results: list[dict]) -> dict:
    """Means of every numeric leaf over the per-step records (other leaves: the first step's)."""
    def walk(items):
        first = items[0]
        if isinstance(first, dict):
            return {k: walk([it[k] for it in items]) for k in first if all(isinstance(it, dict) and k in it for it in items)}
        if isinstance(first, (int, float)) and not isinstance(first, bool) and all(isinstance(i, (int, float)) for i in items):
            return float(np.mean(items))
        return first

    return walk(results)


def evaluate_checkpoints(workdir: str, *, steps: str = "latest", seed: int = 0, output: str | None = None,
                         feature_fns: dict[str, Any] | None = None, **kwargs) -> dict:
    """Scores the checkpoints ``steps`` names (:func:`kopaths.evaluation.runs.select_steps`) and writes
    ``output`` (default ``<workdir>/eval.json``): per-step records, their mean and the settings."""
    chosen = select_steps(workdir, steps)
    per_step = []
    for step in chosen:
        r = evaluate_run(load_run(workdir, step), key=jax.random.key(seed), feature_fns=feature_fns, **kwargs)
        print(json.dumps(r), flush=True)
        per_step.append(r)
    record = {"workdir": os.path.abspath(workdir), "steps": chosen, "per_step": per_step,
              "mean_over_steps": mean_over_steps(per_step),
              "args": {"steps": steps, "seed": seed, **{k: v for k, v in kwargs.items() if k != "sampling_paths"},
                       "features": sorted(feature_fns or {})},
              "devices": [str(d) for d in jax.devices()]}
    path = output or os.path.join(workdir, "eval.json")
    write_json(path, record)
    print(f"wrote {path}")
    return record
