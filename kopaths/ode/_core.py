r"""The one ODE solve behind sampling, kinetic energy along trajectories and likelihoods.

Each of those integrates an augmented state (a pytree with a leading batch axis) under a *field*
``field(velocity_fn, t, state, args) -> d state / dt`` written for a batch. :func:`integrate`
solves it either

* with a fixed-step solver for the whole batch at once (``euler`` 1 evaluation per step,
  ``midpoint`` and ``heun`` 2), at a given number of velocity evaluations (NFE), or
* with an adaptive solver (``dopri5``/``tsit5``, PID step control at ``rtol``/``atol``) for every
  example separately: ``vmap`` of ``diffeqsolve`` inside a per-device :func:`jax.shard_map` over a
  1-D ``"data"`` mesh, so step sizes are chosen per example and devices never wait for each other.

NFE accounting: fixed step costs ``steps * stages``; diffrax's Dopri5/Tsit5 are
first-same-as-last, so an adaptive solve costs ``6 * num_steps + 1`` evaluations, rejected steps
included. Under ``vmap`` the batch loops until its slowest example is done, so a shard spends its
maximum NFE.
"""

from __future__ import annotations

from typing import Any, Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "FIXED_STEP_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "DATA_AXIS",
    "fixed_step_nfe_to_steps",
    "adaptive_nfe",
    "make_solver",
    "make_controller",
    "default_mesh",
    "per_example_map",
    "place_on_mesh",
    "solve_one_adaptive",
    "integrate",
]

#: name -> (diffrax solver class, vector-field evaluations per step)
FIXED_STEP_SOLVERS: dict[str, tuple[type, int]] = {
    "euler": (diffrax.Euler, 1),
    "midpoint": (diffrax.Midpoint, 2),
    "heun": (diffrax.Heun, 2),
}
#: name -> (diffrax solver class, evaluations per (accepted or rejected) step after the first)
ADAPTIVE_SOLVERS: dict[str, tuple[type, int]] = {
    "dopri5": (diffrax.Dopri5, 6),
    "tsit5": (diffrax.Tsit5, 6),
}
DATA_AXIS = "data"

Field = Callable[[Any, jax.Array, Any, Any], Any]


def fixed_step_nfe_to_steps(method: str, nfe: int) -> int:
    """Number of uniform steps a fixed-step ``method`` takes at ``nfe`` evaluations."""
    if method not in FIXED_STEP_SOLVERS:
        raise ValueError(f"Unknown fixed-step method {method!r}; choose one of {sorted(FIXED_STEP_SOLVERS)}.")
    stages = FIXED_STEP_SOLVERS[method][1]
    if not isinstance(nfe, int) or nfe < stages or nfe % stages:
        raise ValueError(f"{method} needs an NFE that is a positive multiple of {stages}, got {nfe!r}.")
    return nfe // stages


def adaptive_nfe(num_steps: jax.Array) -> jax.Array:
    r"""Velocity evaluations of a diffrax FSAL 7-stage solve: :math:`6 n_\text{steps} + 1`."""
    return 6 * jnp.asarray(num_steps, jnp.int32) + 1


def make_solver(method: str) -> diffrax.AbstractSolver:
    """The diffrax solver for ``method`` (euler, midpoint, heun, dopri5, tsit5)."""
    table = {**FIXED_STEP_SOLVERS, **ADAPTIVE_SOLVERS}
    if method not in table:
        raise ValueError(f"Unknown ODE method {method!r}; choose one of {sorted(table)}.")
    return table[method][0]()


def make_controller(rtol: float, atol: float, pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0):
    r"""PID step-size controller; the defaults (I-controller) match torchdiffeq's dopri5."""
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}.")
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=pcoeff, icoeff=icoeff, dcoeff=dcoeff)


def default_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all local devices) with axis name ``"data"``."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def per_example_map(fn_one: Callable[..., Any], velocity_fn: Any, inputs: tuple, mesh: Mesh | None) -> Any:
    r"""Applies ``fn_one(velocity_fn, *example_inputs)`` to every example, sharded over ``mesh``.

    ``inputs`` is a tuple of pytrees whose leaves share a leading batch axis; the batch is padded
    to a multiple of the mesh size, split over the mesh axis ``"data"`` with :func:`jax.shard_map`
    and ``vmap``-ed on each device. Array leaves of ``velocity_fn`` are passed in replicated. Must
    be called under ``jit``.
    """
    mesh = default_mesh() if mesh is None else mesh
    if mesh.axis_names != (DATA_AXIS,):
        raise ValueError(f"per_example_map needs a 1-D mesh with axis {DATA_AXIS!r}, got {mesh.axis_names}.")
    leaves = jax.tree_util.tree_leaves(inputs)
    batch = leaves[0].shape[0]
    if any(a.shape[0] != batch for a in leaves):
        raise ValueError("All per-example inputs need the same leading batch size.")
    pad = (-batch) % mesh.size
    if pad:
        inputs = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)], axis=0), inputs)
    dyn, static = eqx.partition(velocity_fn, eqx.is_array)

    def body(dyn_params, *shard):
        vf = eqx.combine(dyn_params, static)
        return jax.vmap(lambda *ex: fn_one(vf, *ex))(*shard)

    out = jax.shard_map(
        body, mesh=mesh, in_specs=(P(),) + (P(DATA_AXIS),) * len(inputs), out_specs=P(DATA_AXIS), check_vma=False,
    )(dyn, *inputs)
    return jax.tree_util.tree_map(lambda a: a[:batch], out)


