"""Tests for kopaths.schedules against closed forms, finite differences and transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths import schedules as S

ANALYTIC = [
    S.CondOTSchedule(),
    S.CondOTSchedule(sigma_min=1e-2),
    S.VPSchedule(),
    S.CosineSchedule(),
    S.LinearVPSchedule(),
    S.PolynomialSchedule(exponent=3.0),
]
IDS = ["condot", "condot_smin", "vp", "cosine", "linear_vp", "poly3"]


def _fd(schedule, t, h=1e-4):
    hi, lo = schedule(t + h), schedule(t - h)
    return (hi.alpha - lo.alpha) / (2 * h), (hi.sigma - lo.sigma) / (2 * h)


@pytest.mark.parametrize("schedule", ANALYTIC, ids=IDS)
def test_boundary_conditions(schedule):
    out0, out1 = schedule(0.0), schedule(1.0)
    assert abs(float(out0.alpha)) < 1e-2  # VP has alpha_0 = exp(-5.025)
    assert abs(float(out0.sigma) - 1.0) < 1e-4
    assert abs(float(out1.alpha) - 1.0) < 1e-6


@pytest.mark.parametrize("schedule", ANALYTIC, ids=IDS)
def test_derivatives_match_finite_differences(schedule):
    t = jnp.linspace(0.05, 0.95, 19, dtype=jnp.float32)
    fa, fs = _fd(schedule, t.astype(jnp.float64) if jax.config.jax_enable_x64 else t, h=1e-3)
    out = schedule(t)
    np.testing.assert_allclose(out.d_alpha, fa, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(out.d_sigma, fs, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("schedule", ANALYTIC, ids=IDS)
def test_derivatives_match_autodiff(schedule):
    t = jnp.linspace(0.02, 0.98, 33)
    out = schedule(t)
    da = jax.vmap(jax.grad(lambda u: schedule(u).alpha))(t)
    ds = jax.vmap(jax.grad(lambda u: schedule(u).sigma))(t)
    np.testing.assert_allclose(out.d_alpha, da, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.d_sigma, ds, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ANALYTIC, ids=IDS)
def test_snr_inverse_roundtrip_closed_form_and_bisection(schedule):
    t = jnp.linspace(0.05, 0.95, 10)
    s = schedule.snr(t)
    np.testing.assert_allclose(schedule.snr_inverse(s), t, atol=1e-5)
    np.testing.assert_allclose(S.Schedule.snr_inverse(schedule, s), t, atol=1e-5)


def test_closed_forms_from_brief():
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(S.CondOTSchedule(0.1)(t).sigma, 1 - 0.9 * t, atol=1e-7)
    vp = S.VPSchedule(0.1, 20.0)(t)
    big_t = 0.5 * (1 - t) ** 2 * 19.9 + (1 - t) * 0.1
    np.testing.assert_allclose(vp.alpha, np.exp(-big_t / 2), rtol=1e-6)
    np.testing.assert_allclose(vp.alpha**2 + vp.sigma**2, 1.0, atol=1e-6)
    np.testing.assert_allclose(S.CosineSchedule()(t).alpha, np.sin(np.pi * t / 2), atol=1e-7)
    np.testing.assert_allclose(S.PolynomialSchedule(2.0)(t).sigma, 1 - t**2, atol=1e-7)


def test_schedules_are_pytrees_under_jit_vmap_grad():
    sched = S.CosineSchedule()

    @jax.jit
    def f(schedule, t):
        return schedule(t).alpha

    assert np.isclose(f(sched, 0.5), np.sin(np.pi / 4))
    tab = S.TabulatedSchedule.from_table(np.linspace(0, 1, 9), np.linspace(0, 1, 9), 1 - np.linspace(0, 1, 9))
    # grad with respect to the table values themselves
    g = jax.grad(lambda s: s(0.3).alpha)(tab)
    assert np.isclose(float(jnp.sum(g.values[0])), 1.0, atol=1e-6)  # interpolation weights sum to one


def test_tabulated_reproduces_smooth_schedule_and_consistent_derivatives():
    ref = S.CosineSchedule()
    knots = np.linspace(0, 1, 401)
    out = ref(knots)
    tab = S.TabulatedSchedule.from_table(knots, out.alpha, out.sigma)
    t = jnp.linspace(0.001, 0.999, 257)
    got, want = tab(t), ref(t)
    np.testing.assert_allclose(got.alpha, want.alpha, atol=1e-6)
    np.testing.assert_allclose(got.sigma, want.sigma, atol=1e-6)
    np.testing.assert_allclose(got.d_alpha, want.d_alpha, atol=5e-3)
    fa, fs = _fd(tab, jnp.linspace(0.01, 0.99, 97), h=1e-4)
    inner = tab(jnp.linspace(0.01, 0.99, 97))
    np.testing.assert_allclose(inner.d_alpha, fa, atol=5e-3)
    np.testing.assert_allclose(inner.d_sigma, fs, atol=5e-3)


def test_tabulated_rejects_bad_tables():
    with pytest.raises(ValueError, match="strictly increasing"):
        S.TabulatedSchedule.from_table([0, 0.5, 0.5, 1], [0, 0.5, 0.6, 1], [1, 0.5, 0.4, 0])
    with pytest.raises(ValueError, match="span"):
        S.TabulatedSchedule.from_table([0, 0.5], [0, 1], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        S.TabulatedSchedule.from_table([0, 0.5, 1], [0, np.nan, 1], [1, 0.5, 0])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0, float("nan")])
def test_sigma_min_out_of_range(bad):
    with pytest.raises(ValueError, match="sigma_min"):
        S.CondOTSchedule(sigma_min=bad)


def test_path_registry():
    assert isinstance(S.get_schedule("ddpm"), S.VPSchedule)
    assert S.path_spec("SI").name == "cosine" and S.PATHS["vp"].t_max < 1.0
    assert S.get_schedule("cond_ot", sigma_min=0.1).sigma_min == 0.1
    with pytest.raises(ValueError, match="Unknown path 'nope'; choose one of"):
        S.get_schedule("nope")
    with pytest.raises(ValueError, match="takes"):
        S.get_schedule("cosine", sigma_min=0.1)
    with pytest.raises(ValueError, match="depends on the data"):
        S.get_schedule("ko")
    for spec in S.PATHS.values():
        assert spec.label and (spec.schedule_class is None) == (spec.name == "ko")


def _ko_like_table():
    # a tabulated path whose angle rises as sqrt(t), like the exact KO geodesic
    t = np.unique(np.concatenate([np.linspace(0, 1, 257), np.geomspace(1e-9, 1e-3, 40)]))
    theta = 0.5 * np.pi * np.sqrt(t) ** 0.9
    return S.TabulatedSchedule.from_table(t, np.sin(theta), np.cos(theta), coordinates="polar")


@pytest.mark.parametrize("schedule", ANALYTIC + [_ko_like_table()], ids=IDS + ["tabulated_sqrt"])
def test_angle_inverse_covers_both_ends(schedule):
    t = jnp.asarray([0.0, 1e-6, 0.01, 0.3, 0.7, 0.99, 1.0])
    angle = schedule.angle(t)
    back = schedule.angle_inverse(angle)
    np.testing.assert_allclose(schedule.angle(back), angle, atol=2e-5)
    assert float(schedule.snr_inverse(jnp.asarray(0.0))) <= float(schedule.angle_inverse(angle[0])) + 1e-6
    if float(schedule(1.0).sigma) == 0.0:
        assert float(schedule.snr_inverse(jnp.asarray(jnp.inf))) == 1.0
    # out-of-range angles clamp to the end points instead of failing
    np.testing.assert_allclose(schedule.angle_inverse(jnp.asarray([-0.1, 2.0])), [0.0, 1.0], atol=1e-6)


def test_angle_inverse_by_bisection_has_no_host_callback():
    # A host callback (optimistix's bracket check) keeps JAX from caching every program that
    # inverts a tabulated path, such as the KO train step with its snr-matched time sampler.
    tab = _ko_like_table()
    angle = jnp.linspace(0.0, 0.5 * np.pi, 9)
    hlo = jax.jit(lambda a: tab.angle_inverse(a)).lower(angle).as_text()
    assert "while" in hlo and "callback" not in hlo
    np.testing.assert_allclose(tab.angle(tab.angle_inverse(angle)), angle, atol=2e-6)


def test_snr_inverse_at_zero_for_tabulated_schedules():
    # the bisection bracket used to have f(0) = 0 and raise at snr = 0
    tab = _ko_like_table()
    np.testing.assert_allclose(tab.snr_inverse(jnp.asarray([0.0, 1.0])), [0.0, float(S.Schedule.snr_inverse(tab, 1.0))], atol=1e-6)
    assert float(tab.snr_inverse(jnp.asarray(0.0))) == 0.0


def test_polar_output_is_consistent_with_cartesian():
    for schedule in ANALYTIC[:4] + [_ko_like_table()]:
        t = jnp.linspace(0.01, 0.95, 7)
        p, c = schedule.polar(t), schedule(t)
        np.testing.assert_allclose(p.radius * jnp.sin(p.angle), c.alpha, atol=1e-5)
        cart = S.polar_from_cartesian(c)
        np.testing.assert_allclose(p.d_angle, cart.d_angle, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(p.d_radius, cart.d_radius, rtol=1e-3, atol=1e-4)


def test_table_derivatives_stay_accurate_on_tiny_intervals():
    # Cond-OT tabulated on knots 1e-9 apart near t = 0: float32 values round there, offsets do not
    t = np.unique(np.concatenate([np.linspace(0, 1, 65), np.geomspace(1e-9, 1e-2, 60)]))
    for coordinates in ("polar", "cartesian"):
        tab = S.TabulatedSchedule.from_table(t, t, 1 - t, coordinates=coordinates)
        probe = jnp.asarray(np.geomspace(1e-9, 1e-2, 50))
        out = tab(probe)
        np.testing.assert_allclose(out.d_alpha, 1.0, atol=2e-3)  # interpolation error of the coarser knots
        np.testing.assert_allclose(out.d_sigma, -1.0, atol=2e-3)
