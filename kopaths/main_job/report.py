"""The main job's report: figures and ``report.md`` from the stages' JSON files."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from kopaths.diagnostics import ScheduleDiagnostics
from kopaths.io import atomic_write_text
from kopaths.ko import KOSchedule
from kopaths.lambda_fit import LambdaFit
from kopaths.main_job import plotting
from kopaths.objective import log_snr_weighting
from kopaths.schedules import PATHS, Schedule, path_spec
from kopaths.separation import LambdaEstimate

__all__ = ["reference_schedules", "diagnostics_rows", "run_report", "model_section"]

VP_T_MAX = PATHS["vp"].t_max


def reference_schedules(ko: dict[str, Schedule] | None = None) -> dict[str, Schedule]:
    """The paper's comparison paths and the KO variants (when given), by display name."""
    out: dict[str, Schedule] = {PATHS[n].label: PATHS[n].build() for n in ("cond_ot", "cosine", "vp")}
    for variant, schedule in (ko or {}).items():
        out[f"KO ({variant})"] = schedule
    return out


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
        + (", ".join(f"{k} {v:.0f} s" for k, v in sorted(seconds.items(), key=_stage_order)) + f"; total {sum(seconds.values()):.0f} s"
           + (f" (evaluation / training = {seconds['evaluation'] / seconds['training']:.2f})."
              if seconds.get("training") and "evaluation" in seconds else ".")
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


def _classifier_note(cfg) -> str:
    from kopaths.main_job.trained_models import CLASSIFIER_FILE, fd_classifier_source  # noqa: PLC0415

    if fd_classifier_source(cfg) == "shipped":
        return "the shipped classifier (`kopaths.evaluation.classifier.BUILTIN_CLASSIFIERS`, the same in every run)"
    return f"a classifier trained on the training split in this run (`{CLASSIFIER_FILE}`)"


_STAGES = ("lambda-hat", "KO solve", "training", "evaluation")


def _stage_order(item: tuple[str, float]) -> tuple[int, str]:
    """Pipeline order (``timings.json`` stores the stages sorted by name)."""
    return (_STAGES.index(item[0]) if item[0] in _STAGES else len(_STAGES), item[0])


def model_section(cfg, outdir: str, evals: dict[str, Any]) -> list[str]:
    """The report's lines on the trained models (and their figures)."""
    from kopaths.evaluation.classifier import FD_LABEL

    def label(p: str) -> str:
        if p.startswith("ko_"):  # a KO variant sampled along (``evaluate.also_along_ko``)
            return f"KO ({p[3:]})"
        return f"KO ({cfg.ko.variant})" if p == "ko" else path_spec(p).label

    grids = {label(p): np.load(os.path.join(outdir, f"samples_{p}.npy")) for p in evals}
    plotting.plot_sample_grids(os.path.join(outdir, "samples.png"), grids)
    along = [(p, q, rec) for p, r in evals.items() for q, rec in r.get("sampled_along", {p: r}).items()]
    curves, adaptive = {}, {}
    for p, q, rec in along:
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
    for p, q, rec in along:
        nll = evals[p].get("nll", {}).get("bits_per_dim", float("nan"))
        fd = " | ".join(f"{rec[f'euler_{n}'][FD_LABEL]:.2f}" for n in euler)
        rows.append(
            f"| {label(p)} | {label(q)} | {fd} | {rec['dopri5'][FD_LABEL]:.2f} | {rec['dopri5']['nfe_mean']:.0f} | "
            f"{rec['dopri5']['kinetic_energy']:.3f} | {f'{nll:.3f}' if q == p else '–'} |"
        )
    solver_rows = []
    if all("solver_rmse" in rec[f"euler_{n}"] for _, _, rec in along for n in euler):
        solver_rows = ["Solver error of each Euler sampler: RMS per-coordinate distance (model space) of its samples "
                       "to the dopri5 samples along the same path from the same noise.", "",
                       "| trained on | sampled along | " + " | ".join(f"RMSE Euler {n}" for n in euler) + " |",
                       "|" + "---|" * (len(euler) + 2)]
        solver_rows += [f"| {label(p)} | {label(q)} | " + " | ".join(f"{rec[f'euler_{n}']['solver_rmse']:.4f}" for n in euler)
                        + " |" for p, q, rec in along]
        solver_rows.append("")
    nll_note = next((r["nll"] for r in evals.values() if "nll" in r), {})
    extra_ko = list(ec.get("also_along_ko", ()))
    also = f", and along the KO variants {extra_ko} (`evaluate.also_along_ko`)," if extra_ko else ""
    return [
        "## Trained models",
        f"U-Net ({tc.model.model_channels} channels, multipliers {tuple(tc.model.channel_mult)}) trained for "
        f"{tc.total_steps} steps at batch {tc.global_batch_size} on each path, EMA weights. These are short "
        "CPU runs that show the pipeline end to end, not converged models. Every model is also sampled along "
        f"the other trained paths{also} by the scale-time transform (same noise, same network).",
        "",
        "![samples](samples.png)",
        "",
        "![nfe](nfe_quality.png)",
        "",
        *rows,
        "",
        f"FD is the {FD_LABEL}, on {ec.num_samples} samples against held-out images, in the features of "
        f"{_classifier_note(cfg)}. dopri5 at rtol = atol = {ec.tol}. "
        f"NLL (along the training path) on {ec.num_bpd} test images with K = {nll_note.get('K')} dequantisation "
        f"sample(s) and {nll_note.get('probes')} Hutchinson probe(s). KE is measured along the dopri5 trajectories.",
        "",
        *solver_rows,
    ]