def place_on_mesh(tree: Any, mesh: Mesh | None) -> tuple[Any, Mesh]:
    """Replicates the array leaves of ``tree`` onto ``mesh`` (default: all devices)."""
    mesh = default_mesh() if mesh is None else mesh
    dyn, static = eqx.partition(tree, eqx.is_array)
    dyn = jax.device_put(dyn, NamedSharding(mesh, P()))
    return eqx.combine(dyn, static), mesh


def solve_one_adaptive(field, y0, *, method: str, rtol: float, atol: float, t0: float, t1: float, max_steps: int,
                       dt0: float | None = None, args: Any = None):
    r"""Adaptive diffrax solve of :math:`\dot y = f(t, y, \text{args})` for one (unbatched) pytree state.

    Returns ``(y(t1), nfe, success)``; meant to be ``vmap``-ed over examples. Per-example inputs
    (Hutchinson probes) must come in through ``args``: closing over ``vmap``-batched values inside
    the solve makes diffrax's loop misbehave (observed with diffrax 0.7.2 / JAX 0.10.2).
    """
    if method not in ADAPTIVE_SOLVERS:
        raise ValueError(f"Unknown adaptive method {method!r}; choose one of {sorted(ADAPTIVE_SOLVERS)}.")
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: field(t, y, a)), make_solver(method), t0=t0, t1=t1, dt0=dt0, y0=y0,
        stepsize_controller=make_controller(rtol, atol), saveat=diffrax.SaveAt(t1=True), adjoint=diffrax.ForwardMode(),
        max_steps=max_steps, throw=False, args=args,
    )
    y1 = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
    return y1, adaptive_nfe(sol.stats["num_steps"]), sol.result == diffrax.RESULTS.successful


def _one_example(field: Field, vf, t, y, a):
    """``field`` (written for a batch) on one example: add and remove a batch axis of one."""
    add = lambda tree: jax.tree_util.tree_map(lambda v: v[None], tree)  # noqa: E731
    out = field(vf, t, add(y), None if a is None else add(a))
    return jax.tree_util.tree_map(lambda v: v[0], out)


@eqx.filter_jit
def _fixed(field: Field, velocity_fn, y0, args, method: str, steps: jax.Array, t0: float, t1: float):
    """``steps`` uniform steps of diffrax's ``method``; ``steps`` is traced, so one compiled program
    serves every NFE of a sampler (the NFE sweeps of the evaluation compile once per model)."""
    dtype = jax.tree_util.tree_leaves(y0)[0].dtype
    term = diffrax.ODETerm(lambda t, y, a: field(velocity_fn, t, y, a))
    solver = make_solver(method)
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    dt = (t1 - t0) / steps.astype(dtype)

    def body(i, carry):
        y, state = carry
        ta = t0 + i.astype(dtype) * dt
        tb = jnp.where(i == steps - 1, t1, t0 + (i + 1).astype(dtype) * dt)
        y, _, _, state, _ = solver.step(term, ta, tb, y, args, state, made_jump=False)
        return y, state

    state = solver.init(term, t0, t0 + dt, y0, args)
    return jax.lax.fori_loop(0, steps, body, (y0, state))[0]


@eqx.filter_jit
def _adaptive(field: Field, velocity_fn, y0, args, method, rtol, atol, t0, t1, max_steps, mesh):
    def one(vf, y, *maybe_args):
        a = maybe_args[0] if maybe_args else None
        return solve_one_adaptive(lambda t, yy, aa: _one_example(field, vf, t, yy, aa), y, method=method, rtol=rtol,
                                  atol=atol, t0=t0, t1=t1, max_steps=max_steps, args=a)

    return per_example_map(one, velocity_fn, (y0,) if args is None else (y0, args), mesh)


def integrate(field: Field, velocity_fn: Any, y0: Any, *, args: Any = None, method: str, nfe: int | None = None,
              rtol: float = 1e-5, atol: float = 1e-5, t0: float = 0.0, t1: float = 1.0, max_steps: int = 4096,
              mesh: Mesh | None = None) -> tuple[Any, jax.Array, jax.Array]:
    """Solves ``d state/dt = field(velocity_fn, t, state, args)`` from ``t0`` to ``t1`` for a batch.

    Fixed-step methods need ``nfe``; adaptive ones use ``rtol``/``atol``/``max_steps`` per example
    and place the inputs on ``mesh``. Returns ``(state(t1), nfe per example, success per example)``.
    """
    batch = jax.tree_util.tree_leaves(y0)[0].shape[0]
    if method in FIXED_STEP_SOLVERS:
        if nfe is None:
            raise ValueError(f"Fixed-step method {method!r} needs nfe.")
        steps = fixed_step_nfe_to_steps(method, nfe)
        y1 = _fixed(field, velocity_fn, y0, args, method, jnp.asarray(steps, jnp.int32), float(t0), float(t1))
        return y1, jnp.full((batch,), nfe, jnp.int32), jnp.ones((batch,), bool)
    if method not in ADAPTIVE_SOLVERS:
        raise ValueError(f"Unknown method {method!r}; choose one of {sorted({**FIXED_STEP_SOLVERS, **ADAPTIVE_SOLVERS})}.")
    if nfe is not None:
        raise ValueError(f"Adaptive method {method!r} chooses its own NFE; pass rtol/atol instead.")
    (velocity_fn, y0, args), mesh = place_on_mesh((velocity_fn, y0, args), mesh)
    return _adaptive(field, velocity_fn, y0, args, method, float(rtol), float(atol), float(t0), float(t1),
                     int(max_steps), mesh)
