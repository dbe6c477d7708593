"""Schedule diagnostics against the closed forms of Cond-OT and a Monte Carlo check of the irreducible loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from conftest import rademacher_lambda
from kopaths import schedules as S
from kopaths.diagnostics import ScheduleDiagnostics, max_speed, schedule_diagnostics
from kopaths.ideal import marginal_velocity
from kopaths.ko import solve_ko
from kopaths.paths import conditional_velocity, sample_xt


def _integral(upper_snr: float) -> float:
    return quad(lambda s: 1 - rademacher_lambda(np.array([s]))[0], 0, upper_snr, limit=400)[0]


def test_cond_ot_closed_forms(rademacher_fit):
    d = schedule_diagnostics(S.CondOTSchedule(), rademacher_fit)
    total = rademacher_fit.integral_one_minus_lambda()
    assert d.conditional_energy == pytest.approx(2.0, rel=1e-6)
    assert d.kinetic_energy == pytest.approx(2.0 - total, abs=1e-4)
    assert d.irreducible_loss == pytest.approx(total, abs=1e-4)  # int beta^2 (1 - lambda) dt = int (1 - lambda) ds
    # share from t < 0.01: s runs up to 0.01 / 0.99
    assert d.early_share == pytest.approx(_integral(0.01 / 0.99) / total, rel=1e-3)
    assert d.max_speed == pytest.approx(1.0, abs=1e-6)
    t = d.t[(d.t > 0) & (d.t < 0.99)]
    snr = t / (1 - t)
    np.testing.assert_allclose(d.conditional[(d.t > 0) & (d.t < 0.99)], 2.0, rtol=1e-5)
    want = 2.0 - (1 - rademacher_lambda(snr)) / (1 - t) ** 2
    np.testing.assert_allclose(d.marginal[(d.t > 0) & (d.t < 0.99)], want, atol=2e-4)
    smin = schedule_diagnostics(S.CondOTSchedule(0.1), rademacher_fit)
    assert smin.conditional_energy == pytest.approx(1 + 0.9**2, rel=1e-6) and smin.max_speed == pytest.approx(1.0)


def test_irreducible_loss_matches_monte_carlo_of_the_exact_field(rademacher_fit):
    # E || u_t(x|x1) - u_t(x) ||^2 / d averaged over t: what a perfect model still pays.
    schedule, data = S.CosineSchedule(), jnp.array([[1.0], [-1.0]])

    @jax.jit
    def terms(key):
        kt, ki, k0 = jax.random.split(key, 3)
        t = jax.random.uniform(kt, (20000,), maxval=0.999)
        x1 = data[jax.random.randint(ki, (20000,), 0, 2)]
        x0 = jax.random.normal(k0, x1.shape)
        xt = sample_xt(schedule, t, x0, x1)
        diff = conditional_velocity(schedule, t, x0, x1) - marginal_velocity(schedule, data, t, xt)
        return 0.999 * jnp.sum(diff**2, axis=1)

    v = np.concatenate([np.asarray(terms(k)) for k in jax.random.split(jax.random.key(0), 4)])
    d = schedule_diagnostics(schedule, rademacher_fit, t_max=0.999)
    assert abs(v.mean() - d.irreducible_loss) < 4 * v.std() / np.sqrt(v.size) + 1e-3


def test_exact_ko_is_fast_at_zero_and_bounded_ko_is_not(rademacher_fit):
    exact, bounded = solve_ko(rademacher_fit), solve_ko(rademacher_fit, max_speed=5.0)
    de, db = schedule_diagnostics(exact, rademacher_fit), schedule_diagnostics(bounded, rademacher_fit)
    assert de.max_speed > 10 * db.max_speed and db.max_speed <= 5.0 * 1.05
    assert de.early_share > db.early_share and de.conditional_energy > db.conditional_energy
    assert max_speed(S.VPSchedule(), t_max=S.PATHS["vp"].t_max) > 10 * max_speed(S.VPSchedule(), t_max=0.9)


def test_round_trip_and_bad_arguments(rademacher_fit):
    d = schedule_diagnostics(S.CosineSchedule(), rademacher_fit)
    back = ScheduleDiagnostics.from_dict(d.to_dict())
    assert back.summary() == d.summary()
    np.testing.assert_array_equal(back.marginal, d.marginal)
    with pytest.raises(ValueError, match="early"):
        schedule_diagnostics(S.CosineSchedule(), rademacher_fit, early=1.5)
