"""Atomic file output: every file kopaths writes appears complete or not at all.

:func:`atomic_path` yields a temporary name in the destination folder and renames it over the
destination once the block finishes (``os.replace`` is atomic on POSIX and Windows), so a run
killed at any moment leaves either the old file or the new one, never half of one. The other
writers are thin wrappers for text, JSON, NumPy arrays and Matplotlib figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import jax
import numpy as np

__all__ = ["atomic_path", "atomic_copy", "atomic_write_text", "write_json", "read_json", "save_npy", "save_npz", "to_jsonable"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside ``path``; on success it is fsynced and renamed to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{base}-", suffix=ext)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def atomic_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Copies a file atomically."""
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)


def to_jsonable(obj: Any) -> Any:
    """NumPy scalars and arrays (and tuples) converted for ``json``; other values unchanged."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, jax.Array):
        return np.asarray(obj).tolist()
    return obj


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Writes ``obj`` (NumPy values converted, keys sorted) as JSON, atomically."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=indent, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Reads JSON with one-line errors: ``FileNotFoundError`` or ``ValueError`` naming ``what``."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {os.fspath(path)} is not valid JSON ({e}); delete it to recompute.") from None


def save_npy(path: str | os.PathLike, array) -> None:
    """``np.save`` atomically (``path`` should end in ``.npy``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array))


def save_npz(path: str | os.PathLike, **arrays) -> None:
    """``np.savez`` atomically (``path`` should end in ``.npz``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
