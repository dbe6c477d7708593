"""The ``kopaths`` CLI: bad input, interruptions, and its compilation cache.

Bad input gives one-line errors and exit status 2 with nothing earlier lost: every such case runs
against an output folder that already holds finished results, and checks that those files are
byte-for-byte unchanged afterwards.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kopaths import cli

KOPATHS = [sys.executable, "-m", "kopaths"]
SMALL = ["--config.separation.num_noise=64", "--config.separation.num_snr=24"]


def _snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An output folder with lambda-hat and a KO solve of a user array, and that array."""
    folder = tmp_path_factory.mktemp("finished")
    data = np.random.default_rng(0).uniform(size=(300, 6, 6, 1)).astype(np.float32)
    np.save(folder / "data.npy", data)
    out = str(folder / "out")
    assert cli.main(["separation", "--array", str(folder / "data.npy"), "--outdir", out, *SMALL]) == 0
    assert cli.main(["solve", "--outdir", out, *SMALL]) == 0
    return folder, out


def _bad_array(folder, kind):
    path = str(folder / f"{kind}.npy")
    rng = np.random.default_rng(1)
    arrays = {
        "nan": np.where(rng.uniform(size=(50, 4)) < 0.1, np.nan, 1.0),
        "inf": np.full((50, 4), np.inf),
        "constant": np.full((50, 4), 3.0),
        "single": rng.normal(size=(1, 4)),
        "flat": rng.normal(size=(50,)),
        "complex": rng.normal(size=(50, 4)) + 1j,
        "strings": np.array([["a", "b"]] * 50),
        "ragged": np.array([np.zeros(3), np.zeros(4)] * 25, dtype=object),
        "out_of_range": rng.uniform(0, 300, size=(50, 4)),
    }
    if kind == "several":
        path = str(folder / "several.npz")
        np.savez(path, a=rng.normal(size=(50, 4)), b=rng.normal(size=(50, 4)))
    else:
        np.save(path, arrays[kind], allow_pickle=True)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("nan", "NaN"),
        ("inf", "NaN or Inf"),
        ("constant", "zero variance"),
        ("single", "at least 2 examples"),
        ("flat", "shape (n, ...)"),
        ("complex", "real numeric"),
        ("strings", "got dtype <U1"),
        ("ragged", "numeric dtype"),
        ("several", "exactly one array"),
        ("out_of_range", "outside the declared range [0, 255]"),
    ],
)
def test_bad_arrays(finished, kind, message, capsys):
    folder, out = finished
    before = _snapshot(out)
    extra = ["--range", "0,255"] if kind == "out_of_range" else []
    assert cli.main(["separation", "--array", _bad_array(folder, kind), "--outdir", out, *SMALL, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kopaths separation: error:") and message in err[0], err
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["separation", "--array", "/nonexistent/data.npy"], "does not exist"),
        (["solve", "--config.ko.sigma_min=-0.1"], "sigma_min"),
        (["solve", "--config.ko.sigma_min=1.0"], "sigma_min"),
        (["separation", "--config.separation.num_noise=1"], "num_noise"),
        (["separation", "--config.separation.nonexistent=3"], "unknown config field separation.nonexistent"),
        (["separation", "--config.separation.num_nosie=3"], "did you mean separation.num_noise?"),
        (["separation", "--config.separation.num_noise=many"], "separation.num_noise expects int"),
        (["solve", "--config.ko.variant=fastest"], "ko.variant must be one of"),
    ],
)
def test_bad_arguments(finished, argv, message, capsys):
    _, out = finished
    before = _snapshot(out)
    assert cli.main([argv[0], "--outdir", out, *SMALL, *argv[1:]]) == 2  # a later override wins
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert _snapshot(out) == before


