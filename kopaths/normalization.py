r"""Affine normalisation of a dataset to zero mean and unit second moment per dimension.

kopaths' theory assumes normalised data: :math:`\mathbb E[x_1]=0` and
:math:`\mathbb E\|x_1\|^2/d = 1`. :func:`normalize` maps raw data :math:`y` to
:math:`x = (y-\mu)/c` with a per-dimension mean :math:`\mu` and a single scalar :math:`c`,
and returns :class:`AffineStats`, which inverts the map and supplies the log-determinant
that converts a density of :math:`x` into a density of :math:`y`:
:math:`\log p_Y(y) = \log p_X(x) - d\log c`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

__all__ = ["AffineStats", "normalize", "validate_data"]


@dataclasses.dataclass(frozen=True)
class AffineStats:
    """The map ``x = (y - mean) / scale``; ``mean`` has the shape of one example."""

    mean: np.ndarray
    scale: float

    @property
    def dim(self) -> int:
        return int(np.prod(self.mean.shape))

    def apply(self, y):
        return (y - self.mean) / self.scale

    def invert(self, x):
        return x * self.scale + self.mean

    def log_det_jacobian(self) -> float:
        """``log |det dx/dy|`` for one example: ``-d log(scale)``."""
        return -self.dim * float(np.log(self.scale))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "shape": list(self.mean.shape), "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AffineStats":
        try:
            mean = np.asarray(d["mean"], dtype=np.float32).reshape(d["shape"])
            scale = float(d["scale"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Malformed AffineStats record: {e}") from e
        if not (np.isfinite(scale) and scale > 0 and np.all(np.isfinite(mean))):
            raise ValueError("Malformed AffineStats record: scale must be positive and finite.")
        return cls(mean, scale)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def validate_data(x, *, name: str = "data", min_examples: int = 2) -> np.ndarray:
    """Checks a dataset array ``(n, ...)``: real-valued, finite, n >= 2 and not constant."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (n, ...) with at least one feature axis; got {x.shape}.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}.")
    if x.shape[0] < min_examples:
        raise ValueError(f"{name} needs at least {min_examples} examples, got n={x.shape[0]}.")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or Inf values.")
    return x


def normalize(y, *, stats: AffineStats | None = None, name: str = "data") -> tuple[np.ndarray, AffineStats]:
    """Normalises ``y`` (shape ``(n, ...)``) and returns ``(x, stats)``.

    With ``stats`` given, applies that map instead of fitting a new one.
    Raises ``ValueError`` for NaN/Inf, fewer than two examples or zero variance.
    """
    y = validate_data(y, name=name)
    if stats is None:
        y64 = y.astype(np.float64)
        mean = y64.mean(axis=0)
        var = float(np.mean((y64 - mean) ** 2))
        if not var > 1e-20:
            raise ValueError(f"{name} has zero variance (constant dataset); cannot normalise.")
        stats = AffineStats(mean.astype(np.float32), float(np.sqrt(var)))
    elif stats.mean.shape != y.shape[1:]:
        raise ValueError(f"AffineStats is for examples of shape {stats.mean.shape}, data have {y.shape[1:]}.")
    return stats.apply(y.astype(np.float32)).astype(np.float32), stats
