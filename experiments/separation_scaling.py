r"""The n/sqrt(d) experiment: how far from 1 the data separation function can be (Theorem 4.1).

Theorem 4.1 of Shaul et al. (2023) bounds, for any normalised dataset of ``n`` points in
``R^d``,

.. math::  \int_0^\infty (1-\lambda(s))\,ds \le 3n/\sqrt d ,

and since :math:`KE_{\rm CondOT} = 2 - \int_0^\infty(1-\lambda)`, Cond-OT becomes kinetic-optimal as
:math:`n/\sqrt d\to0` (Cor. 4.3). This script estimates :math:`\hat\lambda` (shared-noise
estimator) over a grid of ``n`` and ``d`` for three dataset families, each normalised on its own
``n`` points so the theorem applies to its empirical distribution:

* ``gaussian``: i.i.d. standard Gaussian points in ``R^d``;
* ``lowrank``: i.i.d. Gaussian points in a random ``r``-dimensional subspace of ``R^d``
  (structured synthetic data; :math:`\lambda_d(s)=\lambda_r(s\sqrt{d/r})`, so the integral scales
  exactly as :math:`1/\sqrt d` at fixed ``n``);
* ``fashion_mnist``: the first ``n`` Fashion-MNIST training images, box-downsampled to
  ``4/7/14/28`` px (``d = 16/49/196/784``).

For each (family, n, d) it fits :math:`\hat\lambda`, integrates :math:`1-\hat\lambda`, and solves the
KO path (closed form) to get :math:`KE_{\rm CondOT} - KE_{\rm KO}`.

Outputs in ``--outdir``: ``scaling.png`` (left: :math:`\int(1-\hat\lambda)` against ``n/sqrt(d)``,
log-log, with the bound ``3n/sqrt(d)`` and the ceiling :math:`\pi/2`; right: the KE gap),
``lambda_curves.png`` (:math:`\hat\lambda(\theta)` at fixed ``n`` for every ``d``, tending to 1),
``table.json`` (one row per run, plus the run record) and ``README.md``.

Run from the repository root::

    python -m experiments.separation_scaling
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from experiments._common import run_record  # noqa: E402
from kopaths.io import atomic_write_text, save_figure, write_json  # noqa: E402
from kopaths.kinetic import kinetic_energy  # noqa: E402
from kopaths.ko import DegenerateLambdaError, solve_ko_variant  # noqa: E402
from kopaths.lambda_fit import fit_lambda  # noqa: E402
from kopaths.normalization import normalize  # noqa: E402
from kopaths.schedules import HALF_PI, CondOTSchedule  # noqa: E402
from kopaths.separation import estimate_lambda  # noqa: E402

FMNIST_NATIVE = 28
FMNIST_IDX_DIR = "/usr/share/datasets/fashion-mnist"


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags; ``--quick`` overrides the grid with tiny sizes (generated data only)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default="gaussian,lowrank,fashion_mnist",
                   help="comma-separated subset of gaussian, lowrank, fashion_mnist")
    p.add_argument("--ns", default="10,100,1000,10000", help="n values for the synthetic families")
    p.add_argument("--dims", default="2,8,32,128,512,2048", help="d values for the synthetic families")
    p.add_argument("--rank", type=int, default=2, help="subspace dimension r of the lowrank family")
    p.add_argument("--fmnist_ns", default="10,100,1000,10000", help="n values for Fashion-MNIST")
    p.add_argument("--fmnist_resolutions", default="4,7,14,28", help="Fashion-MNIST side lengths (divisors of 28)")
    p.add_argument("--curve_n", type=int, default=1000, help="n whose lambda curves are drawn against d")
    p.add_argument("--num_noise", type=int, default=1024, help="k: shared (index, noise) samples per estimate")
    p.add_argument("--num_snr", type=int, default=160, help="snr grid points (denser near s=0)")
    p.add_argument("--sigma_min", type=float, default=0.0, help="end noise level of the Cond-OT and KO paths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--outdir", default="experiments/results/separation_scaling")
    p.add_argument("--quick", action="store_true",
                   help="tiny grid on generated data only (for tests): n in {8,32}, d in {4,64}, k=64, 24 snr")
    args = p.parse_args(argv)
    if args.quick:
        args.families = ",".join(f for f in args.families.split(",") if f != "fashion_mnist") or "gaussian"
        args.ns, args.dims, args.num_noise, args.num_snr, args.curve_n = "8,32", "4,64", 64, 24, 32
    return args


def int_list(text: str) -> list[int]:
    """Parses ``"1,2,3"``."""
    return [int(v) for v in text.split(",") if v.strip()]


def theta_snr_grid(num: int, *, max_theta: float = HALF_PI * (1 - 1e-3)) -> np.ndarray:
    r"""snr values :math:`\tan\theta` with :math:`\theta = \theta_{\max}u^2`, ``u`` uniform.

    Quadratic spacing in :math:`\theta` resolves the sharp transition of :math:`\lambda` near
    :math:`s\sim\sqrt{\log n/d}`, which sits close to 0 for large ``d``.
    """
    u = np.linspace(0.0, 1.0, num)
    return np.tan(max_theta * u**2)


# ----------------------------------------------------------------------------- datasets


def gaussian_data(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` i.i.d. standard Gaussian points in ``R^d``, normalised on themselves."""
    return normalize(rng.standard_normal((n, d)).astype(np.float32))[0]


