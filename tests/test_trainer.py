"""The trainer: loss, optimiser, overfitting and exact resume (CPU, tiny MLP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths.schedules import CondOTSchedule, CosineSchedule
from kopaths.training.trainer import train
from kopaths.objective import flow_matching_loss, make_time_sampler
from kopaths.training.run_log import read_metrics
from kopaths.training.optim import ema_update, make_lr_schedule
from experiments.configs.tiny import tiny_config


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(workdir)]


def test_time_samplers_respect_support():
    key = jax.random.key(0)
    t, w = make_time_sampler(dict(name="uniform", t_min=0.2, t_max=0.3))(key, 1000)
    assert t.shape == (1000,) and float(t.min()) >= 0.2 and float(t.max()) <= 0.3 and bool(jnp.all(w == 1))
    t, _ = make_time_sampler(dict(name="logit_normal", loc=2.0, scale=0.5))(key, 4000)
    assert abs(float(jnp.median(t)) - float(jax.nn.sigmoid(2.0))) < 0.02
    with pytest.raises(ValueError, match="Unknown time sampler"):
        make_time_sampler(dict(name="beta"))
    with pytest.raises(ValueError, match="t_min < t_max"):
        make_time_sampler(dict(t_min=0.5, t_max=0.5))


def test_flow_matching_loss_is_zero_for_the_exact_velocity_of_one_point():
    # With a single data point the marginal velocity of Cond-OT is (x1 - x) / (1 - t).
    x1 = jnp.array([[1.0, -2.0, 0.5]])
    sampler = make_time_sampler(dict(t_max=0.9))
    exact = lambda x, t: (x1 - x) / (1.0 - t)[:, None]  # noqa: E731
    assert float(flow_matching_loss(exact, CondOTSchedule(), x1, jax.random.key(1), sampler)) < 1e-10
    zero = lambda x, t: jnp.zeros_like(x)  # noqa: E731
    # For the cosine path the target has E||u||^2/d = (pi/2)^2 (||x1||^2/d + 1) / 2 ... > 0.
    assert float(flow_matching_loss(zero, CosineSchedule(), x1, jax.random.key(1), sampler)) > 0.5


def test_lr_schedule_warmup_then_decay_and_ema():
    fn = make_lr_schedule(dict(lr=1.0, warmup_steps=10, decay="polynomial", power=1.0, end_lr_factor=0.1), 110)
    np.testing.assert_allclose([fn(0), fn(5), fn(10), fn(60), fn(110)], [0.0, 0.5, 1.0, 0.55, 0.1], rtol=1e-6)
    cos = make_lr_schedule(dict(lr=2.0, warmup_steps=0, decay="cosine"), 100)
    np.testing.assert_allclose([cos(0), cos(50), cos(100)], [2.0, 1.0, 0.0], atol=1e-6)
    ema = ema_update({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, 0.9, jnp.asarray(1000))
    np.testing.assert_allclose(ema["w"], 0.1, rtol=1e-6)


def test_overfits_a_tiny_dataset(tmp_path):
    # One point: the marginal velocity is a deterministic function of (x, t), so the loss can go to ~0.
    c = tiny_config("mlp", steps=300, batch=32)
    c.data.update(shape=(16,), num_examples=1)
    c.model.update(hidden_sizes=(128, 128), dropout=0.0)
    c.optim.update(lr=3e-3, warmup_steps=10, decay="constant", grad_clip_norm=0.0)
    c.time_sampling.t_max = 0.9
    c.log_every_steps = 10
    c.checkpoint.every_steps = 1000
    train(c, str(tmp_path))
    losses = [loss for _, loss in _losses(str(tmp_path))]
    assert np.mean(losses[-5:]) < 0.1 * losses[0], losses


def _assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_exact_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    c = tiny_config("mlp", steps=7)
    full = train(c, str(tmp_path / "full"))
    monkeypatch.chdir(tmp_path)  # a relative workdir, as `kopaths run`'s default outputs/main gives
    first = train(c, "resumed", stop_at_step=3)
    assert first.step == 3 and first.interrupted is False
    resumed = train(c, "resumed")
    assert resumed.step == full.step == 7
    _assert_trees_equal(full.state, resumed.state)
    assert _losses(str(tmp_path / "full")) == _losses(str(tmp_path / "resumed"))
    assert len(_losses(str(tmp_path / "full"))) == 7
