"""Atomic file output: every file kopaths writes appears complete or not at all.

:func:`atomic_path` yields a temporary name in the destination folder and renames it over the
destination once the block finishes (``os.replace`` is atomic on POSIX and Windows), so a run
killed at any moment leaves either the old file or the new one, never half of one. The other
writers are thin wrappers for text, JSON, NumPy arrays and Matplotlib figures.
:class:`FolderLock` keeps two processes out of one output folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
from typing import Any, Iterator

import jax
import numpy as np

__all__ = ["FolderInUseError", "FolderLock", "atomic_path", "atomic_copy", "atomic_write_text", "write_json", "read_json", "save_npy", "save_npz", "save_figure", "to_jsonable"]


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


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> str:
    """Saves a Matplotlib figure atomically (format from the suffix), then closes it."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (matplotlib is the optional [plot] extra)

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


class FolderInUseError(RuntimeError):
    """Another live process holds the output folder."""


class FolderLock:
    """An exclusive lock on an output folder, held for the life of a ``with`` block.

    The lock is ``fcntl.flock`` on ``<folder>/.kopaths.lock``, which also records the holder's
    process id, host and command. The kernel releases it when the holder exits, however it exits
    (``kill -9`` included), so a lock left by a dead process is simply taken over; the takeover is
    reported in :attr:`stale_holder`. A second process entering a held folder gets
    :class:`FolderInUseError` naming the holder. Processes other than ``jax.process_index() == 0``
    do not lock (in a multi-host run the folder is shared and process 0 speaks for all).
    """

    FILE = ".kopaths.lock"

    def __init__(self, folder: str | os.PathLike, command: str = "kopaths"):
        self.folder = os.fspath(folder)
        self.command = command
        self.path = os.path.join(self.folder, self.FILE)
        self.stale_holder: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl  # noqa: PLC0415  (POSIX only)

        if jax.process_index() != 0:
            return self
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise FolderInUseError(
                    f"{self.folder} is in use by {holder}; wait for it to finish, stop it, or use another folder."
                ) from None
            raise
        self.stale_holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} ({self.command})\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an unlocked, empty file: nobody holds the folder
            os.close(self._fd)
            self._fd = None
