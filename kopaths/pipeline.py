"""The main job: data -> lambda-hat -> KO path -> energies -> figures -> report.

Each step writes its result into the output folder atomically and is skipped when that
result is already there, so an interrupted run resumes where it stopped. The configuration
is stored beside the results; resuming with a different one is refused.
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

from kopaths import pipeline_models, plotting
from kopaths.kinetic import conditional_energy, kinetic_energy
from kopaths.ko import KOSchedule, load_ko_schedule, solve_ko
from kopaths.lambda_fit import LambdaFit, fit_lambda
from kopaths.normalization import normalize
from kopaths.schedules import CondOTSchedule, CosineSchedule, Schedule, VPSchedule
from kopaths.separation import LambdaEstimate, atomic_write_text, estimate_lambda, snr_grid

__all__ = ["default_config", "validate_config", "run_separation", "run_solve", "run_energies", "run_report", "run_pipeline"]

VP_T_MAX = 1.0 - 1e-5  # the VP path's sigma' is not square integrable up to t = 1


def default_config() -> ml_collections.ConfigDict:
    """The built-in pipeline configuration: Fashion-MNIST, n = 60k, k = 2048, 256 snr points."""
    from kopaths.data import default_data_config

    cfg = ml_collections.ConfigDict()
    cfg.seed = 0
    cfg.data = default_data_config("fashion_mnist")
    cfg.separation = ml_collections.ConfigDict(
        dict(
            num_data=60000, num_noise=2048, num_snr=256,
            noise_chunk=ml_collections.config_dict.placeholder(int),  # None: backend default
            data_chunk=ml_collections.config_dict.placeholder(int),
        )
    )
    cfg.ko = ml_collections.ConfigDict(dict(sigma_min=0.0, check_shooting=True))
    cfg.train = pipeline_models.default_train_config()
    cfg.evaluate = pipeline_models.default_eval_config()
    return cfg


def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Fails fast, before any long step, on out-of-range settings."""
    from kopaths.data.config import validate_data_config
    from kopaths.schedules import check_sigma_min

    validate_data_config(cfg.data)
    check_sigma_min(cfg.ko.sigma_min)
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


def _write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


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
    _write_json(path, current)


def _log(msg: str) -> None:
    print(f"[kopaths] {msg}", flush=True)


def run_separation(cfg: ml_collections.ConfigDict, outdir: str, data: np.ndarray | None = None) -> LambdaEstimate:
    """Estimates lambda-hat on ``cfg.data`` (or on the normalised array ``data``) and writes
    ``lambda.json`` (skipped if present)."""
    from kopaths.data import load_array, prepare_dataset
    from kopaths.data.config import LOCAL_DATASETS

    _check_config(cfg, outdir, ("seed", "data", "separation"))
    path = os.path.join(outdir, "lambda.json")
    if os.path.exists(path):
        _log(f"lambda-hat: reusing {path}")
        return LambdaEstimate.load(path)
    sep = cfg.separation
    if data is not None:
        x = data[: sep.num_data]
    else:
        if cfg.data.name in LOCAL_DATASETS:
            prepare_dataset(cfg.data)
        x, _ = load_array(cfg.data, split=cfg.data.split, max_examples=sep.num_data)
        x, _ = normalize(x)  # exact moments of the sample itself (the training map differs by dequantisation)
    _log(f"lambda-hat: n={x.shape[0]}, d={int(np.prod(x.shape[1:]))}, k={sep.num_noise}, {sep.num_snr} snr points")
    est = estimate_lambda(
        x, snr_grid(sep.num_snr), key=jax.random.key(cfg.seed), num_noise=sep.num_noise,
        noise_chunk=sep.noise_chunk, data_chunk=sep.data_chunk, progress=True,
    )
    est.save(path)
    _log(f"lambda-hat: {est.seconds:.1f} s -> {path}")
    return est


