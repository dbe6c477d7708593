r"""Kinetic-optimal (KO) Gaussian paths.

In polar coordinates :math:`(\alpha,\sigma) = r(\sin\theta,\cos\theta)` the kinetic energy is
:math:`\int_0^1 \dot r^2 + r^2\gamma(\theta)\dot\theta^2\,dt`. With
:math:`\phi(\theta)=\int_0^\theta\sqrt{\gamma}` this is the Euclidean energy of the planar
curve with polar coordinates :math:`(r,\phi)`, so the KO path is the straight chord, run at
constant speed, from :math:`(r,\phi)=(1,0)` to :math:`(r_1,\Phi)`, with
:math:`r_1=\sqrt{1+\sigma_{\min}^2}` and :math:`\Phi=\phi(\theta_1)`,
:math:`\theta_1=\arctan(1/\sigma_{\min})`. Its energy is
:math:`b = 1 + r_1^2 - 2r_1\cos\Phi` (:math:`=2(1-\cos\Phi)` when :math:`\sigma_{\min}=0`).

:func:`solve_ko` offers that closed form and, as an independent check, shooting on
Theorem 3.1's ODE (Shaul et al., 2023) written in :math:`\theta`:
:math:`dt/d\theta = r_t^2\sqrt{\gamma(\theta)}/L` with
:math:`r_t^2 = 1-(b+1-r_1^2)t + bt^2`, :math:`L^2 = r_1^2-(1+r_1^2-b)^2/4`, solved with
diffrax and the root :math:`t(\theta_1)=1` found in :math:`b` with optimistix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from kopaths.lambda_fit import LambdaFit
from kopaths.schedules import TabulatedSchedule, check_sigma_min
from kopaths.separation import atomic_write_text

__all__ = ["KOSchedule", "DegenerateLambdaError", "solve_ko", "load_ko_schedule", "default_time_knots"]

HALF_PI = 0.5 * math.pi


class DegenerateLambdaError(ValueError):
    """Raised when gamma is (numerically) zero everywhere, so no unique KO path exists."""


class KOSchedule(TabulatedSchedule):
    r"""A tabulated kinetic-optimal schedule with its solve report.

    Attributes (static): ``b`` (the optimal energy constant; equals the kinetic energy),
    ``energy`` (kinetic energy of the exact geodesic), ``solve_seconds``, ``method`` and
    ``sigma_min``.
    """

    b: float = eqx.field(static=True, default=float("nan"))
    energy: float = eqx.field(static=True, default=float("nan"))
    solve_seconds: float = eqx.field(static=True, default=float("nan"))
    method: str = eqx.field(static=True, default="")
    sigma_min: float = eqx.field(static=True, default=0.0)

    def to_dict(self) -> dict:
        return {
            "format": "kopaths.KOSchedule/1",
            "t": np.asarray(self.knots, np.float64).tolist(),
            "alpha": np.asarray(self(self.knots).alpha, np.float64).tolist(),
            "sigma": np.asarray(self(self.knots).sigma, np.float64).tolist(),
            "b": self.b,
            "energy": self.energy,
            "solve_seconds": self.solve_seconds,
            "method": self.method,
            "sigma_min": self.sigma_min,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the schedule as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict()))


def load_ko_schedule(path: str | os.PathLike) -> KOSchedule:
    """Reads a schedule written by :meth:`KOSchedule.save`, with clear errors for bad files."""
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"KO schedule file {path} does not exist.") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"KO schedule file {path} is not valid JSON: {e}") from None
    if not isinstance(d, dict) or d.get("format") != "kopaths.KOSchedule/1":
        raise ValueError(f"{path} is not a kopaths KO schedule (format kopaths.KOSchedule/1).")
    try:
        return KOSchedule.from_table(
            d["t"], d["alpha"], d["sigma"], coordinates="polar", b=float(d["b"]), energy=float(d["energy"]),
            solve_seconds=float(d["solve_seconds"]), method=str(d["method"]), sigma_min=float(d["sigma_min"]),
        )
    except KeyError as e:
        raise ValueError(f"KO schedule file {path} lacks field {e}.") from None


def default_time_knots(num: int = 1025) -> np.ndarray:
    """Uniform knots on [0, 1] plus geometric knots near 0, where KO paths move fastest."""
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, num), np.geomspace(1e-9, 1.0 / (num - 1), 64)]))


def _theta_grid(lam: LambdaFit, theta_1: float, num: int, gamma_floor: float = 0.0):
    theta = np.linspace(0.0, theta_1, num)
    with jax.enable_x64(True):
        gamma = np.asarray(lam.gamma(jnp.asarray(theta, jnp.float64)), np.float64)
    sqrt_gamma = np.sqrt(np.maximum(gamma, gamma_floor))
    phi = np.concatenate([[0.0], np.cumsum(0.5 * (sqrt_gamma[1:] + sqrt_gamma[:-1]) * np.diff(theta))])
    return theta, phi


def _endpoint(sigma_min: float):
    theta_1 = HALF_PI if sigma_min == 0.0 else math.atan(1.0 / sigma_min)
    return theta_1, math.sqrt(1.0 + sigma_min**2)


def _invert(values_at_t: np.ndarray, grid_values: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """theta(t) from a non-decreasing table value(theta), made strictly increasing first."""
    strict = grid_values + 1e-13 * theta
    return np.interp(values_at_t, strict, theta)


def _closed_form(lam: LambdaFit, sigma_min: float, t: np.ndarray, grid: int, gamma_floor: float = 0.0):
    theta_1, r1 = _endpoint(sigma_min)
    theta, phi = _theta_grid(lam, theta_1, grid, gamma_floor)
    big_phi = phi[-1]
    px = (1 - t) + t * r1 * math.cos(big_phi)
    py = t * r1 * math.sin(big_phi)
    r = np.hypot(px, py)
    th = _invert(np.arctan2(py, px), phi, theta)
    energy = 1.0 + r1**2 - 2.0 * r1 * math.cos(big_phi)
    return r, th, energy, big_phi


def _theorem_3_1_field(theta, y, args):
    """dt/dtheta of Theorem 3.1's optimal path, written in theta (regular where gamma = 0)."""
    b, lam, r1, gamma_floor = args
    y = jnp.minimum(y, 2.0)  # beyond t = 1 only the sign of the residual matters; avoids blow-up
    r2 = 1.0 - (b + 1.0 - r1**2) * y + b * y * y
    ang = jnp.sqrt(jnp.maximum(r1**2 - 0.25 * (1.0 + r1**2 - b) ** 2, 1e-300))
    return r2 * jnp.sqrt(jnp.maximum(lam.gamma(theta), gamma_floor)) / ang


