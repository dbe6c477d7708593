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


def _cmd_separation(args) -> int:
    from kopaths import pipeline

    cfg = load_config(args.config, args.set, default=pipeline.default_config)
    est = pipeline.run_separation(cfg, args.outdir)
    print(f"lambda-hat on {est.snr.size} snr points: {os.path.join(args.outdir, 'lambda.json')}")
    return 0


def _cmd_solve(args) -> int:
    from kopaths import pipeline
    from kopaths.separation import LambdaEstimate

    cfg = load_config(args.config, args.set, default=pipeline.default_config)
    table = args.lambda_table or os.path.join(args.outdir, "lambda.json")
    est = LambdaEstimate.load(table)
    lam, ko = pipeline.run_solve(cfg, args.outdir, est)
    pipeline.run_energies(args.outdir, lam, ko)
    print(f"KO schedule: b = {ko.b:.5f} -> {os.path.join(args.outdir, 'ko_schedule.json')}")
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

    add("run", _cmd_run, "main job: lambda-hat, KO path, energies, figures and report")
    add("separation", _cmd_separation, "estimate lambda-hat of the configured dataset")
    solve = add("solve", _cmd_solve, "fit lambda-hat and solve the KO path")
    solve.add_argument("--lambda_table", default=None, help="lambda.json to use (default: OUTDIR/lambda.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kopaths`` console script."""
    args = _parser().parse_args(argv)
    from kopaths.data.errors import DataNotFoundError

    try:
        return args.fn(args)
    except (FileNotFoundError, DataNotFoundError, ValueError, TypeError, KeyError, OSError) as e:
        print(f"kopaths {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kopaths {args.command}: interrupted; finished steps are kept, rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
