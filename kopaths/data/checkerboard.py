"""The 2-D checkerboard of the flow-matching literature, from a deterministic generator.

Points are uniform on the 8 dark squares of a 4x4 board covering ``[-4, 4]^2`` (the FFJORD
"checkerboard" used by Shaul et al. 2023).
"""

from __future__ import annotations

import numpy as np

__all__ = ["checkerboard_chunks", "sample_checkerboard"]


def sample_checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``n`` checkerboard points as ``float32 (n, 2)`` using ``rng``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    x1 = rng.random(n) * 4.0 - 2.0
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return (np.stack([x1, x2], axis=1) * 2.0).astype(np.float32)


def checkerboard_chunks(n: int, seed: int, chunk: int = 65536):
    """Yields ``(start_index, points)`` chunks of a length-``n`` sample that depends only on ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    for start in range(0, n, chunk):
        yield start, sample_checkerboard(min(chunk, n - start), rng)
