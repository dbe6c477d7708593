"""The trainer: flow matching on any Gaussian path, sharded over a config-defined device mesh.

:func:`train` is a library function (the CLI's ``kopaths train`` calls it)::

    kopaths train --config experiments/configs/fmnist_unet.py:ko --workdir /tmp/fm_ko

The same call runs on 1 CPU, 1 GPU, several GPUs or every host of a TPU pod (see
``scripts/train_multihost.sh``): one jitted step over a ``Mesh`` with ``NamedSharding`` batches.
Re-running on the same workdir resumes exactly from the last checkpoint; SIGINT/SIGTERM save a
checkpoint and stop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from kopaths.data import make_train_iterator
from kopaths.io import atomic_write_text
from kopaths.models import build_model, count_params
from kopaths.objective import flow_matching_loss, make_time_sampler
from kopaths.training import sharding as shd
from kopaths.training.checkpointing import Checkpointer
from kopaths.training.optim import ema_update, make_optimizer
from kopaths.training.run_log import MetricWriter, ProgressBar
from kopaths.training.path_source import build_schedule
from kopaths.training.state import TrainState, init_train_state

DATA_STATS_FILE = "data_stats.json"

__all__ = ["DATA_STATS_FILE", "TrainResult", "train", "make_train_step"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What a call of :func:`train` ends with."""

    state: TrainState
    step: int
    interrupted: bool


def make_train_step(model, schedule, tx, lr_fn, config: Mapping[str, Any], train_key: jax.Array):
    """Returns ``train_step(state, batch) -> (state, metrics)`` (not yet jitted).

    ``config`` needs ``time_sampling`` and ``optim`` (EMA settings). All randomness of step ``s``
    comes from ``fold_in(train_key, s)``, so a resumed run draws exactly the numbers an
    uninterrupted run would.
    """
    sampler = make_time_sampler(dict(config["time_sampling"]), schedule)
    optim = dict(config["optim"])
    ema_decay = float(optim.get("ema_decay", 0.9999))
    ema_warmup = bool(optim.get("ema_warmup", False))

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        key = jax.random.fold_in(train_key, state.step)
        k_loss, k_drop = jax.random.split(key)

        def loss_fn(params):
            def velocity(x, t):
                return model.apply({"params": params}, x, t, train=True, rngs={"dropout": k_drop})

            return flow_matching_loss(velocity, schedule, batch["x"], k_loss, sampler)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema_params, params, ema_decay, state.step, ema_warmup)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr_fn(state.step)}
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
        return new_state, metrics

    return train_step


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to checkpoint and stop."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not in the main thread: no signal handling
            pass
        return self

    def _handle(self, signum, frame):
        log.warning("Signal %d received: saving a checkpoint and stopping (again to abort).", signum)
        self.requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _save_data_stats(data_iter, workdir: str) -> None:
    """Writes the data normalisation (``AffineStats``) next to the checkpoints, once."""
    stats = getattr(data_iter, "stats", None)
    path = os.path.join(workdir, DATA_STATS_FILE)
    if stats is None or jax.process_index() != 0 or os.path.exists(path):
        return
    atomic_write_text(path, stats.to_json())


