r"""Paper Figure 1 on our data: lambda-hat of Fashion-MNIST and MNIST at each resolution, and the KO path.

For each dataset and resolution (box-downsampled 28 -> 14/7/4 px) this estimates
:math:`\hat\lambda(s)` on the normalised training set, fits it, solves the kinetic-optimal (KO)
schedule, and compares its kinetic energy with Cond-OT's
(:math:`KE_{\rm CondOT} = 2 - \int_0^\infty (1-\lambda)`, :math:`KE_{\rm KO} = b`).

Outputs in ``--outdir``: ``lambda_<dataset>.png`` (lambda(theta) with standard-error band, KO
alpha_t/sigma_t beside Cond-OT, and their difference), ``table.json`` (one row per dataset and
resolution, wall times, the reproduce command) and ``lambda_<dataset>_<res>px.json`` (the
estimated tables).

Run from the repository root after preparing the data::

    python -m kopaths.data.prepare --dataset fashion_mnist
    python -m kopaths.data.prepare --dataset mnist
    python -m experiments.lambda_real_data --outdir outputs/lambda_real_data
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from experiments._common import run_record  # noqa: E402
from kopaths.io import save_figure, write_json  # noqa: E402
from kopaths.data import default_data_config, load_array  # noqa: E402
from kopaths.kinetic import kinetic_energy  # noqa: E402
from kopaths.ko import solve_ko_from_data  # noqa: E402
from kopaths.schedules import CondOTSchedule  # noqa: E402
from kopaths.separation import snr_grid  # noqa: E402


MODULE = "experiments.lambda_real_data"


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="fashion_mnist,mnist", help="comma-separated kopaths dataset names")
    p.add_argument("--resolutions", default="28,14,7,4", help="comma-separated side lengths")
    p.add_argument("--num_data", type=int, default=60000, help="n: training points used (<= 60000)")
    p.add_argument("--num_noise", type=int, default=2048, help="k: shared (index, noise) samples")
    p.add_argument("--num_snr", type=int, default=256, help="snr grid points (theta uniform on [0, pi/2))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=None, help="TFDS data dir (default $KOPATHS_DATA_DIR or ~/tensorflow_datasets)")
    p.add_argument("--outdir", default="outputs/lambda_real_data")
    return p.parse_args(argv)


def analyse(x: np.ndarray, *, snr: np.ndarray, num_noise: int, key: jax.Array) -> tuple[dict, dict]:
    """Estimates and fits lambda of ``x``, solves KO; returns ``(row, curves)`` for the table and plots."""
    times = {}
    solution = solve_ko_from_data(x, key=key, num_noise=num_noise, num_snr=snr.size, variant="exact")
    est, fit, ko = solution.estimate, solution.fit, solution.schedule
    times["estimate_s"] = est.seconds
    times["fit_and_solve_s"] = ko.solve_seconds
    ke_ko = float(kinetic_energy(ko, fit))
    ke_ot = float(kinetic_energy(CondOTSchedule(), fit))
    t = np.linspace(0.0, 1.0, 201)
    out = ko(t)
    alpha, sigma = np.asarray(out[0]), np.asarray(out[1])
    n, d = x.shape[0], int(np.prod(x.shape[1:]))
    row = {
        "dim": d,
        "num_data": n,
        "num_noise": num_noise,
        "int_one_minus_lambda": float(fit.integral_one_minus_lambda()),
        "theorem_4_1_bound_3n_over_sqrt_d": 3 * n / math.sqrt(d),
        "b": float(ko.b),
        "ke_ko": ke_ko,
        "ke_condot": ke_ot,
        "ke_reduction_relative": 1.0 - ke_ko / ke_ot,
        "max_abs_alpha_ko_minus_t": float(np.max(np.abs(alpha - t))),
        "max_abs_sigma_ko_minus_1_minus_t": float(np.max(np.abs(sigma - (1 - t)))),
        "max_stderr_lambda": float(np.max(est.stderr)),
        **{k: round(v, 2) for k, v in times.items()},
    }
    curves = {"theta": np.arctan(est.snr), "lam": est.lam, "stderr": est.stderr, "t": t,
              "alpha": alpha, "sigma": sigma}
    return row, curves, est


def plot_dataset(name: str, curves: dict[int, dict], path: str) -> None:
    """Figure 1 layout: lambda(theta); KO alpha_t, sigma_t vs Cond-OT; KO minus Cond-OT."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, (res, c) in enumerate(sorted(curves.items(), reverse=True)):
        colour = f"C{i}"
        label = f"{res}x{res} (d={res * res})"
        axes[0].plot(c["theta"], c["lam"], color=colour, label=label)
        axes[0].fill_between(c["theta"], c["lam"] - 2 * c["stderr"], c["lam"] + 2 * c["stderr"], color=colour, alpha=0.3)
        axes[1].plot(c["t"], c["alpha"], color=colour, label=f"KO {res}px")
        axes[1].plot(c["t"], c["sigma"], color=colour, ls="-.")
        axes[2].plot(c["t"], c["alpha"] - c["t"], color=colour, label=f"alpha {res}px")
        axes[2].plot(c["t"], c["sigma"] - (1 - c["t"]), color=colour, ls="-.", label=f"sigma {res}px")
    theta = np.linspace(0, 0.5 * np.pi, 200)
    axes[0].plot(theta, np.sin(theta) ** 2, "k:", label="Gaussian data")
    t = np.linspace(0, 1, 3)
    axes[1].plot(t, t, "k--", label="Cond-OT")
    axes[1].plot(t, 1 - t, "k--")
    axes[0].set(xlabel=r"$\theta = \arctan(\alpha/\sigma)$", ylabel=r"$\hat\lambda$", title=f"{name}: data separation (±2 s.e.)")
    axes[1].set(xlabel="t", ylabel=r"$\alpha_t$ (solid), $\sigma_t$ (dash-dot)", title="KO path vs Cond-OT")
    axes[2].set(xlabel="t", ylabel="KO minus Cond-OT", title=r"$\alpha_t - t$ (solid), $\sigma_t-(1-t)$ (dash-dot)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=90)


def main(argv=None) -> None:
    """Runs the study and writes PNGs and JSON to ``--outdir``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.outdir, exist_ok=True)
    datasets = [s for s in args.datasets.split(",") if s]
    resolutions = [int(r) for r in args.resolutions.split(",") if r]
    snr = snr_grid(args.num_snr)
    rows = []
    jobs = [(name, res) for name in datasets for res in resolutions]
    curves: dict[str, dict[int, dict]] = {name: {} for name in datasets}
    for job, (name, res) in enumerate(tqdm(jobs, desc="lambda-hat", unit="table")):
        cfg = default_data_config(name)
        cfg.data_dir = args.data_dir
        cfg.resolution = None if res == 28 else res
        t0 = time.perf_counter()
        x, _ = load_array(cfg, split="train", max_examples=args.num_data)
        load_s = time.perf_counter() - t0
        key = jax.random.fold_in(jax.random.key(args.seed), job)
        row, curve, est = analyse(x, snr=snr, num_noise=args.num_noise, key=key)
        rows.append({"dataset": name, "resolution": res, "load_s": round(load_s, 2), **row})
        curves[name][res] = curve
        est.save(os.path.join(args.outdir, f"lambda_{name}_{res}px.json"))
        tqdm.write(f"{name} {res}px: int(1-lambda)={row['int_one_minus_lambda']:.4f} KE(CondOT)={row['ke_condot']:.4f} "
                   f"KE(KO)={row['ke_ko']:.4f} b={row['b']:.4f} ({row['estimate_s']:.1f} s)")
    for name in datasets:
        plot_dataset(name, curves[name], os.path.join(args.outdir, f"lambda_{name}.png"))
    write_json(os.path.join(args.outdir, "table.json"),
               {"run": run_record(MODULE, argv, time.perf_counter() - start),
                "settings": {"num_data": args.num_data, "num_noise": args.num_noise, "num_snr": args.num_snr,
                             "seed": args.seed, "snr_grid": "tan(theta), theta uniform on [0, 0.999 pi/2]",
                             "normalisation": "train-split stats, 8-bit values at bin centres, dequantisation variance included"},
                "rows": rows})


if __name__ == "__main__":
    main()
