"""Builds the training path (schedule) from config; the KO path is solved once per workdir."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import jax
import numpy as np

from kopaths.schedules import Schedule, get_schedule
from kopaths.training.data import load_train_array

__all__ = ["KO_SCHEDULE_FILE", "LAMBDA_FILE", "build_schedule"]

log = logging.getLogger(__name__)

KO_SCHEDULE_FILE = "ko_schedule.json"
LAMBDA_FILE = "lambda_hat.json"

_ANALYTIC_KEYS = {"cond_ot": ("sigma_min",), "vp": ("beta_min", "beta_max"), "cosine": (),
                  "linear_vp": (), "polynomial": ("exponent",)}


def build_schedule(path_cfg: Mapping[str, Any], *, workdir: str, data_cfg, seed: int) -> Schedule:
    """Returns the schedule named by ``path_cfg.name`` ("cond_ot", "vp", "cosine", ..., "ko").

    For "ko", ``<workdir>/ko_schedule.json`` is loaded if present; otherwise lambda-hat is
    estimated on ``path_cfg.ko_num_examples`` training examples with ``ko_num_noise`` noise
    samples, fitted, solved into a KO schedule and saved there (by process 0), so that a
    resumed run trains on exactly the same path.
    """
    name = path_cfg["name"]
    if name != "ko":
        if name not in _ANALYTIC_KEYS:
            raise ValueError(f"Unknown path {name!r}; choose one of {sorted(_ANALYTIC_KEYS) + ['ko']}.")
        return get_schedule(name, **{k: path_cfg[k] for k in _ANALYTIC_KEYS[name] if k in path_cfg})
    from kopaths import ko  # noqa: PLC0415 - KO machinery is only needed for this path

    path = os.path.join(workdir, KO_SCHEDULE_FILE)
    if os.path.exists(path):
        log.info("Loading KO schedule from %s", path)
        return ko.load_ko_schedule(path)
    from kopaths.lambda_fit import fit_lambda  # noqa: PLC0415
    from kopaths.separation import estimate_lambda  # noqa: PLC0415

    x = load_train_array(data_cfg, max_examples=int(path_cfg.get("ko_num_examples", 10_000)))
    key = jax.random.fold_in(jax.random.key(seed), 0x4B4F)
    estimate = estimate_lambda(x.reshape(len(x), -1), key=key, num_noise=int(path_cfg.get("ko_num_noise", 2048)))
    schedule = ko.solve_ko(fit_lambda(estimate), sigma_min=float(path_cfg.get("sigma_min", 0.0)))
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        estimate.save(os.path.join(workdir, LAMBDA_FILE))
        schedule.save(path)
    log.info("Solved KO schedule on %d examples (d=%d), saved to %s", len(x), int(np.prod(x.shape[1:])), path)
    return schedule
