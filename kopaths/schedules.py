r"""Gaussian probability-path schedules.

A schedule defines the conditional path

.. math::  p_t(x \mid x_1) = \mathcal N(\alpha_t x_1, \sigma_t^2 I),\qquad t\in[0,1],

with noise at :math:`t=0` (:math:`\alpha_0=0, \sigma_0=1`) and data at :math:`t=1`
(:math:`\alpha_1=1, \sigma_1=\sigma_{\min}`). Calling a schedule on ``t`` returns
``SchedulerOutput(alpha, sigma, d_alpha, d_sigma)``. Every schedule is an
:class:`equinox.Module`, hence a pytree: it can be passed through ``jax.jit``,
``jax.vmap`` and ``jax.grad`` (with respect to ``t`` or to its array fields).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

__all__ = [
    "HALF_PI",
    "SchedulerOutput",
    "PolarOutput",
    "Schedule",
    "CondOTSchedule",
    "VPSchedule",
    "CosineSchedule",
    "LinearVPSchedule",
    "PolynomialSchedule",
    "TabulatedSchedule",
    "PathSpec",
    "PATHS",
    "path_spec",
    "get_schedule",
]

HALF_PI = 0.5 * math.pi


class SchedulerOutput(NamedTuple):
    """Values and time derivatives of a schedule at ``t``."""

    alpha: jax.Array
    sigma: jax.Array
    d_alpha: jax.Array
    d_sigma: jax.Array


class PolarOutput(NamedTuple):
    r"""A schedule in polar coordinates :math:`(\alpha, \sigma) = \rho(\sin\theta, \cos\theta)`.

    :math:`\theta = \arctan s_t` is the angle of the signal-to-noise ratio; all four fields stay
    finite where :math:`\sigma_t = 0`, unlike :math:`s_t` and :math:`\dot s_t`.
    """

    radius: jax.Array
    angle: jax.Array
    d_radius: jax.Array
    d_angle: jax.Array


def polar_from_cartesian(out: SchedulerOutput) -> PolarOutput:
    r""":math:`\rho = |(\alpha,\sigma)|`, :math:`\theta = \operatorname{atan2}(\alpha,\sigma)`,
    :math:`\dot\rho = (\alpha\dot\alpha + \sigma\dot\sigma)/\rho`,
    :math:`\dot\theta = (\sigma\dot\alpha - \alpha\dot\sigma)/\rho^2`."""
    a, s, da, ds = out
    r2 = a * a + s * s
    r = jnp.sqrt(r2)
    return PolarOutput(r, jnp.arctan2(a, s), (a * da + s * ds) / r, (s * da - a * ds) / r2)


def _as_time(t) -> jax.Array:
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t


def _as_angle(angle) -> jax.Array:
    """Angles clipped to ``[0, pi/2]``, the range of ``atan2(alpha, sigma)``."""
    return jnp.clip(_as_time(angle), 0.0, HALF_PI)


def check_sigma_min(sigma_min: float) -> float:
    """Validates ``sigma_min`` in ``[0, 1)`` and returns it as a float."""
    sigma_min = float(sigma_min)
    if not np.isfinite(sigma_min) or not 0.0 <= sigma_min < 1.0:
        raise ValueError(f"sigma_min must lie in [0, 1), got {sigma_min!r}.")
    return sigma_min


class Schedule(eqx.Module):
    r"""Abstract Gaussian-path schedule :math:`t \mapsto (\alpha_t, \sigma_t)`.

    Subclasses implement :meth:`__call__`. The inverse of the monotone angle
    :math:`\theta_t = \operatorname{atan2}(\alpha_t, \sigma_t) = \arctan s_t` defaults to a
    bisection root find (optimistix) and is overridden where a closed form exists;
    :meth:`snr_inverse` is expressed through it, so it is defined from :math:`s = 0`
    (:math:`t = 0`) to :math:`s = \infty` (:math:`t = 1` when :math:`\sigma_{\min} = 0`).
    """

    @abc.abstractmethod
    def __call__(self, t) -> SchedulerOutput:
        """Returns ``(alpha, sigma, d_alpha, d_sigma)`` at ``t`` (any shape)."""

    def snr(self, t) -> jax.Array:
        r"""Signal-to-noise ratio :math:`s_t = \alpha_t / \sigma_t` (``inf`` where sigma is 0)."""
        out = self(t)
        return out.alpha / out.sigma

    def polar(self, t) -> PolarOutput:
        r"""``(radius, angle, d_radius, d_angle)`` at ``t``; finite where :math:`\sigma_t = 0`."""
        return polar_from_cartesian(self(t))

    def angle(self, t) -> jax.Array:
        r""":math:`\theta_t = \operatorname{atan2}(\alpha_t, \sigma_t) \in [0, \pi/2]`."""
        return self.polar(t).angle

    def angle_inverse(self, angle) -> jax.Array:
        r"""Time ``t`` with ``self.angle(t) == angle`` (elementwise).

        Angles below :math:`\theta_0` map to ``t = 0`` and above :math:`\theta_1` to ``t = 1``.
        """
        angle = _as_angle(angle)
        dtype = angle.dtype
        lo, hi = jnp.asarray(0.0, dtype), jnp.asarray(1.0, dtype)
        theta_0, theta_1 = self.angle(lo), self.angle(hi)

        def solve(target):
            # Bisection needs a strict sign change; endpoint targets are answered directly below.
            # theta_0 < goal < theta_1 makes the residual negative at t = 0 and positive at t = 1,
            # so its sign is given (flip=False) rather than detected: that saves two evaluations
            # and an error check, whose host callback would keep JAX from caching the program.
            inside = (target > theta_0) & (target < theta_1)
            goal = jnp.where(inside, target, 0.5 * (theta_0 + theta_1))
            sol = optx.root_find(
                lambda t, _: self.angle(t) - goal,
                optx.Bisection(rtol=0.0, atol=4 * jnp.finfo(dtype).eps, flip=False),
                jnp.asarray(0.5, dtype),
                options=dict(lower=lo, upper=hi),
                max_steps=128,
                throw=False,
            )
            return jnp.where(target <= theta_0, lo, jnp.where(target >= theta_1, hi, sol.value))

        flat = jax.vmap(solve)(angle.reshape(-1))
        return flat.reshape(angle.shape)

    def snr_inverse(self, snr) -> jax.Array:
        """Time ``t`` with ``self.snr(t) == snr`` (elementwise; ``snr`` in ``[0, inf]``)."""
        return self.angle_inverse(jnp.arctan(_as_time(snr)))


class CondOTSchedule(Schedule):
    r"""Conditional optimal transport: :math:`\alpha_t = t,\ \sigma_t = 1-(1-\sigma_{\min})t`."""

    sigma_min: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        check_sigma_min(self.sigma_min)

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        c = 1.0 - self.sigma_min
        return SchedulerOutput(t, 1.0 - c * t, jnp.ones_like(t), jnp.full_like(t, -c))

    def angle_inverse(self, angle) -> jax.Array:
        angle = _as_angle(angle)
        sin, cos = jnp.sin(angle), jnp.cos(angle)
        return jnp.clip(sin / (cos + (1.0 - self.sigma_min) * sin), 0.0, 1.0)


class VPSchedule(Schedule):
    r"""DDPM / variance preserving path in the noise-at-0 convention.

    .. math::
        T(t) = \tfrac12 (1-t)^2(\beta_{\max}-\beta_{\min}) + (1-t)\beta_{\min},\quad
        \alpha_t = e^{-T(t)/2},\quad \sigma_t = \sqrt{1-\alpha_t^2}.

    ``sigma_1 = 0`` and :math:`\sigma'_t \to -\infty` as :math:`t\to1`, so energies of this
    path are finite only on :math:`[0, 1-\epsilon]`.
    """

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)

    def __check_init__(self):
        if not 0.0 < self.beta_min < self.beta_max:
            raise ValueError(
                f"VPSchedule needs 0 < beta_min < beta_max, got {self.beta_min}, {self.beta_max}."
            )

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        u = 1.0 - t
        db = self.beta_max - self.beta_min
        big_t = 0.5 * u**2 * db + u * self.beta_min
        d_big_t = -(u * db + self.beta_min)
        alpha = jnp.exp(-0.5 * big_t)
        one_minus_a2 = -jnp.expm1(-big_t)
        sigma = jnp.sqrt(one_minus_a2)
        d_alpha = -0.5 * d_big_t * alpha
        d_sigma = -alpha * d_alpha / sigma
        return SchedulerOutput(alpha, sigma, d_alpha, d_sigma)

    def angle_inverse(self, angle) -> jax.Array:
        angle = _as_angle(angle)
        big_t = -2.0 * jnp.log(jnp.sin(angle))  # log(1 + 1/s^2) with s = tan(angle)
        db = self.beta_max - self.beta_min
        u = (jnp.sqrt(self.beta_min**2 + 2.0 * db * big_t) - self.beta_min) / db
        return jnp.clip(1.0 - u, 0.0, 1.0)


class CosineSchedule(Schedule):
    r"""Stochastic-interpolant / trigonometric path: :math:`\alpha_t=\sin(\pi t/2),\ \sigma_t=\cos(\pi t/2)`."""

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        h = HALF_PI
        cos = jnp.maximum(jnp.cos(h * t), 0.0)  # cos(pi/2) is -4e-8 in float32
        return SchedulerOutput(jnp.sin(h * t), cos, h * cos, -h * jnp.sin(h * t))

    def angle_inverse(self, angle) -> jax.Array:
        return _as_angle(angle) / HALF_PI


class LinearVPSchedule(Schedule):
    r"""Linear variance-preserving path: :math:`\alpha_t = t,\ \sigma_t=\sqrt{1-t^2}`."""

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        sigma = jnp.sqrt(1.0 - t**2)
        return SchedulerOutput(t, sigma, jnp.ones_like(t), -t / sigma)

    def angle_inverse(self, angle) -> jax.Array:
        return jnp.sin(_as_angle(angle))


class PolynomialSchedule(Schedule):
    r"""Polynomial path: :math:`\alpha_t = t^n,\ \sigma_t = 1-t^n` (``n > 0``)."""

    exponent: float = eqx.field(static=True, default=2.0)

    def __check_init__(self):
        if not self.exponent > 0:
            raise ValueError(f"PolynomialSchedule needs exponent > 0, got {self.exponent}.")

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        n = self.exponent
        tn = t**n
        dtn = n * t ** (n - 1)
        return SchedulerOutput(tn, 1.0 - tn, dtn, -dtn)

    def angle_inverse(self, angle) -> jax.Array:
        angle = _as_angle(angle)
        sin, cos = jnp.sin(angle), jnp.cos(angle)
        return jnp.clip(sin / (sin + cos), 0.0, 1.0) ** (1.0 / self.exponent)


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson shape-preserving slopes of a monotone cubic Hermite interpolant."""
    h = np.diff(x)
    delta = np.diff(y) / h
    m = np.zeros_like(y)
    if len(x) == 2:
        return np.full_like(y, delta[0])
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = (delta[:-1] * delta[1:]) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    m[1:-1] = np.where(same_sign, harmonic, 0.0)

    def end_slope(h0, h1, d0, d1):
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(s) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(s) > abs(3 * d0):
            return 3 * d0
        return s

    m[0] = end_slope(h[0], h[1], delta[0], delta[1])
    m[-1] = end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return m


