"""Reader for the IDX format of the (Fashion-)MNIST distribution files, plain or gzipped."""

from __future__ import annotations

import gzip
import os

import numpy as np

__all__ = ["find_idx_file", "read_idx"]

_UBYTE = 0x08


def find_idx_file(directory: str, stem: str) -> str | None:
    """Returns ``directory/stem.gz`` or ``directory/stem`` if either exists, else ``None``."""
    for candidate in (f"{stem}.gz", stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path: str) -> np.ndarray:
    """Reads an unsigned-byte IDX file (``.gz`` or plain) into a ``uint8`` array.

    Raises ``ValueError`` if the header is malformed, the type is not unsigned byte, or the
    payload size does not match the declared shape.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"Cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != _UBYTE:
        raise ValueError(f"{path}: only unsigned-byte IDX data are supported, got type code {dtype_code:#x}.")
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header declares shape {shape} but holds {payload.size} bytes of data.")
    return payload.reshape(shape)