def train(config: ml_collections.ConfigDict, workdir: str, *, stop_at_step: int | None = None) -> TrainResult:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Args:
      config: run config (see ``experiments/configs``).
      workdir: output directory: checkpoints, ``metrics.jsonl``, the KO schedule.
      stop_at_step: stop (with a checkpoint) once this step is reached, as a preemption would;
        the run can then be resumed. ``None`` trains to ``config.total_steps``.

    Returns:
      :class:`TrainResult` with the final state.
    """
    os.makedirs(workdir, exist_ok=True)
    # The config is read here, once; the parts below get plain values (the config is the application's).
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    total_steps = int(cfg["total_steps"])
    mesh = shd.make_mesh(cfg["mesh"])
    if cfg["global_batch_size"] % mesh.size:
        raise ValueError(f"global_batch_size={cfg['global_batch_size']} is not divisible by {mesh.size} devices.")
    log.info("Mesh %s over %d devices (%d processes)", dict(mesh.shape), mesh.size, jax.process_count())

    ckpt_cfg = cfg["checkpoint"]
    checkpointer = Checkpointer(
        os.path.join(workdir, "checkpoints"), max_to_keep=int(ckpt_cfg["max_to_keep"]),
        async_save=bool(ckpt_cfg.get("async_save", True)),
    )
    bar = None
    try:
        start_step = checkpointer.latest_step() or 0

        data_iter = make_train_iterator(
            cfg["data"], seed=int(cfg["seed"]), global_batch_size=int(cfg["global_batch_size"]), start_step=start_step,
        )
        model = build_model(cfg["model"])
        tx, lr_fn = make_optimizer(cfg["optim"], total_steps)
        root = jax.random.key(int(cfg["seed"]))
        init_key, train_key = jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)
        example = jnp.zeros((1, *data_iter.element_shape), jnp.float32)
        init_fn = functools.partial(init_train_state, model, tx, example)
        abstract = jax.eval_shape(init_fn, init_key)
        shardings = shd.state_shardings(abstract, mesh, min_size=int(cfg.get("fsdp_min_size", 2**14)))
        num_split = sum(not s.is_fully_replicated for s in jax.tree.leaves(shardings.params))
        log.info("Parameters: %d of %d arrays split over the fsdp axis", num_split, len(jax.tree.leaves(shardings.params)))

        if start_step:
            abstract_sharded = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
            )
            state, data_state = checkpointer.restore(start_step, abstract_sharded, cfg)
            data_iter.set_state(data_state)
        else:
            state = jax.jit(init_fn, out_shardings=shardings)(init_key)
        log.info("Model %s: %d parameters; starting at step %d", cfg["model"]["name"], count_params(state.params), start_step)

        schedule = build_schedule(cfg["path"], workdir=workdir, data_cfg=cfg["data"], seed=int(cfg["seed"]))
        step_fn = make_train_step(model, schedule, tx, lr_fn, cfg, train_key)
        batch_sharding = shd.batch_sharding(mesh)
        train_step = jax.jit(
            step_fn, in_shardings=(shardings, batch_sharding), out_shardings=(shardings, shd.replicated(mesh)),
            donate_argnums=(0,),
        )

        _save_data_stats(data_iter, workdir)
        writer = MetricWriter(workdir, start_step)
        bar = ProgressBar(total_steps, start_step, enabled=bool(cfg.get("progress_bar", True)))
        log_every, ckpt_every = int(cfg["log_every_steps"]), int(ckpt_cfg["every_steps"])
        end_step = total_steps if stop_at_step is None else min(total_steps, int(stop_at_step))
        step, interrupted, last_time, last_step = start_step, False, time.perf_counter(), start_step
        last_saved = start_step

        def save() -> None:
            nonlocal last_saved
            if step != last_saved:
                checkpointer.save(step, state, data_iter.get_state(), cfg, force=True)
                last_saved = step

        with _StopFlag() as stop:
            while step < end_step:
                batch = shd.make_global_batch(next(data_iter), batch_sharding)
                state, metrics = train_step(state, batch)
                step += 1
                if step % log_every == 0 or step == end_step:
                    metrics = jax.device_get(metrics)
                    if not np.isfinite(metrics["loss"]):
                        raise FloatingPointError(
                            f"Loss is {metrics['loss']} at step {step}; lower optim.lr or raise grad clipping, "
                            "then resume from the last checkpoint."
                        )
                    now = time.perf_counter()
                    metrics["steps_per_sec"] = (step - last_step) / max(now - last_time, 1e-9)
                    last_time, last_step = now, step
                    writer.write(step, metrics)
                    bar.update(0, loss=float(metrics["loss"]))
                bar.update(1)
                if step % ckpt_every == 0:
                    save()
                if stop.requested:
                    interrupted = True
                    break
            save()
    finally:
        if bar is not None:
            bar.close()
        checkpointer.close()
    log.info("Stopped at step %d%s", step, " (interrupted)" if interrupted else "")
    return TrainResult(state=state, step=step, interrupted=interrupted)
