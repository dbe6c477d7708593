"""The ``kopaths`` command line (also ``python -m kopaths``)::

    kopaths <command> [--config FILE.py[:arg]] [--config.key=value ...] [command options]

Commands: ``run`` (the main job), ``separation``, ``solve``, ``report``, ``train``, ``sample`` and
``evaluate``. Configs are ml_collections files loaded by :func:`kopaths.configs.load` and locked;
``--config.key=value`` overrides one field (an unknown field is an error naming the closest one).
Without ``--config``, the main-job commands use ``experiments/configs/main_job.py``, and ``train``
uses that file's trainer config with ``--path``. Errors that the user can fix print one line and
exit with status 2; an interrupted command exits with 130 and keeps what it finished.

Compiled XLA programs are kept in JAX's persistent compilation cache, so that a rerun or a resume
skips most compilation: in ``$JAX_COMPILATION_CACHE_DIR`` when that is set (empty: no cache), else
in ``$XDG_CACHE_HOME/kopaths/xla`` (``~/.cache/kopaths/xla``; the main job adds about 4 MB). Only
the command line does this; importing the library leaves JAX's cache settings alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

__all__ = ["main"]

MAIN_JOB = "main_job.py"


def _compilation_cache_dir(environ=os.environ) -> str | None:
    """Where the command line keeps compiled programs: ``JAX_COMPILATION_CACHE_DIR`` if set (empty
    for none), else ``kopaths/xla`` under ``XDG_CACHE_HOME`` (default ``~/.cache``)."""
    if "JAX_COMPILATION_CACHE_DIR" in environ:
        return environ["JAX_COMPILATION_CACHE_DIR"] or None
    root = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kopaths", "xla")


def _use_compilation_cache() -> None:
    import jax

    folder = _compilation_cache_dir()
    if folder and jax.config.jax_compilation_cache_dir is None:  # else the caller's own setting stands
        jax.config.update("jax_compilation_cache_dir", folder)


def _main_job_config(spec, overrides):
    from kopaths import configs

    return configs.load(spec or configs.repository_config(MAIN_JOB), overrides)


@contextlib.contextmanager
def _locked(folder: str, command: str):
    from kopaths.io import FolderLock

    with FolderLock(folder, f"kopaths {command}") as lock:
        if lock.stale_holder:
            print(f"kopaths {command}: taking over {folder} from {lock.stale_holder}, which is no longer running.",
                  file=sys.stderr)
        yield lock


def _cmd_run(args) -> int:
    from kopaths.main_job import stages

    cfg = _main_job_config(args.config, args.overrides)
    with _locked(args.outdir, "run"):
        stages.run_pipeline(cfg, args.outdir)
    return 0


def load_user_array(path: str, value_range: str | None = None):
    """Loads a user dataset (``.npy``, memory-mapped, or ``.npz`` with one array) of shape ``(n, ...)``
    and normalises it lazily (:class:`kopaths.normalization.NormalizedArray`), so an array larger
    than memory works. ``value_range`` ``"lo,hi"`` declares the range every value must lie in."""
    import numpy as np

    from kopaths.normalization import NormalizedArray

    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r" if path.endswith(".npy") else None)
    except ValueError as e:
        raise ValueError(f"{path} is not a .npy/.npz array of a numeric dtype ({e}).") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if len(loaded.files) != 1:
            raise ValueError(f"{path} must hold exactly one array, found {loaded.files}.")
        loaded = loaded[loaded.files[0]]
    bounds = None
    if value_range:
        try:
            bounds = tuple(float(v) for v in value_range.split(","))
            assert len(bounds) == 2 and bounds[0] < bounds[1]
        except (ValueError, AssertionError):
            raise ValueError(f"--range must be 'lo,hi' with lo < hi, got {value_range!r}.") from None
    return NormalizedArray.fit(loaded, name=path, value_range=bounds)


def _cmd_separation(args) -> int:
    from kopaths.main_job import stages

    cfg = _main_job_config(args.config, args.overrides)
    stages.validate_config(cfg)
    x = load_user_array(args.array, value_range=args.range) if args.array else None
    with _locked(args.outdir, "separation"):
        est = stages.run_separation(cfg, args.outdir, data=x)
    print(f"lambda-hat on {est.snr.size} snr points: {os.path.join(args.outdir, 'lambda.json')}")
    return 0


def _cmd_solve(args) -> int:
    from kopaths.main_job import report, stages
    from kopaths.separation import LambdaEstimate

    cfg = _main_job_config(args.config, args.overrides)
    stages.validate_config(cfg)
    table = args.lambda_table or os.path.join(args.outdir, "lambda.json")
    est = LambdaEstimate.load(table)
    with _locked(args.outdir, "solve"):
        lam, variants = stages.run_solve(cfg, args.outdir, est)
        energies = stages.run_energies(args.outdir, lam, variants)
    print("\n".join(report.diagnostics_rows(energies)))
    print(f"KO schedule ({cfg.ko.variant}): b = {variants['exact'].b:.5f} -> {os.path.join(args.outdir, 'ko_schedule.json')}; "
          f"diagnostics in {os.path.join(args.outdir, 'energies.json')}")
    return 0


def _cmd_report(args) -> int:
    from kopaths.main_job import stages

    cfg = _main_job_config(args.config, args.overrides)
    if not os.path.exists(os.path.join(args.outdir, "lambda.json")):
        raise FileNotFoundError(f"{args.outdir} holds no results; run `kopaths run --outdir {args.outdir}` first.")
    with _locked(args.outdir, "report"):
        print(stages.run_pipeline(cfg, args.outdir))
    return 0


def _trainer_config(args):
    from kopaths import configs
    from kopaths.main_job import trained_models

    if args.config is not None:
        cfg = configs.load(args.config, args.overrides)
        if "train" in cfg and "model" not in cfg:  # a main-job config: its trainer config on --path
            return trained_models.trainer_config(cfg, args.path)
        return cfg
    return trained_models.trainer_config(_main_job_config(None, args.overrides), args.path)


def _cmd_train(args) -> int:
    import logging

    from kopaths.data import is_synthetic, prepare_dataset
    from kopaths.data.config import LOCAL_DATASETS
    from kopaths.training import sharding
    from kopaths.training.trainer import train

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO through absl

    sharding.maybe_initialize_distributed(args.coordinator_address, args.num_processes, args.process_id, args.distributed)
    config = _trainer_config(args)
    if not is_synthetic(config.data) and config.data.name in LOCAL_DATASETS:
        prepare_dataset(config.data)  # kopaths' own datasets are prepared on first use (a no-op later)
    with _locked(args.workdir, "train"):
        result = train(config, args.workdir)
    if result.interrupted:
        print(f"kopaths train: interrupted at step {result.step}; checkpoint saved, rerun to resume.", file=sys.stderr)
        return 130
    print(f"trained to step {result.step} in {args.workdir}")
    return 0


def _cmd_sample(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from kopaths.data import data_spec, to_uint8
    from kopaths.evaluation.along_paths import transformed_velocity
    from kopaths.evaluation.runs import load_run
    from kopaths.io import save_npy
    from kopaths.ko import load_ko_schedule
    from kopaths.main_job import plotting
    from kopaths.ode.sampling import sample
    from kopaths.schedules import get_schedule

    run = load_run(args.workdir, args.step)
    spec = data_spec(run.config.data)
    along = run.schedule
    if args.along:
        along = load_ko_schedule(args.along) if args.along.endswith(".json") else get_schedule(args.along)
    velocity = transformed_velocity(run.velocity, run.schedule, along)
    x0 = jax.random.normal(jax.random.key(args.seed), (args.num, *spec.element_shape), jnp.float32)
    kwargs = dict(rtol=args.tol, atol=args.tol) if args.method in ("dopri5", "tsit5") else dict(nfe=args.nfe)
    res = sample(velocity, x0, method=args.method, **kwargs)
    x = np.asarray(res.x)
    save_npy(os.path.join(args.outdir, "samples.npy"), x)
    if len(spec.element_shape) == 3:
        name = f"{run.config.path.name} along {args.along or 'its own path'}, {args.method}"
        plotting.plot_sample_grids(os.path.join(args.outdir, "samples.png"), {name: to_uint8(x, spec.stats)})
    print(f"{args.num} samples (mean NFE {float(np.mean(res.nfe)):.1f}) -> {args.outdir}")
    return 0


def _cmd_evaluate(args) -> int:
    features = {}
    if args.classifier:
        from kopaths.evaluation.classifier import FD_LABEL, classifier_features, load_builtin_classifier, load_classifier

        if args.classifier == "builtin":
            from kopaths.evaluation.runs import read_run_config

            clf_params, _ = load_builtin_classifier(read_run_config(args.workdir).data)
        else:
            clf_params, _ = load_classifier(args.classifier)
        features[FD_LABEL] = lambda imgs: classifier_features(clf_params, imgs)
    if args.inception:
        from kopaths.evaluation.inception import make_feature_fn

        features["FID (TF-FID InceptionV3 pool_3)"] = make_feature_fn()
    with _locked(args.workdir, "evaluate"):
        _evaluate(args, features)
    return 0


def _evaluate(args, features) -> None:
    from kopaths.evaluation.scoring import evaluate_checkpoints

    evaluate_checkpoints(
        args.workdir, steps=args.steps, seed=args.seed, output=args.output, feature_fns=features,
        num_samples=args.num_samples, euler_nfe=[int(n) for n in args.euler_nfe.split(",") if n], tol=args.tol,
        num_bpd=args.num_bpd, num_importance=args.K, num_probes=args.probes,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kopaths", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_text: str):
        p = sub.add_parser(name, help=help_text, description=help_text + " Config: --config FILE.py[:arg] and "
                           "--config.key=value overrides.")
        p.set_defaults(fn=fn)
        return p

    for name, fn, text in (
        ("run", _cmd_run, "main job: lambda-hat, KO paths, diagnostics, short training runs, samples, evaluation, report."),
        ("separation", _cmd_separation, "estimate lambda-hat of the configured dataset (or of --array)."),
        ("solve", _cmd_solve, "fit lambda-hat, solve every KO variant, and print the schedule diagnostics."),
        ("report", _cmd_report, "re-render the report of a finished or interrupted `run` (resumes missing steps)."),
    ):
        p = add(name, fn, text)
        p.add_argument("--outdir", default="outputs/main", help="output folder (default outputs/main); reruns resume")
        if name == "separation":
            p.add_argument("--array", default=None, help="your own data: .npy/.npz of shape (n, ...); normalised here")
            p.add_argument("--range", default=None, help="declared value range 'lo,hi' of --array (e.g. 0,255)")
        if name == "solve":
            p.add_argument("--lambda_table", default=None, help="lambda.json to use (default: OUTDIR/lambda.json)")

    train = add("train", _cmd_train, "train a flow-matching model (resumes from WORKDIR; SIGINT saves and stops).")
    train.add_argument("--workdir", required=True, help="checkpoints, metrics and schedule; reruns resume")
    train.add_argument("--path", default="cond_ot", help="path of the main job's trainer config when --config is not a trainer config")
    train.add_argument("--distributed", action="store_true", help="jax.distributed.initialize() (auto-detected cluster)")
    train.add_argument("--coordinator_address", default=None, help="host:port of process 0 for multi-process runs")
    train.add_argument("--num_processes", type=int, default=None)
    train.add_argument("--process_id", type=int, default=None)

    sample = add("sample", _cmd_sample, "draw samples from a trained checkpoint (EMA weights), along its path or any other.")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    sample.add_argument("--along", default=None, help="sample along another path: a registry name or a KO schedule .json")
    sample.add_argument("--method", default="dopri5", choices=("euler", "midpoint", "heun", "dopri5", "tsit5"))
    sample.add_argument("--nfe", type=int, default=20, help="function evaluations for fixed-step methods")
    sample.add_argument("--tol", type=float, default=1e-5, help="rtol = atol for adaptive methods")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--outdir", default="outputs/samples")

    ev = add("evaluate", _cmd_evaluate, "score checkpoints: FD, NFE, KE, bits/dim (JSON).")
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--steps", default="latest", help="'latest', 'last3', 'all' or comma-separated steps")
    ev.add_argument("--num_samples", type=int, default=2000)
    ev.add_argument("--euler_nfe", default="20,50,100")
    ev.add_argument("--tol", type=float, default=1e-5)
    ev.add_argument("--num_bpd", type=int, default=500)
    ev.add_argument("--K", type=int, default=1, help="uniform-dequantisation importance samples")
    ev.add_argument("--probes", type=int, default=0, help="Hutchinson probes (0: exact divergence when d <= 64)")
    ev.add_argument("--classifier", default=None, help="saved FD classifier (python -m kopaths.evaluation.classifier), or 'builtin': "
                    "the shipped one for the run's dataset (Fashion-MNIST at 28x28), as the main job uses")
    ev.add_argument("--inception", action="store_true", help="also FID with the converted TF-FID Inception weights")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--output", default=None, help="JSON path (default <workdir>/eval.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kopaths`` console script and of ``python -m kopaths``."""
    from kopaths.configs import ConfigError, split_config_args

    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else "kopaths"
    try:
        spec, overrides, rest = split_config_args(argv)
    except ConfigError as e:
        print(f"kopaths {command}: error: {e}", file=sys.stderr)
        return 2
    args = _parser().parse_args(rest)
    args.config, args.overrides = spec, overrides
    _use_compilation_cache()
    from kopaths.data.errors import DataNotFoundError
    from kopaths.io import FolderInUseError

    try:
        return args.fn(args)
    except (FileNotFoundError, DataNotFoundError, ValueError, TypeError, KeyError, OSError, FloatingPointError,
            FolderInUseError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"kopaths {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kopaths {args.command}: interrupted; finished steps are kept, rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
