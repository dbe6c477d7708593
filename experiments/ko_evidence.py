r"""Does KO deliver? Training paths against sampling paths, over seeds, with intervals.

For each dataset and resolution this driver

1. solves one KO path of each variant (exact, bounded, parametric) from one lambda-hat of *all*
   training examples (:func:`kopaths.ko.solve_ko_from_data`, saved under ``<root>/<setting>/ko``);
2. trains the same U-Net on each *training variant* and seed with the library trainer
   (:func:`kopaths.training.trainer.train`, resumable):

   * ``cond_ot``: Cond-OT, uniform t;
   * ``ko_exact`` / ``ko_bounded`` / ``ko_parametric``: the KO variant, uniform t;
   * ``ko_exact_matched`` / ``ko_bounded_matched`` / ``ko_parametric_matched``: the KO variant with
     Cond-OT's snr density and loss weighting (:class:`kopaths.objective.SnrMatchedSampler`);

3. samples every trained model along every *sampling path* (Cond-OT and each KO variant, by the
   scale-time transform from ``t = 0``, :mod:`kopaths.evaluation.along_paths`) from the same noise:
   classifier-feature FD (with its bootstrap error) of ``--num_samples`` images against the whole
   test split at Euler NFE 2/4/8/16/50 and dopri5, the dopri5 NFE and the KE along its trajectories,
   and each Euler sampler's solver error (RMS distance to the same path's dopri5 samples);
4. aggregates over seeds: mean ± 95% Student-t interval, and paired per-seed differences against
   Cond-OT trained and sampled on Cond-OT (significant when the interval excludes 0).

Writes ``<out>/<setting>/eval/*.json`` (one per model), ``<out>/results.json`` and ``<out>/results.md``.
Re-running resumes: finished trainings and evaluations are reused.

    python -m experiments.ko_evidence --root /tmp/ko_evidence --out experiments/results/ko_evidence
    python -m experiments.ko_evidence --quick --root /tmp/ke_quick --out /tmp/ke_quick_out   # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments._common import publish_markdown, run_record
from kopaths.data import data_spec, default_data_config, load_normalized, open_split, to_uint8
from kopaths.evaluation.runs import load_run
from kopaths.evaluation import classifier as clf
from kopaths.evaluation.along_paths import evaluate_along_paths, frechet_with_bootstrap
from kopaths.evaluation.intervals import format_cell, mean_interval, paired_difference
from kopaths.io import read_json, write_json
from kopaths.ko import KO_VARIANTS, KOSolution, load_ko_schedule, solve_ko_from_data, solve_ko_variant
from kopaths.evaluation.distances import feature_statistics
from kopaths.schedules import CondOTSchedule
from kopaths.training.trainer import train
from kopaths.training.defaults import base_config

#: training variant -> (path, KO variant or None, snr reference)
TRAIN_VARIANTS = {
    "cond_ot": ("cond_ot", None, ""),
    "ko_exact": ("ko", "exact", ""),
    "ko_bounded": ("ko", "bounded", ""),
    "ko_parametric": ("ko", "parametric", ""),
    "ko_exact_matched": ("ko", "exact", "cond_ot"),
    "ko_bounded_matched": ("ko", "bounded", "cond_ot"),
    "ko_parametric_matched": ("ko", "parametric", "cond_ot"),
}
SAMPLING_PATHS = ("cond_ot", "ko_exact", "ko_bounded", "ko_parametric")
BASELINE = ("cond_ot", "cond_ot")


def metric_names(args) -> list[str]:
    return [f"euler_{n}" for n in args.euler_nfe] + ["dopri5"]


def model_config(resolution: int, width: int) -> dict[str, Any]:
    """The U-Net of a resolution: 28 px three levels, 14 px two, 7 px one (attention at the lowest)."""
    mult, attn = {28: ((1, 2, 2), (4,)), 14: ((1, 2), (2,)), 7: ((1,), (1,))}[resolution]
    return dict(name="unet", model_channels=width, channel_mult=mult, num_res_blocks=1, attention_resolutions=attn,
                dropout=0.0, num_heads=4, num_head_channels=-1, use_scale_shift_norm=True, resblock_updown=False,
                time_scale=1000.0, dtype="float32")


def train_config(args, data_cfg, variant: str, seed: int, ko_dir: str) -> ml_collections.ConfigDict:
    path, ko_variant, reference = TRAIN_VARIANTS[variant]
    c = base_config(path)
    c.seed = seed
    c.data = data_cfg
    c.model = model_config(int(data_cfg.resolution or 28), args.width)
    if ko_variant is not None:
        c.path.ko_variant = ko_variant
        c.path.schedule_file = os.path.join(ko_dir, f"{ko_variant}_ko_schedule.json")
    c.time_sampling.reference = reference
    c.total_steps = args.steps
    c.global_batch_size = args.batch
    c.optim.update(lr=args.lr, warmup_steps=min(100, args.steps // 10), ema_decay=args.ema)
    c.checkpoint.update(every_steps=args.steps, max_to_keep=1)
    c.log_every_steps = max(1, min(100, args.steps))
    c.progress_bar = False
    return c


def solve_paths(data_cfg, ko_dir: str, args) -> dict[str, Any]:
    """One lambda-hat of all training data, and the KO variants solved from its fit (cached)."""
    files = {v: os.path.join(ko_dir, f"{v}_ko_schedule.json") for v in KO_VARIANTS}
    if not all(os.path.exists(f) for f in files.values()):
        x = load_normalized(data_cfg, args.ko_num_data)
        solution = solve_ko_from_data(x, key=jax.random.key(0), num_noise=args.ko_num_noise, num_snr=args.ko_num_snr,
                                      variant="exact")
        for variant in KO_VARIANTS:
            extra = {"steps": args.parametric_steps} if variant == "parametric" else {}
            schedule = solution.schedule if variant == "exact" else solve_ko_variant(solution.fit, 0.0, variant, **extra)
            KOSolution(solution.estimate, solution.fit, schedule).save(ko_dir, prefix=f"{variant}_")
    paths: dict[str, Any] = {"cond_ot": CondOTSchedule()}
    paths.update({f"ko_{v}": load_ko_schedule(f) for v, f in files.items()})
    return paths


def feature_scorer(data_cfg, folder: str, args):
    """Classifier-feature FD of model-space samples against the whole test split (classifier cached)."""
    params = clf.cached_classifier(data_cfg, os.path.join(folder, "classifier.npz"), epochs=args.classifier_epochs)
    test = open_split(data_cfg, "test")
    reference = feature_statistics(clf.classifier_features(params, test.read(0, min(len(test), args.num_reference))))
    stats = data_spec(data_cfg).stats

    def score(x):
        features = clf.classifier_features(params, to_uint8(np.asarray(x), stats))
        return frechet_with_bootstrap(features, reference, num_bootstrap=args.num_bootstrap)

    return score


def run_setting(args, dataset: str, resolution: int) -> dict[str, Any]:
    """Trains and evaluates every (training variant, seed) of one dataset and resolution."""
    name = f"{dataset}_{resolution}px"
    root, out = os.path.join(args.root, name), os.path.join(args.out, name)
    data_cfg = default_data_config(dataset)
    data_cfg.resolution = None if resolution == 28 else resolution
    paths = solve_paths(data_cfg, os.path.join(out, "ko"), args)
    sampling = {p: paths[p] for p in args.sample}
    score = None  # built on first use: an aggregate of finished evaluations needs no classifier
    shape = tuple(data_spec(data_cfg).element_shape)
    records = {}
    for seed in args.seeds:
        x0 = jax.random.normal(jax.random.key(1000 + seed), (args.num_samples, *shape), jnp.float32)
        for variant in args.train:
            file = os.path.join(out, "eval", f"{variant}_seed{seed}.json")
            if os.path.exists(file):
                records[(variant, seed)] = read_json(file, "evaluation")
                continue
            if args.aggregate_only:
                continue
            score = score or feature_scorer(data_cfg, root, args)
            workdir = os.path.join(root, f"{variant}_seed{seed}")
            start = time.perf_counter()
            result = train(train_config(args, data_cfg, variant, seed, os.path.join(out, "ko")), workdir)
            if result.interrupted:
                raise KeyboardInterrupt
            train_seconds = time.perf_counter() - start
            run = load_run(workdir)
            start = time.perf_counter()
            scores = evaluate_along_paths(run.velocity, run.schedule, sampling, x0, euler_nfe=args.euler_nfe,
                                          tol=args.tol, score=score)
            record = {"variant": variant, "seed": seed, "step": run.step, "train_seconds": train_seconds,
                      "eval_seconds": time.perf_counter() - start, "sampled_along": scores}
            write_json(file, record)
            records[(variant, seed)] = record
            print(f"[{name}] {variant} seed {seed}: " + "; ".join(
                f"{p} " + " ".join(f"{m} {s[m]['fd']:.1f}" for m in metric_names(args)) for p, s in scores.items()),
                flush=True)
    return {"setting": name, "dim": int(np.prod(shape)), "ko": {p: {k: getattr(s, k) for k in ("b", "energy", "max_speed")}
            for p, s in paths.items() if p != "cond_ot"}, "cells": aggregate(records, args)}


def _value(record, path: str, metric: str, field: str) -> float:
    return float(record["sampled_along"][path][metric][field])


def _has(record, path: str, metric: str, field: str) -> bool:
    """Whether an evaluation recorded ``field`` (records written before a metric existed lack it)."""
    return field in record["sampled_along"][path][metric]


def aggregate(records: dict, args) -> dict[str, Any]:
    """Per (training variant, sampling path, metric): the interval over the variant's finished seeds,
    and the paired difference to the baseline over the seeds both have."""
    cells: dict[str, Any] = {}
    seeds_of = {v: [s for s in args.seeds if (v, s) in records] for v in args.train}
    for variant in args.train:
        seeds = seeds_of[variant]
        if not seeds:
            continue
        paired = [s for s in seeds if (BASELINE[0], s) in records]
        for path in args.sample:
            if not all(path in records[(variant, s)]["sampled_along"] for s in seeds):
                continue  # a setting run with fewer sampling paths
            for metric in metric_names(args):
                fd = [_value(records[(variant, s)], path, metric, "fd") for s in seeds]
                cell = {"fd": mean_interval(fd).to_dict(), "per_seed": dict(zip(map(str, seeds), fd)),
                        "bootstrap_se": float(np.mean([_value(records[(variant, s)], path, metric, "fd_bootstrap_se")
                                                       for s in seeds]))}
                def minus_baseline(field: str, over: list[int]) -> dict | None:
                    if BASELINE[1] not in args.sample or len(over) < 2:
                        return None
                    return paired_difference(
                        [_value(records[(variant, s)], path, metric, field) for s in over],
                        [_value(records[(BASELINE[0], s)], BASELINE[1], metric, field) for s in over]).to_dict()

                if (diff := minus_baseline("fd", paired)) is not None:
                    cell["minus_baseline"] = diff
                if metric != "dopri5" and all(_has(records[(variant, s)], path, metric, "solver_rmse") for s in seeds):
                    rmse = [_value(records[(variant, s)], path, metric, "solver_rmse") for s in seeds]
                    cell["solver_rmse"] = mean_interval(rmse).to_dict()
                    base = [s for s in paired if _has(records[(BASELINE[0], s)], BASELINE[1], metric, "solver_rmse")]
                    if (diff := minus_baseline("solver_rmse", base)) is not None:
                        cell["solver_rmse_minus_baseline"] = diff
                if metric == "dopri5":
                    for field in ("nfe_mean", "kinetic_energy"):
                        cell[field] = mean_interval([_value(records[(variant, s)], path, metric, field) for s in seeds]).to_dict()
                cells[f"{variant}|{path}|{metric}"] = cell
    return {"seeds": {v: s for v, s in seeds_of.items() if s}, "metrics": metric_names(args), "cells": cells}


def markdown(results: dict) -> list[str]:
    lines = []
    for setting in results["settings"]:
        cells, seeds, metrics = (setting["cells"][k] for k in ("cells", "seeds", "metrics"))
        seed_text = ", ".join(f"{v} {len(s)}" for v, s in seeds.items())
        lines += [f"## {setting['setting']} (d = {setting['dim']}; seeds per training variant: {seed_text})", "",
                  "KO paths: " + ", ".join(f"{p}: energy {v['energy']:.4f} (b {v['b']:.4f}), max speed {v['max_speed']:.3g}"
                                           for p, v in setting["ko"].items()), "",
                  "FD (classifier features) mean ± 95% seed interval; **bold**: differs from Cond-OT trained and "
                  "sampled on Cond-OT (paired over seeds, interval excludes 0); ↓ better, ↑ worse.", "",
                  "| trained on | sampled along | " + " | ".join(m.replace("_", " ") for m in metrics)
                  + " | NFE dopri5 | KE |", "|---" * (len(metrics) + 4) + "|"]
        keys = sorted({tuple(k.split("|")[:2]) for k in cells}, key=lambda k: (list(TRAIN_VARIANTS).index(k[0]),
                                                                               list(SAMPLING_PATHS).index(k[1])))
        for variant, path in keys:
            row = [variant, path]
            for metric in metrics:
                cell = cells[f"{variant}|{path}|{metric}"]
                row.append(format_cell(cell["fd"], cell.get("minus_baseline"), 1, arrows=True))
            dop = cells[f"{variant}|{path}|dopri5"]
            row += [format_cell(dop["nfe_mean"], digits=0), format_cell(dop["kinetic_energy"], digits=3)]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        euler = [m for m in metrics if m != "dopri5"]
        solver = [k for k in keys if all("solver_rmse" in cells[f"{k[0]}|{k[1]}|{m}"] for m in euler)]
        if solver:
            lines += ["Solver error: RMS per-coordinate distance (model space) of the Euler samples to the dopri5 "
                      "samples along the same path from the same noise; mean ± 95% seed interval, **bold** as above "
                      "(against Cond-OT's Euler on Cond-OT).", "",
                      "| trained on | sampled along | " + " | ".join(m.replace("_", " ") for m in euler) + " |",
                      "|---" * (len(euler) + 2) + "|"]
            for variant, path in solver:
                lines.append("| " + " | ".join([variant, path] + [
                    format_cell(cells[f"{variant}|{path}|{m}"]["solver_rmse"],
                                cells[f"{variant}|{path}|{m}"].get("solver_rmse_minus_baseline"), 3, arrows=True)
                    for m in euler]) + " |")
            lines.append("")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/tmp/ko_evidence", help="training workdirs")
    ap.add_argument("--out", default="experiments/results/ko_evidence")
    ap.add_argument("--settings", default="fashion_mnist:7,mnist:7", help="dataset:resolution,...")
    ap.add_argument("--train", default=",".join(TRAIN_VARIANTS))
    ap.add_argument("--sample", default=",".join(SAMPLING_PATHS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--width", type=int, default=32, help="U-Net base channels")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--num_samples", type=int, default=1000)
    ap.add_argument("--num_reference", type=int, default=10000)
    ap.add_argument("--num_bootstrap", type=int, default=50)
    ap.add_argument("--euler_nfe", default="2,4,8,16,50")
    ap.add_argument("--tol", type=float, default=1e-3, help="dopri5 rtol = atol")
    ap.add_argument("--classifier_epochs", type=int, default=2)
    ap.add_argument("--ko_num_data", type=int, default=None, help="lambda-hat examples (default: all)")
    ap.add_argument("--ko_num_noise", type=int, default=2048)
    ap.add_argument("--ko_num_snr", type=int, default=256)
    ap.add_argument("--parametric_steps", type=int, default=3000, help="Adam steps of the parametric KO fit")
    ap.add_argument("--aggregate_only", action="store_true", help="tables from the finished evaluations; train nothing")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.settings, args.seeds, args.steps, args.width = "fashion_mnist:7", "0,1", 4, 8
        args.num_samples, args.num_reference, args.num_bootstrap, args.euler_nfe = 16, 64, 5, "2,4"
        args.classifier_epochs, args.ko_num_data, args.ko_num_noise, args.ko_num_snr = 1, 512, 64, 32
        args.parametric_steps = 200
        args.train, args.sample = "cond_ot,ko_bounded_matched", "cond_ot,ko_bounded"
    args.settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings.split(",")]
    args.train = [v for v in args.train.split(",") if v]
    args.sample = [p for p in args.sample.split(",") if p]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.euler_nfe = tuple(int(n) for n in args.euler_nfe.split(","))
    unknown = [v for v in args.train if v not in TRAIN_VARIANTS] + [p for p in args.sample if p not in SAMPLING_PATHS]
    if unknown:
        ap.error(f"unknown variants or paths {unknown}")
    return args


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    start = time.perf_counter()
    settings = [run_setting(args, dataset, res) for dataset, res in args.settings]
    results = {"settings": settings, "args": {k: v for k, v in vars(args).items()},
               "run": run_record("experiments.ko_evidence", list(argv), time.perf_counter() - start)}
    write_json(os.path.join(args.out, "results.json"), results)
    publish_markdown(args.out, [f"Reproduce: `{results['run']['command']}`", "", *markdown(results)])
    return results


if __name__ == "__main__":
    main()
