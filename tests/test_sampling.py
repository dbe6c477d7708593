"""Golden tests for kopaths.sampling: convergence order, NFE accounting, sharding, schedule transform."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

from _fields import gaussian_velocity
from kopaths.ode import sampling as S
from kopaths.ode._core import solve_one_adaptive
from kopaths.ideal import marginal_velocity
from kopaths.schedules import CondOTSchedule, CosineSchedule, VPSchedule

C = 2.0
FIELD = gaussian_velocity(CondOTSchedule(), C)  # exact flow: x1 = C * x0
X0 = jax.random.normal(jax.random.PRNGKey(0), (8, 3))


def _error(method: str, nfe: int) -> float:
    res = S.sample_fixed(FIELD, X0, method=method, nfe=nfe)
    return float(jnp.max(jnp.abs(res.x - C * X0)))


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_fixed_step_converges_at_its_order(method, order):
    e1, e2 = _error(method, 16), _error(method, 32)
    rate = np.log2(e1 / e2)
    assert rate > order - 0.25, (method, e1, e2, rate)


def _counting_field(counter):
    def bump(t):
        counter[0] += 1
        return np.zeros((), np.float32)

    def vf(t, x):
        z = io_callback(bump, jax.ShapeDtypeStruct((), jnp.float32), t, ordered=True)
        return FIELD(t, x) + z

    return vf


@pytest.mark.parametrize("method,nfe", [("euler", 5), ("midpoint", 6), ("heun", 4)])
def test_fixed_step_nfe_is_exact(method, nfe):
    counter = [0]
    res = S.sample_fixed(_counting_field(counter), X0, method=method, nfe=nfe)
    jax.block_until_ready(res.x)
    assert counter[0] == nfe
    assert np.all(np.asarray(res.nfe) == nfe) and int(res.nfe_max) == nfe


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_adaptive_nfe_matches_call_count(method, tol):
    counter = [0]
    vf = _counting_field(counter)
    solve = jax.jit(
        lambda x: solve_one_adaptive(
            lambda t, y, _: vf(t, y[None])[0], x, method=method, rtol=tol, atol=tol, t0=0.0, t1=1.0, max_steps=512
        )
    )
    _, nfe, ok = solve(X0[0])
    jax.block_until_ready(nfe)
    assert bool(ok) and int(nfe) == counter[0]
    # The same example through the vmapped / shard_mapped sampler reports the same NFE.
    res = S.sample_adaptive(FIELD, X0[:1], method=method, rtol=tol, atol=tol)
    assert int(res.nfe[0]) == int(nfe)


def test_adaptive_accuracy_and_per_example_nfe():
    data = jax.random.normal(jax.random.PRNGKey(3), (16, 2))
    schedule = CondOTSchedule(sigma_min=0.05)
    vf = lambda t, x: marginal_velocity(schedule, data, t, x)  # noqa: E731
    x0 = 3.0 * jax.random.normal(jax.random.PRNGKey(4), (7, 2))
    loose = S.sample_adaptive(vf, x0, method="dopri5", rtol=1e-3, atol=1e-3)
    tight = S.sample_adaptive(vf, x0, method="tsit5", rtol=1e-7, atol=1e-7)
    assert bool(jnp.all(loose.success & tight.success))
    assert float(jnp.max(jnp.abs(loose.x - tight.x))) < 2e-2
    assert int(loose.nfe_max) == int(jnp.max(loose.nfe))
    assert np.all(np.asarray(tight.nfe) > np.asarray(loose.nfe))
    assert len(set(np.asarray(tight.nfe).tolist())) > 1  # step sizes are chosen per example
    ref = S.sample_fixed(vf, x0, method="midpoint", nfe=2000)
    assert float(jnp.max(jnp.abs(ref.x - tight.x))) < 1e-3


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="multiple of 2"):
        S.sample_fixed(FIELD, X0, method="heun", nfe=5)
    with pytest.raises(ValueError, match="Unknown"):
        S.sample(FIELD, X0, method="rk4", nfe=4)
    with pytest.raises(ValueError, match="needs nfe"):
        S.sample(FIELD, X0, method="euler")
    with pytest.raises(ValueError, match="batch"):
        S.sample_fixed(FIELD, X0[0], method="euler", nfe=2)
    with pytest.raises(ValueError, match="rtol"):
        S.sample_adaptive(FIELD, X0, rtol=0.0)


@pytest.mark.parametrize(
    "original,new",
    [(CondOTSchedule(), CosineSchedule()), (CosineSchedule(), CondOTSchedule()), (CondOTSchedule(), VPSchedule())],
    ids=["condot_to_si", "si_to_condot", "condot_to_vp"],
)
def test_schedule_transform_maps_ideal_fields(original, new):
    data = jax.random.normal(jax.random.PRNGKey(5), (32, 2))
    trained = lambda t, x: marginal_velocity(original, data, t, x)  # noqa: E731
    moved = S.ScheduleTransformedVelocity(trained, original, new)
    x = jax.random.normal(jax.random.PRNGKey(6), (10, 2))
    for t in [0.05, 0.3, 0.6, 0.85]:
        want = marginal_velocity(new, data, t, x)
        got = jax.jit(moved)(t, x)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * float(jnp.max(jnp.abs(want))))


def test_schedule_transform_samples_match():
    data = jax.random.normal(jax.random.PRNGKey(7), (32, 2))
    moved = S.ScheduleTransformedVelocity(
        lambda t, x: marginal_velocity(CondOTSchedule(), data, t, x), CondOTSchedule(), CosineSchedule()
    )
    direct = lambda t, x: marginal_velocity(CosineSchedule(), data, t, x)  # noqa: E731
    x0 = jax.random.normal(jax.random.PRNGKey(8), (6, 2))
    a = S.sample_fixed(moved, x0, method="midpoint", nfe=100).x
    b = S.sample_fixed(direct, x0, method="midpoint", nfe=100).x
    np.testing.assert_allclose(a, b, atol=5e-3)


SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    assert len(jax.devices()) == 4, jax.devices()
    from kopaths.ode import sampling as S, likelihood as L
    from kopaths.ideal import marginal_velocity
    from kopaths.schedules import CondOTSchedule
    data = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    sch = CondOTSchedule(sigma_min=0.1)
    vf = jax.tree_util.Partial(lambda d, t, x: marginal_velocity(sch, d, t, x), data)
    x0 = jax.random.normal(jax.random.PRNGKey(1), (6, 2))
    m4, m1 = S.default_mesh(), S.default_mesh(jax.devices()[:1])
    r4 = S.sample_adaptive(vf, x0, rtol=1e-5, atol=1e-5, mesh=m4)
    r1 = S.sample_adaptive(vf, x0, rtol=1e-5, atol=1e-5, mesh=m1)
    np.testing.assert_allclose(r4.x, r1.x, rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.asarray(r4.nfe), np.asarray(r1.nfe)), (r4.nfe, r1.nfe)
    l4 = L.log_prob(vf, r4.x, mesh=m4)
    l1 = L.log_prob(vf, r4.x, mesh=m1)
    np.testing.assert_allclose(l4.log_prob, l1.log_prob, rtol=1e-5, atol=1e-5)
    print("SHARD_OK", r4.nfe.tolist())
    """
)


