"""Optax optimiser with warm-up + decay, clipping, and an EMA of the weights."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

__all__ = ["make_lr_schedule", "make_optimizer", "ema_update"]


def make_lr_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then ``decay`` to ``lr * end_lr_factor``.

    ``decay`` is "cosine", "polynomial" (with ``power``; 1 is linear) or "constant".
    """
    lr = float(cfg.get("lr", 1e-4))
    warmup = int(cfg.get("warmup_steps", 0))
    decay = cfg.get("decay", "cosine")
    end_lr = lr * float(cfg.get("end_lr_factor", 0.0))
    decay_steps = max(int(total_steps) - warmup, 1)
    if decay == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end_lr / lr if lr else 0.0)
    elif decay == "polynomial":
        main = optax.polynomial_schedule(lr, end_lr, float(cfg.get("power", 1.0)), decay_steps)
    elif decay == "constant":
        main = optax.constant_schedule(lr)
    else:
        raise ValueError(f"Unknown lr decay {decay!r}; choose 'cosine', 'polynomial' or 'constant'.")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(cfg: Mapping[str, Any], total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam / AdamW with gradient clipping by global norm (``grad_clip_norm``; <= 0 disables).

    Returns the transformation and its learning-rate schedule (for logging).
    """
    schedule = make_lr_schedule(cfg, total_steps)
    name = cfg.get("name", "adam")
    kw = dict(b1=float(cfg.get("b1", 0.9)), b2=float(cfg.get("b2", 0.999)), eps=float(cfg.get("eps", 1e-8)))
    if name == "adam":
        opt = optax.adam(schedule, **kw)
    elif name == "adamw":
        opt = optax.adamw(schedule, weight_decay=float(cfg.get("weight_decay", 0.0)), **kw)
    else:
        raise ValueError(f"Unknown optimizer {name!r}; choose 'adam' or 'adamw'.")
    clip = float(cfg.get("grad_clip_norm", 0.0))
    if clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(clip), opt)
    return opt, schedule


def ema_update(ema_params, params, decay: float, step: jax.Array, warmup: bool = False):
    """``ema <- d * ema + (1 - d) * params``; with ``warmup``, ``d = min(decay, (1+step)/(10+step))``."""
    d = jnp.asarray(decay, jnp.float32)
    if warmup:
        s = step.astype(jnp.float32)
        d = jnp.minimum(d, (1.0 + s) / (10.0 + s))
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)
