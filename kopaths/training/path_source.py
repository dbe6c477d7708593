"""The schedule a training run trains on. A KO path is never re-solved silently: it comes from the
run's own saved schedule, from ``path.schedule_file``, or, the first time, from the single
producer :func:`kopaths.ko.solve_ko_from_data` on all of the training data."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import jax

from kopaths.io import atomic_copy
from kopaths.schedules import Schedule, path_spec
from kopaths.data import load_normalized

__all__ = ["KO_SCHEDULE_FILE", "build_schedule"]

log = logging.getLogger(__name__)

KO_SCHEDULE_FILE = "ko_schedule.json"
_BESIDE = ("ko_diagnostics.json", "lambda.json")


def _adopt(source: str, workdir: str) -> None:
    """Copies a given ``<prefix>ko_schedule.json`` and the ``<prefix>ko_diagnostics.json`` and
    ``<prefix>lambda.json`` saved beside it (:meth:`kopaths.ko.KOSolution.save`) into ``workdir``."""
    folder, name = os.path.split(os.path.abspath(source))
    prefix = name[: -len(KO_SCHEDULE_FILE)] if name.endswith(KO_SCHEDULE_FILE) else None
    for extra in _BESIDE if prefix is not None else ():
        if os.path.exists(os.path.join(folder, prefix + extra)):
            atomic_copy(os.path.join(folder, prefix + extra), os.path.join(workdir, extra))
    atomic_copy(source, os.path.join(workdir, KO_SCHEDULE_FILE))


def build_schedule(path_cfg: Mapping[str, Any], *, workdir: str, data_cfg, seed: int) -> Schedule:
    """Returns the schedule named by ``path_cfg.name`` (a :data:`kopaths.schedules.PATHS` name).

    For "ko": ``<workdir>/ko_schedule.json`` if the run has one (a resumed run trains on exactly
    the same path); else ``path_cfg.schedule_file`` (copied into the workdir with the diagnostics
    beside it); else the schedule is solved by :func:`kopaths.ko.solve_ko_from_data` on all
    training examples (or ``ko_num_data``) with the config's estimator sizes and ``ko_variant``,
    and saved in the workdir with its lambda-hat and diagnostics (by process 0).
    """
    spec = path_spec(path_cfg["name"])
    if spec.name != "ko":
        return spec.build(**{k: path_cfg[k] for k in spec.config_keys if k in path_cfg})
    from kopaths import ko  # noqa: PLC0415 - KO machinery is only needed for this path

    own = os.path.join(workdir, KO_SCHEDULE_FILE)
    given = path_cfg.get("schedule_file") or ""
    if not os.path.exists(own) and given:
        if not os.path.exists(given):
            raise FileNotFoundError(f"path.schedule_file {given} does not exist.")
        if jax.process_index() == 0:
            _adopt(given, workdir)
        return ko.load_ko_schedule(given)
    if os.path.exists(own):
        log.info("Loading KO schedule from %s", own)
        return ko.load_ko_schedule(own)
    x = load_normalized(data_cfg, path_cfg.get("ko_num_data"))
    solution = ko.solve_ko_from_data(
        x, key=jax.random.key(seed), num_noise=int(path_cfg.get("ko_num_noise", 2048)),
        num_snr=int(path_cfg.get("ko_num_snr", 256)), sigma_min=float(path_cfg.get("sigma_min", 0.0)),
        variant=str(path_cfg.get("ko_variant", "bounded")),
    )
    if jax.process_index() == 0:
        solution.save(workdir)
    log.info("Solved the KO schedule on %d examples (b = %.5f, energy %.5f), saved to %s",
             len(x), solution.schedule.b, solution.schedule.energy, own)
    return solution.schedule
