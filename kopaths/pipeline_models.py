"""The model stage of the main job: short training runs, samples and their evaluation.

Each path in ``cfg.train.paths`` is trained in ``<outdir>/train_<path>`` by
:func:`kopaths.train.train_and_evaluate` (which resumes from its own checkpoints); the KO run
trains on the KO schedule the pipeline solved (``path.schedule_file``), never a re-solve.
Evaluation samples every model along every trained path (the scale-time transform) and writes
``<outdir>/eval_<path>.json`` and sample grids; finished results are reused on reruns.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kopaths.io import atomic_write_text, save_npy

__all__ = ["default_train_config", "default_eval_config", "train_config", "run_training", "run_evaluation"]

CLASSIFIER_FILE = "fd_classifier.npz"


def default_train_config() -> ml_collections.ConfigDict:
    """Short CPU-sized runs: a 1.2M-parameter U-Net, 400 steps at batch 32 per path (about 0.5 s a step
    on 2 cores; attention only at 7x7, since attention over 28x28 tokens is 10x slower on CPU)."""
    return ml_collections.ConfigDict(dict(
        enabled=True,
        paths=("cond_ot", "ko"),
        total_steps=400,
        global_batch_size=32,
        lr=1e-3,
        warmup_steps=50,
        ema_decay=0.995,
        checkpoint_every=200,
        model=dict(
            name="unet", model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(4,),
            dropout=0.0, num_heads=4, num_head_channels=-1, use_scale_shift_norm=True, resblock_updown=False,
            time_scale=1000.0, dtype="float32",
        ),
    ))


def default_eval_config() -> ml_collections.ConfigDict:
    """Sampling and scoring sizes of the main job (bits/dim of 16 test images: a pipeline check,
    not a benchmark number; every backward solve evaluates a vector-Jacobian product)."""
    return ml_collections.ConfigDict(dict(
        num_samples=128, euler_nfe=(2, 4, 8, 16), tol=1e-3, num_bpd=16, num_importance=1, num_probes=1,
        classifier_epochs=1,
    ))


def train_config(cfg: ml_collections.ConfigDict, path: str, outdir: str = "outputs/main") -> ml_collections.ConfigDict:
    """The :mod:`kopaths.train` config of the main job's run on ``path`` (KO: the schedule in ``outdir``)."""
    from kopaths.training import config_lib

    tc = cfg.train
    c = config_lib.base_config(path)
    c.seed = int(cfg.seed)
    c.data = cfg.data
    if "sigma_min" in c.path:
        c.path.sigma_min = float(cfg.ko.sigma_min)
    if path == "ko":
        c.path.ko_variant = str(cfg.ko.variant)
        solved = os.path.abspath(os.path.join(outdir, "ko_schedule.json"))
        c.path.schedule_file = solved if os.path.exists(solved) else ""  # else: solved once from all the data
    c.model = ml_collections.ConfigDict(tc.model.to_dict())
    c.total_steps = int(tc.total_steps)
    c.global_batch_size = int(tc.global_batch_size)
    c.optim.lr = float(tc.lr)
    c.optim.warmup_steps = int(tc.warmup_steps)
    c.optim.ema_decay = float(tc.ema_decay)
    c.checkpoint.every_steps = int(tc.checkpoint_every)
    c.log_every_steps = max(1, min(50, int(tc.total_steps)))
    return c


def run_training(cfg: ml_collections.ConfigDict, outdir: str) -> dict[str, str]:
    """Trains every configured path (resuming); returns ``{path: workdir}``."""
    from kopaths.train import train_and_evaluate

    workdirs = {}
    for path in cfg.train.paths:
        workdir = os.path.join(outdir, f"train_{path}")
        print(f"[kopaths] training {path} in {workdir}", flush=True)
        result = train_and_evaluate(train_config(cfg, path, outdir), workdir)
        if result.interrupted:
            raise KeyboardInterrupt
        workdirs[path] = workdir
    return workdirs


def _classifier(cfg: ml_collections.ConfigDict, outdir: str):
    from kopaths.evaluation import classifier as clf

    path = os.path.join(outdir, CLASSIFIER_FILE)
    if os.path.exists(path):
        return clf.load_classifier(path)[0]
    from kopaths.data import open_split

    src = open_split(cfg.data, cfg.data.split)
    records = src.records(range(len(src)))
    images = np.stack([src.decode(r) for r in records])
    labels = np.asarray([int(r["label"]) for r in records])
    params = clf.train_classifier(
        images, labels, key=jax.random.key(cfg.seed), num_classes=int(labels.max()) + 1,
        epochs=int(cfg.evaluate.classifier_epochs),
    )
    clf.save_classifier(path, params, {"dataset": cfg.data.name, "label": clf.FD_LABEL})
    return params


def run_evaluation(cfg: ml_collections.ConfigDict, outdir: str, workdirs: dict[str, str]) -> dict[str, Any]:
    """Scores each trained path's final EMA model; writes ``eval_<path>.json`` and sample grids."""
    from kopaths import evaluate as ev
    from kopaths import sampling
    from kopaths.data import to_uint8
    from kopaths.evaluation.classifier import FD_LABEL, classifier_features

    ec = cfg.evaluate
    results = {}
    features = None
    runs = {path: ev.load_run(workdir) for path, workdir in workdirs.items()}
    sampling_paths = {path: run.schedule for path, run in runs.items()}
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
        res = ev.evaluate_run(
            run, key=jax.random.key(cfg.seed), num_samples=int(ec.num_samples), euler_nfe=list(ec.euler_nfe),
            tol=float(ec.tol), num_bpd=int(ec.num_bpd), num_importance=int(ec.num_importance),
            num_probes=int(ec.num_probes), feature_fns=features, sampling_paths=sampling_paths,
        )
        from kopaths.data import data_spec

        spec = data_spec(cfg.data)
        x0 = jax.random.normal(jax.random.key(cfg.seed + 1), (64, *spec.element_shape), jnp.float32)
        grid = sampling.sample_adaptive(run.velocity, x0, method="dopri5", rtol=float(ec.tol), atol=float(ec.tol))
        images = to_uint8(np.asarray(grid.x), spec.stats)
        save_npy(os.path.join(outdir, f"samples_{path}.npy"), images)
        atomic_write_text(out_path, json.dumps(res, indent=2))
        results[path] = res
    return results
