"""Normalisation statistics of a split, computed by streaming over it and cached next to the data."""

from __future__ import annotations

import json
import logging
import os
import re

import numpy as np

from kopaths.data.sources import SplitSource
from kopaths.data.transforms import Dequantization
from kopaths.io import write_json
from kopaths.normalization import AffineStats

__all__ = ["Moments", "affine_stats", "split_moments"]

_CHUNK = 4096
_CACHE_VERSION = 1


class Moments:
    """Per-dimension mean and the dimension-averaged variance of the decoded examples ``y``."""

    def __init__(self, mean: np.ndarray, var: float, num_examples: int):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.var = float(var)
        self.num_examples = int(num_examples)

    def to_dict(self) -> dict:
        """JSON-able record."""
        return {"version": _CACHE_VERSION, "shape": list(self.mean.shape), "mean": self.mean.ravel().tolist(),
                "var": self.var, "num_examples": self.num_examples}

    @classmethod
    def from_dict(cls, d: dict) -> "Moments":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` for a malformed or outdated record."""
        if d.get("version") != _CACHE_VERSION:
            raise ValueError("outdated statistics cache")
        return cls(np.asarray(d["mean"], np.float64).reshape(d["shape"]), d["var"], d["num_examples"])


def _compute(split: SplitSource) -> Moments:
    n = len(split)
    total = np.zeros(split.element_shape, np.float64)
    total_sq = np.zeros(split.element_shape, np.float64)
    for start in range(0, n, _CHUNK):
        y = split.read(start, min(n, start + _CHUNK)).astype(np.float64)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{split.dataset_id} contains NaN or Inf values.")
        total += y.sum(axis=0)
        total_sq += np.square(y).sum(axis=0)
    mean = total / n
    var = float(np.mean(np.maximum(total_sq / n - np.square(mean), 0.0)))
    return Moments(mean, var, n)


def _cache_path(split: SplitSource, split_name: str, resolution: int | None) -> str:
    safe_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", split.dataset_id)
    safe_split = re.sub(r"[^A-Za-z0-9_.-]+", "_", split_name)
    res = "native" if resolution is None else f"{resolution}px"
    return os.path.join(split.data_dir, "kopaths_stats", safe_id, f"{safe_split}_{res}_n{len(split)}.json")


def split_moments(split: SplitSource, split_name: str, resolution: int | None, *, use_cache: bool = True) -> Moments:
    """Moments of ``split`` (after downsampling to ``resolution``), read from or written to the cache.

    The cache lives in ``<data_dir>/kopaths_stats/``; if the data dir is read-only the moments
    are recomputed each time (with a warning).
    """
    path = _cache_path(split, split_name, resolution)
    if use_cache and os.path.isfile(path):
        try:
            with open(path) as f:
                moments = Moments.from_dict(json.load(f))
            if moments.mean.shape == split.element_shape:
                return moments
        except (OSError, ValueError, KeyError, TypeError):
            logging.warning("Ignoring unreadable statistics cache %s", path)
    moments = _compute(split)
    if use_cache:
        try:
            write_json(path, moments.to_dict(), indent=None)
        except OSError as e:
            logging.warning("Could not cache normalisation statistics at %s: %s", path, e)
    return moments


def affine_stats(moments: Moments, dequantization: Dequantization) -> AffineStats:
    """The map ``x = (v - mean) / scale`` giving zero mean and unit second moment per dimension.

    For 8-bit data ``v = y + u`` with ``u ~ U[0,1)`` (uniform dequantisation: mean ``+1/2``,
    variance ``+1/12``) or ``v = y + 1/2`` (no dequantisation).
    """
    mean, var = moments.mean, moments.var
    if dequantization.kind in ("uniform", "none"):
        mean = mean + 0.5
    if dequantization.kind == "uniform":
        var = var + 1.0 / 12.0
    if not var > 1e-20:
        raise ValueError("Data have zero variance (constant dataset); cannot normalise.")
    return AffineStats(mean.astype(np.float32), float(np.sqrt(var)))
