r"""How hard a path is to train on and to sample from, at a glance.

For a schedule and a data separation function :math:`\lambda` (per dimension, :math:`t\in[0,t_{\max}]`):

* kinetic energy :math:`\mathcal E = \int k_t\,dt` with the marginal density
  :math:`k_t = \mathbb E\|u_t(x_t)\|^2/d = \dot\rho^2 + \gamma(\theta)\rho^2\dot\theta^2`
  (:func:`kopaths.kinetic_energy_density`);
* conditional energy :math:`\mathcal E_c = \int c_t\,dt`, :math:`c_t = \dot\alpha^2+\dot\sigma^2 =
  \dot\rho^2 + \rho^2\dot\theta^2`, the second moment of the regression target;
* the irreducible flow-matching loss :math:`\mathcal E_c - \mathcal E = \int (1-\gamma)\rho^2\dot\theta^2 dt
  = \int\beta_t^2(1-\lambda)\,dt`: what a perfect model still pays with uniform :math:`t` and
  unweighted MSE, and its share from :math:`t <` ``early``;
* the maximum speed :math:`\max_t\max(|\dot\alpha_t|, |\dot\sigma_t|)`.

For data with :math:`m_2 = \operatorname{tr}(C^2)/d > 1`, :math:`\gamma\approx(m_2-1)\theta^2`
near :math:`\theta = 0`, so the exact KO geodesic has :math:`\theta_t\propto\sqrt t`: its speed is
unbounded, :math:`c_t \propto 1/t`, and :math:`\mathcal E_c` and the irreducible loss diverge
logarithmically; a tabulated KO schedule reports the finite values of its table's first knot.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from kopaths.kinetic import kinetic_energy_density, quadrature_nodes
from kopaths.lambda_fit import LambdaFit
from kopaths.schedules import Schedule, TabulatedSchedule

__all__ = ["ScheduleDiagnostics", "schedule_diagnostics", "max_speed", "diagnostic_times"]


def diagnostic_times(t_max: float = 1.0, num: int = 160) -> np.ndarray:
    """Times for the per-t curves: geometric from 1e-6 to 0.01, then uniform up to ``t_max``."""
    early = np.geomspace(1e-6, 1e-2, num // 2, endpoint=False)
    return np.concatenate([[0.0], early, np.linspace(1e-2, t_max, num - num // 2)])


def _speed_times(schedule: Schedule, t_max: float) -> np.ndarray:
    grid = [np.linspace(0.0, t_max, 4097), np.geomspace(1e-12, 1e-2, 400)]
    if isinstance(schedule, TabulatedSchedule):
        knots = np.asarray(schedule.knots, np.float64)
        grid += [knots, 0.5 * (knots[1:] + knots[:-1])]
    t = np.unique(np.concatenate(grid))
    return t[t <= t_max]


def max_speed(schedule: Schedule, *, t_max: float = 1.0) -> float:
    r""":math:`\max_{t\le t_{\max}} \max(|\dot\alpha_t|, |\dot\sigma_t|)` on a dense grid (every knot of a table)."""
    out = schedule(jnp.asarray(_speed_times(schedule, t_max)))
    return float(jnp.maximum(jnp.max(jnp.abs(out.d_alpha)), jnp.max(jnp.abs(out.d_sigma))))


@dataclasses.dataclass(frozen=True)
class ScheduleDiagnostics:
    """Energies, irreducible loss and speed of one path on one :math:`\\lambda` (module docstring).

    The arrays are the per-t curves on ``t``: ``marginal`` (:math:`k_t`), ``conditional``
    (:math:`c_t`) and ``irreducible`` (:math:`c_t - k_t`).
    """

    kinetic_energy: float
    conditional_energy: float
    irreducible_loss: float
    early_share: float
    early: float
    max_speed: float
    t_max: float
    t: np.ndarray
    marginal: np.ndarray
    conditional: np.ndarray
    irreducible: np.ndarray

    def summary(self) -> dict[str, float]:
        """The scalar fields."""
        return {k: getattr(self, k) for k in ("kinetic_energy", "conditional_energy", "irreducible_loss", "early_share",
                                              "early", "max_speed", "t_max")}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "curves": {k: np.asarray(getattr(self, k)).tolist()
                                             for k in ("t", "marginal", "conditional", "irreducible")}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScheduleDiagnostics":
        curves = {k: np.asarray(v, np.float64) for k, v in d["curves"].items()}
        return cls(**{k: float(d[k]) for k in ("kinetic_energy", "conditional_energy", "irreducible_loss",
                                                "early_share", "early", "max_speed", "t_max")}, **curves)


def _integrals(schedule: Schedule, lam: LambdaFit, t_max: float) -> tuple[float, float]:
    t, w = (jnp.asarray(v) for v in quadrature_nodes(float(t_max)))
    out = schedule(t)
    cond = out.d_alpha**2 + out.d_sigma**2
    marg = kinetic_energy_density(schedule, lam, t)
    return float(jnp.sum(w * cond)), float(jnp.sum(w * marg))


def schedule_diagnostics(schedule: Schedule, lam: LambdaFit, *, t_max: float = 1.0, early: float = 0.01) -> ScheduleDiagnostics:
    """All diagnostics of ``schedule`` on ``lam`` (``t_max < 1`` for VP and linear-VP)."""
    if not 0.0 < early < t_max <= 1.0:
        raise ValueError(f"Need 0 < early < t_max <= 1, got early={early}, t_max={t_max}.")
    cond, marg = _integrals(schedule, lam, t_max)
    cond_early, marg_early = _integrals(schedule, lam, early)
    irreducible = cond - marg
    t = jnp.asarray(diagnostic_times(t_max))
    out = schedule(t)
    c_t = np.asarray(out.d_alpha**2 + out.d_sigma**2, np.float64)
    k_t = np.asarray(kinetic_energy_density(schedule, lam, t), np.float64)
    return ScheduleDiagnostics(
        kinetic_energy=marg, conditional_energy=cond, irreducible_loss=irreducible,
        early_share=(cond_early - marg_early) / irreducible if irreducible > 0 else 0.0, early=float(early),
        max_speed=max_speed(schedule, t_max=t_max), t_max=float(t_max), t=np.asarray(t, np.float64),
        marginal=k_t, conditional=c_t, irreducible=np.maximum(c_t - k_t, 0.0),
    )
