"""Tests for path sampling and velocity/x1/epsilon conversions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths import paths
from kopaths import schedules as S


@pytest.mark.parametrize("schedule", [S.CondOTSchedule(1e-3), S.CosineSchedule(), S.VPSchedule()], ids=str)
def test_conversions_roundtrip(schedule):
    k0, k1, kt = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k0, (8, 3, 4, 4))
    x1 = jax.random.normal(k1, (8, 3, 4, 4))
    t = jax.random.uniform(kt, (8,), minval=0.05, maxval=0.95)
    xt = paths.sample_xt(schedule, t, x0, x1)
    v = paths.conditional_velocity(schedule, t, x0, x1)
    np.testing.assert_allclose(paths.velocity_to_x1(schedule, t, xt, v), x1, atol=2e-4)
    np.testing.assert_allclose(paths.velocity_to_epsilon(schedule, t, xt, v), x0, atol=2e-4)
    np.testing.assert_allclose(paths.x1_to_velocity(schedule, t, xt, x1), v, atol=2e-4)
    np.testing.assert_allclose(paths.epsilon_to_velocity(schedule, t, xt, x0), v, atol=2e-3)


def test_velocity_is_time_derivative_of_path():
    sched = S.CosineSchedule()
    x0, x1 = jnp.ones((2, 3)), 2 * jnp.ones((2, 3))
    t = 0.3
    dxdt = jax.jacfwd(lambda u: paths.sample_xt(sched, u, x0, x1))(t)
    np.testing.assert_allclose(dxdt, paths.conditional_velocity(sched, t, x0, x1), atol=1e-5)
