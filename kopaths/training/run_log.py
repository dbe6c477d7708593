"""JSONL metric log and a tqdm progress bar (process 0 only)."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

import jax
import tqdm

from kopaths.io import atomic_write_text

__all__ = ["MetricWriter", "read_metrics", "ProgressBar"]

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """All records of ``<workdir>/metrics.jsonl``."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:  # only the unterminated last line may be cut by a kill
                raise ValueError(f"{path}: line {i + 1} is not valid JSON; the metric log is corrupt.") from None
    return records


class MetricWriter:
    """Appends one JSON object per logged step to ``<workdir>/metrics.jsonl``.

    On resume from ``start_step``, records beyond it (written by the interrupted run after its
    last checkpoint) are dropped so the log reads as one uninterrupted run.
    """

    def __init__(self, workdir: str, start_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, METRICS_FILE)
        if self.enabled:
            kept = [r for r in read_metrics(workdir) if r.get("step", 0) <= start_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Appends ``{"step": step, "time": ..., **metrics}``."""
        if not self.enabled:
            return
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class ProgressBar:
    """tqdm bar over training steps showing loss, steps/s and ETA."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
        self._bar = tqdm.tqdm(
            total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
            disable=not (enabled and jax.process_index() == 0),
        )

    def update(self, n: int = 1, **postfix: float) -> None:
        """Advances by ``n`` steps, optionally refreshing the shown metrics."""
        if postfix:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        """Closes the bar."""
        self._bar.close()