def lowrank_data(n: int, d: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` Gaussian points in a random ``min(rank, d)``-dimensional subspace of ``R^d``, normalised."""
    r = min(rank, d)
    basis, _ = np.linalg.qr(rng.standard_normal((d, r)))
    y = rng.standard_normal((n, r)) @ basis.T
    return normalize(y.astype(np.float32))[0]


def fmnist_images(resolution: int, n: int) -> tuple[np.ndarray, str]:
    """First ``n`` Fashion-MNIST training images at ``resolution`` px as float32 ``(n, d)``, plus the source.

    Uses the prepared kopaths TFDS dataset when available; otherwise reads the Debian IDX
    files directly (same box-downsampling, bin centres ``y + 1/2``, a seeded random subset).
    """
    try:
        from kopaths.data import default_data_config, load_array

        cfg = default_data_config("fashion_mnist")
        cfg.resolution = None if resolution == FMNIST_NATIVE else resolution
        x, _ = load_array(cfg, split="train", max_examples=n)
        return x.reshape(x.shape[0], -1), "kopaths.data.load_array"
    except Exception as e:  # noqa: BLE001 - any failure to open the prepared data -> raw files
        from kopaths.data.idx import find_idx_file, read_idx
        from kopaths.data.transforms import box_downsample

        path = find_idx_file(FMNIST_IDX_DIR, "train-images-idx3-ubyte")
        if path is None:
            raise FileNotFoundError(
                f"Fashion-MNIST is neither prepared ({e}) nor in {FMNIST_IDX_DIR}; "
                "drop fashion_mnist from --families."
            ) from e
        images = read_idx(path)
        order = np.random.default_rng(0).permutation(images.shape[0])[:n]
        small = box_downsample(images[order][..., None], resolution)
        return (small.reshape(n, -1).astype(np.float32) + 0.5), f"IDX files {path}"


def make_jobs(args) -> list[dict]:
    """All (family, n, d) runs of the grid."""
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - {"gaussian", "lowrank", "fashion_mnist"}
    if unknown:
        raise ValueError(f"Unknown families {sorted(unknown)}.")
    jobs = []
    for fam in ("gaussian", "lowrank"):
        if fam in families:
            jobs += [{"family": fam, "n": n, "d": d} for n in int_list(args.ns) for d in int_list(args.dims)]
    if "fashion_mnist" in families:
        for res in int_list(args.fmnist_resolutions):
            jobs += [{"family": "fashion_mnist", "n": n, "d": res * res, "resolution": res}
                     for n in int_list(args.fmnist_ns)]
    return jobs


def job_data(job: dict, args, rng: np.random.Generator, cache: dict) -> tuple[np.ndarray, str]:
    """Builds the normalised dataset of one job."""
    n, d = job["n"], job["d"]
    if job["family"] == "gaussian":
        return gaussian_data(n, d, rng), "generated: i.i.d. N(0, I)"
    if job["family"] == "lowrank":
        return lowrank_data(n, d, args.rank, rng), f"generated: N(0, I_r) in a random r={min(args.rank, d)} subspace"
    res = job["resolution"]
    if res not in cache:
        cache[res] = fmnist_images(res, max(int_list(args.fmnist_ns)))
    images, source = cache[res]
    return normalize(images[:n])[0], source


# ----------------------------------------------------------------------------- analysis

_jit_kinetic_energy = jax.jit(kinetic_energy)  # compiled once per schedule type, reused across runs


def analyse(x: np.ndarray, *, snr: np.ndarray, num_noise: int, sigma_min: float, key: jax.Array) -> tuple[dict, dict]:
    """Estimates and fits lambda of ``x``, integrates ``1 - lambda`` and solves KO; returns ``(row, curve)``."""
    n, d = x.shape
    est = estimate_lambda(x, snr, key=key, num_noise=num_noise)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_lambda(est)
    integral = fit.integral_one_minus_lambda()
    ke_condot = float(_jit_kinetic_energy(CondOTSchedule(sigma_min=sigma_min), fit))
    row = {
        "n": n,
        "d": d,
        "n_over_sqrt_d": n / math.sqrt(d),
        "integral_one_minus_lambda": integral,
        "bound_3n_over_sqrt_d": 3.0 * n / math.sqrt(d),
        "bound_holds": bool(integral <= 3.0 * n / math.sqrt(d)),
        "integral_over_bound": integral / (3.0 * n / math.sqrt(d)),
        "ke_condot": ke_condot,
        "ke_condot_identity": 2.0 - integral if sigma_min == 0.0 else None,
        "num_noise": num_noise,
        "max_stderr": float(np.max(est.stderr)),
        "fit_warnings": [str(w.message) for w in caught],
        "estimate_seconds": est.seconds,
    }
    try:
        ko = solve_ko_variant(fit, sigma_min, "exact")
        gap = ke_condot - ko.b
        # With sigma_min = 0: gap = 2 cos(Phi) - I <= I, since Phi >= pi/2 - I (derived), so the gap
        # inherits the bound 3n/sqrt(d).
        row.update(ke_ko=ko.b, ke_gap_condot_minus_ko=gap, ko_degenerate=False,
                   gap_le_integral=bool(gap <= integral + 1e-4) if sigma_min == 0.0 else None)
    except DegenerateLambdaError:
        # gamma ~ 0 (Gaussian-like data): paths with r = 1 have energy ~0, so the infimum is ~0.
        row.update(ke_ko=None, ke_gap_condot_minus_ko=None, ko_degenerate=True, gap_le_integral=None)
    curve = {"theta": np.arctan(est.snr).tolist(), "lambda": est.lam.tolist(),
             "lambda_fit": np.asarray(fit(est.snr), np.float64).tolist()}
    return row, curve


# ----------------------------------------------------------------------------- plots

FAMILY_STYLE = {"gaussian": ("o", "i.i.d. Gaussian"), "lowrank": ("s", "low-rank Gaussian"),
                "fashion_mnist": ("^", "Fashion-MNIST")}


def plot_scaling(rows: list[dict], path: str) -> None:
    """Left: integral of 1 - lambda vs n/sqrt(d) with the bound; right: KE(Cond-OT) - KE(KO)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ns = sorted({r["n"] for r in rows})
    cmap = plt.get_cmap("viridis")
    colors = {n: cmap(i / max(1, len(ns) - 1)) for i, n in enumerate(ns)}
    xs = np.array([r["n_over_sqrt_d"] for r in rows])
    grid = np.geomspace(xs.min() / 1.5, xs.max() * 1.5, 100)
    for ax, key, title in ((axes[0], "integral_one_minus_lambda", r"$\int_0^\infty (1-\hat\lambda(s))\,ds$"),
                           (axes[1], "ke_gap_condot_minus_ko", r"$KE_{\rm CondOT}-KE_{\rm KO}$")):
        for fam, (marker, label) in FAMILY_STYLE.items():
            sub = [r for r in rows if r["family"] == fam and r[key] is not None and r[key] > 0]
            if sub:
                ax.scatter([r["n_over_sqrt_d"] for r in sub], [r[key] for r in sub], marker=marker,
                           c=[colors[r["n"]] for r in sub], edgecolors="k", linewidths=0.4, s=36, label=label)
        ax.plot(grid, 3 * grid, "r-", lw=1.5, label=r"Thm 4.1 bound $3n/\sqrt{d}$")
        ax.axhline(HALF_PI, color="gray", ls=":", label=r"$\pi/2$ (Gaussian data)")
        ax.set(xscale="log", yscale="log", xlabel=r"$n/\sqrt{d}$", title=title)
        ax.grid(True, which="major", alpha=0.3)
    lo = min(r["integral_one_minus_lambda"] for r in rows if r["integral_one_minus_lambda"] > 0)
    axes[0].set_ylim(max(lo / 3, 1e-6), 10)
    gaps = [r["ke_gap_condot_minus_ko"] for r in rows if (r["ke_gap_condot_minus_ko"] or 0) > 0]
    axes[1].set_ylim(max(min(gaps, default=1e-3) / 3, 1e-6), 10)
    handles = [plt.Line2D([], [], ls="", marker="o", color=colors[n], label=f"n = {n}") for n in ns]
    axes[0].legend(fontsize=7, loc="lower right")
    axes[1].legend(handles=handles, fontsize=7, loc="lower right", title="colour", title_fontsize=7)
    save_figure(fig, path, dpi=110)


def plot_curves(rows: list[dict], curves: list[dict], curve_n: int, path: str) -> None:
    """lambda-hat(theta) at fixed n for every d, one panel per family, with the Gaussian curve."""
    fams = [f for f in FAMILY_STYLE if any(r["family"] == f and r["n"] == curve_n for r in rows)]
    if not fams:
        return
    fig, axes = plt.subplots(1, len(fams), figsize=(4.4 * len(fams), 3.8), squeeze=False)
    theta = np.linspace(0, HALF_PI, 200)
    for ax, fam in zip(axes[0], fams):
        sel = [(r, c) for r, c in zip(rows, curves) if r["family"] == fam and r["n"] == curve_n]
        cmap = plt.get_cmap("plasma")
        for i, (r, c) in enumerate(sorted(sel, key=lambda rc: rc[0]["d"])):
            ax.plot(c["theta"], c["lambda_fit"], color=cmap(i / max(1, len(sel) - 1) * 0.9),
                    label=f"d = {r['d']}")
        ax.plot(theta, np.sin(theta) ** 2, "k--", lw=1, label=r"Gaussian $s^2/(1+s^2)$")
        ax.set(xlabel=r"$\theta = \arctan s$", ylabel=r"$\hat\lambda$", xlim=(0, HALF_PI), ylim=(0, 1.02),
               title=f"{FAMILY_STYLE[fam][1]}, n = {curve_n}")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)


# ----------------------------------------------------------------------------- outputs


def summarise(rows: list[dict]) -> dict:
    """Headline numbers for the README."""
    ratios = [r["integral_over_bound"] for r in rows]
    gaps = [r for r in rows if r["ke_gap_condot_minus_ko"] is not None]
    small = [r for r in gaps if r["n_over_sqrt_d"] <= 1.0]
    slopes = {}
    for fam in sorted({r["family"] for r in rows}):
        for n in sorted({r["n"] for r in rows if r["family"] == fam}):
            pts = [(r["d"], r["integral_one_minus_lambda"]) for r in rows
                   if r["family"] == fam and r["n"] == n and r["d"] >= 32 and r["integral_one_minus_lambda"] > 0]
            if len(pts) >= 2:
                d, v = np.log(np.array(pts, np.float64)).T
                slopes[f"{fam}/n={n}"] = float(np.polyfit(d, v, 1)[0])
    return {
        "loglog_slope_integral_vs_d_for_d_ge_32": slopes,
        "gap_le_integral_all": all(r["gap_le_integral"] is not False for r in rows),
        "num_runs": len(rows),
        "bound_holds_all": all(r["bound_holds"] for r in rows),
        "max_integral_over_bound": max(ratios),
        "num_ko_degenerate": sum(r["ko_degenerate"] for r in rows),
        "max_ke_gap_for_n_over_sqrt_d_le_1": max((r["ke_gap_condot_minus_ko"] for r in small), default=None),
    }


def write_readme(path: str, table: dict) -> None:
    """Short README with the reproduce command, wall time and what the figures show."""
    rec, s = table["run"], table["summary"]
    fams = sorted({r["family"] for r in table["rows"]})
    sources = sorted({f"{r['family']}: {r['data_source']}" for r in table["rows"]})
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [
        "# n/sqrt(d) scaling of the data separation function (Theorem 4.1, Cor. 4.3)",
        "",
        "Reproduce (from the repository root):",
        "",
        f"    {rec['command']}",
        "",
        f"Wall time: {rec['wall_seconds']:.0f} s on {rec['machine']} (finished {rec['finished_utc']}).",
        f"Families: {', '.join(fams)}; k = {table['config']['num_noise']} noise samples, "
        f"{table['config']['num_snr']} snr points per estimate; sigma_min = {table['config']['sigma_min']}; "
        f"low-rank subspace dimension r = {table['config']['rank']}. Each dataset is normalised on its own n points.",
        "Data: " + "; ".join(sources) + ".",
        "",
        "- `scaling.png`, left: the integral of 1 - lambda-hat against n/sqrt(d) (log-log), colour = n, "
        "marker = dataset family, with the bound 3n/sqrt(d) (red) and the Gaussian ceiling pi/2. "
        "Right: KE(Cond-OT) - KE(KO) on the same axes; it vanishes as n/sqrt(d) -> 0 (Cor. 4.3). "
        "With sigma_min = 0 the gap is 2 cos(Phi) - I <= I (I the integral, Phi >= pi/2 - I; derived), so the "
        "red line bounds it too.",
        f"- `lambda_curves.png`: lambda-hat(theta), theta = arctan s, at n = {table['config']['curve_n']} for every d; "
        "the curves rise to 1 ever earlier as d grows (Gaussian data would follow the dashed curve).",
        "- `table.json`: one row per (family, n, d) with the integral, the bound, KE(Cond-OT) by quadrature and "
        "by the identity 2 - integral, KE(KO) = b, and the estimator time.",
        "",
        f"Result: bound holds in all {s['num_runs']} runs: {s['bound_holds_all']}; largest integral/bound ratio "
        f"{s['max_integral_over_bound']:.3g}. Largest KE gap with n/sqrt(d) <= 1: "
        f"{fmt(s['max_ke_gap_for_n_over_sqrt_d_le_1'])}. KO degenerate (gamma ~ 0, Gaussian-like data): "
        f"{s['num_ko_degenerate']} runs (KE(KO) not defined there; they are left off the right panel). "
        f"KE gap <= integral in every run: {s['gap_le_integral_all']}.",
        "",
        "Log-log slope of the integral against d (d >= 32) at fixed n, per family (the theorem's rate is -1/2):",
        "",
        *[f"- {k}: {v:.3f}" for k, v in s["loglog_slope_integral_vs_d_for_d_ge_32"].items()],
        "",
        "At fixed n the integral falls like 1/sqrt(d), the rate of the theorem; its growth in n is far slower "
        "than the bound's linear n for these datasets (about sqrt(log n) for i.i.d. Gaussian points), so the "
        "bound is loose by orders of magnitude at large n and is informative only where 3n/sqrt(d) < pi/2.",
        "",
    ]
    atomic_write_text(path, "\n".join(lines))


def main(argv=None) -> dict:
    """Runs the grid, writes the figures, ``table.json`` and ``README.md``; returns the table."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.outdir, exist_ok=True)
    snr = theta_snr_grid(args.num_snr)
    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
    rows, curves, cache = [], [], {}
    jobs = make_jobs(args)
    for job in tqdm(jobs, desc="separation scaling", unit="run"):
        x, source = job_data(job, args, rng, cache)
        key, sub = jax.random.split(key)
        row, curve = analyse(x, snr=snr, num_noise=args.num_noise, sigma_min=args.sigma_min, key=sub)
        rows.append({"family": job["family"], "resolution": job.get("resolution"), "data_source": source, **row})
        curves.append(curve)
    plot_scaling(rows, os.path.join(args.outdir, "scaling.png"))
    plot_curves(rows, curves, args.curve_n, os.path.join(args.outdir, "lambda_curves.png"))
    table = {
        "description": "Theorem 4.1: integral of (1 - lambda) vs 3 n / sqrt(d); Cor. 4.3: KE(Cond-OT) - KE(KO).",
        "config": {k: v for k, v in vars(args).items() if k != "outdir"},
        "rows": rows,
        "summary": summarise(rows),
        "run": run_record("experiments.separation_scaling", argv, time.perf_counter() - start),
    }
    write_json(os.path.join(args.outdir, "table.json"), table)
    write_readme(os.path.join(args.outdir, "README.md"), table)
    return table


if __name__ == "__main__":
    main()
