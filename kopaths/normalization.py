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

__all__ = ["AffineStats", "NormalizedArray", "normalize", "validate_data"]


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


#: Rows per chunk when data are validated or normalised by streaming (a memmap may exceed memory).
CHUNK_ROWS = 4096


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        shapes = [np.shape(v) for v in x]
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(f"{name}: examples differ in shape: example 0 has shape {shapes[0]}, "
                                 f"example {i} has {shape}.")
    try:
        lazy = all(hasattr(x, a) for a in ("shape", "dtype", "__getitem__"))  # memmaps and row-sliced views
        x = x if lazy else np.asarray(x)
    except ValueError as e:  # ragged nested sequences
        raise ValueError(f"{name}: examples differ in shape ({e}).") from None
    return x


def validate_data(x, *, name: str = "data", min_examples: int = 2,
                  value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Checks a dataset ``(n, ...)``: a real numeric dtype, examples of one shape, ``n >= 2``,
    finite values, and every value in ``value_range`` when one is declared.

    A list of examples is stacked first. An array (a memmap or any row-sliceable array-like) is read in chunks of
    :data:`CHUNK_ROWS` rows and never copied whole. Returns the array.
    """
    x = _as_array(x, name)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        hint = " (object arrays usually hold examples of different shapes)" if x.dtype == object else ""
        raise TypeError(f"{name} must have a real numeric dtype (float or int), got dtype {x.dtype}{hint}.")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (n, ...) with at least one feature axis; got {x.shape}.")
    if x.shape[0] < min_examples:
        raise ValueError(f"{name} needs at least {min_examples} examples, got n={x.shape[0]}.")
    floating = np.issubdtype(x.dtype, np.floating)
    if not floating and value_range is None:
        return x
    lo, hi = np.inf, -np.inf
    for start in range(0, x.shape[0], CHUNK_ROWS):
        rows = np.asarray(x[start : start + CHUNK_ROWS])
        if floating and not np.all(np.isfinite(rows)):
            bad = start + int(np.argmax((~np.isfinite(rows.reshape(rows.shape[0], -1))).any(1)))
            raise ValueError(f"{name} contains NaN or Inf values (first in example {bad}).")
        lo, hi = min(lo, float(rows.min())), max(hi, float(rows.max()))
    if value_range is not None and (lo < value_range[0] or hi > value_range[1]):
        raise ValueError(f"{name} has values in [{lo:g}, {hi:g}], outside the declared range "
                         f"[{value_range[0]:g}, {value_range[1]:g}].")
    return x


class NormalizedArray:
    """A dataset normalised on read: ``x[i] = (y[i] - mean) / scale`` for row indices or slices.

    :meth:`fit` estimates the map in one streamed pass (float64 sums over chunks of
    :data:`CHUNK_ROWS` rows), so a memory-mapped ``y`` larger than RAM is never loaded whole. It
    stands in for the normalised array wherever rows are read by slicing (as
    :func:`kopaths.separation.estimate_lambda` does); ``np.asarray`` materialises it.
    """

    def __init__(self, raw: np.ndarray, stats: AffineStats):
        if tuple(stats.mean.shape) != tuple(raw.shape[1:]):
            raise ValueError(f"AffineStats is for examples of shape {stats.mean.shape}, data have {raw.shape[1:]}.")
        self.raw, self.stats = raw, stats

    @classmethod
    def fit(cls, y, *, name: str = "data", value_range: tuple[float, float] | None = None) -> "NormalizedArray":
        y = validate_data(y, name=name, value_range=value_range)
        n = y.shape[0]
        total = np.zeros(y.shape[1:], np.float64)
        for start in range(0, n, CHUNK_ROWS):
            total += np.asarray(y[start : start + CHUNK_ROWS], np.float64).sum(0)
        mean = total / n
        sq = 0.0
        for start in range(0, n, CHUNK_ROWS):
            sq += float(np.sum((np.asarray(y[start : start + CHUNK_ROWS], np.float64) - mean) ** 2))
        var = sq / (n * mean.size)
        if not var > 1e-20:
            raise ValueError(f"{name} has zero variance (constant dataset); cannot normalise.")
        return cls(y, AffineStats(mean.astype(np.float32), float(np.sqrt(var))))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)

    @property
    def ndim(self) -> int:
        return self.raw.ndim

    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.raw.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows = np.asarray(self.raw[index], np.float32)
        return ((rows - self.stats.mean) / np.float32(self.stats.scale)).astype(np.float32)

    def reshape(self, *shape) -> "NormalizedArray":
        """Reshapes the feature axes (the first axis must stay ``n``), lazily."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        raw = self.raw.reshape(shape)
        if raw.shape[0] != self.raw.shape[0]:
            raise ValueError("NormalizedArray.reshape must keep the first (example) axis.")
        return NormalizedArray(raw, AffineStats(self.stats.mean.reshape(raw.shape[1:]), self.stats.scale))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


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
