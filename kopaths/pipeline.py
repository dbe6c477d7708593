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
from kopaths.diagnostics import ScheduleDiagnostics, schedule_diagnostics
from kopaths.io import atomic_write_text, write_json
from kopaths.ko import KO_VARIANTS, KOSchedule, KOSolution, load_ko_schedule, solve_ko, solve_ko_from_estimate, solve_ko_variant
from kopaths.lambda_fit import LambdaFit, fit_lambda
from kopaths.objective import log_snr_weighting
from kopaths.schedules import PATHS, Schedule, path_spec
from kopaths.separation import LambdaEstimate, estimate_lambda, snr_grid
from kopaths.training.config_lib import DEFAULT_KO_VARIANT
from kopaths.training.data import separation_data

__all__ = ["default_config", "validate_config", "run_separation", "run_solve", "run_energies", "run_report", "run_pipeline"]

VP_T_MAX = PATHS["vp"].t_max


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
    cfg.ko = ml_collections.ConfigDict(dict(sigma_min=0.0, variant=DEFAULT_KO_VARIANT, check_shooting=True))
    cfg.train = pipeline_models.default_train_config()
    cfg.evaluate = pipeline_models.default_eval_config()
    return cfg


def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Fails fast, before any long step, on out-of-range settings."""
    from kopaths.data.config import validate_data_config
    from kopaths.schedules import check_sigma_min

    validate_data_config(cfg.data)
    check_sigma_min(cfg.ko.sigma_min)
    if cfg.ko.get("variant", DEFAULT_KO_VARIANT) not in KO_VARIANTS:
        raise ValueError(f"ko.variant must be one of {list(KO_VARIANTS)}, got {cfg.ko.variant!r}.")
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


_write_json = write_json


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
    ``lambda.json`` (skipped if present). The data are those every KO training run of the same
    config estimates on (:func:`kopaths.training.data.separation_data`)."""
    _check_config(cfg, outdir, ("seed", "data", "separation"))
    path = os.path.join(outdir, "lambda.json")
    if os.path.exists(path):
        _log(f"lambda-hat: reusing {path}")
        return LambdaEstimate.load(path)
    sep = cfg.separation
    x = data[: sep.num_data] if data is not None else separation_data(cfg.data, sep.num_data)
    _log(f"lambda-hat: n={x.shape[0]}, d={int(np.prod(x.shape[1:]))}, k={sep.num_noise}, {sep.num_snr} snr points")
    est = estimate_lambda(
        x, snr_grid(sep.num_snr), key=jax.random.key(cfg.seed), num_noise=sep.num_noise,
        noise_chunk=sep.noise_chunk, data_chunk=sep.data_chunk, progress=True,
    )
    est.save(path)
    _log(f"lambda-hat: {est.seconds:.1f} s (m2 = tr(C^2)/d = {est.m2:.2f}) -> {path}")
    return est


def variant_file(variant: str) -> str:
    """File of one KO variant in the output folder."""
    return f"ko_{variant}.json"


def run_solve(cfg: ml_collections.ConfigDict, outdir: str, est: LambdaEstimate) -> tuple[LambdaFit, dict[str, KOSchedule]]:
    """Fits lambda and solves every KO variant (:data:`kopaths.ko.KO_VARIANTS`); the configured one
    (``cfg.ko.variant``, the one training uses) is also ``ko_schedule.json`` with its
    ``ko_diagnostics.json``. Writes ``ko_solve.json`` (and checks the closed form by shooting)."""
    _check_config(cfg, outdir, ("seed", "data", "separation", "ko"))
    chosen = cfg.ko.get("variant", DEFAULT_KO_VARIANT)
    path = os.path.join(outdir, "ko_schedule.json")
    lam = fit_lambda(est, warn=not os.path.exists(path))
    if os.path.exists(path) and all(os.path.exists(os.path.join(outdir, variant_file(v))) for v in KO_VARIANTS):
        _log(f"KO paths: reusing {path}")
        return lam, {v: load_ko_schedule(os.path.join(outdir, variant_file(v))) for v in KO_VARIANTS}
    variants = {}
    for variant in KO_VARIANTS:
        file = os.path.join(outdir, variant_file(variant))
        variants[variant] = load_ko_schedule(file) if os.path.exists(file) else solve_ko_variant(lam, cfg.ko.sigma_min, variant)
        variants[variant].save(file)
    report = {v: {k: getattr(s, k) for k in ("b", "energy", "max_speed", "gamma_floor", "method", "solve_seconds")}
              for v, s in variants.items()}
    report["chosen"] = chosen
    if cfg.ko.check_shooting:
        exact, shoot = variants["exact"], solve_ko(lam, cfg.ko.sigma_min, method="shooting")
        t = jnp.linspace(0.0, 1.0, 1001)
        a, b = exact(t), shoot(t)
        report["shooting_check"] = dict(
            closed_form_b=exact.b, shooting_b=shoot.b, shooting_seconds=shoot.solve_seconds,
            max_abs_alpha_diff=float(jnp.max(jnp.abs(a.alpha - b.alpha))),
            max_abs_sigma_diff=float(jnp.max(jnp.abs(a.sigma - b.sigma))),
        )
    _write_json(os.path.join(outdir, "ko_solve.json"), report)
    solution = KOSolution(est, lam, variants[chosen])
    _write_json(os.path.join(outdir, "ko_diagnostics.json"), solution.diagnostics())
    variants[chosen].save(path)
    _log(f"KO paths: b = {variants['exact'].b:.5f}; {chosen} (training) energy {variants[chosen].energy:.5f}, "
         f"max speed {variants[chosen].max_speed:.3g} -> {path}")
    return lam, variants


