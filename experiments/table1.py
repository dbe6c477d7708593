r"""Paper Table 1 at our scale: DDPM/VP, SI, Cond-OT and KO on Fashion-MNIST, over training seeds.

Every path trains the same U-Net (``experiments/configs/fmnist_unet.py:<path>,<variant>``) with
the same budget, through the library trainer (:func:`kopaths.training.trainer.train`,
resumable). KO is the default KO of the configs (variant and training objective, see the README's
evidence), solved once from all training data (:func:`kopaths.ko.solve_ko_from_data`) and shared by
every seed. Each final checkpoint is scored by :func:`kopaths.evaluation.scoring.evaluate_run`:

* NLL in bits/dim of ``--num_bpd`` test images (``--K`` dequantisation samples, ``--probes``
  Hutchinson probes, dopri5 at ``--tol``);
* KE per dimension along the dopri5 sampling trajectories, and the dopri5 NFE;
* FD in the features of the project's classifier (**not comparable to published FID**) of
  ``--num_samples`` samples against ``--num_reference`` test images, at Euler 20/50/100 and dopri5.

Over seeds: mean ± 95% Student-t interval, and the per-seed difference to Cond-OT (paired).
Writes ``<out>/eval_<path>_seed<s>.json``, ``results.json`` and ``results.md``; re-running resumes.

    python -m experiments.table1 --root /tmp/table1 --out experiments/results/table1
    python -m experiments.table1 --quick --root /tmp/t1q --out /tmp/t1q_out        # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

from experiments._common import publish_markdown, run_record
from kopaths import configs
from kopaths.evaluation.classifier import FD_LABEL, cached_classifier, classifier_features
from kopaths.evaluation.intervals import format_cell, mean_interval, paired_difference
from kopaths.evaluation.runs import load_run
from kopaths.evaluation.scoring import evaluate_run
from kopaths.io import read_json, write_json
from kopaths.ko import DEFAULT_KO_VARIANT, solve_ko_from_data
from kopaths.data import load_normalized
from kopaths.schedules import path_spec
from kopaths.training.trainer import train

HERE = os.path.dirname(os.path.abspath(__file__))
PATHS = ("vp", "cosine", "cond_ot", "ko")
COLUMNS = ("nll", "kinetic_energy", "euler_20", "euler_50", "euler_100", "dopri5", "nfe")


def _metric(record: dict, column: str) -> float:
    if column == "nll":
        return record["nll"]["bits_per_dim"]
    if column == "kinetic_energy":
        return record["kinetic_energy"]
    if column == "nfe":
        return record["dopri5"]["nfe_mean"]
    return record[column][FD_LABEL]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/tmp/table1", help="training workdirs")
    ap.add_argument("--out", default="experiments/results/table1")
    ap.add_argument("--config", default=os.path.join(HERE, "configs", "fmnist_unet.py"))
    ap.add_argument("--variant", default="small14", help="config variant: small14 (CPU scale), cpu, or '' (GPU scale)")
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--num_samples", type=int, default=1000)
    ap.add_argument("--num_reference", type=int, default=10000)
    ap.add_argument("--num_bpd", type=int, default=100)
    ap.add_argument("--K", type=int, default=1)
    ap.add_argument("--probes", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--euler_nfe", default="20,50,100")
    ap.add_argument("--quick", action="store_true", help="runlocal configs and a tiny evaluation (smoke test)")
    ap.add_argument("overrides", nargs="*", help="trainer config overrides key=value (e.g. total_steps=20000)")
    args = ap.parse_args(argv)
    if args.quick:
        args.variant, args.seeds, args.num_samples, args.num_reference, args.num_bpd = "runlocal", "0,1", 16, 32, 2
        args.tol, args.euler_nfe, args.paths = 1e-2, "2,4", "cond_ot,ko"
        args.overrides = ["data.resolution=7", "model.channel_mult=(1,)", "model.attention_resolutions=()", *args.overrides]
    args.paths = [p for p in args.paths.split(",") if p]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.euler_nfe = [int(n) for n in args.euler_nfe.split(",")]
    return args


def _config(args, path: str, seed: int, ko_file: str):
    arg = ",".join(p for p in (path, args.variant) if p)
    extra = [f"path.schedule_file={ko_file}"] if path == "ko" else []
    return configs.load(f"{args.config}:{arg}", [f"seed={seed}", *extra, *args.overrides])


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    start = time.perf_counter()
    probe = _config(args, "cond_ot", args.seeds[0], "")
    data_cfg = probe.data
    ko_file = os.path.join(args.out, "ko", "ko_schedule.json")
    if "ko" in args.paths and not os.path.exists(ko_file):
        ko_cfg = _config(args, "ko", args.seeds[0], "").path
        solution = solve_ko_from_data(load_normalized(data_cfg, ko_cfg.ko_num_data), key=jax.random.key(0),
                                      num_noise=ko_cfg.ko_num_noise, num_snr=ko_cfg.ko_num_snr, variant=ko_cfg.ko_variant)
        solution.save(os.path.dirname(ko_file))
    clf = cached_classifier(data_cfg, os.path.join(args.root, "classifier.npz"), epochs=1 if args.quick else 2)
    features = {FD_LABEL: lambda imgs: classifier_features(clf, imgs)}
    records: dict[tuple[str, int], dict] = {}
    for seed in args.seeds:
        for path in args.paths:
            file = os.path.join(args.out, f"eval_{path}_seed{seed}.json")
            if os.path.exists(file):
                records[(path, seed)] = read_json(file, "evaluation")
                continue
            workdir = os.path.join(args.root, f"{path}_seed{seed}")
            result = train(_config(args, path, seed, ko_file), workdir)
            if result.interrupted:
                raise KeyboardInterrupt
            record = evaluate_run(load_run(workdir), key=jax.random.key(seed), num_samples=args.num_samples,
                                  num_reference=args.num_reference, euler_nfe=args.euler_nfe, tol=args.tol,
                                  num_bpd=args.num_bpd, num_importance=args.K, num_probes=args.probes,
                                  feature_fns=features)
            write_json(file, record)
            records[(path, seed)] = record
    columns = [c for c in COLUMNS if not c.startswith("euler_") or int(c[6:]) in args.euler_nfe] + \
              [f"euler_{n}" for n in args.euler_nfe if f"euler_{n}" not in COLUMNS]
    table = {}
    for path in args.paths:
        cells = {}
        for column in columns:
            values = [_metric(records[(path, s)], column) for s in args.seeds]
            cells[column] = {"per_seed": values, "interval": mean_interval(values).to_dict()}
            if "cond_ot" in args.paths:
                base = [_metric(records[("cond_ot", s)], column) for s in args.seeds]
                cells[column]["minus_cond_ot"] = paired_difference(values, base).to_dict()
        table[path] = cells
    results = {"table": table, "columns": columns, "seeds": args.seeds, "ko_variant": DEFAULT_KO_VARIANT,
               "args": vars(args), "run": run_record("experiments.table1", argv, time.perf_counter() - start)}
    write_json(os.path.join(args.out, "results.json"), results)
    lines = [f"Reproduce: `{results['run']['command']}`", "",
             f"Mean ± 95% interval over seeds {args.seeds} (final checkpoints). NLL: bits/dim of {args.num_bpd} test "
             f"images, K = {args.K}, {args.probes} Hutchinson probe(s), dopri5 at {args.tol}. FD: {FD_LABEL}, "
             f"{args.num_samples} samples against {args.num_reference} test images. **Bold**: differs from Cond-OT "
             "(paired over seeds, interval excludes 0).", "",
             "| path | " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for path, cells in table.items():
        row = [path_spec(path).label]
        for column in columns:
            digits = 3 if column in ("nll", "kinetic_energy") else (0 if column == "nfe" else 1)
            row.append(format_cell(cells[column]["interval"], cells[column].get("minus_cond_ot"), digits))
        lines.append("| " + " | ".join(row) + " |")
    publish_markdown(args.out, lines)
    return results


if __name__ == "__main__":
    main()
