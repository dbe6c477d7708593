"""The ``kopaths`` command line: ``kopaths <subcommand> [--config FILE] [--set key=value ...]``.

Subcommands mirror the pipeline. Each runs on the built-in defaults when given no config;
``--config`` takes a Python file with ``get_config()`` returning an ``ml_collections.ConfigDict``
and ``--set`` overrides single fields (``--set separation.num_noise=512``).
Errors that the user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
from typing import Callable

import ml_collections

__all__ = ["main", "load_config"]


def load_config(path: str | None, overrides: list[str] | None = None, *, default: Callable[[], ml_collections.ConfigDict]):
    """Loads ``path`` (or ``default()``) and applies ``key=value`` overrides."""
    if path is None:
        cfg = default()
    else:
        file, _, arg = path.partition(":")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"config file {file} does not exist.")
        spec = importlib.util.spec_from_file_location("_kopaths_config", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cfg = module.get_config(arg) if arg else module.get_config()
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}.")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def _cmd_run(args) -> int:
    from kopaths import pipeline

    cfg = load_config(args.config, args.set, default=pipeline.default_config)
    pipeline.run_pipeline(cfg, args.outdir)
    return 0


def load_user_array(path: str):
    """Loads a user dataset (``.npy``, or ``.npz`` with one array) of shape ``(n, ...)`` and normalises it."""
    import numpy as np

    from kopaths.normalization import normalize

    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path} is not a numeric .npy/.npz array ({e}).") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if len(loaded.files) != 1:
            raise ValueError(f"{path} must hold exactly one array, found {loaded.files}.")
        loaded = loaded[loaded.files[0]]
    return normalize(loaded, name=path)[0]


def _cmd_separation(args) -> int:
    from kopaths import pipeline

    cfg = load_config(args.config, args.set, default=pipeline.default_config)
    pipeline.validate_config(cfg)
    x = load_user_array(args.array) if args.array else None
    est = pipeline.run_separation(cfg, args.outdir, data=x)
    print(f"lambda-hat on {est.snr.size} snr points: {os.path.join(args.outdir, 'lambda.json')}")
    return 0


def _train_config(args):
    from kopaths import pipeline, pipeline_models

    if args.config is not None:
        return load_config(args.config, args.set, default=pipeline.default_config)
    cfg = load_config(None, args.set, default=pipeline.default_config)
    return pipeline_models.train_config(cfg, args.path)


def _prepare_local(data_cfg) -> None:
    """Prepares kopaths' own datasets on first use (a no-op once prepared)."""
    from kopaths.data import prepare_dataset
    from kopaths.data.config import LOCAL_DATASETS

    if data_cfg.name in LOCAL_DATASETS:
        prepare_dataset(data_cfg)


def _cmd_train(args) -> int:
    from kopaths.train import train_and_evaluate
    from kopaths.training import sharding

    cfg = _train_config(args)
    sharding.maybe_initialize_distributed(None, None, None, False)
    _prepare_local(cfg.data)
    result = train_and_evaluate(cfg, args.workdir)
    if result.interrupted:
        print(f"kopaths train: interrupted at step {result.step}; checkpoint saved, rerun to resume.", file=sys.stderr)
        return 130
    print(f"trained to step {result.step} in {args.workdir}")
    return 0


