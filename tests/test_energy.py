"""Kinetic energy along sampling trajectories and ideal-flow scores, against closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from _fields import gaussian_velocity
from kopaths.ode import energy as M
from kopaths.schedules import CondOTSchedule


def _gaussian_ke_integral(c):
    def integrand(t):
        v = c**2 * t**2 + (1 - t) ** 2
        dv = 2 * c**2 * t - 2 * (1 - t)
        return dv**2 / (4 * v)

    return quad(integrand, 0.0, 1.0)[0]


@pytest.mark.parametrize("method,nfe", [("midpoint", 200), ("dopri5", None)])
def test_kinetic_energy_along_gaussian_flow(method, nfe):
    # x_t = sqrt(v_t) x0, so per example (1/d) int ||u||^2 = ||x0||^2/d * int v'^2/(4v) dt.
    c = 2.0
    x0 = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    res = M.kinetic_energy_along_samples(gaussian_velocity(CondOTSchedule(), c), x0, method=method, nfe=nfe, rtol=1e-6, atol=1e-6)
    want = np.sum(np.asarray(x0) ** 2, 1) / 4 * _gaussian_ke_integral(c)
    np.testing.assert_allclose(res.per_example, want, rtol=1e-3)
    np.testing.assert_allclose(res.samples, c * x0, atol=1e-3)
    assert float(res.kinetic_energy) == pytest.approx(want.mean(), rel=1e-3)


def test_ideal_flow_single_point_is_straight_line():
    # One data point under Cond-OT: x_t = t x* + (1-t) x0, u = x* - x0, KE = ||x* - x0||^2 t_end / d.
    data = jnp.array([[1.5, -0.5, 0.25]])
    x0 = jax.random.normal(jax.random.PRNGKey(4), (6, 3))
    t_end = 0.99
    res = M.kinetic_energy_along_samples(M.ideal_velocity(CondOTSchedule(), data), x0, t1=t_end)
    want = np.sum((np.asarray(data) - np.asarray(x0)) ** 2, 1) / 3 * t_end
    np.testing.assert_allclose(res.per_example, want, rtol=1e-4)
    np.testing.assert_allclose(res.samples, t_end * data + (1 - t_end) * x0, atol=1e-4)
    assert np.all(np.asarray(res.nfe) <= 31)  # a straight line: the step size only grows (<= 5 steps)
    scores = M.ideal_flow_scores(CondOTSchedule(), data, jax.random.PRNGKey(4), num_samples=6, t_end=t_end)
    assert scores["kinetic_energy"] == pytest.approx(float(want.mean()), rel=1e-4)
    assert scores["nfe_max"] == int(np.max(np.asarray(res.nfe)))
