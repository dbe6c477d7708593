"""Time samplers, snr matching and the per-log-snr description of the flow-matching objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from kopaths import schedules as S
from kopaths.ideal import marginal_velocity
from kopaths.ko import solve_ko
from kopaths.objective import (
    LogitNormalTimes,
    SnrMatchedSampler,
    UniformTimes,
    flow_matching_loss,
    log_snr_weighting,
    make_time_sampler,
)
from kopaths.ode.sampling import ScheduleTransformedVelocity


@pytest.fixture(scope="module")
def ko_path(rademacher_fit):
    return solve_ko(rademacher_fit, max_speed=20.0)


@pytest.mark.parametrize("sampler", [UniformTimes(0.1, 0.8), LogitNormalTimes(0.5, 1.5, 0.0, 1.0)])
def test_densities_integrate_to_one_and_match_samples(sampler):
    assert quad(lambda t: float(sampler.density(t)), 0, 1, points=[0.1, 0.8], limit=200)[0] == pytest.approx(1.0, abs=1e-4)
    t, w = sampler(jax.random.key(0), 20000)
    assert bool(jnp.all(w == 1.0))
    edges = np.linspace(max(sampler.t_min, 0.05), min(sampler.t_max, 0.95), 10)
    hist, _ = np.histogram(np.asarray(t), bins=edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    np.testing.assert_allclose(hist / 20000 / np.diff(edges), np.asarray(sampler.density(mid)), rtol=0.1, atol=0.05)


def test_matched_sampler_reproduces_the_reference_snr(ko_path):
    sampler = SnrMatchedSampler(ko_path, S.CondOTSchedule())
    key = jax.random.key(1)
    t, w = sampler(key, 4096)
    r, _ = UniformTimes()(key, 4096)
    np.testing.assert_allclose(ko_path.angle(t), S.CondOTSchedule().angle(r), atol=2e-5)
    assert bool(jnp.all(jnp.isfinite(w))) and bool(jnp.all(w >= 0))


def test_matched_loss_on_any_path_equals_the_reference_loss(ko_path):
    # A model on Cond-OT and its scale-time transform onto path B have identical per-example
    # errors up to the factor that the matched weight removes, so the two losses agree exactly.
    data = jax.random.normal(jax.random.key(2), (8, 3))
    model_a = lambda x, t: 0.7 * marginal_velocity(S.CondOTSchedule(), data, t, x)  # noqa: E731  (imperfect on purpose)
    for path_b in (ko_path, S.CosineSchedule()):
        moved = ScheduleTransformedVelocity(lambda t, x: model_a(x, jnp.full((x.shape[0],), t)), S.CondOTSchedule(), path_b)
        model_b = jax.vmap(lambda x, t: moved(t, x[None])[0])
        x1 = data[jnp.arange(64) % 8]
        key = jax.random.key(3)
        ref = flow_matching_loss(model_a, S.CondOTSchedule(), x1, key, UniformTimes(0.0, 0.999))
        got = flow_matching_loss(model_b, path_b, x1, key, SnrMatchedSampler(path_b, S.CondOTSchedule(), UniformTimes(0.0, 0.999)))
        np.testing.assert_allclose(float(got), float(ref), rtol=2e-3)
        plain = flow_matching_loss(model_b, path_b, x1, key, UniformTimes(0.0, 0.999))
        assert abs(float(plain) - float(ref)) > 1e-3 * float(ref)  # the unweighted loss is a different objective


def test_log_snr_weighting_of_cond_ot_and_of_a_matched_path(ko_path):
    ell = np.linspace(-5, 5, 41)
    density, weight = log_snr_weighting(S.CondOTSchedule(), ell)
    sig = 1 / (1 + np.exp(-ell))
    np.testing.assert_allclose(density, sig * (1 - sig), rtol=1e-4)
    np.testing.assert_allclose(weight, (1 + np.exp(-ell)) ** 2, rtol=1e-4)
    matched = log_snr_weighting(ko_path, ell, SnrMatchedSampler(ko_path, S.CondOTSchedule()))
    np.testing.assert_allclose(matched[0] * matched[1], density * weight, rtol=1e-4)
    own_density, own_weight = log_snr_weighting(ko_path, ell)
    assert quad(lambda e: float(np.interp(e, ell, own_density)), -5, 5)[0] <= 1.0 + 1e-3
    assert not np.allclose(own_density * own_weight, density * weight, rtol=0.05)


def test_make_time_sampler_from_config(ko_path):
    assert isinstance(make_time_sampler(dict(name="uniform")), UniformTimes)
    s = make_time_sampler(dict(name="logit_normal", reference="cond_ot"), ko_path)
    assert isinstance(s, SnrMatchedSampler) and isinstance(s.base, LogitNormalTimes)
    with pytest.raises(ValueError, match="needs the training schedule"):
        make_time_sampler(dict(reference="cond_ot"))
    with pytest.raises(ValueError, match="Unknown path"):
        make_time_sampler(dict(reference="nope"), ko_path)
    with pytest.raises(ValueError, match="Unknown time sampler"):
        make_time_sampler(dict(name="beta"))
