r"""How far a config travels: files and cross-file calls from ``kopaths <command>`` to the trainer.

Runs the ``kopaths`` command line in this process under ``sys.setprofile`` and records every Python
call into the repository's own code (``kopaths/`` and ``experiments/``) that receives an
``ml_collections.ConfigDict`` among its arguments, until a given function (the trainer's step
builder) is called.
It prints the number of distinct files those calls are in and the number of them whose caller is in
another file ("cross-file calls"), and the ordered list of files. Works on any checkout, so the same
command measures before and after a refactor::

    python scripts/trace_config.py --until kopaths/training/trainer.py:make_train_step -- \
        run --outdir /tmp/trace --config=experiments/configs/main_job.py:runlocal
    # at 6e2c30b (before the architecture step), the same tiny main job:
    python scripts/trace_config.py --until kopaths/train.py:make_train_step -- run --outdir /tmp/trace_old \
        --set data.resolution=7 --set separation.num_data=512 ...   # the runlocal sizes as --set overrides
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--until", required=True, help="FILE:FUNCTION (relative to the repository) where tracing stops")
    args = ap.parse_args(argv[:split])
    command = argv[split + 1:]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    import ml_collections  # noqa: PLC0415

    from kopaths import cli  # noqa: PLC0415

    stop_file, stop_function = args.until.split(":")
    stop_file = os.path.join(root, stop_file)
    own = (os.path.join(root, "kopaths") + os.sep, os.path.join(root, "experiments") + os.sep)
    calls: list[tuple[str, str, bool]] = []

    class Done(BaseException):
        pass

    def carries_config(frame) -> bool:
        code = frame.f_code
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        return any(isinstance(frame.f_locals.get(n), ml_collections.ConfigDict) for n in names)

    def profile(frame, event, _):
        if event != "call":
            return
        file = frame.f_code.co_filename
        stop = file == stop_file and frame.f_code.co_name == stop_function
        if not file.startswith(own) or not (stop or carries_config(frame)):
            return
        caller = frame.f_back.f_code.co_filename if frame.f_back is not None else ""
        calls.append((os.path.relpath(file, root), frame.f_code.co_name, caller != file))
        if stop:
            raise Done

    sys.setprofile(profile)
    try:
        cli.main(command)
    except Done:
        pass
    finally:
        sys.setprofile(None)
    if not calls or (calls[-1][0], calls[-1][1]) != (os.path.relpath(stop_file, root), stop_function):
        raise SystemExit(f"the command never reached {args.until}")
    files = list(dict.fromkeys(f for f, _, _ in calls))
    crossings = sum(1 for _, _, cross in calls if cross)
    print(f"config-carrying calls: {len(calls)}; files: {len(files)}; cross-file calls: {crossings}")
    for f in files:
        print(f"  {f}")


if __name__ == "__main__":
    main()
