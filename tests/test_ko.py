"""Tests for the KO solver: degenerate cases, optimality, and closed form versus shooting."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths import schedules as S
from kopaths.kinetic import conditional_energy, kinetic_energy
from kopaths.diagnostics import max_speed
from kopaths.ko import (
    KO_VARIANTS,
    DegenerateLambdaError,
    load_ko_schedule,
    load_ko_solution,
    solve_ko,
    solve_ko_from_data,
    solve_ko_variant,
)
from kopaths.lambda_fit import LambdaFit
from kopaths.normalization import normalize

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


def test_saved_table_keeps_the_speed_near_t0(tmp_path):
    # Bounded KO on image-like data moves its radius by ~1e-9 over the first knots: a table saved
    # through float32 alpha and sigma rounds those steps to 6e-8 and fakes speeds of ~10 there.
    ko = solve_ko(_mixture_fit(), gamma_floor="auto")
    ko.save(tmp_path / "ko.json")
    back = load_ko_schedule(tmp_path / "ko.json")
    t = jnp.asarray(np.geomspace(1e-9, 1e-2, 200), jnp.float32)
    for field in ("alpha", "sigma", "d_alpha", "d_sigma"):
        np.testing.assert_allclose(getattr(back(t), field), getattr(ko(t), field), rtol=1e-6, atol=1e-7)
    assert max_speed(back) == pytest.approx(max_speed(ko), rel=1e-6)
    d = json.loads((tmp_path / "ko.json").read_text())
    d["radius_offset"][0] = 1e-3
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="radius offsets starting at 0"):
        load_ko_schedule(tmp_path / "bad.json")


def test_ko_energy_is_finite_even_though_conditional_energy_is_large(rademacher_fit):
    ko = solve_ko(rademacher_fit)
    assert np.isfinite(float(conditional_energy(ko)))


@pytest.mark.parametrize("method", ["closed_form", "shooting"])
def test_gamma_floor_bounds_speed_and_energy(rademacher_fit, method):
    exact = solve_ko(rademacher_fit)
    floored = solve_ko(rademacher_fit, gamma_floor=0.05, method=method)
    assert floored.b == pytest.approx(exact.b, rel=1e-6)  # b is always the unconstrained optimum
    theta = np.linspace(0, np.pi / 2, 20001)
    phi_floored = np.trapezoid(np.sqrt(np.maximum(np.asarray(rademacher_fit.gamma(jnp.asarray(theta))), 0.05)), theta)
    # optimum <= its true energy <= its energy in the floored metric (the floored chord)
    assert exact.b - 1e-4 <= floored.energy <= 2 * (1 - np.cos(phi_floored)) + 1e-4
    np.testing.assert_allclose(floored.energy, float(kinetic_energy(floored, rademacher_fit)), rtol=1e-6)
    assert floored.max_speed < exact.max_speed and floored.gamma_floor == 0.05
    # a floor makes Gaussian data (gamma == 0) solvable; the path stays valid
    gauss = solve_ko(LambdaFit.gaussian(), gamma_floor=0.04, method=method)
    out = gauss(T)
    assert bool(jnp.all(jnp.isfinite(out.alpha))) and abs(float(gauss(1.0).alpha) - 1) < 1e-6
    assert gauss.energy <= 2 * (1 - np.cos(0.2 * np.pi / 2)) + 1e-3  # below the floored metric's chord energy


def _mixture_fit(mu: float = 0.9) -> LambdaFit:
    """Exact lambda of the 1-D mixture 0.5 N(-mu, v) + 0.5 N(mu, v), mu^2 + v = 1, by Gauss-Hermite quadrature."""
    v = 1.0 - mu**2
    nodes, weights = np.polynomial.hermite_e.hermegauss(160)
    weights = weights / weights.sum()
    snr = np.tan(np.linspace(0.0, 0.5 * np.pi * (1 - 1e-4), 300))
    lam = []
    for s in snr:
        # x = s x1 + eps given the + component: x ~ N(s mu, 1 + s^2 v); E[x1 | x] by Bayes over the components
        var = 1.0 + s * s * v
        x = s * mu + np.sqrt(var) * nodes
        logit = 2 * s * mu * x / var
        p_plus = 1.0 / (1.0 + np.exp(-logit))
        mean_given = lambda sign: sign * mu + s * v * (x - sign * s * mu) / var  # noqa: E731
        post = p_plus * mean_given(1.0) + (1 - p_plus) * mean_given(-1.0)
        lam.append(np.sum(weights * post**2))
    return LambdaFit.from_table(snr, np.maximum.accumulate(np.clip(lam, snr**2 / (1 + snr**2), 1.0)))


@pytest.mark.parametrize("fit_name", ["mixture", "rademacher", "one"])
def test_parametric_energy_is_above_b_and_close_to_it(fit_name, rademacher_fit):
    fit = {"mixture": _mixture_fit(), "rademacher": rademacher_fit, "one": LambdaFit.constant_one()}[fit_name]
    exact = solve_ko(fit)
    param = solve_ko(fit, method="parametric", steps=1500)
    assert param.method == "parametric" and len(param.parameters) == 10
    assert param.energy >= exact.b - 1e-5
    saving = float(kinetic_energy(S.CondOTSchedule(), fit)) - exact.b
    assert param.energy - exact.b <= max(0.05 * saving, 2e-4), (param.energy, exact.b, saving)
    # bounded by construction: dtheta/dt <= K theta_1 kappa_max / log(1 + kappa_max), K = 8, kappa_max = 100
    assert np.isfinite(param.max_speed) and param.max_speed <= 8 * (np.pi / 2) * 100 / np.log(101) * np.sqrt(2)
    if fit_name == "one":  # lambda == 1: the parametric path is (close to) Cond-OT as well
        np.testing.assert_allclose(param(T).alpha, T, atol=2e-2)


@pytest.mark.parametrize("variant", list(KO_VARIANTS))
def test_every_variant_gives_cond_ot_for_lambda_one(variant):
    ko = solve_ko_variant(LambdaFit.constant_one(), 0.0, variant, **({"steps": 1500} if variant == "parametric" else {}))
    np.testing.assert_allclose(ko(T).alpha, T, atol=2e-2 if variant == "parametric" else 1e-5)
    np.testing.assert_allclose(ko.energy, 2.0, rtol=1e-3)


def test_speed_bound_is_respected_and_auto_floor_keeps_the_energy(rademacher_fit):
    mixture = _mixture_fit()
    exact = solve_ko(mixture)
    bounded = solve_ko(mixture, max_speed=3.0)
    assert bounded.max_speed <= 3.0 * 1.05 and max_speed(bounded) == pytest.approx(bounded.max_speed)
    assert bounded.energy >= exact.b - 1e-5
    for tol in (1e-2, 1e-3):
        auto = solve_ko(mixture, gamma_floor="auto", energy_tolerance=tol)
        assert exact.energy - 1e-5 <= auto.energy <= (1 + tol) * exact.energy * (1 + 1e-4)
        assert auto.gamma_floor > 0 and auto.max_speed <= exact.max_speed
    with pytest.raises(ValueError, match="below the speed of Cond-OT"):
        solve_ko(mixture, max_speed=0.5)
    with pytest.raises(ValueError, match="not both"):
        solve_ko(mixture, gamma_floor=0.1, max_speed=3.0)
    with pytest.raises(ValueError, match="no floor"):
        solve_ko(mixture, method="parametric", max_speed=3.0)
    with pytest.raises(ValueError, match="gamma_floor must"):
        solve_ko(mixture, gamma_floor="big")


def test_version_one_files_still_load(tmp_path, rademacher_fit):
    d = solve_ko(rademacher_fit).to_dict()
    d["format"] = "kopaths.KOSchedule/1"
    for key in ("gamma_floor", "max_speed", "parameters", "radius_offset", "angle", "radius_origin"):
        d.pop(key)
    (tmp_path / "v1.json").write_text(json.dumps(d))
    back = load_ko_schedule(tmp_path / "v1.json")
    assert back.b == d["b"] and back.gamma_floor == 0.0
    (tmp_path / "broken.json").write_text('{"format": "kopaths.KOSchedule/2", "t": [0, 1]')
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ko_schedule(tmp_path / "broken.json")


def test_single_producer_from_data(tmp_path):
    rng = np.random.default_rng(0)
    x = normalize(rng.standard_normal((1500, 8)) * np.geomspace(3.0, 0.2, 8))[0]
    sol = solve_ko_from_data(x, key=jax.random.key(0), num_noise=128, num_snr=48, variant="bounded")
    assert sol.schedule.gamma_floor > 0 and sol.schedule.energy <= (1 + 1e-3) * sol.schedule.b * (1 + 1e-3)
    assert sol.estimate.m2 > 1
    sol.save(tmp_path)
    back = load_ko_solution(tmp_path)
    np.testing.assert_allclose(back.schedule(T).alpha, sol.schedule(T).alpha, atol=1e-6)
    diag = json.loads((tmp_path / "ko_diagnostics.json").read_text())
    assert diag["ko"]["kinetic_energy"] == pytest.approx(sol.schedule.energy, rel=1e-4)
    assert diag["cond_ot"]["conditional_energy"] == pytest.approx(2.0, rel=1e-5)
    again = solve_ko_from_data(x, key=jax.random.key(0), num_noise=128, num_snr=48, variant="bounded")
    np.testing.assert_array_equal(np.asarray(again.schedule.values), np.asarray(sol.schedule.values))  # deterministic
