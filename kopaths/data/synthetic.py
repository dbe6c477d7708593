"""A tiny in-memory "synthetic" data source, for tests and smoke runs.

``data_cfg.name == "synthetic"`` (with ``shape`` and ``num_examples``) or ``"synthetic:<dataset>"``
(shaped like ``<dataset>``, e.g. ``--config.data.name=synthetic:fashion_mnist``) selects random
clustered points held in memory, which needs no prepared dataset. :class:`SyntheticIterator`
follows the protocol of :class:`kopaths.data.iterator.TrainIterator` (batch ``s`` a pure function of
``(seed, s)``, ``get_state``/``set_state``, ``element_shape``, ``step``).
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

__all__ = ["SYNTHETIC_SHAPES", "SyntheticIterator", "is_synthetic", "synthetic_array", "synthetic_data_config"]


#: Example shapes of ``"synthetic:<name>"`` stand-ins for real datasets.
SYNTHETIC_SHAPES = {"fashion_mnist": (28, 28, 1), "mnist": (28, 28, 1), "checkerboard": (2,), "tfds:cifar10": (32, 32, 3)}


def is_synthetic(data_cfg) -> bool:
    """Whether ``data_cfg`` names the in-memory source ("synthetic" or "synthetic:<dataset>")."""
    return str(data_cfg.name).split(":", 1)[0] == "synthetic"


def synthetic_data_config(shape=(2,), num_examples: int = 256) -> ml_collections.ConfigDict:
    """Config of the synthetic source: ``num_examples`` fixed normalised points of ``shape``."""
    return ml_collections.ConfigDict(dict(name="synthetic", shape=tuple(shape), num_examples=num_examples, data_seed=0))


def synthetic_array(cfg) -> np.ndarray:
    """The fixed normalised points of a synthetic config."""
    rng = np.random.default_rng(int(cfg.get("data_seed", 0)))
    like = str(cfg.name).split(":", 1)[1] if ":" in str(cfg.name) else None
    if cfg.get("shape") is not None:
        shape = tuple(cfg.shape)
    elif like in SYNTHETIC_SHAPES:
        shape = SYNTHETIC_SHAPES[like]
    else:
        raise ValueError(f"Synthetic data {cfg.name!r} needs a 'shape' field or one of "
                         f"{['synthetic:' + k for k in SYNTHETIC_SHAPES]}.")
    n = int(cfg.get("num_examples", 256))
    centres = rng.choice([-1.0, 1.0], size=(4, *shape))
    x = centres[rng.integers(0, 4, n)] + 0.1 * rng.standard_normal((n, *shape))
    if n > 1:
        x = x - x.mean(0)
    x = x / np.sqrt(np.mean(np.sum(x.reshape(n, -1) ** 2, 1)) / np.prod(shape))
    return x.astype(np.float32)


class SyntheticIterator:
    """Batches of a fixed in-memory dataset; batch ``s`` is a pure function of ``(seed, s)``."""

    def __init__(self, data_cfg, *, seed: int, global_batch_size: int, start_step: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
        self.data = synthetic_array(data_cfg)
        self.seed = int(seed)
        self.global_batch_size = int(global_batch_size)
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if self.global_batch_size % self.process_count:
            raise ValueError(f"Global batch {global_batch_size} not divisible by {self.process_count} processes.")
        self.step = int(start_step)
        self.element_shape = self.data.shape[1:]
        self.stats = None

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.step])
        idx = rng.integers(0, len(self.data), self.global_batch_size)
        local = self.global_batch_size // self.process_count
        idx = idx[self.process_index * local:(self.process_index + 1) * local]
        self.step += 1
        return {"x": self.data[idx]}

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position of the iterator."""
        return {"step": self.step}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restores a position from :meth:`get_state`."""
        self.step = int(state["step"])
