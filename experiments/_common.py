"""The run record every experiment stores beside its results (JSON goes through :func:`kopaths.io.write_json`)."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess

__all__ = ["git_commit", "publish_markdown", "reproduce_command", "run_record"]


def git_commit() -> str | None:
    """Current git commit of the repository, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def reproduce_command(module: str, argv: list[str]) -> str:
    """The command that reruns ``module`` (e.g. ``"experiments.lambda_stability"``) with ``argv``."""
    return " ".join(["python", "-m", module, *map(shlex.quote, argv)])


def run_record(module: str, argv: list[str], wall_seconds: float) -> dict:
    """Where, when and how a run was made (``argv``: the flags it ran with)."""
    import jax

    return {
        "command": reproduce_command(module, argv),
        "git_commit": git_commit(),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__} on {jax.default_backend()}",
    }


def publish_markdown(out: str, lines: list[str]) -> None:
    """Writes ``<out>/results.md`` (atomically) and prints it: every driver's human-readable result."""
    from kopaths.io import atomic_write_text

    text = "\n".join(lines)
    atomic_write_text(os.path.join(out, "results.md"), text + "\n")
    print(text)
