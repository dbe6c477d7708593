"""Tiny configs on in-memory synthetic data, for tests and smoke runs (no dataset needed).

    kopaths train --config experiments/configs/tiny.py:unet,ko,steps=6 --workdir /tmp/tiny
"""

from __future__ import annotations

import ml_collections

from kopaths.configs import parse_arg
from kopaths.data import synthetic_data_config
from kopaths.training.defaults import PATHS, base_config


def tiny_config(model: str = "mlp", path: str = "cond_ot", *, steps: int = 6, batch: int = 8) -> ml_collections.ConfigDict:
    """A seconds-long run: a tiny MLP on 2-D points or a tiny U-Net on 8x8x1 images."""
    c = base_config(path)
    if model == "mlp":
        c.data = synthetic_data_config((2,), num_examples=64)
        c.model = dict(name="mlp", hidden_sizes=(32, 32), time_embed_dim=16, dropout=0.1)
    else:
        c.data = synthetic_data_config((8, 8, 1), num_examples=32)
        c.model = dict(name="unet", model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                       attention_resolutions=(2,), num_heads=2, dropout=0.1)
    c.total_steps = steps
    c.global_batch_size = batch
    c.optim.update(lr=1e-3, warmup_steps=2, ema_decay=0.9)
    c.checkpoint.update(every_steps=2, max_to_keep=2)
    c.log_every_steps = 1
    c.progress_bar = False
    if path == "ko":
        c.path.update(ko_num_data=64, ko_num_noise=64, ko_num_snr=64)
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg = <mlp|unet>[,<path>][,steps=N][,batch=B][,fsdp=F]``."""
    parsed = parse_arg(arg, model=("mlp", "unet"), path=PATHS)
    c = tiny_config(parsed["model"] or "mlp", parsed["path"] or "cond_ot", steps=int(parsed.get("steps") or 6),
                    batch=int(parsed.get("batch") or 8))
    c.mesh = (("data", -1), ("fsdp", int(parsed.get("fsdp") or 1)))
    c.fsdp_min_size = 64  # so that the tiny models' larger weights really get split
    return c
