"""The main job's stages: data -> lambda-hat -> KO paths -> energies -> models -> report.

Each stage writes its result into the output folder atomically and is skipped when that result is
already there, so an interrupted run resumes where it stopped. The configuration
(``experiments/configs/main_job.py``) is stored beside the results; resuming with a different one
is refused.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kopaths.data import load_normalized
from kopaths.diagnostics import schedule_diagnostics
from kopaths.io import write_json
from kopaths.ko import KO_VARIANTS, KOSchedule, KOSolution, load_ko_schedule, solve_ko, solve_ko_variant
from kopaths.lambda_fit import LambdaFit, fit_lambda
from kopaths.main_job import trained_models
from kopaths.main_job.report import model_section, reference_schedules, run_report
from kopaths.schedules import PATHS
from kopaths.separation import LambdaEstimate, estimate_lambda, snr_grid

__all__ = ["ConfigMismatchError", "validate_config", "run_separation", "run_solve", "run_energies", "run_pipeline"]

def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Fails fast, before any long step, on out-of-range settings."""
    from kopaths.data.config import validate_data_config  # noqa: PLC0415
    from kopaths.schedules import check_sigma_min

    validate_data_config(cfg.data)
    check_sigma_min(cfg.ko.sigma_min)
    if cfg.ko.variant not in KO_VARIANTS:
        raise ValueError(f"ko.variant must be one of {list(KO_VARIANTS)}, got {cfg.ko.variant!r}.")
    if cfg.evaluate.get("fd_classifier", "builtin") not in ("builtin", "train"):
        raise ValueError(f"evaluate.fd_classifier must be 'builtin' or 'train', got {cfg.evaluate.fd_classifier!r}.")
    for variant in cfg.evaluate.get("also_along_ko", ()):
        if variant not in KO_VARIANTS:
            raise ValueError(f"evaluate.also_along_ko entries must be in {list(KO_VARIANTS)}, got {variant!r}.")
    sep = cfg.separation
    for field, low in (("num_noise", 2), ("num_snr", 2), ("noise_chunk", 1), ("data_chunk", 1)):
        if field.endswith("chunk") and sep.get(field) is None:
            continue
        if not isinstance(sep[field], int) or sep[field] < low:
            raise ValueError(f"separation.{field} must be an integer >= {low}, got {sep[field]!r}.")
    if sep.num_data is not None and (not isinstance(sep.num_data, int) or sep.num_data < 2):
        raise ValueError(f"separation.num_data must be None or an integer >= 2, got {sep.num_data!r}.")


class ConfigMismatchError(ValueError):
    """The output folder holds results of a different configuration."""


