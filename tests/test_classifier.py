"""The classifier-feature FD, and trained models as velocity functions."""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths.data import default_data_config
from kopaths.data.builders import default_fashion_mnist_dir, locate_fashion_mnist
from kopaths.data.idx import read_idx
from kopaths.ode import sampling as S
from kopaths.evaluation.runs import FlaxVelocity
from kopaths.evaluation import classifier as C


def _toy_images(n, rng):
    # Class 0: bright top half, class 1: bright bottom half (8x8 grey images in [0, 255]).
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 60, (n, 8, 8, 1))
    x[y == 0, :4] += 180
    x[y == 1, 4:] += 180
    return x.astype(np.float32), y


def test_classifier_fd_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _toy_images(768, rng)
    params = C.train_classifier(x, y, key=jax.random.key(0), num_classes=2, epochs=2, batch_size=64)
    xt, yt = _toy_images(256, rng)
    assert C.classifier_accuracy(params, xt, yt) > 0.95
    f = C.classifier_features(params, xt)
    assert f.shape == (256, 128)
    same = C.classifier_fd(params, xt[:128], xt[128:])
    shifted = C.classifier_fd(params, xt[yt == 0], xt[yt == 1])
    assert shifted > 5 * max(same, 1e-3)
    C.save_classifier(str(tmp_path / "c.npz"), params, {"dataset": "toy"})
    loaded, meta = C.load_classifier(str(tmp_path / "c.npz"))
    assert meta["dataset"] == "toy"
    np.testing.assert_allclose(C.classifier_features(loaded, xt[:8]), f[:8], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        C.train_classifier(x[:, 0], y, key=jax.random.key(0))
    assert "not comparable" in C.FD_LABEL


def _fmnist_test_images(n):
    images, labels = locate_fashion_mnist(default_fashion_mnist_dir())["test"]
    return read_idx(images)[:n, :, :, None], read_idx(labels)[:n]


def test_builtin_classifier_is_only_for_its_dataset_at_native_resolution():
    fmnist = default_data_config("fashion_mnist")
    assert C.builtin_classifier_file(fmnist).endswith("fd_classifier_fashion_mnist.npz")
    fmnist.resolution = 28
    assert C.builtin_classifier_file(fmnist) is not None
    fmnist.resolution = 14
    assert C.builtin_classifier_file(fmnist) is None
    assert C.builtin_classifier_file(default_data_config("mnist")) is None
    with pytest.raises(ValueError, match="No shipped FD classifier"):
        C.load_builtin_classifier(fmnist)


@pytest.mark.skipif(not os.path.isdir(default_fashion_mnist_dir()), reason="dataset-fashion-mnist is not installed")
def test_builtin_classifier_classifies_fashion_mnist(tmp_path):
    cfg = default_data_config("fashion_mnist")
    params, meta = C.load_builtin_classifier(cfg)
    assert meta["dataset"] == "fashion_mnist" and meta["epochs"] == "1" and meta["seed"] == "0"
    x, y = _fmnist_test_images(2000)
    assert C.classifier_accuracy(params, x, y) > 0.85  # 0.876 on the whole test split
    # cached_classifier hands out the shipped network without training or writing anything.
    out = tmp_path / "clf.npz"
    got = C.cached_classifier(cfg, str(out), epochs=1, builtin=True)
    assert not out.exists()
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), got, params))


def test_damaged_builtin_classifier_is_refused(tmp_path, monkeypatch):
    name = C.BUILTIN_CLASSIFIERS["fashion_mnist"][0]
    shipped = C.builtin_classifier_file(default_data_config("fashion_mnist"))
    data = bytearray(open(shipped, "rb").read())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / name).write_bytes(bytes(data))
    monkeypatch.setattr(C, "__file__", str(tmp_path / "classifier.py"))
    with pytest.raises(ValueError, match="damaged"):
        C.load_builtin_classifier(default_data_config("fashion_mnist"))
    (tmp_path / "weights" / name).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        C.load_builtin_classifier(default_data_config("fashion_mnist"))


class _Lin(nn.Module):
    @nn.compact
    def __call__(self, x, t, train=False):
        return nn.Dense(x.shape[-1])(x) * t[:, None]


def test_flax_velocity_is_a_traced_pytree():
    model = _Lin()
    params = model.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1,)))["params"]
    v = FlaxVelocity(model, params)
    x0 = jax.random.normal(jax.random.key(1), (4, 3))
    a = S.sample_fixed(v, x0, method="euler", nfe=4).x
    b = S.sample_adaptive(v, x0, rtol=1e-6, atol=1e-6).x
    assert a.shape == b.shape == (4, 3)
    # New parameters reuse the compiled program (params are traced leaves, not constants).
    v2 = FlaxVelocity(model, jax.tree_util.tree_map(lambda p: 0.0 * p, params))
    np.testing.assert_allclose(S.sample_fixed(v2, x0, method="euler", nfe=4).x, x0, atol=1e-6)
