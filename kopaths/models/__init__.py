"""Velocity networks: an ADM U-Net for images and an MLP for low-dimensional data."""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

from kopaths.models.mlp import MLP
from kopaths.models.unet import UNet

__all__ = ["MLP", "UNet", "build_model", "count_params"]

_MODELS = {"unet": UNet, "mlp": MLP}


def build_model(model_cfg: Mapping[str, Any]) -> nn.Module:
    """Builds a velocity model from a config with ``name`` ("unet" or "mlp") and its fields.

    Every other key of ``model_cfg`` is passed to the module's constructor; ``dtype`` may be a
    string such as "bfloat16". Unknown keys raise ``ValueError`` naming the valid ones.
    """
    cfg = dict(model_cfg)
    name = cfg.pop("name", None)
    if name not in _MODELS:
        raise ValueError(f"Unknown model name {name!r}; choose one of {sorted(_MODELS)}.")
    cls = _MODELS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(cfg) - fields
    if unknown:
        raise ValueError(f"Unknown {name} option(s) {sorted(unknown)}; valid: {sorted(fields)}.")
    if isinstance(cfg.get("dtype"), str):
        cfg["dtype"] = jnp.dtype(cfg["dtype"])
    for key, value in cfg.items():
        if isinstance(value, list):
            cfg[key] = tuple(value)
    return cls(**cfg)


def count_params(params) -> int:
    """Total number of scalars in a parameter pytree."""
    import jax

    return int(sum(x.size for x in jax.tree.leaves(params)))
