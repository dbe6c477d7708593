r"""Seed intervals for comparisons between training runs.

A single training run is an anecdote: differences between paths are judged over independent
training seeds. :func:`mean_interval` gives the mean and the two-sided Student-t confidence
interval of per-seed values; :func:`paired_difference` does the same for per-seed differences
``a - b`` between two conditions run with the same seeds (same initialisation, data order and
sampling noise), which removes the variance they share. A difference is called significant when
its interval excludes zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats

__all__ = ["Interval", "mean_interval", "paired_difference", "format_cell"]


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with the half-width of its ``level`` confidence interval."""

    mean: float
    half_width: float
    n: int
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        return self.n > 1 and (self.low > 0 or self.high < 0)

    def format(self, digits: int = 2) -> str:
        if self.n < 2 or not np.isfinite(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "half_width": self.half_width, "n": self.n, "level": self.level}

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(float(d["mean"]), float(d["half_width"]), int(d["n"]), float(d.get("level", 0.95)))


def mean_interval(values, level: float = 0.95) -> Interval:
    """Mean and Student-t interval half-width :math:`t_{(1+\\text{level})/2,\\,n-1}\\, s/\\sqrt n` (NaN for ``n < 2``)."""
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"mean_interval needs finite values, got {v.tolist()}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    if v.size < 2:
        return Interval(float(v.mean()), float("nan"), int(v.size), level)
    half = scipy.stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return Interval(float(v.mean()), float(half), int(v.size), level)


def paired_difference(a, b, level: float = 0.95) -> Interval:
    """Interval of the mean per-seed difference ``a - b`` (equal-length sequences in seed order)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_difference needs values for the same seeds, got {a.size} and {b.size}.")
    return mean_interval(a - b, level)


def format_cell(interval: Interval | dict, difference: Interval | dict | None = None, digits: int = 2,
                arrows: bool = False) -> str:
    """``"mean ± half-width"``, in bold when the paired ``difference`` to a baseline excludes zero
    (with ``arrows``, followed by ↓ or ↑ for its sign)."""
    interval = Interval.from_dict(interval) if isinstance(interval, dict) else interval
    text = interval.format(digits)
    if difference is not None:
        difference = Interval.from_dict(difference) if isinstance(difference, dict) else difference
        if difference.excludes_zero:
            text = f"**{text}**" + ((" ↓" if difference.mean < 0 else " ↑") if arrows else "")
    return text
