"""Tests for the kinetic-energy identity, its quadrature and its Monte Carlo check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths import schedules as S
from kopaths.kinetic import conditional_energy, kinetic_energy, kinetic_energy_monte_carlo
from kopaths.lambda_fit import LambdaFit


def test_closed_form_energies():
    one, gauss = LambdaFit.constant_one(), LambdaFit.gaussian()
    np.testing.assert_allclose(kinetic_energy(S.CondOTSchedule(), one), 2.0, rtol=1e-6)
    np.testing.assert_allclose(conditional_energy(S.CondOTSchedule(0.1)), 1 + 0.9**2, rtol=1e-6)
    np.testing.assert_allclose(conditional_energy(S.CosineSchedule()), np.pi**2 / 4, rtol=1e-6)
    # E(Cond-OT) = 2 - int (1 - lambda) ds, and Gaussian data: int = pi/2.
    np.testing.assert_allclose(kinetic_energy(S.CondOTSchedule(), gauss), 2 - np.pi / 2, atol=1e-4)
    # Any r == 1 path costs nothing on Gaussian data.
    assert abs(float(kinetic_energy(S.CosineSchedule(), gauss))) < 1e-4


def test_condot_energy_equals_two_minus_integral(rademacher_fit):
    np.testing.assert_allclose(
        kinetic_energy(S.CondOTSchedule(), rademacher_fit), 2 - rademacher_fit.integral_one_minus_lambda(), atol=1e-4
    )


@pytest.mark.parametrize(
    "schedule", [S.CondOTSchedule(), S.CosineSchedule(), S.PolynomialSchedule(2.0), S.CondOTSchedule(0.05)],
    ids=["condot", "cosine", "poly2", "condot_smin"],
)
def test_identity_matches_monte_carlo_on_two_point_data(schedule, rademacher_fit):
    data = jnp.array([[1.0], [-1.0]])
    mc, se = kinetic_energy_monte_carlo(schedule, data, key=jax.random.key(0), num_samples=60000, batch_size=20000)
    exact = float(kinetic_energy(schedule, rademacher_fit))
    assert abs(mc - exact) < 4 * se + 1e-3, (mc, se, exact)


def test_energy_is_below_conditional_energy(rademacher_fit):
    for schedule in [S.CondOTSchedule(), S.CosineSchedule(), S.VPSchedule()]:
        e = kinetic_energy(schedule, rademacher_fit, t_max=1 - 1e-5)
        assert 0 <= float(e) <= float(conditional_energy(schedule, t_max=1 - 1e-5)) + 1e-6


def test_jit_vmap_grad_through_energy(rademacher_fit):
    knots = jnp.linspace(0, 1, 33)

    def energy_of_power(p):
        tab = S.TabulatedSchedule.from_table(np.asarray(knots), np.asarray(knots) ** 1.0, 1 - np.asarray(knots))
        return tab

    tab = energy_of_power(1.0)
    e_jit = jax.jit(kinetic_energy)(tab, rademacher_fit)
    np.testing.assert_allclose(e_jit, kinetic_energy(S.CondOTSchedule(), rademacher_fit), rtol=1e-4)
    grad = jax.grad(kinetic_energy)(tab, rademacher_fit)
    assert np.all(np.isfinite(grad.values)) and float(jnp.abs(grad.values).sum()) > 0
    stacked = jax.tree_util.tree_map(lambda *v: jnp.stack(v), tab, tab)
    energies = jax.vmap(kinetic_energy, in_axes=(0, None))(stacked, rademacher_fit)
    np.testing.assert_allclose(energies[0], energies[1])
    # gradient with respect to lambda: more separation (smaller g) lowers the energy
    g_lam = jax.grad(lambda lam: kinetic_energy(S.CondOTSchedule(), lam))(rademacher_fit)
    assert float(jnp.sum(g_lam.h_values)) < 0


def test_t_max_validation():
    with pytest.raises(ValueError, match="t_max"):
        conditional_energy(S.CondOTSchedule(), t_max=1.5)
