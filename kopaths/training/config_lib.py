"""Shared pieces of the experiment configs in ``experiments/configs``."""

from __future__ import annotations

import ml_collections

__all__ = ["PATHS", "parse_config_arg", "base_config", "path_config", "data_config"]

PATHS = ("cond_ot", "vp", "cosine", "ko")


def parse_config_arg(
    arg: str | None, default_path: str = "cond_ot", variants: tuple[str, ...] = ("runlocal",)
) -> tuple[str, str | None]:
    """Parses ``"<path>[,<variant>]"`` (as in ``--config file.py:ko,runlocal``).

    Returns ``(path, variant)``; ``variant`` is one of ``variants`` or ``None``.
    """
    parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
    chosen = [p for p in parts if p in variants]
    names = [p for p in parts if p not in variants]
    if len(names) > 1 or len(chosen) > 1 or (names and names[0] not in PATHS):
        raise ValueError(
            f"Config arg {arg!r}: expected '<path>[,<variant>]' with path in {PATHS} and variant in {variants}."
        )
    return (names[0] if names else default_path), (chosen[0] if chosen else None)


def path_config(name: str) -> ml_collections.ConfigDict:
    """The probability path: name plus its parameters (and KO estimation sizes)."""
    cfg = ml_collections.ConfigDict(dict(name=name))
    if name in ("cond_ot", "ko"):
        cfg.sigma_min = 0.0
    if name == "vp":
        cfg.beta_min, cfg.beta_max = 0.1, 20.0
    if name == "ko":
        cfg.ko_num_examples = 10_000
        cfg.ko_num_noise = 2048
    return cfg


def data_config(name: str) -> ml_collections.ConfigDict:
    """The data module's default config for ``name`` (a bare ``name`` field if it is absent)."""
    try:
        from kopaths.data import default_data_config  # noqa: PLC0415
    except ImportError:
        return ml_collections.ConfigDict(dict(name=name))
    return default_data_config(name)


def base_config(path: str) -> ml_collections.ConfigDict:
    """Defaults shared by all experiments; experiment configs override fields.

    Fields: ``seed``; ``total_steps``; ``global_batch_size`` (split over processes and devices);
    ``mesh`` (``((axis, size), ...)``, one size may be -1; the batch is split over all axes and
    parameters over ``fsdp`` when its size is > 1); ``fsdp_min_size`` (smaller arrays stay
    replicated); ``path`` (name in cond_ot/vp/cosine/ko and its parameters); ``time_sampling``
    (uniform/logit_normal on ``[t_min, t_max]``); ``optim`` (adam/adamw, lr, warm-up, decay,
    clipping, EMA); ``checkpoint`` (every_steps, max_to_keep, async_save); ``log_every_steps``;
    ``progress_bar``. Experiment configs add ``data`` and ``model``.
    """
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 100_000
    c.global_batch_size = 128
    c.mesh = (("data", -1), ("fsdp", 1))
    c.fsdp_min_size = 2**14
    c.path = path_config(path)
    # VP's d_sigma diverges at t = 1, so its training times stop just short of it.
    c.time_sampling = ml_collections.ConfigDict(
        dict(name="uniform", t_min=0.0, t_max=1.0 - 1e-5 if path == "vp" else 1.0, loc=0.0, scale=1.0)
    )
    c.optim = ml_collections.ConfigDict(dict(
        name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=1000,
        decay="polynomial", power=1.0, end_lr_factor=0.0, grad_clip_norm=1.0, ema_decay=0.9999, ema_warmup=True,
    ))
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=5000, max_to_keep=3, async_save=True))
    c.log_every_steps = 100
    c.progress_bar = True
    return c
