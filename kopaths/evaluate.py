r"""Evaluate trained flow-matching checkpoints: samples, NFE, KE, bits/dim, sample distances.

Usage::

    python -m kopaths.evaluate --workdir /tmp/cb_ko [--steps last3] [--num_samples 2000] \
        [--euler_nfe 2,6,10,16] [--tol 1e-5] [--num_bpd 500 --K 1 --probes 0] [--output eval.json]

For each checkpoint step (``last3`` = the three newest, as the paper averages over three
late checkpoints) the EMA velocity model is loaded from the trainer's orbax checkpoints
(:mod:`kopaths.training.checkpointing`) and scored:

* samples from the same noise with Euler at each ``--euler_nfe`` and with dopri5 at ``--tol``
  (per-example NFE: mean and max);
* KE per dimension along the dopri5 trajectories, :math:`\frac1d\mathbb E\int_0^1\|v_t(x_t)\|^2dt`;
* NLL on held-out data: bits/dim of the 8-bit data with ``K`` uniform-dequantisation samples
  (images) or nats/dim of the continuous density (2-D data), exact divergence for
  ``d <= 64`` unless ``--probes N`` asks for Hutchinson;
* for low-dimensional data: sliced Wasserstein and MMD to held-out data (in model space);
* for images: with ``--classifier PATH`` the "FD (classifier features, not comparable to
  published FID)" of :mod:`kopaths.evaluation.classifier`, and with ``--inception`` FID in the
  TF-FID Inception features (:mod:`kopaths.inception`, converted weights required; slow on CPU),
  both against ``--num_samples`` held-out images.

Writes one JSON with per-step results and their mean over steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kopaths import likelihood as L
from kopaths import metrics as M
from kopaths import sampling as S
from kopaths.schedules import Schedule

__all__ = ["FlaxVelocity", "LoadedRun", "list_steps", "select_steps", "load_run", "evaluate_run", "parse_args", "main"]


class FlaxVelocity(eqx.Module):
    """``velocity_fn(t, x)`` of a Flax model ``model.apply({"params": p}, x, t_batch, train=False)``.

    A pytree whose leaves are the parameters, so samplers trace them instead of baking them in.
    """

    model: nn.Module = eqx.field(static=True)
    params: Any

    def __call__(self, t, x: jax.Array) -> jax.Array:
        """Velocity at scalar time ``t`` for a batch ``x``."""
        tb = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        return self.model.apply({"params": self.params}, x, tb, train=False).astype(x.dtype)


@dataclasses.dataclass
class LoadedRun:
    """A restored checkpoint: config, model, EMA parameters and the training schedule."""

    config: ml_collections.ConfigDict
    step: int
    velocity: FlaxVelocity
    schedule: Schedule


def _ckpt_dir(workdir: str) -> str:
    path = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No checkpoints under {path}; train first (python -m kopaths.train ...).")
    return path


def list_steps(workdir: str) -> list[int]:
    """Committed checkpoint steps of a training workdir, ascending."""
    from kopaths.training.checkpointing import Checkpointer  # noqa: PLC0415

    ck = Checkpointer(_ckpt_dir(workdir), async_save=False)
    try:
        return ck.all_steps()
    finally:
        ck.close()


def load_run(workdir: str, step: int | None = None, *, use_ema: bool = True) -> LoadedRun:
    """Restores ``step`` (default: latest) of a ``kopaths.train`` workdir on the local devices."""
    import orbax.checkpoint as ocp  # noqa: PLC0415
    from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: PLC0415

    from kopaths.models import build_model  # noqa: PLC0415
    from kopaths.training.checkpointing import Checkpointer  # noqa: PLC0415
    from kopaths.training.optim import make_optimizer  # noqa: PLC0415
    from kopaths.training.schedule_setup import build_schedule  # noqa: PLC0415
    from kopaths.training.state import init_train_state  # noqa: PLC0415

    ck = Checkpointer(_ckpt_dir(workdir), async_save=False)
    try:
        steps = ck.all_steps()
        if not steps:
            raise FileNotFoundError(f"No committed checkpoint in {workdir}/checkpoints.")
        step = steps[-1] if step is None else int(step)
        if step not in steps:
            raise ValueError(f"Step {step} not in {workdir}/checkpoints (have {steps}).")
        mgr = ocp.CheckpointManager(os.path.abspath(_ckpt_dir(workdir)))
        saved = mgr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        mgr.close()
        config = ml_collections.ConfigDict(saved)
        model = build_model(config.model)
        tx, _ = make_optimizer(config.optim, int(config.total_steps))
        shape = _element_shape(config)
        example = jnp.zeros((1, *shape), jnp.float32)
        abstract = jax.eval_shape(lambda k: init_train_state(model, tx, example, k), jax.random.key(0))
        rep = NamedSharding(S.default_mesh(), P())
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), abstract)
        state, _ = ck.restore(step, abstract, saved)
    finally:
        ck.close()
    schedule = build_schedule(config.path, workdir=workdir, data_cfg=config.data, seed=int(config.seed))
    params = state.ema_params if use_ema else state.params
    return LoadedRun(config, step, FlaxVelocity(model, params), schedule)


def _element_shape(config) -> tuple[int, ...]:
    from kopaths.data import data_spec  # noqa: PLC0415

    return tuple(data_spec(config.data).element_shape)


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
) -> dict[str, Any]:
    """Scores one restored checkpoint; returns a JSON-able dict (see module docstring).

    ``sampling_paths`` adds ``"sampled_along"``: the same model sampled along each of those paths
    by the scale-time transform (:mod:`kopaths.evaluation.along_paths`), Euler and dopri5 alike.
    """
    k_noise, k_sw, k_bpd = jax.random.split(key, 3)
    held, raw, stats, deq = _held_out(run.config, max(num_samples, num_bpd))
    shape = held.shape[1:]
    d = int(np.prod(shape))
    x0 = jax.random.normal(k_noise, (num_samples, *shape), jnp.float32)
    out: dict[str, Any] = {"step": run.step, "path": run.config.path.name, "dim": d, "num_samples": num_samples}
    low_dim = d <= 16
    ref = jnp.asarray(held[:num_samples])

    feature_fns = feature_fns or {}
    ref_stats = {}
    if raw is not None and feature_fns:
        ref_stats = {name: M.feature_statistics(fn(raw[:num_samples])) for name, fn in feature_fns.items()}

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

    from kopaths.evaluation.along_paths import evaluate_along_paths  # noqa: PLC0415

    own = run.config.path.name
    paths = {own: run.schedule, **{k: v for k, v in (sampling_paths or {}).items() if k != own}}
    along = evaluate_along_paths(run.velocity, run.schedule, paths, x0, euler_nfe=tuple(euler_nfe), tol=tol,
                                 score=distances)
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


def _mean_over_steps(results: list[dict]) -> dict:
    def walk(items):
        first = items[0]
        if isinstance(first, dict):
            return {k: walk([it[k] for it in items]) for k in first if all(isinstance(it, dict) and k in it for it in items)}
        if isinstance(first, (int, float)) and not isinstance(first, bool) and all(isinstance(i, (int, float)) for i in items):
            return float(np.mean(items))
        return first

    return walk(results)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options of :func:`main` (also recorded under ``"args"`` in its JSON)."""
    ap = argparse.ArgumentParser(prog="python -m kopaths.evaluate", description="Evaluate kopaths checkpoints.")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--steps", default="latest", help="'latest', 'last3', 'all' or comma-separated steps")
    ap.add_argument("--num_samples", type=int, default=2000)
    ap.add_argument("--euler_nfe", default="20,50,100")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--num_bpd", type=int, default=500)
    ap.add_argument("--K", type=int, default=1, help="uniform-dequantisation importance samples")
    ap.add_argument("--probes", type=int, default=0, help="Hutchinson probes (0: exact divergence when d <= 64)")
    ap.add_argument("--classifier", default=None, help="saved FD classifier (python -m kopaths.evaluation.classifier)")
    ap.add_argument("--inception", action="store_true", help="also FID with the converted TF-FID Inception weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None, help="JSON path (default <workdir>/eval.json)")
    return ap.parse_args(argv)


def select_steps(workdir: str, spec: str) -> list[int]:
    """The checkpoint steps ``spec`` names: 'latest', 'lastN', 'all' or comma-separated steps."""
    steps = list_steps(workdir)
    if not steps:
        raise SystemExit(f"No checkpoints in {workdir}.")
    if spec == "latest":
        return steps[-1:]
    if spec.startswith("last"):
        return steps[-int(spec[4:]):]
    if spec == "all":
        return steps
    return [int(s) for s in spec.split(",")]


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point; returns the written record."""
    args = parse_args(argv)
    chosen = select_steps(args.workdir, args.steps)
    euler = [int(n) for n in args.euler_nfe.split(",") if n]
    feature_fns = {}
    if args.classifier:
        from kopaths.evaluation.classifier import FD_LABEL, classifier_features, load_classifier  # noqa: PLC0415

        clf_params, _ = load_classifier(args.classifier)
        feature_fns[FD_LABEL] = lambda imgs: classifier_features(clf_params, imgs)
    if args.inception:
        from kopaths.inception import make_feature_fn  # noqa: PLC0415

        feature_fns["FID (TF-FID InceptionV3 pool_3)"] = make_feature_fn()
    per_step = []
    for step in chosen:
        run = load_run(args.workdir, step)
        r = evaluate_run(run, key=jax.random.key(args.seed), num_samples=args.num_samples, euler_nfe=euler, tol=args.tol,
                         num_bpd=args.num_bpd, num_importance=args.K, num_probes=args.probes,
                         feature_fns=feature_fns)
        print(json.dumps(r))
        per_step.append(r)
    record = {"workdir": os.path.abspath(args.workdir), "steps": chosen, "per_step": per_step,
              "mean_over_steps": _mean_over_steps(per_step), "args": vars(args),
              "devices": [str(d) for d in jax.devices()]}
    path = args.output or os.path.join(args.workdir, "eval.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
