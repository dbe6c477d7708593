"""Same seed and config: identical training loss trajectories, and a different seed differs."""

import numpy as np

from kopaths.training.trainer import train
from kopaths.training.run_log import read_metrics
from experiments.configs.tiny import tiny_config


def _losses(workdir, seed, path="ko"):
    cfg = tiny_config("mlp", path, steps=5)
    cfg.seed = seed
    train(cfg, str(workdir))
    return np.array([m["loss"] for m in read_metrics(str(workdir))])


def test_training_loss_trajectory_is_reproducible(tmp_path):
    a = _losses(tmp_path / "a", seed=3)
    b = _losses(tmp_path / "b", seed=3)
    c = _losses(tmp_path / "c", seed=4)
    assert a.size == 5
    np.testing.assert_array_equal(a, b)  # bit-identical on the same backend
    assert not np.array_equal(a, c)