def _cmd_sample(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from kopaths import evaluate, plotting, sampling
    from kopaths.data import data_spec, to_uint8

    run = evaluate.load_run(args.workdir, args.step)
    spec = data_spec(run.config.data)
    x0 = jax.random.normal(jax.random.key(args.seed), (args.num, *spec.element_shape), jnp.float32)
    if args.method in ("dopri5", "tsit5"):
        res = sampling.sample_adaptive(run.velocity, x0, method=args.method, rtol=args.tol, atol=args.tol)
    else:
        res = sampling.sample_fixed(run.velocity, x0, method=args.method, nfe=args.nfe)
    os.makedirs(args.outdir, exist_ok=True)
    x = np.asarray(res.x)
    np.save(os.path.join(args.outdir, "samples.npy"), x)
    if len(spec.element_shape) == 3:
        plotting.plot_sample_grids(os.path.join(args.outdir, "samples.png"), {f"{run.config.path.name}, {args.method}": to_uint8(x, spec.stats)})
    print(f"{args.num} samples (mean NFE {float(np.mean(res.nfe)):.1f}) -> {args.outdir}")
    return 0


def _cmd_evaluate(args) -> int:
    from kopaths import evaluate

    forwarded = list(args.evaluate_args)
    if forwarded[:1] == ["--"]:
        forwarded = forwarded[1:]
    evaluate.main(forwarded)
    return 0


def _cmd_report(args) -> int:
    from kopaths import pipeline

    cfg = load_config(args.config, args.set, default=pipeline.default_config)
    if not os.path.exists(os.path.join(args.outdir, "lambda.json")):
        raise FileNotFoundError(f"{args.outdir} holds no results; run `kopaths run --outdir {args.outdir}` first.")
    print(pipeline.run_pipeline(cfg, args.outdir))
    return 0


def _cmd_solve(args) -> int:
    from kopaths import pipeline
    from kopaths.separation import LambdaEstimate

    cfg = load_config(args.config, args.set, default=pipeline.default_config)
    pipeline.validate_config(cfg)
    table = args.lambda_table or os.path.join(args.outdir, "lambda.json")
    est = LambdaEstimate.load(table)
    lam, variants = pipeline.run_solve(cfg, args.outdir, est)
    energies = pipeline.run_energies(args.outdir, lam, variants)
    print("\n".join(pipeline.diagnostics_rows(energies)))
    print(f"KO schedule ({cfg.ko.variant}): b = {variants['exact'].b:.5f} -> {os.path.join(args.outdir, 'ko_schedule.json')}; "
          f"diagnostics in {os.path.join(args.outdir, 'energies.json')}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kopaths", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_text: str, outdir: str = "outputs/main"):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, help="Python config file with get_config() (default: built-in)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field")
        p.add_argument("--outdir", default=outdir, help=f"output folder (default {outdir}); reruns resume")
        p.set_defaults(fn=fn)
        return p

    add("run", _cmd_run, "main job: lambda-hat, KO path, energies, short training runs, samples, evaluation, report")
    sep = add("separation", _cmd_separation, "estimate lambda-hat of the configured dataset (or of --array)")
    sep.add_argument("--array", default=None, help="your own data: .npy/.npz of shape (n, ...); normalised here")
    solve = add("solve", _cmd_solve, "fit lambda-hat and solve the KO path")
    solve.add_argument("--lambda_table", default=None, help="lambda.json to use (default: OUTDIR/lambda.json)")
    add("report", _cmd_report, "re-render the report of a finished or interrupted `run` (resumes missing steps)")

    train = sub.add_parser("train", help="train a flow-matching model (resumes from WORKDIR)",
                           description="Train on the main job's data and model (or --config FILE[:arg]); Ctrl-C saves.")
    train.add_argument("--config", default=None, help="training config, e.g. experiments/configs/fmnist_unet.py:ko")
    train.add_argument("--path", default="cond_ot", choices=("cond_ot", "ko", "cosine", "vp"),
                       help="path when no --config is given (ko solves lambda-hat first)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config field")
    train.add_argument("--workdir", required=True, help="checkpoints, metrics and schedule; reruns resume")
    train.set_defaults(fn=_cmd_train)

    sample = sub.add_parser("sample", help="draw samples from a trained checkpoint",
                            description="Sample a kopaths.train checkpoint with an ODE solver (EMA weights).")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    sample.add_argument("--method", default="dopri5", choices=("euler", "midpoint", "heun", "dopri5", "tsit5"))
    sample.add_argument("--nfe", type=int, default=20, help="function evaluations for fixed-step methods")
    sample.add_argument("--tol", type=float, default=1e-5, help="rtol = atol for adaptive methods")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--outdir", default="outputs/samples")
    sample.set_defaults(fn=_cmd_sample)

    evaluate = sub.add_parser("evaluate", help="score checkpoints (all options: kopaths evaluate -- --help)",
                              description="Forwards its arguments to python -m kopaths.evaluate.")
    evaluate.add_argument("evaluate_args", nargs=argparse.REMAINDER)
    evaluate.set_defaults(fn=_cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kopaths`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"] and argv[1:2] not in (["-h"], ["--help"]):
        argv = ["evaluate", "--", *[a for a in argv[1:2] if a != "--"], *argv[2:]]  # everything else is forwarded
    args = _parser().parse_args(argv)
    from kopaths.data.errors import DataNotFoundError

    try:
        return args.fn(args)
    except (FileNotFoundError, DataNotFoundError, ValueError, TypeError, KeyError, OSError, FloatingPointError) as e:
        print(f"kopaths {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kopaths {args.command}: interrupted; finished steps are kept, rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
