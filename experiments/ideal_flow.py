r"""Ideal-flow table: KE and adaptive NFE of each path on the exact marginal field of a dataset.

For an empirical dataset the marginal velocity :math:`u_t(x)` of every Gaussian path is known
exactly (:func:`kopaths.ideal.marginal_velocity`), so paths can be compared without training
any network. For each path (DDPM/VP, SI, Cond-OT, KO fitted to the same data) we integrate the
ideal flow from ``--num_samples`` noise points with dopri5 at ``--tol`` on ``[0, t_end]``
(``t_end = 1 - 1e-3``: the empirical field is singular at :math:`\sigma_t = 0`) and report

* the kinetic energy per dimension along the exact trajectories,
  :math:`\frac1d\mathbb E_{x_0}\int_0^{t_{end}}\|u_t(x_t)\|^2 dt` (standard error over samples),
  next to the value predicted from the fitted separation function
  (:func:`kopaths.kinetic.kinetic_energy`, same ``t_end``);
* the per-example NFE dopri5 needs (mean / median / max).

Datasets: the 2-D checkerboard and a Fashion-MNIST subset (``--fmnist_n`` training images). KO is
solved by :func:`kopaths.ko.solve_ko_from_data` on the same subset, exact and bounded.

Reproduce (2-core CPU)::

    python -m kopaths.data.prepare --dataset checkerboard; python -m kopaths.data.prepare --dataset fashion_mnist
    python -m experiments.ideal_flow --out experiments/results/ideal_flow --num_samples 64 --checkerboard_n 5000 --fmnist_n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from experiments._common import publish_markdown, run_record
from kopaths.io import write_json
from kopaths.ko import solve_ko_from_data, solve_ko_variant
from kopaths.ode.energy import ideal_flow_scores
from kopaths.schedules import CondOTSchedule, CosineSchedule, VPSchedule

PATH_NAMES = {"vp": "DDPM/VP", "si": "SI", "cond_ot": "Cond-OT", "ko": "KO (exact)", "ko_bounded": "KO (bounded)"}


def _ko_and_lambda(x: np.ndarray, seed: int, num_noise: int):
    solution = solve_ko_from_data(x.reshape(len(x), -1), key=jax.random.key(seed), num_noise=num_noise, variant="exact")
    return solution.schedule, solve_ko_variant(solution.fit, 0.0, "bounded"), solution.fit


def score_dataset(name: str, x: np.ndarray, args) -> dict:
    from kopaths.kinetic import kinetic_energy  # noqa: PLC0415

    t = time.time()
    ko, bounded, lam = _ko_and_lambda(x, args.seed, args.num_noise)
    print(f"[{name}] KO solved in {time.time() - t:.1f}s (n={len(x)}, d={x[0].size})", flush=True)
    schedules = {"vp": VPSchedule(), "si": CosineSchedule(), "cond_ot": CondOTSchedule(), "ko": ko, "ko_bounded": bounded}
    out = {"num_data": int(len(x)), "dim": int(x[0].size), "paths": {}}
    for key, sched in schedules.items():
        t = time.time()
        s = ideal_flow_scores(
            sched, x, jax.random.key(args.seed + 1), num_samples=args.num_samples, rtol=args.tol, atol=args.tol,
            t_end=args.t_end, chunk_size=args.chunk,
        )
        s["kinetic_energy_from_lambda"] = float(kinetic_energy(sched, lam, t_max=args.t_end))
        s["seconds"] = time.time() - t
        out["paths"][key] = s
        print(f"[{name}] {PATH_NAMES[key]}: {json.dumps(s)}", flush=True)
    return out


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="experiments/results/ideal_flow")
    ap.add_argument("--num_samples", type=int, default=256)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--t_end", type=float, default=1.0 - 1e-3)
    ap.add_argument("--checkerboard_n", type=int, default=20000)
    ap.add_argument("--fmnist_n", type=int, default=2000)
    ap.add_argument("--num_noise", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--datasets", default="checkerboard,fashion_mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_samples, args.tol, args.checkerboard_n, args.fmnist_n, args.num_noise = 4, 1e-3, 256, 64, 64
        args.datasets = "fashion_mnist"

    from kopaths.data import default_data_config, load_array  # noqa: PLC0415

    start = time.time()
    results = {"args": vars(args), "datasets": {}}
    sizes = {"checkerboard": args.checkerboard_n, "fashion_mnist": args.fmnist_n}
    for name in args.datasets.split(","):
        x, _ = load_array(default_data_config(name), split="train", max_examples=sizes[name])
        results["datasets"][name] = score_dataset(name, x, args)
        results["run"] = run_record("experiments.ideal_flow", argv, time.time() - start)
        write_json(os.path.join(args.out, "results.json"), results)
    lines = [f"Reproduce: `{results['run']['command']}`", "",
             f"dopri5 rtol=atol={args.tol}, {args.num_samples} noise samples, t in [0, {args.t_end}]", "",
             "| data | path | KE (trajectories) | KE (from lambda-hat) | NFE mean | NFE median | NFE max |",
             "|---|---|---|---|---|---|---|"]
    for name, rec in results["datasets"].items():
        for key, s in rec["paths"].items():
            lines.append(
                f"| {name} (n={rec['num_data']}, d={rec['dim']}) | {PATH_NAMES[key]} | {s['kinetic_energy']:.4f} "
                f"± {s['kinetic_energy_stderr']:.4f} | {s['kinetic_energy_from_lambda']:.4f} | {s['nfe_mean']:.1f} | "
                f"{s['nfe_median']:.0f} | {s['nfe_max']} |"
            )
    publish_markdown(args.out, lines)
    return results


if __name__ == "__main__":
    main()
