r"""Kinetic-optimal (KO) Gaussian paths: exact, bounded-speed and parametric.

In polar coordinates :math:`(\alpha,\sigma) = r(\sin\theta,\cos\theta)` the kinetic energy is
:math:`\int_0^1 \dot r^2 + r^2\gamma(\theta)\dot\theta^2\,dt`. With
:math:`\phi(\theta)=\int_0^\theta\sqrt{\gamma}` this is the Euclidean energy of the planar
curve with polar coordinates :math:`(r,\phi)`, so the KO path is the straight chord, run at
constant speed, from :math:`(r,\phi)=(1,0)` to :math:`(r_1,\Phi)`, with
:math:`r_1=\sqrt{1+\sigma_{\min}^2}` and :math:`\Phi=\phi(\theta_1)`,
:math:`\theta_1=\arctan(1/\sigma_{\min})`. Its energy is
:math:`b = 1 + r_1^2 - 2r_1\cos\Phi` (:math:`=2(1-\cos\Phi)` when :math:`\sigma_{\min}=0`).

:func:`solve_ko` offers

* ``method="closed_form"``: that chord;
* ``method="shooting"``: an independent check, shooting on Theorem 3.1's ODE (Shaul et al., 2023)
  written in :math:`\theta`: :math:`dt/d\theta = r_t^2\sqrt{\gamma(\theta)}/L` with
  :math:`r_t^2 = 1-(b+1-r_1^2)t + bt^2`, :math:`L^2 = r_1^2-(1+r_1^2-b)^2/4`, solved with diffrax
  and the root :math:`t(\theta_1)=1` found in :math:`b` with optimistix;
* ``method="parametric"``: the paper's procedure, a 10-parameter path with Theorem 3.1's radius
  fitted by gradient descent on the energy (:mod:`kopaths.ko_parametric`).

**Speed.** Near :math:`\theta = 0`, :math:`\gamma\approx(m_2-1)\theta^2` with
:math:`m_2=\operatorname{tr}(C^2)/d`, so the exact geodesic has :math:`\theta_t\propto\sqrt t`
and an unbounded speed at :math:`t = 0` (:mod:`kopaths.diagnostics`). ``gamma_floor`` solves in
the metric :math:`\max(\gamma, \epsilon)`, which caps :math:`\dot\theta` at about
:math:`\Phi/\sqrt\epsilon`; ``gamma_floor="auto"`` picks the largest floor whose path keeps its
true energy within ``energy_tolerance`` of :math:`b`, and ``max_speed`` the smallest floor whose
path respects a bound on :math:`|\dot\alpha|, |\dot\sigma|`.

:func:`solve_ko_from_data` is the single producer of the chain data :math:`\to\hat\lambda\to`
fit :math:`\to` KO schedule used by the main job, the trainer and the experiments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import scipy.optimize

from kopaths.diagnostics import max_speed as measure_max_speed
from kopaths.diagnostics import schedule_diagnostics
from kopaths.io import atomic_write_text, read_json, write_json
from kopaths.kinetic import kinetic_energy
from kopaths.lambda_fit import LambdaFit, fit_lambda
from kopaths.schedules import HALF_PI, CondOTSchedule, TabulatedSchedule, check_sigma_min
from kopaths.separation import LambdaEstimate, estimate_lambda, snr_grid

__all__ = [
    "KOSchedule",
    "KOSolution",
    "DegenerateLambdaError",
    "KO_VARIANTS",
    "DEFAULT_KO_VARIANT",
    "DEFAULT_KO_REFERENCE",
    "solve_ko",
    "solve_ko_variant",
    "solve_ko_from_estimate",
    "solve_ko_from_data",
    "load_ko_schedule",
    "load_ko_solution",
    "default_time_knots",
]

FORMAT = "kopaths.KOSchedule/3"
_FORMATS = ("kopaths.KOSchedule/1", "kopaths.KOSchedule/2", FORMAT)


class DegenerateLambdaError(ValueError):
    """Raised when gamma is (numerically) zero everywhere, so no unique KO path exists."""


class KOSchedule(TabulatedSchedule):
    r"""A tabulated kinetic-optimal schedule with its solve report.

    Attributes (static): ``b`` (the minimum kinetic energy on the fitted :math:`\lambda`, that of
    the exact geodesic), ``energy`` (the kinetic energy of *this* path; equal to ``b`` for the
    exact path, above it for bounded or parametric ones), ``max_speed``
    (:math:`\max_t\max(|\dot\alpha|,|\dot\sigma|)` of the table), ``gamma_floor``, ``method``,
    ``sigma_min``, ``solve_seconds`` and ``parameters`` (of a parametric fit).
    """

    b: float = eqx.field(static=True, default=float("nan"))
    energy: float = eqx.field(static=True, default=float("nan"))
    solve_seconds: float = eqx.field(static=True, default=float("nan"))
    method: str = eqx.field(static=True, default="")
    sigma_min: float = eqx.field(static=True, default=0.0)
    gamma_floor: float = eqx.field(static=True, default=0.0)
    max_speed: float = eqx.field(static=True, default=float("nan"))
    parameters: tuple = eqx.field(static=True, default=())

    @property
    def energy_excess(self) -> float:
        """Kinetic energy given up against the optimum: ``energy - b``."""
        return self.energy - self.b

    def to_dict(self) -> dict:
        """JSON form: the polar table exactly as stored (``radius_offset``, ``angle``,
        ``radius_origin``), and ``alpha``/``sigma`` at the knots for reading."""
        out = self(self.knots)
        knots, rows, origin = self.offsets()
        return {
            "format": FORMAT,
            "t": knots.tolist(),
            "alpha": np.asarray(out.alpha, np.float64).tolist(),
            "sigma": np.asarray(out.sigma, np.float64).tolist(),
            "radius_offset": rows[0].tolist(),
            "angle": (rows[1] + origin[1]).tolist(),
            "radius_origin": float(origin[0]),
            "b": self.b,
            "energy": self.energy,
            "solve_seconds": self.solve_seconds,
            "method": self.method,
            "sigma_min": self.sigma_min,
            "gamma_floor": self.gamma_floor,
            "max_speed": self.max_speed,
            "parameters": list(self.parameters),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Writes the schedule as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict()))


def load_ko_schedule(path: str | os.PathLike) -> KOSchedule:
    """Reads a schedule written by :meth:`KOSchedule.save`, with clear errors for bad files."""
    d = read_json(path, "KO schedule file")
    if not isinstance(d, dict) or d.get("format") not in _FORMATS:
        raise ValueError(f"{path} is not a kopaths KO schedule (format {FORMAT}).")
    try:
        meta = dict(
            b=float(d["b"]), energy=float(d["energy"]), solve_seconds=float(d["solve_seconds"]), method=str(d["method"]),
            sigma_min=float(d["sigma_min"]), gamma_floor=float(d.get("gamma_floor", 0.0)),
            max_speed=float(d.get("max_speed", float("nan"))), parameters=tuple(float(v) for v in d.get("parameters", ())),
        )
        if "radius_offset" in d:  # format 3: the table as stored
            return KOSchedule.from_polar_offsets(d["t"], d["radius_offset"], d["angle"], float(d["radius_origin"]), **meta)
        return KOSchedule.from_table(d["t"], d["alpha"], d["sigma"], coordinates="polar", **meta)
    except KeyError as e:
        raise ValueError(f"KO schedule file {path} lacks field {e}.") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"KO schedule file {path} is malformed: {e}") from None


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


def _chord_energy(big_phi: float, r1: float) -> float:
    return 1.0 + r1**2 - 2.0 * r1 * math.cos(big_phi)


def _closed_form(lam: LambdaFit, sigma_min: float, t: np.ndarray, grid: int, gamma_floor: float = 0.0):
    theta_1, r1 = _endpoint(sigma_min)
    theta, phi = _theta_grid(lam, theta_1, grid, gamma_floor)
    big_phi = phi[-1]
    px = (1 - t) + t * r1 * math.cos(big_phi)
    py = t * r1 * math.sin(big_phi)
    r = np.hypot(px, py)
    th = _invert(np.arctan2(py, px), phi, theta)
    return r, th


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
    return r, th


def _table(t: np.ndarray, r: np.ndarray, th: np.ndarray, sigma_min: float, **meta) -> KOSchedule:
    alpha, sigma = r * np.sin(th), r * np.cos(th)
    alpha[0], sigma[0] = 0.0, 1.0
    alpha[-1], sigma[-1] = 1.0, sigma_min
    return KOSchedule.from_table(t, alpha, sigma, coordinates="polar", sigma_min=sigma_min, **meta)


def _geodesic(lam, sigma_min, t, method, grid, rtol, gamma_floor) -> KOSchedule:
    if method == "closed_form":
        r, th = _closed_form(lam, sigma_min, t, grid, gamma_floor)
    else:
        r, th = _shooting(lam, sigma_min, t, grid, rtol, gamma_floor)
    return _table(t, r, th, sigma_min)


def _search_floor(lam, sigma_min, t, *, energy_tolerance, max_speed, grid) -> float:
    """The floor that meets the energy tolerance (largest) or the speed bound (smallest)."""
    def solved(log_floor):
        return _geodesic(lam, sigma_min, t, "closed_form", grid, 0.0, math.exp(log_floor))

    lo, hi = math.log(1e-12), 0.0
    if max_speed is not None:
        def excess(log_floor):
            return math.log(measure_max_speed(solved(log_floor)) / max_speed)
    else:
        # Relative to the exact path as tabulated, so that table and quadrature errors cancel.
        target = (1.0 + energy_tolerance) * float(kinetic_energy(_geodesic(lam, sigma_min, t, "closed_form", grid, 0.0, 0.0), lam))

        def excess(log_floor):
            return float(kinetic_energy(solved(log_floor), lam)) - target

        excess_lo, excess_hi = excess(lo), excess(hi)
        if excess_hi <= 0:
            return 1.0  # even gamma = 1 everywhere (Cond-OT) is within tolerance
        if excess_lo > 0:
            return 0.0
        return math.exp(scipy.optimize.brentq(excess, lo, hi, xtol=0.02))
    excess_hi = excess(hi)
    if excess_hi > 0:
        raise ValueError(
            f"max_speed={max_speed} is below the speed of Cond-OT ({math.exp(excess_hi) * max_speed:.4g}), the "
            "slowest path of this family; choose a larger bound."
        )
    if excess(lo) <= 0:
        return 0.0
    return math.exp(scipy.optimize.brentq(excess, lo, hi, xtol=0.02))


def solve_ko(
    lam: LambdaFit,
    sigma_min: float = 0.0,
    *,
    method: Literal["closed_form", "shooting", "parametric"] = "closed_form",
    gamma_floor: float | Literal["auto"] = 0.0,
    max_speed: float | None = None,
    energy_tolerance: float = 1e-3,
    time_knots: np.ndarray | None = None,
    theta_grid: int = 1 << 16,
    rtol: float = 1e-10,
    degree: int = 8,
    steps: int = 3000,
) -> KOSchedule:
    r"""Solves for the kinetic-optimal schedule of data with separation function ``lam``.

    Args:
      lam: the fitted separation function (:func:`kopaths.fit_lambda`, or
        :meth:`LambdaFit.constant_one` / :meth:`LambdaFit.from_table`).
      sigma_min: end noise level, in ``[0, 1)``.
      method: ``"closed_form"`` (unfolded geodesic), ``"shooting"`` (Theorem 3.1's ODE) or
        ``"parametric"`` (:func:`kopaths.ko_parametric.fit_bernstein_path`: Theorem 3.1's radius,
        a monotone Bernstein angle with ``degree`` weights, ``steps`` Adam steps).
      gamma_floor: solve in the metric :math:`\max(\gamma, \epsilon)`. A floor caps
        :math:`\dot\theta\lesssim\Phi/\sqrt\epsilon`; the path's true energy is reported as
        ``energy``. ``"auto"`` picks the largest floor whose energy is within ``energy_tolerance`` of
        the exact path's (:math:`b` up to the table's discretisation).
        A floor also makes Gaussian data solvable.
      max_speed: instead of a floor, the bound on :math:`\max_t\max(|\dot\alpha_t|, |\dot\sigma_t|)`;
        the smallest floor that meets it is used.
      energy_tolerance: relative energy the ``"auto"`` floor may give up.
      time_knots: knots of the returned table (default :func:`default_time_knots`).
      theta_grid: resolution of the :math:`\theta` table used to integrate and invert.

    Returns:
      A :class:`KOSchedule`, usable anywhere a schedule is, with ``b`` (the optimum), ``energy``
      (its own), ``max_speed``, ``gamma_floor`` and ``solve_seconds``.

    Raises:
      DegenerateLambdaError: if :math:`\gamma\equiv0` (e.g. exactly Gaussian data) and no floor is
        given: every path with :math:`r\equiv1` has zero energy and the KO path is not unique.
    """
    start = time.perf_counter()
    sigma_min = check_sigma_min(sigma_min)
    if not isinstance(lam, LambdaFit):
        raise TypeError(f"lam must be a kopaths.LambdaFit, got {type(lam).__name__}.")
    if method not in ("closed_form", "shooting", "parametric"):
        raise ValueError(f"method must be 'closed_form', 'shooting' or 'parametric', got {method!r}.")
    t = default_time_knots() if time_knots is None else np.asarray(time_knots, np.float64)
    auto = isinstance(gamma_floor, str)
    if auto and gamma_floor != "auto":
        raise ValueError(f"gamma_floor must be a number in [0, 1] or 'auto', got {gamma_floor!r}.")
    floor = 0.0 if auto else float(gamma_floor)
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"gamma_floor must lie in [0, 1], got {gamma_floor}.")
    if max_speed is not None and (auto or floor > 0):
        raise ValueError("Give either gamma_floor or max_speed, not both.")
    if max_speed is not None and not (np.isfinite(max_speed) and max_speed > 0):
        raise ValueError(f"max_speed must be a positive number, got {max_speed!r}.")
    if not 0.0 < energy_tolerance < 1.0:
        raise ValueError(f"energy_tolerance must lie in (0, 1), got {energy_tolerance}.")
    if method == "parametric" and (auto or floor > 0 or max_speed is not None):
        raise ValueError("The parametric method has a bounded speed by construction; it takes no floor or max_speed.")
    theta_1, r1 = _endpoint(sigma_min)
    big_phi = _theta_grid(lam, theta_1, theta_grid)[1][-1]
    degenerate = big_phi < 1e-3
    if degenerate and not (floor or max_speed is not None):
        raise DegenerateLambdaError(
            "gamma(theta) = 1 - (1 - lambda)/cos^2(theta) is zero everywhere (Gaussian-like data): every "
            "path with alpha^2 + sigma^2 = 1 (e.g. kopaths.CosineSchedule) has zero kinetic energy, so "
            "the KO path is not unique. Use one of those schedules, or pass a positive gamma_floor."
        )
    b = _chord_energy(big_phi, r1)
    params: tuple = ()
    if method == "parametric":
        from kopaths.ko_parametric import fit_bernstein_path  # noqa: PLC0415

        path, _ = fit_bernstein_path(lam, theta_1, r1, degree=degree, steps=steps, b_init=b)
        with jax.enable_x64(True):
            p = path.polar(jnp.asarray(t, jnp.float64))
            r, th = np.asarray(p.radius, np.float64), np.asarray(p.angle, np.float64)
        params = tuple(float(v) for v in np.concatenate([np.asarray(path.logits), [path.warp_logit, path.b_logit]]))
        schedule = _table(t, r, th, sigma_min)
    else:
        if auto or max_speed is not None:
            floor = _search_floor(lam, sigma_min, t, energy_tolerance=energy_tolerance, max_speed=max_speed,
                                  grid=min(theta_grid, 1 << 14))
        schedule = _geodesic(lam, sigma_min, t, method, theta_grid, rtol, floor)
    energy = float(kinetic_energy(schedule, lam))
    return dataclasses.replace(
        schedule, b=float(b), energy=energy, solve_seconds=time.perf_counter() - start, method=method,
        gamma_floor=float(floor), max_speed=measure_max_speed(schedule), parameters=params,
    )


#: The KO variant the trainer and the main job use unless a config says otherwise (the README's
#: evidence section says why).
DEFAULT_KO_VARIANT = "bounded"

#: The snr reference of the training objective on KO paths (``time_sampling.reference``): KO runs
#: train with Cond-OT's snr density and loss weighting (:class:`kopaths.objective.SnrMatchedSampler`);
#: empty would mean the KO path's own uniform time. The README's evidence section says why.
DEFAULT_KO_REFERENCE = "cond_ot"

#: Named KO variants, as configs select them (``path.ko_variant``).
KO_VARIANTS: dict[str, dict[str, Any]] = {
    "exact": dict(method="closed_form"),
    "bounded": dict(method="closed_form", gamma_floor="auto"),
    "parametric": dict(method="parametric"),
}


def solve_ko_variant(lam: LambdaFit, sigma_min: float = 0.0, variant: str = "bounded", **kwargs) -> KOSchedule:
    """:func:`solve_ko` with the settings of a named variant in :data:`KO_VARIANTS` (``kwargs`` override them)."""
    if variant not in KO_VARIANTS:
        raise ValueError(f"Unknown KO variant {variant!r}; choose one of {list(KO_VARIANTS)}.")
    return solve_ko(lam, sigma_min, **{**KO_VARIANTS[variant], **kwargs})


@dataclasses.dataclass(frozen=True)
class KOSolution:
    """The chain's products: the raw estimate, its fit and the KO schedule(s)."""

    estimate: LambdaEstimate
    fit: LambdaFit
    schedule: KOSchedule

    def diagnostics(self) -> dict[str, Any]:
        """Schedule diagnostics of the KO path beside Cond-OT (:mod:`kopaths.diagnostics`)."""
        ko = schedule_diagnostics(self.schedule, self.fit)
        cond_ot = schedule_diagnostics(CondOTSchedule(self.schedule.sigma_min), self.fit)
        return {"ko": ko.to_dict(), "cond_ot": cond_ot.to_dict(), "m2": self.estimate.m2,
                "integral_one_minus_lambda": self.fit.integral_one_minus_lambda()}

    def save(self, folder: str | os.PathLike, *, prefix: str = "") -> None:
        """Writes ``lambda.json``, ``ko_schedule.json`` and ``ko_diagnostics.json`` (atomically) into ``folder``."""
        folder = os.fspath(folder)
        self.estimate.save(os.path.join(folder, f"{prefix}lambda.json"))
        self.schedule.save(os.path.join(folder, f"{prefix}ko_schedule.json"))
        write_json(os.path.join(folder, f"{prefix}ko_diagnostics.json"), self.diagnostics())