def reference_schedules(ko: dict[str, Schedule] | None = None) -> dict[str, Schedule]:
    """The paper's comparison paths and the KO variants (when given), by display name."""
    out: dict[str, Schedule] = {PATHS[n].label: PATHS[n].build() for n in ("cond_ot", "cosine", "vp")}
    for variant, schedule in (ko or {}).items():
        out[f"KO ({variant})"] = schedule
    return out


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
    _write_json(os.path.join(outdir, "energies.json"), table)
    _write_json(os.path.join(outdir, "diagnostics.json"), curves)
    return table


def _diagnostics_figure(outdir: str, lam: LambdaFit, ko: dict[str, KOSchedule]) -> None:
    with open(os.path.join(outdir, "diagnostics.json")) as f:
        curves = {k: ScheduleDiagnostics.from_dict(v) for k, v in json.load(f).items()}
    shown = {k: v for k, v in curves.items() if k == "Cond-OT" or k.startswith("KO")}
    ell = np.linspace(-8.0, 8.0, 161)
    weights = {}
    for name, schedule in reference_schedules(ko).items():
        if name in shown:
            density, weight = log_snr_weighting(schedule, ell)
            weights[name] = (ell, density * weight)
    plotting.plot_diagnostics(os.path.join(outdir, "diagnostics.png"), shown, weights)


def diagnostics_rows(energies) -> list[str]:
    rows = ["| path | KE | conditional KE | irreducible FM loss | share at t < 0.01 | max speed |",
            "|---|---|---|---|---|---|"]
    for name, v in energies.items():
        if not name.startswith("_"):
            rows.append(f"| {name} | {v['kinetic_energy']:.4f} | {v['conditional_energy']:.4f} | "
                        f"{v['irreducible_loss']:.4f} | {100 * v['early_share']:.0f}% | {v['max_speed']:.3g} |")
    return rows


def run_report(cfg, outdir: str, est: LambdaEstimate, lam: LambdaFit, ko: dict[str, KOSchedule], energies,
               seconds: dict[str, float], extra: list[str] | None = None) -> str:
    """Writes the figures and ``report.md``."""
    plotting.plot_lambda(os.path.join(outdir, "lambda.png"), {cfg.data.name: (est, lam)})
    plotting.plot_schedules(os.path.join(outdir, "schedules.png"), reference_schedules(ko))
    ke = {k: v["kinetic_energy"] for k, v in energies.items() if not k.startswith("_")}
    plotting.plot_energies(os.path.join(outdir, "energies.png"), ke)
    _diagnostics_figure(outdir, lam, ko)
    with open(os.path.join(outdir, "ko_solve.json")) as f:
        solve = json.load(f)
    chosen = solve["chosen"]
    check = solve.get("shooting_check")
    lines = [
        f"# kopaths report: {cfg.data.name}",
        "",
        f"Data: `{cfg.data.name}` (resolution {cfg.data.resolution or 'native'}), n = {est.num_data}, d = {est.dim}; "
        f"lambda-hat from k = {est.num_noise} noise samples on {est.snr.size} snr points "
        f"({est.seconds:.1f} s); m2 = tr(C^2)/d = {est.m2:.2f}.",
        "",
        "Wall time of the stages (summed over resumed runs): "
        + (", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; total {sum(seconds.values()):.0f} s."
           if seconds else "not recorded."),
        "",
        "## Data separation function",
        "![lambda](lambda.png)",
        "",
        f"int_0^inf (1 - lambda(s)) ds = {energies['_integral_one_minus_lambda']['value']:.4f} "
        f"(Gaussian data: pi/2 = 1.5708; perfectly separated data: 0). Near s = 0 the fit follows the linear-MMSE "
        f"bound of the data covariance, lambda = m2 s^2 + O(s^4), so gamma ~ (m2 - 1) theta^2.",
        "",
        "## Paths",
        "![schedules](schedules.png)",
        "",
        f"KO: b = {solve['exact']['b']:.5f} (the minimum energy). Training uses the **{chosen}** variant "
        f"(energy {solve[chosen]['energy']:.5f}, max speed {solve[chosen]['max_speed']:.3g}, gamma floor "
        f"{solve[chosen]['gamma_floor']:.3g})."
        + (
            f" Shooting check of the exact path: b = {check['shooting_b']:.5f} ({check['shooting_seconds']:.2f} s), "
            f"max |d alpha| = {check['max_abs_alpha_diff']:.2e}, max |d sigma| = {check['max_abs_sigma_diff']:.2e}."
            if check else ""
        ),
        "",
        "## Kinetic energy and how hard each path is to train on (per dimension)",
        "![energies](energies.png)",
        "",
        *diagnostics_rows(energies),
        "",
        "The irreducible FM loss is conditional minus marginal energy: what a perfect model still pays with uniform t "
        "and unweighted MSE. The exact KO path moves as sqrt(t) at t = 0: its speed, conditional energy and "
        "irreducible loss are infinite, and the finite values above come from the first knot of its table (t = 1e-9).",
        "",
        "![diagnostics](diagnostics.png)",
        "",
        f"DDPM (VP) is integrated up to t = {VP_T_MAX} (its conditional energy diverges at t = 1).",
        "",
        *(extra or []),
    ]
    path = os.path.join(outdir, "report.md")
    atomic_write_text(path, "\n".join(lines))
    return path


