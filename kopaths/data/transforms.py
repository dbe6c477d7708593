"""Box-downsampling of 8-bit images and the dequantisation record used for exact bits/dim."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kopaths.normalization import AffineStats

__all__ = ["Dequantization", "box_downsample", "to_uint8"]


def box_downsample(images: np.ndarray, resolution: int | None) -> np.ndarray:
    """Averages non-overlapping ``f x f`` blocks of ``uint8`` images ``(..., H, W, C)`` down to ``resolution``.

    ``f = H // resolution`` must divide both ``H`` and ``W`` (square images). Block means are
    rounded half up, so the result stays 8-bit (as in the downsampled-ImageNet datasets) and
    dequantisation stays exact. ``resolution=None`` or equal to ``H`` returns the input unchanged.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 3:
        raise ValueError(f"box_downsample expects uint8 images (..., H, W, C); got {images.dtype} {images.shape}.")
    h, w = images.shape[-3], images.shape[-2]
    if resolution is None or resolution == h == w:
        return images
    if h != w:
        raise ValueError(f"Resolution variants need square images; got {h}x{w}.")
    if resolution < 1 or resolution > h or h % resolution:
        divisors = [r for r in range(1, h + 1) if h % r == 0]
        raise ValueError(f"Cannot box-downsample {h}px to {resolution}px; choose a divisor of {h}: {divisors}.")
    f = h // resolution
    lead, c = images.shape[:-3], images.shape[-1]
    blocks = images.reshape(*lead, resolution, f, resolution, f, c).astype(np.uint32)
    sums = blocks.sum(axis=(-4, -2))
    area = f * f
    return ((2 * sums + area) // (2 * area)).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Dequantization:
    r"""How model inputs relate to the stored values.

    For 8-bit data (``num_levels=256``) the stored integers ``y`` become ``v = y + u`` with
    ``u ~ U[0, 1)^d`` (``kind="uniform"``) or ``v = y + 1/2`` (``kind="none"``, bin centres); the model
    sees ``x = stats.apply(v)``. Each bin has unit volume in ``v``, so for ``kind="uniform"``
    :math:`\log P(y) \ge \mathbb E_u[\log p_X(x) + \log|\det \partial x/\partial v|]`, which
    :func:`kopaths.ode.likelihood.bits_per_dim` turns into bits/dim. For continuous data (``kind="continuous"``) ``v`` is
    the stored value and bits/dim is that of the continuous density of ``v``.
    """

    kind: str
    num_levels: int | None

    def __post_init__(self):
        if self.kind not in ("uniform", "none", "continuous"):
            raise ValueError(f"Unknown dequantization kind {self.kind!r}.")
        if (self.kind == "continuous") != (self.num_levels is None):
            raise ValueError("num_levels must be None exactly for continuous data.")

    @property
    def dequant_scale(self) -> float:
        """Size of one quantisation level in the units ``stats`` was fitted on (``v``): always 1.

        This is the ``dequant_scale`` argument of :func:`kopaths.ode.likelihood.bits_per_dim`.
        """
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record, e.g. for checkpoints and result tables."""
        return {"kind": self.kind, "num_levels": self.num_levels,
                "value_space": "v = y + u, u ~ U[0,1)^d" if self.kind == "uniform" else
                "v = y + 1/2" if self.kind == "none" else "v = y"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Dequantization":
        """Inverse of :meth:`to_dict`."""
        return cls(d["kind"], d["num_levels"])


def to_uint8(x, stats: AffineStats) -> np.ndarray:
    """Maps model-space images back to ``uint8`` (the bin that holds ``stats.invert(x)``), e.g. for samples."""
    v = np.asarray(stats.invert(np.asarray(x, dtype=np.float32)))
    return np.clip(np.floor(v), 0, 255).astype(np.uint8)
