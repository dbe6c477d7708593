r"""Paper Figure 4 on our data: stability of lambda-hat as n (data points) and k (noise samples) vary.

On normalised Fashion-MNIST (default 28x28) this estimates :math:`\hat\lambda` for
n in {1K, 3K, 10K, 30K, 60K} at fixed k, and for k in {256, ..., 8K} at fixed n = 60K, with error
bars of two standard errors from the estimator. It also reports :math:`\int_0^\infty(1-\hat\lambda)`
(the Cond-OT energy deficit) per setting; its error bar integrates the per-point standard errors,
an upper bound because the shared noise correlates them across snr.

Outputs in ``--outdir``: ``stability_<dataset>_<res>px.png``, ``stability_<dataset>_<res>px.json``
(rows, wall times, reproduce command) and ``..._estimates.json`` (every lambda-hat table). Run from the repository root after
``python -m kopaths.data.prepare --dataset fashion_mnist``::

    python -m experiments.lambda_stability --outdir outputs/lambda_stability
"""

from __future__ import annotations

import argparse
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
from kopaths.lambda_fit import fit_lambda  # noqa: E402
from kopaths.separation import estimate_lambda, snr_grid  # noqa: E402


MODULE = "experiments.lambda_stability"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--n_values", default="1000,3000,10000,30000,60000", help="n sweep (at k = --k_fixed)")
    p.add_argument("--k_values", default="256,512,1024,2048,4096,8192", help="k sweep (at n = --n_fixed)")
    p.add_argument("--k_fixed", type=int, default=2048)
    p.add_argument("--n_fixed", type=int, default=60000)
    p.add_argument("--num_snr", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=None, help="TFDS data dir (default $KOPATHS_DATA_DIR or ~/tensorflow_datasets)")
    p.add_argument("--outdir", default="outputs/lambda_stability")
    return p.parse_args(argv)


def summarise(est) -> dict:
    """Integral of 1 - lambda-hat (from the monotone fit) and its standard-error bound."""
    fit = fit_lambda(est, warn=False)
    return {
        "int_one_minus_lambda": float(fit.integral_one_minus_lambda()),
        "int_stderr_bound": float(np.trapezoid(est.stderr, est.snr)),
        "max_stderr": float(est.stderr.max()),
        "estimate_s": round(est.seconds, 2),
    }


def _theta_limit(ests) -> float:
    """Smallest theta beyond which every curve has lambda > 0.999 (the interesting range)."""
    theta = np.arctan(ests[0].snr)
    beyond = [theta[np.argmax(e.lam > 0.999)] if np.any(e.lam > 0.999) else theta[-1] for e in ests]
    return float(min(theta[-1], 1.15 * max(beyond)))


def plot(sweeps: dict[str, list], rows: list[dict], title: str, path: str) -> None:
    """lambda-hat curves with 2-s.e. error bars per sweep, and the integral vs n and k."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for col, (param, pairs) in enumerate(sweeps.items()):
        ax = axes[0, col]
        ests = [e for _, e in pairs]
        for i, (value, est) in enumerate(pairs):
            theta = np.arctan(est.snr)
            step = max(1, len(theta) // 32)
            ax.errorbar(theta[::step], est.lam[::step], yerr=2 * est.stderr[::step], color=f"C{i}", lw=1,
                        capsize=2, marker=".", ms=3, label=f"{param}={value:,}")
        ax.set(xlim=(0, _theta_limit(ests)), xlabel=r"$\theta=\arctan s$", ylabel=r"$\hat\lambda$ (±2 s.e.)",
               title=f"{title}: varying {param}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax = axes[1, col]
        sel = [r for r in rows if r["sweep"] == param]
        xs = [r[param] for r in sel]
        ax.errorbar(xs, [r["int_one_minus_lambda"] for r in sel], yerr=[2 * r["int_stderr_bound"] for r in sel],
                    marker="o", capsize=3)
        ax.set(xscale="log", xlabel=param, ylabel=r"$\int_0^\infty (1-\hat\lambda)\,ds$",
               title="energy deficit of Cond-OT (±2 s.e. bound)")
        ax.set_xticks(xs, [f"{v:,}" for v in xs], fontsize=8)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=80)


def main(argv=None) -> None:
    """Runs both sweeps and writes the PNG and JSON to ``--outdir``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    os.makedirs(args.outdir, exist_ok=True)
    cfg = default_data_config(args.dataset)
    cfg.data_dir = args.data_dir
    cfg.resolution = args.resolution
    t0 = time.perf_counter()
    x_all, _ = load_array(cfg, split="train")
    load_s = time.perf_counter() - t0
    if max(_ints(args.n_values) + [args.n_fixed]) > x_all.shape[0]:
        raise ValueError(f"n values must not exceed the {x_all.shape[0]} training points.")
    snr = snr_grid(args.num_snr)
    key = jax.random.key(args.seed)
    jobs = [("n", n, n, args.k_fixed) for n in _ints(args.n_values)] + \
           [("k", k, args.n_fixed, k) for k in _ints(args.k_values)]
    sweeps: dict[str, list] = {"n": [], "k": []}
    rows = []
    for param, value, n, k in tqdm(jobs, desc="stability", unit="estimate"):
        # The stored order is a fixed pseudo-random permutation, so a prefix is a random subset.
        est = estimate_lambda(x_all[:n], snr, key=key, num_noise=k, check=False)
        sweeps[param].append((value, est))
        rows.append({"sweep": param, "n": n, "k": k, **summarise(est)})
        tqdm.write(f"{param}={value}: int(1-lambda)={rows[-1]['int_one_minus_lambda']:.4f} "
                   f"± {rows[-1]['int_stderr_bound']:.4f} ({est.seconds:.1f} s)")
    name = f"{args.dataset}_{args.resolution}px"
    write_json(os.path.join(args.outdir, f"stability_{name}_estimates.json"),
               [{"sweep": param, "value": value, **est.to_dict()} for param, pairs in sweeps.items()
                for value, est in pairs])
    plot(sweeps, rows, f"{args.dataset} {args.resolution}x{args.resolution}",
         os.path.join(args.outdir, f"stability_{name}.png"))
    write_json(os.path.join(args.outdir, f"stability_{name}.json"),
               {"run": run_record(MODULE, argv, time.perf_counter() - start),
                "settings": {**vars(args), "load_s": round(load_s, 2)},
                "rows": rows})


if __name__ == "__main__":
    main()