def _model_section(cfg, outdir: str, evals: dict[str, Any]) -> list[str]:
    from kopaths.evaluation.classifier import FD_LABEL

    def label(p: str) -> str:
        return f"KO ({cfg.ko.variant})" if p == "ko" else path_spec(p).label

    grids = {label(p): np.load(os.path.join(outdir, f"samples_{p}.npy")) for p in evals}
    plotting.plot_sample_grids(os.path.join(outdir, "samples.png"), grids)
    curves, adaptive = {}, {}
    for p, r in evals.items():
        for q, rec in r.get("sampled_along", {p: r}).items():
            name = f"{label(p)} along {label(q)}"
            nfe = [int(k.split("_")[1]) for k in rec if k.startswith("euler_")]
            curves[name] = (nfe, [rec[f"euler_{n}"][FD_LABEL] for n in nfe])
            adaptive[name] = (rec["dopri5"]["nfe_mean"], rec["dopri5"][FD_LABEL])
    plotting.plot_nfe_quality(os.path.join(outdir, "nfe_quality.png"), curves, adaptive, ylabel="FD (classifier features)")
    ec, tc = cfg.evaluate, cfg.train
    euler = list(ec.euler_nfe)
    head = ("| trained on | sampled along | " + " | ".join(f"FD Euler {n}" for n in euler)
            + " | FD dopri5 | NFE dopri5 | KE (model) | NLL (bits/dim) |")
    rows = [head, "|" + "---|" * (len(euler) + 6)]
    for p, r in evals.items():
        nll = r.get("nll", {}).get("bits_per_dim", float("nan"))
        for q, rec in r.get("sampled_along", {p: r}).items():
            fd = " | ".join(f"{rec[f'euler_{n}'][FD_LABEL]:.2f}" for n in euler)
            rows.append(
                f"| {label(p)} | {label(q)} | {fd} | {rec['dopri5'][FD_LABEL]:.2f} | {rec['dopri5']['nfe_mean']:.0f} | "
                f"{rec['dopri5']['kinetic_energy']:.3f} | {nll if q == p else float('nan'):.3f} |"
            )
    nll_note = next((r["nll"] for r in evals.values() if "nll" in r), {})
    return [
        "## Trained models",
        f"U-Net ({tc.model.model_channels} channels, multipliers {tuple(tc.model.channel_mult)}) trained for "
        f"{tc.total_steps} steps at batch {tc.global_batch_size} on each path, EMA weights. These are short "
        "CPU runs that show the pipeline end to end, not converged models. Every model is also sampled along "
        "the other path by the scale-time transform (same noise, same network).",
        "",
        "![samples](samples.png)",
        "",
        "![nfe](nfe_quality.png)",
        "",
        *rows,
        "",
        f"FD is the {FD_LABEL}, on {ec.num_samples} samples against held-out images. dopri5 at rtol = atol = {ec.tol}. "
        f"NLL (along the training path) on {ec.num_bpd} test images with K = {nll_note.get('K')} dequantisation "
        f"sample(s) and {nll_note.get('probes')} Hutchinson probe(s). KE is measured along the dopri5 trajectories.",
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
