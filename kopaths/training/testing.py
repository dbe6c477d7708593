"""Tiny configs on in-memory synthetic data, for tests and smoke runs (no dataset needed)."""

from __future__ import annotations

import ml_collections

from kopaths.training import config_lib
from kopaths.training.data import synthetic_data_config

__all__ = ["tiny_config", "get_config"]


def tiny_config(model: str = "mlp", path: str = "cond_ot", *, steps: int = 6, batch: int = 8) -> ml_collections.ConfigDict:
    """A seconds-long run: a tiny MLP on 2-D points or a tiny U-Net on 8x8x1 images."""
    c = config_lib.base_config(path)
    if model == "mlp":
        c.data = synthetic_data_config((2,), num_examples=64)
        c.model = dict(name="mlp", hidden_sizes=(32, 32), time_embed_dim=16, dropout=0.1)
    elif model == "unet":
        c.data = synthetic_data_config((8, 8, 1), num_examples=32)
        c.model = dict(name="unet", model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                       attention_resolutions=(2,), num_heads=2, dropout=0.1)
    else:
        raise ValueError(f"Unknown tiny model {model!r}.")
    c.total_steps = steps
    c.global_batch_size = batch
    c.optim.update(lr=1e-3, warmup_steps=2, ema_decay=0.9)
    c.checkpoint.update(every_steps=2, max_to_keep=2)
    c.log_every_steps = 1
    c.progress_bar = False
    c.path.ko_num_data = 64
    c.path.ko_num_noise = 64
    c.path.ko_num_snr = 64
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``--config kopaths/training/testing.py:<mlp|unet>[,<path>][,steps=N][,batch=B][,fsdp=F]``."""
    parts = [p for p in (arg or "mlp").split(",") if p]
    kwargs = dict(p.split("=", 1) for p in parts if "=" in p)
    names = [p for p in parts if "=" not in p]
    model = names[0] if names else "mlp"
    path = names[1] if len(names) > 1 else "cond_ot"
    c = tiny_config(model, path, steps=int(kwargs.get("steps", 6)), batch=int(kwargs.get("batch", 8)))
    fsdp = int(kwargs.get("fsdp", 1))
    c.mesh = (("data", -1), ("fsdp", fsdp))
    c.fsdp_min_size = 64  # so that the tiny models' larger weights really get split
    return c