def _check_config(cfg: ml_collections.ConfigDict, outdir: str, sections: tuple[str, ...]) -> None:
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "config.json")
    current = json.loads(cfg.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            try:
                stored = json.load(f)
            except json.JSONDecodeError:
                raise ConfigMismatchError(f"{path} is corrupt; delete it or use a new output folder.") from None
        for key in sections:
            if key in stored and stored[key] != current.get(key):
                raise ConfigMismatchError(
                    f"{outdir} holds results made with a different '{key}' config; use a new output folder."
                )
        # Record sections seen for the first time; never overwrite one that later steps will check.
        current = {**current, **stored, **{k: current[k] for k in sections if k in current}}
    write_json(path, current)


def _log(msg: str) -> None:
    print(f"[kopaths] {msg}", flush=True)


def run_separation(cfg: ml_collections.ConfigDict, outdir: str, data: np.ndarray | None = None) -> LambdaEstimate:
    """Estimates lambda-hat on ``cfg.data`` (or on the normalised array ``data``) and writes
    ``lambda.json`` (skipped if present). The data are those every KO training run of the same
    config estimates on (:func:`kopaths.data.load_normalized`)."""
    _check_config(cfg, outdir, ("seed", "data", "separation"))
    path = os.path.join(outdir, "lambda.json")
    if os.path.exists(path):
        _log(f"lambda-hat: reusing {path}")
        return LambdaEstimate.load(path)
    sep = cfg.separation
    if data is None:
        x = load_normalized(cfg.data, sep.num_data)
    else:  # rows are read lazily (a memmap may exceed memory) unless a subset is asked for
        x = data if sep.num_data is None or sep.num_data >= data.shape[0] else data[: sep.num_data]
    _log(f"lambda-hat: n={x.shape[0]}, d={int(np.prod(x.shape[1:]))}, k={sep.num_noise}, {sep.num_snr} snr points")
    est = estimate_lambda(
        x, snr_grid(sep.num_snr), key=jax.random.key(cfg.seed), num_noise=sep.num_noise,
        noise_chunk=sep.noise_chunk, data_chunk=sep.data_chunk, progress=True,
    )
    est.save(path)
    est = LambdaEstimate.load(path)  # as a resumed run reads it
    _log(f"lambda-hat: {est.seconds:.1f} s (m2 = tr(C^2)/d = {est.m2:.2f}) -> {path}")
    return est


def variant_file(variant: str) -> str:
    """File of one KO variant in the output folder."""
    return f"ko_{variant}.json"


def _solve_report(cfg: ml_collections.ConfigDict, lam: LambdaFit, variants: dict[str, KOSchedule]) -> dict[str, Any]:
    report: dict[str, Any] = {v: {k: getattr(s, k) for k in ("b", "energy", "max_speed", "gamma_floor", "method",
                                                             "solve_seconds")} for v, s in variants.items()}
    report["chosen"] = cfg.ko.variant
    if cfg.ko.check_shooting:
        exact, shoot = variants["exact"], solve_ko(lam, cfg.ko.sigma_min, method="shooting")
        t = jnp.linspace(0.0, 1.0, 1001)
        a, b = exact(t), shoot(t)
        report["shooting_check"] = dict(
            closed_form_b=exact.b, shooting_b=shoot.b, shooting_seconds=shoot.solve_seconds,
            max_abs_alpha_diff=float(jnp.max(jnp.abs(a.alpha - b.alpha))),
            max_abs_sigma_diff=float(jnp.max(jnp.abs(a.sigma - b.sigma))),
        )
    return report


def run_solve(cfg: ml_collections.ConfigDict, outdir: str, est: LambdaEstimate) -> tuple[LambdaFit, dict[str, KOSchedule]]:
    """Fits lambda and solves every KO variant (:data:`kopaths.ko.KO_VARIANTS`); the configured one
    (``cfg.ko.variant``, the one training uses) is also ``ko_schedule.json`` with its
    ``ko_diagnostics.json``. Writes ``ko_solve.json`` (and checks the closed form by shooting)."""
    _check_config(cfg, outdir, ("seed", "data", "separation", "ko"))
    chosen = cfg.ko.variant
    path = os.path.join(outdir, "ko_schedule.json")
    lam = fit_lambda(est, warn=not os.path.exists(path))
    if os.path.exists(path) and all(os.path.exists(os.path.join(outdir, variant_file(v))) for v in KO_VARIANTS):
        _log(f"KO paths: reusing {path}")
        return lam, {v: load_ko_schedule(os.path.join(outdir, variant_file(v))) for v in KO_VARIANTS}
    variants = {}
    for variant in KO_VARIANTS:
        file = os.path.join(outdir, variant_file(variant))
        if not os.path.exists(file):
            solve_ko_variant(lam, cfg.ko.sigma_min, variant).save(file)
        # Later stages use the file, never the in-memory solve, so a resumed run computes the same.
        variants[variant] = load_ko_schedule(file)
    solve_report = os.path.join(outdir, "ko_solve.json")
    if not os.path.exists(solve_report):  # kept from an interrupted run: the solves it describes are kept too
        write_json(solve_report, _solve_report(cfg, lam, variants))
    solution = KOSolution(est, lam, variants[chosen])
    write_json(os.path.join(outdir, "ko_diagnostics.json"), solution.diagnostics())
    variants[chosen].save(path)
    _log(f"KO paths: b = {variants['exact'].b:.5f}; {chosen} (training) energy {variants[chosen].energy:.5f}, "
         f"max speed {variants[chosen].max_speed:.3g} -> {path}")
    return lam, variants


def _t_max(label: str) -> float:
    return next((spec.t_max for spec in PATHS.values() if spec.label == label), 1.0)


def run_energies(outdir: str, lam: LambdaFit, ko: dict[str, KOSchedule]) -> dict[str, dict[str, float]]:
    """Diagnostics (:mod:`kopaths.diagnostics`) of every reference path and KO variant on ``lam``:
    writes ``energies.json`` (the scalars) and ``diagnostics.json`` (with the per-t curves)."""
    table, curves = {}, {}
    for name, schedule in reference_schedules(ko).items():
        d = schedule_diagnostics(schedule, lam, t_max=_t_max(name))
        table[name] = {**d.summary(), "conditional_energy": d.conditional_energy}
        curves[name] = d.to_dict()
    table["_integral_one_minus_lambda"] = {"value": lam.integral_one_minus_lambda()}
    write_json(os.path.join(outdir, "energies.json"), table)
    write_json(os.path.join(outdir, "diagnostics.json"), curves)
    return table


class _StageTimer:
    """Wall time of each stage that did work, summed over interrupted and resumed runs."""

    def __init__(self, outdir: str):
        self.path = os.path.join(outdir, "timings.json")
        self.seconds: dict[str, float] = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.seconds = json.load(f)

    def __call__(self, stage: str, done_marker: str, fn):
        fresh = not os.path.exists(done_marker)
        start = time.perf_counter()
        try:
            return fn()
        finally:
            if fresh:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
                write_json(self.path, self.seconds)


def run_pipeline(cfg: ml_collections.ConfigDict, outdir: str) -> str:
    """Runs every step (resuming finished ones) and returns the report path."""
    validate_config(cfg)
    os.makedirs(outdir, exist_ok=True)
    timer = _StageTimer(outdir)
    est = timer("lambda-hat", os.path.join(outdir, "lambda.json"), lambda: run_separation(cfg, outdir))
    lam, ko = timer("KO solve", os.path.join(outdir, "ko_schedule.json"), lambda: run_solve(cfg, outdir, est))
    energies = run_energies(outdir, lam, ko)
    extra: list[str] = []
    if cfg.train_paths:
        _check_config(cfg, outdir, ("seed", "data", "separation", "ko", "train_paths", "train", "evaluate"))
        done = os.path.join(outdir, "training_done.json")

        def train():
            workdirs = trained_models.run_training(cfg, outdir)
            write_json(done, workdirs)
            return workdirs

        workdirs = timer("training", done, train)
        last_eval = os.path.join(outdir, f"eval_{cfg.train_paths[-1]}.json")
        evals = timer("evaluation", last_eval, lambda: trained_models.run_evaluation(cfg, outdir, workdirs))
        extra = model_section(cfg, outdir, evals)
    path = run_report(cfg, outdir, est, lam, ko, energies, timer.seconds, extra)
    _log(f"report: {path}")
    return path