def run_solve(cfg: ml_collections.ConfigDict, outdir: str, est: LambdaEstimate) -> tuple[LambdaFit, KOSchedule]:
    """Fits lambda, solves the KO path and writes ``ko_schedule.json`` and ``ko_solve.json``."""
    _check_config(cfg, outdir, ("seed", "data", "separation", "ko"))
    lam = fit_lambda(est)
    path = os.path.join(outdir, "ko_schedule.json")
    if os.path.exists(path):
        _log(f"KO path: reusing {path}")
        return lam, load_ko_schedule(path)
    ko = solve_ko(lam, cfg.ko.sigma_min, method="closed_form")
    report = {"b": ko.b, "closed_form_seconds": ko.solve_seconds, "sigma_min": cfg.ko.sigma_min}
    if cfg.ko.check_shooting:
        shoot = solve_ko(lam, cfg.ko.sigma_min, method="shooting")
        t = jnp.linspace(0.0, 1.0, 1001)
        a, b = ko(t), shoot(t)
        report.update(
            shooting_b=shoot.b, shooting_seconds=shoot.solve_seconds,
            max_abs_alpha_diff=float(jnp.max(jnp.abs(a.alpha - b.alpha))),
            max_abs_sigma_diff=float(jnp.max(jnp.abs(a.sigma - b.sigma))),
        )
    ko.save(path)
    _write_json(os.path.join(outdir, "ko_solve.json"), report)
    _log(f"KO path: b = {ko.b:.5f} ({ko.solve_seconds:.2f} s) -> {path}")
    return lam, ko


def reference_schedules(ko: Schedule | None = None) -> dict[str, Schedule]:
    """The paper's comparison paths (and KO, when given), by display name."""
    out: dict[str, Schedule] = {"Cond-OT": CondOTSchedule(), "SI (cosine)": CosineSchedule(), "DDPM (VP)": VPSchedule()}
    if ko is not None:
        out["KO"] = ko
    return out


def run_energies(outdir: str, lam: LambdaFit, ko: KOSchedule) -> dict[str, dict[str, float]]:
    """Kinetic and conditional energies of every reference path on ``lam``; writes ``energies.json``."""
    table = {}
    for name, schedule in reference_schedules(ko).items():
        t_max = VP_T_MAX if isinstance(schedule, VPSchedule) else 1.0
        table[name] = {
            "kinetic_energy": float(kinetic_energy(schedule, lam, t_max=t_max)),
            "conditional_energy": float(conditional_energy(schedule, t_max=t_max)),
            "t_max": t_max,
        }
    table["_integral_one_minus_lambda"] = {"value": lam.integral_one_minus_lambda()}
    _write_json(os.path.join(outdir, "energies.json"), table)
    return table


def run_report(cfg, outdir: str, est: LambdaEstimate, lam: LambdaFit, ko: KOSchedule, energies,
               seconds: dict[str, float], extra: list[str] | None = None) -> str:
    """Writes the figures and ``report.md``."""
    plotting.plot_lambda(os.path.join(outdir, "lambda.png"), {cfg.data.name: (est, lam)})
    plotting.plot_schedules(os.path.join(outdir, "schedules.png"), reference_schedules(ko))
    ke = {k: v["kinetic_energy"] for k, v in energies.items() if not k.startswith("_")}
    plotting.plot_energies(os.path.join(outdir, "energies.png"), ke)
    with open(os.path.join(outdir, "ko_solve.json")) as f:
        solve = json.load(f)
    rows = "\n".join(
        f"| {name} | {v['kinetic_energy']:.4f} | {v['conditional_energy']:.4f} |"
        for name, v in energies.items()
        if not name.startswith("_")
    )
    lines = [
        f"# kopaths report: {cfg.data.name}",
        "",
        f"Data: `{cfg.data.name}` (resolution {cfg.data.resolution or 'native'}), n = {est.num_data}, d = {est.dim}; "
        f"lambda-hat from k = {est.num_noise} noise samples on {est.snr.size} snr points "
        f"({est.seconds:.1f} s).",
        "",
        "Wall time of the stages (summed over resumed runs): "
        + (", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; total {sum(seconds.values()):.0f} s."
           if seconds else "not recorded."),
        "",
        "## Data separation function",
        "![lambda](lambda.png)",
        "",
        f"int_0^inf (1 - lambda(s)) ds = {energies['_integral_one_minus_lambda']['value']:.4f} "
        f"(Gaussian data: pi/2 = 1.5708; perfectly separated data: 0).",
        "",
        "## Paths",
        "![schedules](schedules.png)",
        "",
        f"KO solve: b = {solve['b']:.5f} (closed form, {solve['closed_form_seconds']:.2f} s)"
        + (
            f"; shooting b = {solve['shooting_b']:.5f} ({solve['shooting_seconds']:.2f} s), "
            f"max |d alpha| = {solve['max_abs_alpha_diff']:.2e}, max |d sigma| = {solve['max_abs_sigma_diff']:.2e}."
            if "shooting_b" in solve
            else "."
        ),
        "",
        "## Kinetic energy (per dimension)",
        "![energies](energies.png)",
        "",
        "| path | KE | conditional KE |",
        "|---|---|---|",
        rows,
        "",
        f"DDPM (VP) energies are integrated up to t = {VP_T_MAX} (its conditional energy diverges at t = 1).",
        "",
        *(extra or []),
    ]
    path = os.path.join(outdir, "report.md")
    atomic_write_text(path, "\n".join(lines))
    return path


