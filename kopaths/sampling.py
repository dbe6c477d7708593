r"""ODE sampling of flow-matching models with diffrax, entirely under ``jit``.

A velocity model defines the probability-flow ODE

.. math::  \frac{dx_t}{dt} = u_t(x_t),\qquad x_0 \sim \mathcal N(0, I),\quad t: 0 \to 1,

whose solution at :math:`t = 1` is a sample (noise at 0, data at 1). Everything here is
written against a plain *velocity callable* ``velocity_fn(t, x) -> v`` with ``t`` a scalar
and ``x`` a batch ``(batch, *example_shape)``. To let model parameters be traced rather
than baked into the compiled program as constants, pass a pytree callable
(``jax.tree_util.Partial(apply_fn, params)`` or an :class:`equinox.Module`); plain Python
functions work too and are treated as static.

Solvers
-------
* Fixed step (whole batch as one ODE): ``euler`` (1 evaluation per step), ``midpoint`` and
  ``heun`` (2 per step). They are called at a number of function evaluations (NFE), so
  ``euler`` at NFE ``n`` takes ``n`` uniform steps and ``heun`` at NFE ``n`` takes ``n/2``.
* Adaptive (per example): ``dopri5`` and ``tsit5`` with a PID step-size controller at
  ``rtol``/``atol``. Each example is its own ODE (``vmap`` of ``diffeqsolve``) inside a
  per-device :func:`jax.shard_map` over a 1-D data mesh, so step sizes are chosen per example
  and devices never wait for each other.

NFE accounting (checked against an ``io_callback`` call counter in the tests): fixed-step NFE
is ``steps * stages``. Diffrax's Dopri5/Tsit5 are first-same-as-last (FSAL), so an adaptive
solve costs ``6 * num_steps + 1`` evaluations, rejected steps included (diffrax 0.7's
automatic initial step size, ``dt0=None``, adds no net evaluation). Under ``vmap`` the batch keeps looping
until its slowest example is done (finished examples are masked), so the compute actually
spent on a shard is the shard's maximum NFE; :class:`SampleResult` reports both.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kopaths.schedules import Schedule

__all__ = [
    "VelocityFn",
    "SampleResult",
    "FIXED_STEP_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "fixed_step_nfe_to_steps",
    "adaptive_nfe",
    "default_mesh",
    "per_example_map",
    "place_on_mesh",
    "make_solver",
    "make_controller",
    "sample_fixed",
    "sample_adaptive",
    "sample",
    "ScheduleTransformedVelocity",
]

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]

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


class SampleResult(NamedTuple):
    """Output of a sampler.

    Attributes:
      x: final states at ``t1``, shape ``(batch, *example_shape)``.
      nfe: velocity evaluations each example needed, int32 ``(batch,)``.
      nfe_max: evaluations actually executed for the batch (max over examples), int32 scalar.
      success: per-example solver success flags (False e.g. when ``max_steps`` was hit).
    """

    x: jax.Array
    nfe: jax.Array
    nfe_max: jax.Array
    success: jax.Array


def fixed_step_nfe_to_steps(method: str, nfe: int) -> int:
    """Number of uniform steps a fixed-step ``method`` takes at ``nfe`` evaluations.

    Raises ``ValueError`` for unknown methods or an NFE that is not a positive multiple of the
    method's stages per step.
    """
    if method not in FIXED_STEP_SOLVERS:
        raise ValueError(f"Unknown fixed-step method {method!r}; choose one of {sorted(FIXED_STEP_SOLVERS)}.")
    stages = FIXED_STEP_SOLVERS[method][1]
    if not isinstance(nfe, int) or nfe < stages or nfe % stages:
        raise ValueError(f"{method} needs an NFE that is a positive multiple of {stages}, got {nfe!r}.")
    return nfe // stages


def adaptive_nfe(num_steps: jax.Array) -> jax.Array:
    r"""Velocity evaluations of a diffrax FSAL 7-stage solve: :math:`6 n_\text{steps} + 1`.

    ``num_steps`` counts accepted and rejected steps (``sol.stats["num_steps"]``).
    """
    return 6 * jnp.asarray(num_steps, jnp.int32) + 1


def make_solver(method: str) -> diffrax.AbstractSolver:
    """The diffrax solver for ``method`` (euler, midpoint, heun, dopri5, tsit5)."""
    table = {**FIXED_STEP_SOLVERS, **ADAPTIVE_SOLVERS}
    if method not in table:
        raise ValueError(f"Unknown ODE method {method!r}; choose one of {sorted(table)}.")
    return table[method][0]()


def make_controller(rtol: float, atol: float, pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0):
    r"""PID step-size controller; the defaults (I-controller) match torchdiffeq's dopri5.

    Accepts a step when :math:`\|e\|_{\mathrm{RMS}}` of the scaled error
    :math:`e_i/(\mathrm{atol} + \mathrm{rtol}\,|y_i|)` is at most 1.
    """
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}.")
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=pcoeff, icoeff=icoeff, dcoeff=dcoeff)


def default_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all local devices) with axis name ``"data"``."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def per_example_map(fn_one: Callable[..., Any], velocity_fn: Any, inputs: tuple, mesh: Mesh | None) -> Any:
    r"""Applies ``fn_one(velocity_fn, *example_inputs)`` to every example, sharded over ``mesh``.

    ``inputs`` is a tuple of arrays with a common leading batch axis. The batch is padded to a
    multiple of the mesh size, split over the mesh axis ``"data"`` with :func:`jax.shard_map`,
    and ``vmap``-ed on each device. Array leaves of ``velocity_fn`` (model parameters) are
    passed in replicated. Must be called under ``jit`` (all public entry points are).
    """
    mesh = default_mesh() if mesh is None else mesh
    if mesh.axis_names != (DATA_AXIS,):
        raise ValueError(f"per_example_map needs a 1-D mesh with axis {DATA_AXIS!r}, got {mesh.axis_names}.")
    batch = inputs[0].shape[0]
    if any(a.shape[0] != batch for a in inputs):
        raise ValueError("All per-example inputs need the same leading batch size.")
    n_dev = mesh.size
    pad = (-batch) % n_dev
    if pad:
        inputs = tuple(jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)], axis=0) for a in inputs)
    dyn, static = eqx.partition(velocity_fn, eqx.is_array)

    def body(dyn_params, *shard):
        vf = eqx.combine(dyn_params, static)
        return jax.vmap(lambda *ex: fn_one(vf, *ex))(*shard)

    out = jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(P(),) + (P(DATA_AXIS),) * len(inputs),
        out_specs=P(DATA_AXIS),
        check_vma=False,
    )(dyn, *inputs)
    return jax.tree_util.tree_map(lambda a: a[:batch], out)


def place_on_mesh(tree: Any, mesh: Mesh | None) -> tuple[Any, Mesh]:
    """Replicates the array leaves of ``tree`` onto ``mesh`` (default: all devices).

    Lets inputs that live elsewhere (another mesh, one device) enter a computation sharded
    over ``mesh``; non-array leaves (functions, static config) are left untouched.
    """
    mesh = default_mesh() if mesh is None else mesh
    dyn, static = eqx.partition(tree, eqx.is_array)
    dyn = jax.device_put(dyn, NamedSharding(mesh, P()))
    return eqx.combine(dyn, static), mesh


def _batched_call(velocity_fn: VelocityFn, t, x_one: jax.Array) -> jax.Array:
    """Evaluates a batch-level ``velocity_fn`` on one example."""
    return velocity_fn(t, x_one[None])[0]


@eqx.filter_jit
def _sample_fixed(velocity_fn, x0, method: str, steps: int, t0: float, t1: float):
    solver = make_solver(method)
    term = diffrax.ODETerm(lambda t, y, args: velocity_fn(t, y))
    ts = jnp.linspace(t0, t1, steps + 1, dtype=x0.dtype)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=x0,
        stepsize_controller=diffrax.StepTo(ts=ts),
        saveat=diffrax.SaveAt(t1=True),
        adjoint=diffrax.ForwardMode(),
        max_steps=steps,
    )
    return sol.ys[-1]


def sample_fixed(
    velocity_fn: VelocityFn,
    x0: jax.Array,
    *,
    method: str = "euler",
    nfe: int,
    t0: float = 0.0,
    t1: float = 1.0,
) -> SampleResult:
    r"""Integrates :math:`\dot x = u_t(x)` from ``t0`` to ``t1`` with a fixed-step solver.

    Uses ``nfe // stages`` uniform steps on ``[t0, t1]`` for the whole batch at once, so exactly
    ``nfe`` velocity evaluations are made (``euler``: 1 per step, ``midpoint``/``heun``: 2).

    Args:
      velocity_fn: ``(t, x_batch) -> v_batch``.
      x0: initial states (noise), shape ``(batch, *example_shape)``.
      method: ``euler``, ``midpoint`` or ``heun``.
      nfe: number of function evaluations (a multiple of the method's stages).
    """
    steps = fixed_step_nfe_to_steps(method, nfe)
    _check_batch(x0)
    x1 = _sample_fixed(velocity_fn, x0, method, steps, float(t0), float(t1))
    b = x0.shape[0]
    return SampleResult(x1, jnp.full((b,), nfe, jnp.int32), jnp.asarray(nfe, jnp.int32), jnp.ones((b,), bool))


def _check_batch(x0) -> None:
    if not hasattr(x0, "ndim") or x0.ndim < 2:
        raise ValueError(f"x0 must be a batch of shape (batch, *example_shape), got {getattr(x0, 'shape', x0)}.")
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"x0 must be floating point, got {x0.dtype}.")


def solve_one_adaptive(
    field: Callable[[jax.Array, Any], Any],
    y0: Any,
    *,
    method: str,
    rtol: float,
    atol: float,
    t0: float,
    t1: float,
    max_steps: int,
    dt0: float | None = None,
    args: Any = None,
):
    r"""Adaptive diffrax solve of :math:`\dot y = f(t, y)` for one (unbatched) pytree state.

    Returns ``(y(t1), nfe, success)``; meant to be ``vmap``-ed over examples. Per-example
    inputs other than ``y0`` (e.g. Hutchinson probes) must be passed as ``args`` and are then
    given to ``field(t, y, args)``: closing over ``vmap``-batched values inside the solve makes
    diffrax's loop misbehave (observed with diffrax 0.7.2 / JAX 0.10.2).
    """
    if method not in ADAPTIVE_SOLVERS:
        raise ValueError(f"Unknown adaptive method {method!r}; choose one of {sorted(ADAPTIVE_SOLVERS)}.")
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm((lambda t, y, a: field(t, y)) if args is None else (lambda t, y, a: field(t, y, a))),
        make_solver(method),
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=y0,
        stepsize_controller=make_controller(rtol, atol),
        saveat=diffrax.SaveAt(t1=True),
        adjoint=diffrax.ForwardMode(),
        max_steps=max_steps,
        throw=False,
        args=args,
    )
    y1 = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
    nfe = adaptive_nfe(sol.stats["num_steps"])
    return y1, nfe, sol.result == diffrax.RESULTS.successful


@eqx.filter_jit
def _sample_adaptive(velocity_fn, x0, method, rtol, atol, t0, t1, max_steps, mesh):
    def one(vf, x):
        return solve_one_adaptive(
            lambda t, y: _batched_call(vf, t, y),
            x,
            method=method,
            rtol=rtol,
            atol=atol,
            t0=t0,
            t1=t1,
            max_steps=max_steps,
        )

    return per_example_map(one, velocity_fn, (x0,), mesh)


def sample_adaptive(
    velocity_fn: VelocityFn,
    x0: jax.Array,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t0: float = 0.0,
    t1: float = 1.0,
    max_steps: int = 4096,
    mesh: Mesh | None = None,
) -> SampleResult:
    r"""Integrates :math:`\dot x = u_t(x)` per example with an adaptive solver (``dopri5``/``tsit5``).

    Each example has its own step sizes (``vmap`` of ``diffeqsolve``) inside a per-device
    ``shard_map`` over ``mesh`` (default: all devices). ``nfe`` is per example;
    ``nfe_max`` is the maximum over the batch.
    """
    _check_batch(x0)
    (velocity_fn, x0), mesh = place_on_mesh((velocity_fn, x0), mesh)
    x1, nfe, ok = _sample_adaptive(velocity_fn, x0, method, float(rtol), float(atol), float(t0), float(t1), int(max_steps), mesh)
    return SampleResult(x1, nfe, jnp.max(nfe), ok)


def sample(velocity_fn: VelocityFn, x0: jax.Array, *, method: str, nfe: int | None = None, **kwargs) -> SampleResult:
    """Dispatches to :func:`sample_fixed` (needs ``nfe``) or :func:`sample_adaptive` (``rtol``/``atol``)."""
    if method in FIXED_STEP_SOLVERS:
        if nfe is None:
            raise ValueError(f"Fixed-step method {method!r} needs nfe.")
        return sample_fixed(velocity_fn, x0, method=method, nfe=nfe, **kwargs)
    if method in ADAPTIVE_SOLVERS:
        if nfe is not None:
            raise ValueError(f"Adaptive method {method!r} chooses its own NFE; pass rtol/atol instead.")
        return sample_adaptive(velocity_fn, x0, method=method, **kwargs)
    raise ValueError(f"Unknown method {method!r}; choose one of {sorted({**FIXED_STEP_SOLVERS, **ADAPTIVE_SOLVERS})}.")


class ScheduleTransformedVelocity(eqx.Module):
    r"""Velocity of a model trained on schedule A, re-expressed for schedule B (scale-time).

    Both paths share their end points up to a reparametrisation. With the angle
    :math:`\theta = \arctan s` and radius :math:`\rho = \sqrt{\alpha^2+\sigma^2}`, let
    :math:`r_t = \theta_A^{-1}(\theta_B(t))` (equal signal-to-noise ratio) and
    :math:`c_t = \rho_B(t)/\rho_A(r_t)`; then :math:`x^B_t = c_t\,x^A_{r_t}`, hence

    .. math::  u^B_t(x) = \frac{\dot c_t}{c_t}\,x + c_t\,\dot r_t\,u^A_{r_t}(x / c_t),\qquad
               \dot r_t = \dot\theta_B(t)/\dot\theta_A(r_t),\quad
               \dot c_t = \big(\dot\rho_B(t) - c_t\,\dot\rho_A(r_t)\,\dot r_t\big)/\rho_A(r_t).

    This is exact for the ideal marginal field (Meta's ``ScheduleTransformedModel`` does the same
    in :math:`(s, \sigma)`). The polar form stays finite at both ends, so the transform works from
    ``t = 0`` and between any schedules, tabulated KO paths included. Time is clipped to
    ``[0, 1 - t_eps]`` only for schedules whose :math:`\dot\sigma` is infinite at ``t = 1`` (VP).
    """

    velocity_fn: Any
    original: Schedule
    new: Schedule
    t_eps: float = eqx.field(static=True, default=0.0)

    def coefficients(self, t) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(r_t, c_t, dr_t, dc_t)`` of the reparametrisation at ``t``."""
        pb = self.new.polar(t)
        r = self.original.angle_inverse(pb.angle)
        pa = self.original.polar(r)
        dr = pb.d_angle / pa.d_angle
        c = pb.radius / pa.radius
        dc = (pb.d_radius - c * pa.d_radius * dr) / pa.radius
        return r, c, dr, dc

    def __call__(self, t, x: jax.Array) -> jax.Array:
        """Velocity under the new schedule at scalar time ``t`` for a batch ``x``."""
        t = jnp.clip(jnp.asarray(t, x.dtype), 0.0, 1.0 - self.t_eps)
        r, c, dr, dc = (jnp.asarray(v, x.dtype) for v in self.coefficients(t))
        return (dc / c) * x + (c * dr) * self.velocity_fn(r, x / c)