@pytest.mark.parametrize("command", ["run", "separation", "solve", "report"])
def test_a_folder_in_use_is_refused_with_the_holders_pid(finished, command, capsys):
    from kopaths.io import FolderLock

    _, out = finished
    before = _snapshot(out)
    with FolderLock(out, "kopaths run"):
        assert cli.main([command, "--outdir", out, *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"in use by process {os.getpid()}" in err[0], err
    assert _snapshot(out) == before


def test_bad_lambda_table_file(finished, tmp_path, capsys):
    _, out = finished
    before = _snapshot(out)
    for text, message in [("{truncated", "not valid JSON"), ('{"snr": [0, 1]}', "Malformed lambda table")]:
        (tmp_path / "lam.json").write_text(text)
        assert cli.main(["solve", "--outdir", out, "--lambda_table", str(tmp_path / "lam.json"), *SMALL]) == 2
        assert message in capsys.readouterr().err
    assert _snapshot(out) == before


def test_full_disk_while_saving_keeps_earlier_results(finished, tmp_path):
    """Writes fail with EFBIG past a 4 KiB file-size limit, as on a full disk."""
    _, out = finished
    os.remove(os.path.join(out, "ko_schedule.json"))  # force the solve step to write again
    before = _snapshot(out)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run([*KOPATHS, "solve", "--outdir", out, *SMALL], preexec_fn=limit, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kopaths solve: error:")
    assert _snapshot(out) == before  # lambda.json intact, no partial ko_schedule.json, no temp files
    assert cli.main(["solve", "--outdir", out, *SMALL]) == 0  # and the step still completes afterwards


def _train_args(tiny_data_args, workdir):
    return ["train", "--workdir", workdir, *tiny_data_args,
            "--config.train.model.model_channels=8", "--config.train.model.channel_mult=(1,)",
            "--config.train.model.attention_resolutions=()", "--config.train.global_batch_size=4",
            "--config.train.checkpoint.every_steps=2", "--config.train.optim.warmup_steps=1"]


@pytest.fixture(scope="module")
def tiny_data_args(tmp_path_factory):
    from _fields import write_idx

    src = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 16)):
        write_idx(src / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(src / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8))
    data_dir = tmp_path_factory.mktemp("tfds")
    return [f"--config.data.source_path={src}", f"--config.data.data_dir={data_dir}", "--config.data.resolution=7"]


def test_sigint_during_training_saves_and_resumes_and_config_mismatch_is_refused(tiny_data_args, tmp_path):
    workdir = str(tmp_path / "run")
    args = _train_args(tiny_data_args, workdir)
    proc = subprocess.Popen([*KOPATHS, *args, "--config.train.total_steps=100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1]
    assert os.path.exists(metrics), "training never logged a step"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps, "no checkpoint saved on SIGINT"
    before = _snapshot(os.path.join(workdir, "checkpoints"))

    # Resuming with a different model is refused with one line; the checkpoint is untouched.
    proc = subprocess.run([*KOPATHS, *args, "--config.train.total_steps=100000", "--config.train.model.model_channels=16"],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kopaths train: error:")
    assert _snapshot(os.path.join(workdir, "checkpoints")) == before

    # Resuming with the same config continues from the saved step.
    proc = subprocess.run([*KOPATHS, *args, f"--config.train.total_steps={steps[-1] + 2}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"trained to step {steps[-1] + 2}" in proc.stdout


def test_evaluate_of_a_missing_workdir(capsys):
    assert cli.main(["evaluate", "--workdir", "/nonexistent"]) == 2
    assert "No checkpoints under /nonexistent" in capsys.readouterr().err


def test_kill_9_during_training_then_resume_matches_an_uninterrupted_run(tiny_data_args, tmp_path):
    """SIGKILL (no handler runs) after a few checkpoints; the rerun's metric log and final checkpoint
    equal those of a run that was never interrupted, and the half-written tail is not kept."""
    from kopaths.training.run_log import read_metrics

    total = 12
    killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
    args = [*_train_args(tiny_data_args, killed), f"--config.train.total_steps={total}", "--config.train.log_every_steps=1"]
    proc = subprocess.Popen([*KOPATHS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(killed, "metrics.jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(read_metrics(killed)) < 5:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with open(metrics, "a") as f:
        f.write('{"step": 99, "lo')  # as if the kill had landed mid-append
    assert len(read_metrics(killed)) < total, "the run finished before it could be killed"
    for workdir, extra in ((killed, []), (clean, [])):
        argv = [*_train_args(tiny_data_args, workdir), f"--config.train.total_steps={total}",
                "--config.train.log_every_steps=1", *extra]
        done = subprocess.run([*KOPATHS, *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    strip = lambda records: [{k: v for k, v in r.items() if k not in ("time", "steps_per_sec")} for r in records]
    assert strip(read_metrics(killed)) == strip(read_metrics(clean))
    assert [r["step"] for r in read_metrics(killed)] == list(range(1, total + 1))


def test_evaluate_with_the_builtin_classifier_needs_a_dataset_that_has_one(tiny_data_args, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    done = subprocess.run([*KOPATHS, *_train_args(tiny_data_args, workdir), "--config.train.total_steps=2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert cli.main(["evaluate", "--workdir", workdir, "--classifier", "builtin"]) == 2  # a 7x7 run: none shipped
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("kopaths evaluate: error:") and "No shipped FD classifier" in last


def test_compilation_cache_folder_follows_the_environment():
    home_cache = os.path.join(os.path.expanduser("~"), ".cache", "kopaths", "xla")
    assert cli._compilation_cache_dir({}) == home_cache
    assert cli._compilation_cache_dir({"XDG_CACHE_HOME": ""}) == home_cache
    assert cli._compilation_cache_dir({"XDG_CACHE_HOME": "/c"}) == os.path.join("/c", "kopaths", "xla")
    assert cli._compilation_cache_dir({"JAX_COMPILATION_CACHE_DIR": "/j", "XDG_CACHE_HOME": "/c"}) == "/j"
    assert cli._compilation_cache_dir({"JAX_COMPILATION_CACHE_DIR": "", "XDG_CACHE_HOME": "/c"}) is None


def test_the_command_line_caches_compiled_programs_and_a_cached_rerun_gives_the_same_result(tmp_path):
    data = tmp_path / "data.npy"
    np.save(data, np.random.default_rng(2).uniform(size=(200, 4, 4, 1)).astype(np.float32))
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cache = tmp_path / "cache" / "kopaths" / "xla"
    argv = [*KOPATHS, "separation", "--array", str(data), *SMALL, "--outdir"]
    entries, results = [], []
    for run in ("first", "cached"):
        done = subprocess.run([*argv, str(tmp_path / run)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        entries.append(sorted(p.name for p in cache.iterdir()))
        assert entries[-1], "nothing was written to the compilation cache"
        record = json.loads((tmp_path / run / "lambda.json").read_text())
        results.append({k: v for k, v in record.items() if k != "seconds"})
    assert entries[1] == entries[0]  # the rerun compiled nothing new
    assert results[1] == results[0]
    # An empty JAX_COMPILATION_CACHE_DIR switches the cache off.
    env.update(JAX_COMPILATION_CACHE_DIR="", XDG_CACHE_HOME=str(tmp_path / "unused"))
    done = subprocess.run([*argv, str(tmp_path / "uncached")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "unused" / "kopaths").exists()