def solve_ko_from_estimate(estimate: LambdaEstimate, *, sigma_min: float = 0.0, variant: str = "bounded",
                           **solve_kwargs) -> KOSolution:
    """The second half of the chain: fit ``estimate`` (:func:`kopaths.fit_lambda`) and solve the KO ``variant``."""
    fit = fit_lambda(estimate)
    return KOSolution(estimate, fit, solve_ko_variant(fit, sigma_min, variant, **solve_kwargs))


def solve_ko_from_data(
    x,
    *,
    key: jax.Array,
    num_noise: int = 2048,
    num_snr: int = 256,
    sigma_min: float = 0.0,
    variant: str = "bounded",
    noise_chunk: int | None = None,
    data_chunk: int | None = None,
    progress: bool = False,
    **solve_kwargs,
) -> KOSolution:
    r"""The single producer of a KO schedule from data: estimate :math:`\hat\lambda`, fit, solve.

    Args:
      x: normalised data ``(n, ...)`` (:func:`kopaths.normalize`); a memmap works.
      key: ``jax.random`` key of the estimator.
      num_noise, num_snr: estimator size (``k`` and the :func:`kopaths.snr_grid` length).
      sigma_min: end noise level.
      variant: ``"exact"``, ``"bounded"`` or ``"parametric"`` (:data:`KO_VARIANTS`).
      solve_kwargs: passed to :func:`solve_ko`.

    Returns:
      :class:`KOSolution` ``(estimate, fit, schedule)``.
    """
    estimate = estimate_lambda(x, snr_grid(num_snr), key=key, num_noise=num_noise, noise_chunk=noise_chunk,
                               data_chunk=data_chunk, progress=progress)
    return solve_ko_from_estimate(estimate, sigma_min=sigma_min, variant=variant, **solve_kwargs)


def load_ko_solution(folder: str | os.PathLike, *, prefix: str = "") -> KOSolution:
    """Reads what :meth:`KOSolution.save` wrote (the fit is recomputed from the estimate)."""
    folder = os.fspath(folder)
    estimate = LambdaEstimate.load(os.path.join(folder, f"{prefix}lambda.json"))
    return KOSolution(estimate, fit_lambda(estimate, warn=False), load_ko_schedule(os.path.join(folder, f"{prefix}ko_schedule.json")))
