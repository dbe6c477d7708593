"""Smoke tests of the data experiments (paper Figures 1 and 4) on a tiny generated Fashion-MNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _fields import write_idx

from kopaths.data import default_data_config, prepare_dataset

from experiments import lambda_real_data, lambda_stability


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A prepared Fashion-MNIST made of 64 + 16 smooth random 28x28 images."""
    src = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for stem, n in (("train", 64), ("t10k", 16)):
        coarse = rng.integers(0, 256, size=(n, 7, 7))
        images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
        write_idx(src / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(src / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, size=n))
    cfg = default_data_config()
    cfg.data_dir, cfg.source_path = str(tmp_path_factory.mktemp("tfds")), str(src)
    prepare_dataset(cfg)
    return cfg.data_dir


@pytest.mark.slow
def test_lambda_real_data_writes_table_and_figure(data_dir, tmp_path):
    lambda_real_data.main(["--datasets", "fashion_mnist", "--resolutions", "7", "--num_data", "64",
                           "--num_noise", "32", "--num_snr", "24", "--data_dir", data_dir, "--outdir", str(tmp_path)])
    table = json.loads((tmp_path / "table.json").read_text())
    assert "lambda_real_data" in table["run"]["command"] and table["run"]["wall_seconds"] > 0
    rows = {r["resolution"]: r for r in table["rows"]}
    assert set(rows) == {7}
    for r in rows.values():
        assert 0 < r["int_one_minus_lambda"] < 2
        assert r["ke_ko"] <= r["ke_condot"] + 1e-4
        assert r["ke_condot"] == pytest.approx(2 - r["int_one_minus_lambda"], abs=5e-3)
        assert r["b"] == pytest.approx(r["ke_ko"], rel=1e-3)
    assert (tmp_path / "lambda_fashion_mnist.png").stat().st_size > 1000


@pytest.mark.slow
def test_lambda_stability_writes_rows_for_both_sweeps(data_dir, tmp_path):
    lambda_stability.main(["--resolution", "7", "--n_values", "16,64", "--k_values", "16,32", "--n_fixed", "64",
                           "--k_fixed", "16", "--num_snr", "16", "--data_dir", data_dir, "--outdir", str(tmp_path)])
    out = json.loads((tmp_path / "stability_fashion_mnist_7px.json").read_text())
    assert [(r["sweep"], r["n"], r["k"]) for r in out["rows"]] == [("n", 16, 16), ("n", 64, 16), ("k", 64, 16), ("k", 64, 32)]
    assert all(r["int_stderr_bound"] >= 0 for r in out["rows"])
    assert (tmp_path / "stability_fashion_mnist_7px.png").stat().st_size > 1000
