"""Tests for the KO solver: degenerate cases, optimality, and closed form versus shooting."""

import jax.numpy as jnp
import numpy as np
import pytest

from kopaths import schedules as S
from kopaths.kinetic import conditional_energy, kinetic_energy
from kopaths.ko import DegenerateLambdaError, load_ko_schedule, solve_ko
from kopaths.lambda_fit import LambdaFit

T = jnp.linspace(0.0, 1.0, 201)


@pytest.mark.parametrize("method", ["closed_form", "shooting"])
@pytest.mark.parametrize("sigma_min", [0.0, 1e-2])
def test_lambda_one_gives_cond_ot(method, sigma_min):
    ko = solve_ko(LambdaFit.constant_one(), sigma_min, method=method)
    ref = S.CondOTSchedule(sigma_min)(T)
    out = ko(T)
    np.testing.assert_allclose(out.alpha, ref.alpha, atol=1e-5)
    np.testing.assert_allclose(out.sigma, ref.sigma, atol=1e-5)
    np.testing.assert_allclose(ko.b, 1 + (1 - sigma_min) ** 2 if sigma_min else 2.0, rtol=1e-4)


def test_energy_equals_b_and_beats_every_schedule(rademacher_fit):
    ko = solve_ko(rademacher_fit)
    np.testing.assert_allclose(kinetic_energy(ko, rademacher_fit), ko.b, rtol=1e-4)
    for other in [S.CondOTSchedule(), S.CosineSchedule(), S.PolynomialSchedule(2.0), S.LinearVPSchedule(), S.VPSchedule()]:
        assert float(kinetic_energy(ko, rademacher_fit)) <= float(kinetic_energy(other, rademacher_fit, t_max=1 - 1e-6)) + 1e-6


def test_b_is_two_one_minus_cos_phi(rademacher_fit):
    from scipy.integrate import simpson

    theta = np.linspace(0, np.pi / 2, 200001)
    big_phi = simpson(np.sqrt(np.asarray(rademacher_fit.gamma(jnp.asarray(theta)), np.float64)), x=theta)
    np.testing.assert_allclose(solve_ko(rademacher_fit).b, 2 * (1 - np.cos(big_phi)), rtol=1e-4)


@pytest.mark.parametrize("sigma_min", [0.0, 0.05])
def test_shooting_agrees_with_closed_form(rademacher_fit, sigma_min):
    closed = solve_ko(rademacher_fit, sigma_min, method="closed_form")
    shoot = solve_ko(rademacher_fit, sigma_min, method="shooting")
    a, b = closed(T), shoot(T)
    np.testing.assert_allclose(a.alpha, b.alpha, atol=1e-4)
    np.testing.assert_allclose(a.sigma, b.sigma, atol=1e-4)
    np.testing.assert_allclose(closed.b, shoot.b, rtol=1e-5)
    assert abs(float(shoot(1.0).sigma) - sigma_min) < 1e-6 and abs(float(shoot(1.0).alpha) - 1) < 1e-6


def test_theorem_3_1_form(rademacher_fit):
    ko = solve_ko(rademacher_fit)
    out = ko(T)
    r2 = out.alpha**2 + out.sigma**2
    np.testing.assert_allclose(r2, 1 - ko.b * T + ko.b * T**2, atol=1e-5)


def test_gaussian_data_is_degenerate():
    with pytest.raises(DegenerateLambdaError, match="not unique"):
        solve_ko(LambdaFit.gaussian())


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_sigma_min_range(bad):
    with pytest.raises(ValueError, match="sigma_min"):
        solve_ko(LambdaFit.constant_one(), bad)


def test_save_load_roundtrip(tmp_path, rademacher_fit):
    ko = solve_ko(rademacher_fit)
    ko.save(tmp_path / "ko.json")
    back = load_ko_schedule(tmp_path / "ko.json")
    np.testing.assert_allclose(back(T).alpha, ko(T).alpha, atol=1e-6)
    assert back.b == ko.b
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a kopaths KO schedule"):
        load_ko_schedule(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        load_ko_schedule(tmp_path / "missing.json")


def test_ko_energy_is_finite_even_though_conditional_energy_is_large(rademacher_fit):
    ko = solve_ko(rademacher_fit)
    assert np.isfinite(float(conditional_energy(ko)))


@pytest.mark.parametrize("method", ["closed_form", "shooting"])
def test_gamma_floor_bounds_speed_and_energy(rademacher_fit, method):
    exact = solve_ko(rademacher_fit)
    floored = solve_ko(rademacher_fit, gamma_floor=0.05, method=method)
    true_energy = float(kinetic_energy(floored, rademacher_fit))
    assert exact.b - 1e-4 <= true_energy <= floored.b + 1e-4  # optimal <= its energy <= floored-metric energy
    t = jnp.linspace(0.0, 1.0, 2001)
    speed = lambda s: float(jnp.max(jnp.abs(jnp.diff(jnp.arctan2(s(t).alpha, s(t).sigma)))) / (t[1] - t[0]))  # noqa: E731
    assert speed(floored) < speed(exact)
    # a floor makes Gaussian data (gamma == 0) solvable: the chord at Phi = sqrt(floor) * pi / 2
    gauss = solve_ko(LambdaFit.gaussian(), gamma_floor=0.04, method=method)
    np.testing.assert_allclose(gauss.b, 2 * (1 - np.cos(0.2 * np.pi / 2)), rtol=2e-2)
