"""Train state: a plain pytree of step, parameters, optimiser state and EMA parameters."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

__all__ = ["TrainState", "init_train_state"]


@flax.struct.dataclass
class TrainState:
    """Everything that evolves during training (checkpointed as one pytree)."""

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    ema_params: Any


def init_train_state(model, tx: optax.GradientTransformation, example_x: jax.Array, key: jax.Array) -> TrainState:
    """Initialises parameters from ``key`` on ``example_x`` (any batch size) and the optimiser."""
    t = jnp.zeros((example_x.shape[0],), jnp.float32)
    params = model.init({"params": key}, example_x, t, train=False)["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params),
    )
