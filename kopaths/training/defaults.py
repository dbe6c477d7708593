"""The trainer's config schema and its defaults (no machine-tuned sizes: those live in ``experiments/configs``)."""

from __future__ import annotations

import ml_collections

from kopaths.schedules import PATHS as PATH_REGISTRY
from kopaths.ko import DEFAULT_KO_REFERENCE, DEFAULT_KO_VARIANT
from kopaths.schedules import path_spec

__all__ = ["PATHS", "base_config", "path_config", "data_config"]

#: Paths the experiment configs train on (``--config file.py:<path>``): the whole registry.
PATHS = tuple(PATH_REGISTRY)


def path_config(name: str) -> ml_collections.ConfigDict:
    """The probability path: a registry name plus its parameters.

    For ``"ko"``: ``ko_variant`` (``exact``, ``bounded`` or ``parametric``, see
    :data:`kopaths.ko.KO_VARIANTS`), ``schedule_file`` (a saved KO schedule to train on; empty:
    solve it once from the data, see :func:`kopaths.training.path_source.build_schedule`),
    and the estimator sizes ``ko_num_noise``, ``ko_num_snr`` and ``ko_num_data`` (None: all training
    examples), which match the main job's ``separation`` defaults.
    """
    spec = path_spec(name)
    cfg = ml_collections.ConfigDict(dict(name=spec.name))
    defaults = {"sigma_min": 0.0, "beta_min": 0.1, "beta_max": 20.0, "exponent": 2.0}
    for key in spec.config_keys:
        cfg[key] = defaults[key]
    if spec.name == "ko":
        cfg.ko_variant = DEFAULT_KO_VARIANT
        cfg.schedule_file = ""
        cfg.ko_num_noise = 2048
        cfg.ko_num_snr = 256
        cfg.ko_num_data = ml_collections.config_dict.placeholder(int)
    return cfg


def data_config(name: str) -> ml_collections.ConfigDict:
    """The data module's default config for ``name``."""
    from kopaths.data import default_data_config  # noqa: PLC0415

    return default_data_config(name)


def base_config(path: str) -> ml_collections.ConfigDict:
    """Defaults shared by all experiments; experiment configs override fields.

    Fields: ``seed``; ``total_steps``; ``global_batch_size`` (split over processes and devices);
    ``mesh`` (``((axis, size), ...)``, one size may be -1; the batch is split over all axes and
    parameters over ``fsdp`` when its size is > 1); ``fsdp_min_size`` (smaller arrays stay
    replicated); ``path`` (name in cond_ot/vp/cosine/ko and its parameters, :func:`path_config`);
    ``time_sampling`` (uniform/logit_normal on ``[t_min, t_max]``; ``reference``: a path whose snr
    density and loss weighting are used instead of the training path's own,
    :class:`kopaths.objective.SnrMatchedSampler`); ``optim`` (adam/adamw, lr, warm-up, decay,
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
        dict(name="uniform", t_min=0.0, t_max=path_spec(path).t_max, loc=0.0, scale=1.0,
             reference=DEFAULT_KO_REFERENCE if path_spec(path).name == "ko" else "")
    )
    c.optim = ml_collections.ConfigDict(dict(
        name="adam", lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, warmup_steps=1000,
        decay="polynomial", power=1.0, end_lr_factor=0.0, grad_clip_norm=1.0, ema_decay=0.9999, ema_warmup=True,
    ))
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=5000, max_to_keep=3, async_save=True))
    c.log_every_steps = 100
    c.progress_bar = True
    return c