def _integrate(lam, b, r1, theta_1, gamma_floor, saveat, rtol):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_theorem_3_1_field), diffrax.Tsit5(), 0.0, theta_1, None, jnp.zeros((), theta_1.dtype),
        args=(b, lam, r1, gamma_floor), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-2),
        saveat=saveat, max_steps=65536,
    )
    return sol.ys


@eqx.filter_jit
def _shoot(lam, r1, theta_1, gamma_floor, thetas, rtol):
    """Bisection on b for t(theta_1) = 1, then t at ``thetas``; compiled once per shape."""
    b_lo = (r1 - 1.0) ** 2 + 1e-12  # energies with Phi in (0, pi/2]: t(theta_1) - 1 decreases in b
    b_hi = 1.0 + r1**2

    def residual(b, _):
        return _integrate(lam, b, r1, theta_1, gamma_floor, diffrax.SaveAt(t1=True), rtol)[-1] - 1.0

    sol = optx.root_find(
        residual, optx.Bisection(rtol=1e-14, atol=1e-13), 0.5 * (b_lo + b_hi),
        options=dict(lower=b_lo, upper=b_hi), max_steps=200, throw=False,
    )
    return sol.value, _integrate(lam, sol.value, r1, theta_1, gamma_floor, diffrax.SaveAt(ts=thetas), rtol)


def _shooting(lam: LambdaFit, sigma_min: float, t: np.ndarray, grid: int, rtol: float, gamma_floor: float = 0.0):
    theta_1, r1 = _endpoint(sigma_min)
    theta = np.linspace(0.0, theta_1, grid)
    with jax.enable_x64(True):
        lam64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), lam)
        b, t_of_theta = _shoot(lam64, jnp.float64(r1), jnp.float64(theta_1), jnp.float64(gamma_floor), jnp.asarray(theta), rtol)
        b, t_of_theta = float(b), np.asarray(t_of_theta, np.float64)
    t_of_theta = np.maximum.accumulate(np.clip(t_of_theta, 0.0, 1.0))
    th = _invert(t, t_of_theta, theta)
    r = np.sqrt(np.maximum(1.0 - (b + 1.0 - r1**2) * t + b * t * t, 0.0))
    return r, th, b