@jax.jit
def hermite_eval(x, knots, values, slopes):
    """Evaluates a cubic Hermite interpolant and its derivative at ``x`` (clamped to the knots)."""
    x = jnp.clip(x, knots[0], knots[-1])
    i = jnp.clip(jnp.searchsorted(knots, x, side="right") - 1, 0, knots.shape[0] - 2)
    x0, x1 = knots[i], knots[i + 1]
    h = x1 - x0
    u = (x - x0) / h
    y0, y1, m0, m1 = values[i], values[i + 1], slopes[i] * h, slopes[i + 1] * h
    u2, u3 = u * u, u * u * u
    val = (2 * u3 - 3 * u2 + 1) * y0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * y1 + (u3 - u2) * m1
    der = ((6 * u2 - 6 * u) * y0 + (3 * u2 - 4 * u + 1) * m0 + (-6 * u2 + 6 * u) * y1 + (3 * u2 - 2 * u) * m1) / h
    return val, der


class TabulatedSchedule(Schedule):
    r"""Schedule given by a table on knots :math:`t_i`, for paths known only numerically (KO).

    The table is interpolated by monotone (Fritsch-Carlson) cubic Hermite splines, which are
    :math:`C^1`, never overshoot a monotone table, and whose returned derivatives are the
    exact derivatives of the returned values. With ``coordinates="polar"`` the splines
    interpolate :math:`\rho=\sqrt{\alpha^2+\sigma^2}` and :math:`\theta=\operatorname{atan2}(\alpha,\sigma)`
    instead of :math:`(\alpha,\sigma)`; this keeps :math:`\rho` exact where :math:`\theta` moves fast,
    as KO paths do near :math:`t=0`. Each row is stored as its offset from its value at
    :math:`t=0` (``origin``), so float32 evaluation keeps the derivatives accurate on the tiny
    intervals near :math:`t = 0`. Build one with :meth:`from_table`.
    """

    knots: jax.Array
    values: jax.Array
    slopes: jax.Array
    origin: jax.Array
    coordinates: str = eqx.field(static=True, default="cartesian")

    @classmethod
    def from_table(cls, t, alpha, sigma, *, coordinates: str = "cartesian", **kwargs) -> "TabulatedSchedule":
        """Builds the interpolant, validating the table (increasing knots covering [0, 1])."""
        t, alpha, sigma = (np.asarray(v, dtype=np.float64) for v in (t, alpha, sigma))
        if t.ndim != 1 or alpha.shape != t.shape or sigma.shape != t.shape or t.size < 2:
            raise ValueError(
                "TabulatedSchedule needs 1-D t, alpha and sigma of equal length >= 2; got shapes "
                f"{t.shape}, {alpha.shape}, {sigma.shape}."
            )
        if not np.all(np.isfinite(t) & np.isfinite(alpha) & np.isfinite(sigma)):
            raise ValueError("TabulatedSchedule table contains NaN or Inf.")
        if np.any(np.diff(t) <= 0):
            raise ValueError("TabulatedSchedule knots t must be strictly increasing.")
        if abs(t[0]) > 1e-12 or abs(t[-1] - 1.0) > 1e-12:
            raise ValueError(f"TabulatedSchedule knots must span [0, 1], got [{t[0]}, {t[-1]}].")
        if np.any(sigma < -1e-6):
            raise ValueError("TabulatedSchedule sigma must be non-negative.")
        sigma = np.maximum(sigma, 0.0)
        if coordinates == "cartesian":
            rows = np.stack([alpha, sigma])
        elif coordinates == "polar":
            rows = np.stack([np.hypot(alpha, sigma), np.arctan2(alpha, sigma)])
        else:
            raise ValueError(f"coordinates must be 'cartesian' or 'polar', got {coordinates!r}.")
        origin = rows[:, 0].copy()
        return cls._from_offsets(t, rows - origin[:, None], origin, coordinates, **kwargs)

    @classmethod
    def from_polar_offsets(cls, t, radius_offset, angle, radius_origin: float, **kwargs) -> "TabulatedSchedule":
        r"""Builds a polar table from :math:`\rho_i - \rho_0`, :math:`\theta_i` and :math:`\rho_0`:
        the exact form :meth:`offsets` returns (through :math:`(\alpha, \sigma)` in float32 the
        radius near 1 would be rounded to steps of 6e-8, faking speeds where the knots are close)."""
        t, dr, th = (np.asarray(v, dtype=np.float64) for v in (t, radius_offset, angle))
        if t.ndim != 1 or dr.shape != t.shape or th.shape != t.shape or t.size < 2:
            raise ValueError(f"Polar table needs 1-D t, radius offsets and angles of one length >= 2; got shapes "
                             f"{t.shape}, {dr.shape}, {th.shape}.")
        if not (np.all(np.isfinite(t) & np.isfinite(dr) & np.isfinite(th)) and np.isfinite(radius_origin)):
            raise ValueError("Polar table contains NaN or Inf.")
        if np.any(np.diff(t) <= 0) or abs(t[0]) > 1e-12 or abs(t[-1] - 1.0) > 1e-12:
            raise ValueError("Polar table knots must increase strictly from 0 to 1.")
        if dr[0] != 0.0 or np.any(radius_origin + dr <= 0) or np.any(th < -1e-6) or np.any(th > np.pi / 2 + 1e-6):
            raise ValueError("Polar table needs radius offsets starting at 0, positive radii and angles in [0, pi/2].")
        return cls._from_offsets(t, np.stack([dr, th - th[0]]), np.array([radius_origin, th[0]]), "polar", **kwargs)

    @classmethod
    def _from_offsets(cls, t, rows, origin, coordinates: str, **kwargs) -> "TabulatedSchedule":
        slopes = np.stack([pchip_slopes(t, row) for row in rows])
        dtype = jnp.result_type(float)
        return cls(jnp.asarray(t, dtype), jnp.asarray(rows, dtype), jnp.asarray(slopes, dtype), jnp.asarray(origin, dtype),
                   coordinates, **kwargs)

    def offsets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(knots, rows - origin, origin)`` as stored: the table without rounding."""
        return tuple(np.asarray(v, np.float64) for v in (self.knots, self.values, self.origin))

    def _rows(self, t):
        knots, values, slopes, origin = (v.astype(t.dtype) for v in (self.knots, self.values, self.slopes, self.origin))
        u, du = hermite_eval(t, knots, values[0], slopes[0])
        v, dv = hermite_eval(t, knots, values[1], slopes[1])
        return u + origin[0], v + origin[1], du, dv

    def __call__(self, t) -> SchedulerOutput:
        t = _as_time(t)
        u, v, du, dv = self._rows(t)
        if self.coordinates == "cartesian":
            return SchedulerOutput(u, v, du, dv)
        sin, cos = jnp.sin(v), jnp.cos(v)
        sigma = jnp.maximum(u * cos, 0.0)  # cos(pi/2) is -4e-8 in float32
        return SchedulerOutput(u * sin, sigma, du * sin + u * cos * dv, du * cos - u * sin * dv)

    def polar(self, t) -> PolarOutput:
        if self.coordinates == "cartesian":
            return super().polar(t)
        return PolarOutput(*self._rows(_as_time(t)))


@dataclasses.dataclass(frozen=True)
class PathSpec:
    r"""One entry of the path registry :data:`PATHS`.

    Attributes:
      name: canonical name used in configs and file names (``"cond_ot"``).
      label: name for tables and plots (``"Cond-OT"``).
      schedule_class: the analytic schedule, or ``None`` for data-dependent paths (KO, solved by
        :func:`kopaths.ko.solve_ko` from the data's separation function).
      config_keys: the constructor fields a config may set.
      t_max: upper end of the time range for energies and training; below 1 where
        :math:`\dot\sigma_t` is not square integrable at ``t = 1`` (VP, linear-VP).
      aliases: other accepted names.
    """

    name: str
    label: str
    schedule_class: Callable[..., Schedule] | None
    config_keys: tuple[str, ...] = ()
    t_max: float = 1.0
    aliases: tuple[str, ...] = ()

    def build(self, **kwargs) -> Schedule:
        """The schedule with the given config fields (unknown fields raise ``ValueError``)."""
        if self.schedule_class is None:
            raise ValueError(
                f"Path {self.name!r} depends on the data: build it with kopaths.solve_ko_from_data "
                "(or kopaths.solve_ko on a fitted lambda), or load a saved one with kopaths.load_ko_schedule."
            )
        unknown = set(kwargs) - set(self.config_keys)
        if unknown:
            raise ValueError(f"Path {self.name!r} takes {list(self.config_keys)}, not {sorted(unknown)}.")
        return self.schedule_class(**kwargs)


#: The path registry: every list of paths in kopaths derives from it.
PATHS: dict[str, PathSpec] = {
    spec.name: spec
    for spec in (
        PathSpec("cond_ot", "Cond-OT", CondOTSchedule, ("sigma_min",), aliases=("condot",)),
        PathSpec("vp", "DDPM (VP)", VPSchedule, ("beta_min", "beta_max"), t_max=1.0 - 1e-5, aliases=("ddpm",)),
        PathSpec("cosine", "SI (cosine)", CosineSchedule, (), aliases=("si",)),
        PathSpec("linear_vp", "Linear-VP", LinearVPSchedule, (), t_max=1.0 - 1e-5),
        PathSpec("polynomial", "Polynomial", PolynomialSchedule, ("exponent",)),
        PathSpec("ko", "KO", None, ("sigma_min",)),
    )
}


def path_spec(name: str) -> PathSpec:
    """The registry entry for ``name`` or one of its aliases; ``ValueError`` naming the valid ones."""
    key = str(name).lower()
    for spec in PATHS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise ValueError(f"Unknown path {name!r}; choose one of {list(PATHS)}.")


def get_schedule(name: str, **kwargs) -> Schedule:
    """Builds an analytic schedule by registry name or alias (``cond_ot``, ``vp``/``ddpm``, ``cosine``/``si``, ...)."""
    return path_spec(name).build(**kwargs)
