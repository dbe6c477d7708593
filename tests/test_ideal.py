"""Tests for the exact marginal velocity of empirical data."""

import jax
import jax.numpy as jnp
import numpy as np

from kopaths import schedules as S
from kopaths.ideal import marginal_velocity, posterior_mean


def test_posterior_mean_matches_dense_softmax_and_is_chunk_invariant():
    key = jax.random.key(0)
    data = jax.random.normal(key, (37, 5))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    alpha, sigma = 0.7, 0.4
    logits = (alpha * x @ data.T - 0.5 * alpha**2 * jnp.sum(data**2, -1)) / sigma**2
    want = jax.nn.softmax(logits, -1) @ data
    np.testing.assert_allclose(posterior_mean(x, alpha, sigma, data, chunk_size=8), want, atol=1e-5)
    np.testing.assert_allclose(posterior_mean(x, alpha, sigma, data, chunk_size=100), want, atol=1e-5)


def test_single_point_velocity_transports_to_it():
    data = jnp.array([[2.0, -1.0]])
    sched = S.CondOTSchedule()
    x = jnp.array([[0.3, 0.1]])
    # With one data point the flow is x_t = t x1 + (1 - t) x0, so u = (x1 - x) / (1 - t).
    t = 0.4
    np.testing.assert_allclose(marginal_velocity(sched, data, t, x), (data - x) / (1 - t), atol=1e-5)


def test_per_example_times():
    data = jax.random.normal(jax.random.key(2), (10, 3))
    x = jax.random.normal(jax.random.key(3), (4, 3))
    t = jnp.array([0.1, 0.3, 0.5, 0.9])
    sched = S.CosineSchedule()
    batched = marginal_velocity(sched, data, t, x)
    single = jnp.stack([marginal_velocity(sched, data, t[i], x[i : i + 1])[0] for i in range(4)])
    np.testing.assert_allclose(batched, single, atol=1e-5)