def test_shard_map_four_devices_equals_one():
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SHARD_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SHARD_OK" in proc.stdout


@pytest.fixture(scope="module")
def ko_schedule():
    from conftest import rademacher_lambda  # noqa: PLC0415
    from kopaths.ko import solve_ko  # noqa: PLC0415
    from kopaths.lambda_fit import LambdaFit  # noqa: PLC0415

    snr = np.tan(np.linspace(0.0, 0.5 * np.pi * (1 - 1e-4), 300))
    return solve_ko(LambdaFit.from_table(snr, np.maximum.accumulate(rademacher_lambda(snr))))


@pytest.mark.parametrize("direction", ["condot_to_ko", "ko_to_condot"])
def test_schedule_transform_from_and_to_ko_from_t_zero(ko_schedule, direction):
    # The exact KO path moves as fast as its table allows at t = 0; the polar transform stays exact there.
    data = jax.random.normal(jax.random.PRNGKey(9), (16, 1))
    a, b = (CondOTSchedule(), ko_schedule) if direction == "condot_to_ko" else (ko_schedule, CondOTSchedule())
    moved = S.ScheduleTransformedVelocity(lambda t, x: marginal_velocity(a, data, t, x), a, b)
    x = jax.random.normal(jax.random.PRNGKey(10), (12, 1))
    for t in [0.0, 1e-6, 1e-3, 0.2, 0.7, 0.95]:
        want = marginal_velocity(b, data, t, x)
        got = eqx.filter_jit(moved)(t, x)
        assert bool(jnp.all(jnp.isfinite(got)))
        np.testing.assert_allclose(got, want, rtol=5e-3, atol=5e-3 * float(jnp.max(jnp.abs(want))))


def test_one_model_sampled_along_any_path_gives_the_same_flow(ko_schedule):
    data = jax.random.normal(jax.random.PRNGKey(11), (16, 2))
    trained = lambda t, x: marginal_velocity(CondOTSchedule(), data, t, x)  # noqa: E731
    x0 = jax.random.normal(jax.random.PRNGKey(12), (6, 2))
    ref = S.sample_adaptive(trained, x0, rtol=1e-6, atol=1e-6, t1=0.999).x
    for path in (CosineSchedule(), ko_schedule):
        moved = S.ScheduleTransformedVelocity(trained, CondOTSchedule(), path)
        t1 = float(path.angle_inverse(CondOTSchedule().angle(0.999)))  # the same snr as Cond-OT's 0.999
        got = S.sample_adaptive(moved, x0, rtol=1e-6, atol=1e-6, t1=t1).x
        c = float(path(t1).sigma / CondOTSchedule()(0.999).sigma)  # x^B = c x^A at equal snr
        np.testing.assert_allclose(got, c * ref, atol=2e-3)
