"""Trained runs as velocity functions: the checkpoint loader of every evaluation.

:func:`load_run` reads a training workdir (:func:`kopaths.training.trainer.train`): the config
saved with a checkpoint, the EMA (or raw) parameters from the same checkpoint, and the schedule the
run trained on (``<workdir>/ko_schedule.json`` for KO). The parameters are restored without a
target structure and checked against the model's own shapes, so no optimiser is rebuilt.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from kopaths.schedules import Schedule

__all__ = ["FlaxVelocity", "LoadedRun", "list_steps", "select_steps", "read_run_config", "load_run"]


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


def _checkpointer(workdir: str):
    from kopaths.training.checkpointing import Checkpointer  # noqa: PLC0415

    path = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No checkpoints under {path}; train first (kopaths train ...).")
    return Checkpointer(path, async_save=False)


def list_steps(workdir: str) -> list[int]:
    """Committed checkpoint steps of a training workdir, ascending."""
    ck = _checkpointer(workdir)
    try:
        return ck.all_steps()
    finally:
        ck.close()


def select_steps(workdir: str, spec: str) -> list[int]:
    """The checkpoint steps ``spec`` names: ``latest``, ``lastN``, ``all`` or comma-separated steps."""
    steps = list_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"No committed checkpoint in {workdir}/checkpoints.")
    if spec == "latest":
        return steps[-1:]
    if spec.startswith("last") and spec[4:].isdigit():
        return steps[-int(spec[4:]):]
    if spec == "all":
        return steps
    try:
        chosen = [int(s) for s in spec.split(",")]
    except ValueError:
        raise ValueError(f"steps must be 'latest', 'lastN', 'all' or comma-separated integers, got {spec!r}.") from None
    missing = sorted(set(chosen) - set(steps))
    if missing:
        raise ValueError(f"Steps {missing} are not in {workdir}/checkpoints (have {steps}).")
    return chosen


def _one_step(workdir: str, step: int | None) -> int:
    """``step`` (``None``: the latest) as :func:`select_steps` checks it against the committed steps."""
    return select_steps(workdir, "latest" if step is None else str(int(step)))[0]


def read_run_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
    """The config saved with ``step`` (default: latest) of a training workdir, without restoring
    any arrays (what a caller needs to choose, e.g., the data's feature network)."""
    step = _one_step(workdir, step)
    ck = _checkpointer(workdir)
    try:
        return ml_collections.ConfigDict(ck.read_config(step))
    finally:
        ck.close()


def load_run(workdir: str, step: int | None = None, *, use_ema: bool = True) -> LoadedRun:
    """Restores ``step`` (default: latest) of a training workdir on the local devices."""
    from kopaths.data import data_spec  # noqa: PLC0415
    from kopaths.models import build_model  # noqa: PLC0415
    from kopaths.training.checkpointing import IncompatibleCheckpointError  # noqa: PLC0415
    from kopaths.training.path_source import build_schedule  # noqa: PLC0415

    step = _one_step(workdir, step)
    ck = _checkpointer(workdir)
    try:
        config = ml_collections.ConfigDict(ck.read_config(step))
        saved = ck.restore_saved_state(step)
    finally:
        ck.close()
    model = build_model(config.model)
    example = jnp.zeros((1, *data_spec(config.data).element_shape), jnp.float32)
    expected = jax.eval_shape(lambda k: model.init(k, example, jnp.zeros((1,)), train=False)["params"], jax.random.key(0))
    params = saved.get("ema_params" if use_ema else "params")
    shapes = jax.tree.map(lambda a: tuple(a.shape), params) if params is not None else None
    if shapes is None or jax.tree.structure(shapes) != jax.tree.structure(jax.tree.map(lambda a: tuple(a.shape), expected)) \
            or shapes != jax.tree.map(lambda a: tuple(a.shape), expected):
        raise IncompatibleCheckpointError(
            f"Checkpoint {workdir}/checkpoints/{step} holds parameters that do not fit its saved model config "
            f"{config.model.to_dict()}; it was written by another kopaths version or is damaged."
        )
    schedule = build_schedule(config.path, workdir=workdir, data_cfg=config.data, seed=int(config.seed))
    return LoadedRun(config, step, FlaxVelocity(model, jax.tree.map(jnp.asarray, params)), schedule)
