"""The model stage of the main job: short training runs, samples and their evaluation.

Each path in ``cfg.train_paths`` is trained in ``<outdir>/train_<path>`` by
:func:`kopaths.training.trainer.train` (which resumes from its own checkpoints) with the trainer
config ``cfg.train``; the KO run trains on the KO schedule the main job solved
(``path.schedule_file``), never a re-solve.
Evaluation samples every model along every trained path (the scale-time transform) and writes
``<outdir>/eval_<path>.json`` and sample grids; finished results are reused on reruns.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from kopaths.io import atomic_write_text, save_npy
from kopaths.ko import DEFAULT_KO_REFERENCE, load_ko_schedule
from kopaths.schedules import path_spec

__all__ = ["trainer_config", "run_training", "fd_classifier_source", "run_evaluation"]

CLASSIFIER_FILE = "fd_classifier.npz"
GRID_SAMPLES = 64


def trainer_config(cfg: ml_collections.ConfigDict, path: str, outdir: str = "outputs/main") -> ml_collections.ConfigDict:
    """The trainer config of the main job's run on ``path``: ``cfg.train`` with the main job's seed and
    data, the path's registry section, and for KO the variant and the schedule solved in ``outdir``."""
    from kopaths.training.defaults import path_config  # noqa: PLC0415

    c = cfg.train.copy_and_resolve_references()
    c.unlock()
    c.seed = int(cfg.seed)
    c.data = cfg.data.copy_and_resolve_references()
    c.path = path_config(path)
    if "sigma_min" in c.path:
        c.path.sigma_min = float(cfg.ko.sigma_min)
    c.time_sampling.t_max = min(float(c.time_sampling.t_max), path_spec(path).t_max)
    if path == "ko":
        c.path.ko_variant = str(cfg.ko.variant)
        solved = os.path.abspath(os.path.join(outdir, "ko_schedule.json"))
        c.path.schedule_file = solved if os.path.exists(solved) else ""  # else: solved once from all the data
        c.path.ko_num_noise, c.path.ko_num_snr = int(cfg.separation.num_noise), int(cfg.separation.num_snr)
        c.path.ko_num_data = cfg.separation.num_data
        c.time_sampling.reference = DEFAULT_KO_REFERENCE
    c.lock()
    return c


def run_training(cfg: ml_collections.ConfigDict, outdir: str) -> dict[str, str]:
    """Trains every configured path (resuming); returns ``{path: workdir}``."""
    from kopaths.training.trainer import train  # noqa: PLC0415

    workdirs = {}
    for path in cfg.train_paths:
        workdir = os.path.join(outdir, f"train_{path}")
        print(f"[kopaths] training {path} in {workdir}", flush=True)
        result = train(trainer_config(cfg, path, outdir), workdir)
        if result.interrupted:
            raise KeyboardInterrupt
        workdirs[path] = workdir
    return workdirs


def fd_classifier_source(cfg: ml_collections.ConfigDict) -> str:
    """Where the FD features come from: ``"shipped"`` (the package's network for the dataset, with
    ``evaluate.fd_classifier = "builtin"``) or ``"trained"`` (in the output folder, ``CLASSIFIER_FILE``)."""
    from kopaths.evaluation.classifier import builtin_classifier_file  # noqa: PLC0415

    builtin = cfg.evaluate.get("fd_classifier", "builtin") == "builtin"
    return "shipped" if builtin and builtin_classifier_file(cfg.data) is not None else "trained"


def _classifier(cfg: ml_collections.ConfigDict, outdir: str):
    from kopaths.evaluation.classifier import cached_classifier  # noqa: PLC0415

    return cached_classifier(cfg.data, os.path.join(outdir, CLASSIFIER_FILE), epochs=int(cfg.evaluate.classifier_epochs),
                             seed=int(cfg.seed), builtin=fd_classifier_source(cfg) == "shipped")


def run_evaluation(cfg: ml_collections.ConfigDict, outdir: str, workdirs: dict[str, str]) -> dict[str, Any]:
    """Scores each trained path's final EMA model; writes ``eval_<path>.json`` and sample grids."""
    from kopaths.data import data_spec, to_uint8
    from kopaths.evaluation.classifier import FD_LABEL, classifier_features
    from kopaths.evaluation.runs import load_run
    from kopaths.evaluation.scoring import evaluate_run
    from kopaths.main_job.stages import variant_file  # stages imports this module

    ec = cfg.evaluate
    results = {}
    features = None
    runs = {path: load_run(workdir) for path, workdir in workdirs.items()}
    sampling_paths = {path: run.schedule for path, run in runs.items()}
    for variant in ec.get("also_along_ko", ()):
        if not ("ko" in sampling_paths and variant == cfg.ko.variant):
            sampling_paths[f"ko_{variant}"] = load_ko_schedule(os.path.join(outdir, variant_file(variant)))
    for path, workdir in workdirs.items():
        out_path = os.path.join(outdir, f"eval_{path}.json")
        if os.path.exists(out_path):
            with open(out_path) as f:
                results[path] = json.load(f)
            continue
        if features is None:
            params = _classifier(cfg, outdir)
            features = {FD_LABEL: lambda imgs: classifier_features(params, imgs)}
        run = runs[path]
        print(f"[kopaths] evaluating {path} (step {run.step}) along {list(sampling_paths)}", flush=True)
        samples: dict[str, np.ndarray] = {}
        res = evaluate_run(
            run, key=jax.random.key(cfg.seed), num_samples=int(ec.num_samples), euler_nfe=list(ec.euler_nfe),
            tol=float(ec.tol), num_bpd=int(ec.num_bpd), num_importance=int(ec.num_importance),
            num_probes=int(ec.num_probes), feature_fns=features, sampling_paths=sampling_paths, samples=samples,
        )
        images = to_uint8(samples[path][:GRID_SAMPLES], data_spec(cfg.data).stats)  # the scored dopri5 samples
        save_npy(os.path.join(outdir, f"samples_{path}.npy"), images)
        atomic_write_text(out_path, json.dumps(res, indent=2))
        results[path] = res
    return results
