"""The main job's stages end to end through the CLI, on tiny generated Fashion-MNIST-style data."""

import json
import os

import numpy as np
import pytest

from _fields import write_idx

from kopaths import cli


@pytest.fixture(scope="module")
def tiny_args(tmp_path_factory):
    """CLI overrides pointing the default pipeline at 200 smooth random 28x28 images."""
    src = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("t10k", 50)):
        base = rng.uniform(0, 255, size=(n, 7, 7))
        images = np.kron(base, np.ones((4, 4))).astype(np.uint8)  # smooth-ish, well separated
        write_idx(src / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(src / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    data_dir = tmp_path_factory.mktemp("tfds")
    return [
        f"--config.data.source_path={src}", f"--config.data.data_dir={data_dir}",
        "--config.separation.num_data=200", "--config.separation.num_noise=64", "--config.separation.num_snr=32",
        "--config.data.resolution=14", "--config.train_paths=()",
    ]


def test_full_main_job_with_tiny_models(tmp_path, tiny_args):
    out = str(tmp_path / "full")
    args = [a for a in tiny_args if a != "--config.train_paths=()"] + [
        "--config.data.resolution=7", "--config.train.model.model_channels=8", "--config.train.model.channel_mult=(1,)",
        "--config.train.model.attention_resolutions=()", "--config.train.total_steps=4",
        "--config.train.global_batch_size=8", "--config.train.checkpoint.every_steps=2",
        "--config.evaluate.num_samples=16", "--config.evaluate.num_bpd=4", "--config.evaluate.euler_nfe=(2,4)",
        "--config.evaluate.tol=0.01", "--config.evaluate.also_along_ko=('parametric',)",
    ]
    assert cli.main(["run", "--outdir", out, *args]) == 0
    report = open(os.path.join(out, "report.md")).read()
    assert "## Trained models" in report and "FD Euler 2" in report and "| KO (bounded) | Cond-OT |" in report
    assert "RMSE Euler 4" in report
    # no shipped classifier at 7x7: one is trained in the output folder, and the report says so
    assert "trained on the training split in this run" in report and os.path.exists(os.path.join(out, "fd_classifier.npz"))
    for name in ["samples.png", "nfe_quality.png", "eval_cond_ot.json", "eval_ko.json"]:
        assert os.path.exists(os.path.join(out, name)), name
    ko = json.load(open(os.path.join(out, "eval_ko.json")))
    assert ko["path"] == "ko" and ko["nll"]["K"] == 1 and np.isfinite(ko["nll"]["bits_per_dim"])
    # every model is sampled along every trained path, and along the parametric KO (evaluate.also_along_ko)
    assert set(ko["sampled_along"]) == {"cond_ot", "ko", "ko_parametric"}
    # a changed evaluation config is refused even though the earlier stages match
    assert cli.main(["run", "--outdir", out, *args, "--config.evaluate.num_samples=8"]) == 2
    # the KO run trained on the pipeline's own KO schedule
    assert json.load(open(os.path.join(out, "train_ko", "ko_schedule.json")))["b"] == json.load(
        open(os.path.join(out, "ko_schedule.json")))["b"]


def test_main_job_writes_report_and_resumes(tmp_path, tiny_args, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["run", "--outdir", out, *tiny_args]) == 0
    for name in ["lambda.json", "ko_schedule.json", "energies.json", "report.md", "lambda.png", "schedules.png",
                 "diagnostics.png", "diagnostics.json", "ko_diagnostics.json", "ko_exact.json", "ko_parametric.json"]:
        assert os.path.exists(os.path.join(out, name)), name
    energies = json.load(open(os.path.join(out, "energies.json")))
    exact, bounded, cond_ot = (energies[k] for k in ("KO (exact)", "KO (bounded)", "Cond-OT"))
    assert exact["kinetic_energy"] <= bounded["kinetic_energy"] <= cond_ot["kinetic_energy"] + 1e-6
    assert bounded["max_speed"] < exact["max_speed"] and cond_ot["max_speed"] == 1.0
    report = open(os.path.join(out, "report.md")).read()
    assert "irreducible FM loss" in report and "max speed" in report
    before = open(os.path.join(out, "lambda.json")).read()
    os.remove(os.path.join(out, "report.md"))
    assert cli.main(["run", "--outdir", out, *tiny_args]) == 0  # resumes, recomputes only the report
    assert "reusing" in capsys.readouterr().out
    assert open(os.path.join(out, "lambda.json")).read() == before
    # a different config in the same folder is refused, and nothing is overwritten
    assert cli.main(["run", "--outdir", out, *tiny_args, "--config.separation.num_noise=32"]) == 2
    assert "different" in capsys.readouterr().err
    assert open(os.path.join(out, "lambda.json")).read() == before


def test_same_seed_gives_bit_identical_results(tmp_path, tiny_args):
    outs = [str(tmp_path / f"r{i}") for i in range(2)]
    for out in outs:
        assert cli.main(["run", "--outdir", out, *tiny_args]) == 0
    for name in ["lambda.json", "ko_schedule.json"]:
        a, b = (json.load(open(os.path.join(out, name))) for out in outs)
        for d in (a, b):
            d.pop("seconds", None), d.pop("solve_seconds", None)
        assert a == b, name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config.data.source_path=/nonexistent/folder", "--config.data.data_dir=/tmp/kopaths-empty-dir"], "error"),
        (["--config.ko.sigma_min=1.5"], "sigma_min"),
        (["--config.evaluate.fd_classifier=inception"], "fd_classifier"),
        (["--config", "/nonexistent/config.py"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, tiny_args, extra, message, capsys):
    assert cli.main(["run", "--outdir", str(tmp_path / "bad"), *tiny_args, *extra]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("kopaths run: error:") and message in last


def test_solve_rejects_bad_lambda_table(tmp_path, capsys):
    bad = tmp_path / "lambda.json"
    bad.write_text(json.dumps({"snr": [0, 1, 2], "one_minus_lambda": [1.0, 0.2, 0.5], "stderr": [0, 0, 0],
                               "num_data": 2, "num_noise": 2, "dim": 1}))
    assert cli.main(["solve", "--outdir", str(tmp_path), "--lambda_table", str(bad)]) == 2
    assert "not monotone" in capsys.readouterr().err
