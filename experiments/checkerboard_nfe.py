r"""Paper Figure 2: the 2-D checkerboard sampled with Euler at NFE 2/6/10/16, over training seeds.

Paths: Cond-OT, SI (cosine), and KO both exact and bounded (``<out>/ko/<variant>_ko_schedule.json``,
solved here by :func:`kopaths.ko.solve_ko_from_data` from a lambda-hat of 10^6 training points when
missing, with their diagnostics). One MLP per path and seed
(``experiments/configs/checkerboard_mlp.py``, scaled by the flags) is trained by the library trainer
(:func:`kopaths.training.trainer.train`, resumable) and scored by
:func:`kopaths.evaluation.scoring.evaluate_run` from the same noise: sliced 2-Wasserstein (512
projections) and MMD² in the normalised space against held-out points, the dopri5 NFE, and the
exact NLL of held-out points in nats/dim of the raw data. Over seeds: mean ± 95% interval and the
paired difference to Cond-OT. Writes ``samples.png`` (seed 0), ``results.json`` and ``results.md``.

    python -m kopaths.data.prepare --dataset checkerboard   # once
    python -m experiments.checkerboard_nfe --root /tmp/cb_nfe --out experiments/results/checkerboard_nfe
    python -m experiments.checkerboard_nfe --quick --root /tmp/cbq --out /tmp/cbq_out   # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments._common import publish_markdown, run_record
from kopaths import configs
from kopaths.data import load_array, load_normalized
from kopaths.evaluation.intervals import format_cell, mean_interval, paired_difference
from kopaths.evaluation.runs import load_run
from kopaths.evaluation.scoring import evaluate_run
from kopaths.io import read_json, write_json
from kopaths.ko import KOSolution, solve_ko_from_data, solve_ko_variant
from kopaths.main_job.plotting import plot_point_clouds
from kopaths.ode.sampling import sample_fixed
from kopaths.training.trainer import train

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "configs", "checkerboard_mlp.py")
RUNS = {"cond_ot": ("cond_ot", None, "Cond-OT"), "cosine": ("cosine", None, "SI"),
        "ko_exact": ("ko", "exact", "KO (exact)"), "ko_bounded": ("ko", "bounded", "KO (bounded)")}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/tmp/kopaths_checkerboard_nfe")
    ap.add_argument("--out", default="experiments/results/checkerboard_nfe")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--num_samples", type=int, default=4000)
    ap.add_argument("--num_nll", type=int, default=1000)
    ap.add_argument("--nfe", default="2,6,10,16")
    ap.add_argument("--ko_dir", default=None, help="folder of <variant>_ko_schedule.json (default <out>/ko; "
                    "solved there if missing)")
    ap.add_argument("--data", default="checkerboard", help="dataset name (synthetic:checkerboard for smoke tests)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes on synthetic data (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.batch, args.width, args.depth = "0,1", 4, 64, 16, 1
        args.num_samples, args.num_nll, args.nfe, args.runs = 64, 8, "2,6", "cond_ot,ko_bounded"
        args.data = "synthetic:checkerboard"
    args.ko_dir = args.ko_dir or os.path.join(args.out, "ko")
    args.runs = [r for r in args.runs.split(",") if r]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.nfe = [int(n) for n in args.nfe.split(",")]
    return args


def ko_files(args) -> dict[str, str]:
    """``{variant: schedule file}``, solving missing ones from a lambda-hat of the checkerboard."""
    files = {v: os.path.join(args.ko_dir, f"{v}_ko_schedule.json") for v in ("exact", "bounded")}
    if not all(os.path.exists(f) for f in files.values()):
        n, k, snr = (4096, 64, 32) if args.quick else (1_000_000, 2048, 128)
        data_cfg = configs.load(f"{CONFIG}:cond_ot", [f"data.name={args.data}"]).data
        solution = solve_ko_from_data(load_normalized(data_cfg, n), key=jax.random.key(0), num_noise=k, num_snr=snr,
                                      variant="exact")
        for variant in files:
            schedule = solution.schedule if variant == "exact" else solve_ko_variant(solution.fit, 0.0, variant)
            KOSolution(solution.estimate, solution.fit, schedule).save(args.ko_dir, prefix=f"{variant}_")
    return files


def run_config(args, run: str, seed: int, files: dict[str, str]):
    path, variant, _ = RUNS[run]
    overrides = [f"data.name={args.data}", f"seed={seed}", f"total_steps={args.steps}", f"global_batch_size={args.batch}",
                 f"model.hidden_sizes={(args.width,) * args.depth}", f"optim.warmup_steps={max(1, min(500, args.steps // 10))}",
                 f"checkpoint.every_steps={args.steps}", "checkpoint.max_to_keep=1", "progress_bar=False",
                 f"log_every_steps={max(1, args.steps // 10)}"]
    if variant:
        overrides += [f"path.ko_variant={variant}", f"path.schedule_file={files[variant]}"]
    return configs.load(f"{CONFIG}:{path}", overrides)


def _value(record: dict, block: str, field: str) -> float:
    if block == "nll":
        return record["nll"]["nats_per_dim_data_space"]
    return record[block][field]


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    files = ko_files(args)
    records, clouds = {}, {}
    for seed in args.seeds:
        for run in args.runs:
            file = os.path.join(args.out, "eval", f"{run}_seed{seed}.json")
            workdir = os.path.join(args.root, f"{run}_seed{seed}")
            if not os.path.exists(file):
                result = train(run_config(args, run, seed, files), workdir)
                if result.interrupted:
                    raise KeyboardInterrupt
                record = evaluate_run(load_run(workdir), key=jax.random.key(seed), num_samples=args.num_samples,
                                      euler_nfe=args.nfe, tol=1e-5, num_bpd=args.num_nll, num_importance=1, num_probes=0)
                write_json(file, record)
            records[(run, seed)] = read_json(file, "evaluation")
            if seed == args.seeds[0]:
                loaded = load_run(workdir)
                x0 = jax.random.normal(jax.random.key(seed), (args.num_samples, 2), jnp.float32)
                clouds[RUNS[run][2]] = {n: np.asarray(sample_fixed(loaded.velocity, x0, nfe=n).x) for n in args.nfe}
    held, _ = load_array(configs.load(f"{CONFIG}:cond_ot", [f"data.name={args.data}"]).data, split="test",
                         max_examples=args.num_samples)
    plot_point_clouds(os.path.join(args.out, "samples.png"), clouds, held)
    metrics = [(f"euler_{n}", "sliced_w2") for n in args.nfe] + [(f"euler_{args.nfe[0]}", "mmd_rbf"),
                                                                 ("dopri5", "nfe_mean"), ("nll", "")]
    table = {}
    for run in args.runs:
        table[run] = {}
        for block, field in metrics:
            values = [_value(records[(run, s)], block, field) for s in args.seeds]
            cell = {"per_seed": values, "interval": mean_interval(values).to_dict()}
            if "cond_ot" in args.runs:
                cell["minus_cond_ot"] = paired_difference(values, [_value(records[("cond_ot", s)], block, field)
                                                                   for s in args.seeds]).to_dict()
            table[run][f"{block}|{field}"] = cell
    results = {"table": table, "seeds": args.seeds, "args": vars(args),
               "run": run_record("experiments.checkerboard_nfe", argv, time.perf_counter() - start)}
    write_json(os.path.join(args.out, "results.json"), results)
    names = [f"SW2 @NFE {n}" for n in args.nfe] + [f"MMD² @NFE {args.nfe[0]}", "dopri5 NFE", "NLL (nats/dim)"]
    lines = [f"Reproduce: `{results['run']['command']}`", "",
             f"Mean ± 95% interval over seeds {args.seeds}; **bold**: differs from Cond-OT (paired, interval excludes 0).", "",
             "| path | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for run, cells in table.items():
        row = [RUNS[run][2]]
        for (block, field) in metrics:
            cell = cells[f"{block}|{field}"]
            row.append(format_cell(cell["interval"], cell.get("minus_cond_ot"), 0 if block == "dopri5" else 4))
        lines.append("| " + " | ".join(row) + " |")
    publish_markdown(args.out, lines)
    return results


if __name__ == "__main__":
    main()