def solve_ko(
    lam: LambdaFit,
    sigma_min: float = 0.0,
    *,
    method: Literal["closed_form", "shooting"] = "closed_form",
    time_knots: np.ndarray | None = None,
    theta_grid: int = 1 << 16,
    rtol: float = 1e-10,
    gamma_floor: float = 0.0,
) -> KOSchedule:
    r"""Solves for the kinetic-optimal schedule of data with separation function ``lam``.

    Args:
      lam: the fitted separation function (:func:`kopaths.fit_lambda`, or
        :meth:`LambdaFit.constant_one` / :meth:`LambdaFit.from_table`).
      sigma_min: end noise level, in ``[0, 1)``.
      method: ``"closed_form"`` (unfolded geodesic) or ``"shooting"`` (Theorem 3.1's ODE).
      time_knots: knots of the returned table (default :func:`default_time_knots`).
      theta_grid: resolution of the :math:`\theta` table used to integrate and invert.
      gamma_floor: solve with :math:`\max(\gamma, \epsilon)` instead of :math:`\gamma`. The exact
        KO path crosses regions where :math:`\hat\gamma\approx0` almost instantly
        (:math:`\dot\theta\propto\gamma^{-1/2}`), so it is sensitive to where an estimated
        :math:`\hat\lambda` touches the Gaussian bound; a floor caps
        :math:`\dot\theta\le\dot\phi/\sqrt\epsilon`. The returned ``b`` is then the energy in
        the floored metric, an upper bound on the path's true energy. It also makes Gaussian data
        solvable.

    Returns:
      A :class:`KOSchedule`, usable anywhere a schedule is, carrying ``b``, ``energy`` and
      ``solve_seconds``.

    Raises:
      DegenerateLambdaError: if :math:`\gamma\equiv0` (e.g. exactly Gaussian data), where every
        path with :math:`r\equiv1` has zero energy and the KO path is not unique.
    """
    start = time.perf_counter()
    sigma_min = check_sigma_min(sigma_min)
    if not isinstance(lam, LambdaFit):
        raise TypeError(f"lam must be a kopaths.LambdaFit, got {type(lam).__name__}.")
    t = default_time_knots() if time_knots is None else np.asarray(time_knots, np.float64)
    gamma_floor = float(gamma_floor)
    if not 0.0 <= gamma_floor <= 1.0:
        raise ValueError(f"gamma_floor must lie in [0, 1], got {gamma_floor}.")
    theta_1, r1 = _endpoint(sigma_min)
    _, phi = _theta_grid(lam, theta_1, 4097, gamma_floor)
    if phi[-1] < 1e-3:
        raise DegenerateLambdaError(
            "gamma(theta) = 1 - (1 - lambda)/cos^2(theta) is zero everywhere (Gaussian-like data): every "
            "path with alpha^2 + sigma^2 = 1 (e.g. kopaths.CosineSchedule) has zero kinetic energy, so "
            "the KO path is not unique. Use one of those schedules."
        )
    if method == "closed_form":
        r, th, energy, _ = _closed_form(lam, sigma_min, t, theta_grid, gamma_floor)
        b = energy
    elif method == "shooting":
        r, th, b = _shooting(lam, sigma_min, t, theta_grid, rtol, gamma_floor)
        energy = _closed_form(lam, sigma_min, t[:2], theta_grid, gamma_floor)[2]
    else:
        raise ValueError(f"method must be 'closed_form' or 'shooting', got {method!r}.")
    alpha, sigma = r * np.sin(th), r * np.cos(th)
    alpha[0], sigma[0] = 0.0, 1.0
    alpha[-1], sigma[-1] = 1.0, sigma_min
    return KOSchedule.from_table(
        t, alpha, sigma, coordinates="polar", b=float(b), energy=float(energy), solve_seconds=time.perf_counter() - start,
        method=method, sigma_min=sigma_min,
    )