def _model_section(cfg, outdir: str, evals: dict[str, Any]) -> list[str]:
    from kopaths.evaluation.classifier import FD_LABEL

    names = {"cond_ot": "Cond-OT", "ko": "KO", "cosine": "SI (cosine)", "vp": "DDPM (VP)"}
    grids = {names.get(p, p): np.load(os.path.join(outdir, f"samples_{p}.npy")) for p in evals}
    plotting.plot_sample_grids(os.path.join(outdir, "samples.png"), grids)
    curves, adaptive = {}, {}
    for p, r in evals.items():
        nfe = [int(k.split("_")[1]) for k in r if k.startswith("euler_")]
        curves[names.get(p, p)] = (nfe, [r[f"euler_{n}"][FD_LABEL] for n in nfe])
        adaptive[names.get(p, p)] = (r["dopri5"]["nfe_mean"], r["dopri5"][FD_LABEL])
    plotting.plot_nfe_quality(os.path.join(outdir, "nfe_quality.png"), curves, adaptive, ylabel="FD (classifier features)")
    ec, tc = cfg.evaluate, cfg.train
    euler = list(ec.euler_nfe)
    head = "| path | " + " | ".join(f"FD Euler {n}" for n in euler) + " | FD dopri5 | NFE dopri5 | KE (model) | NLL (bits/dim) |"
    rows = [head, "|" + "---|" * (len(euler) + 5)]
    for p, r in evals.items():
        fd = " | ".join(f"{r[f'euler_{n}'][FD_LABEL]:.2f}" for n in euler)
        nll = r.get("nll", {})
        rows.append(
            f"| {names.get(p, p)} | {fd} | {r['dopri5'][FD_LABEL]:.2f} | {r['dopri5']['nfe_mean']:.0f} | "
            f"{r['kinetic_energy']:.3f} | {nll.get('bits_per_dim', float('nan')):.3f} |"
        )
    nll_note = next((r["nll"] for r in evals.values() if "nll" in r), {})
    return [
        "## Trained models",
        f"U-Net ({tc.model.model_channels} channels, multipliers {tuple(tc.model.channel_mult)}) trained for "
        f"{tc.total_steps} steps at batch {tc.global_batch_size} on each path, EMA weights. These are short "
        "CPU runs that show the pipeline end to end, not converged models.",
        "",
        "![samples](samples.png)",
        "",
        "![nfe](nfe_quality.png)",
        "",
        *rows,
        "",
        f"FD is the {FD_LABEL}, on {ec.num_samples} samples against held-out images. dopri5 at rtol = atol = {ec.tol}. "
        f"NLL on {ec.num_bpd} test images with K = {nll_note.get('K')} dequantisation sample(s) and "
        f"{nll_note.get('probes')} Hutchinson probe(s). KE is measured along the dopri5 trajectories.",
        "",
    ]


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
                _write_json(self.path, self.seconds)


def run_pipeline(cfg: ml_collections.ConfigDict, outdir: str) -> str:
    """Runs every step (resuming finished ones) and returns the report path."""
    validate_config(cfg)
    os.makedirs(outdir, exist_ok=True)
    timer = _StageTimer(outdir)
    est = timer("lambda-hat", os.path.join(outdir, "lambda.json"), lambda: run_separation(cfg, outdir))
    lam, ko = timer("KO solve", os.path.join(outdir, "ko_schedule.json"), lambda: run_solve(cfg, outdir, est))
    energies = run_energies(outdir, lam, ko)
    extra: list[str] = []
    if cfg.train.enabled:
        _check_config(cfg, outdir, ("seed", "data", "separation", "ko", "train", "evaluate"))
        done = os.path.join(outdir, "training_done.json")

        def train():
            workdirs = pipeline_models.run_training(cfg, outdir)
            _write_json(done, workdirs)
            return workdirs

        workdirs = timer("training", done, train)
        last_eval = os.path.join(outdir, f"eval_{cfg.train.paths[-1]}.json")
        evals = timer("evaluation", last_eval, lambda: pipeline_models.run_evaluation(cfg, outdir, workdirs))
        extra = _model_section(cfg, outdir, evals)
    path = run_report(cfg, outdir, est, lam, ko, energies, timer.seconds, extra)
    _log(f"report: {path}")
    return path
