"""Orbax checkpoints: exact restore, the saved config, restore without a target, and clear errors."""

import os
import shutil

import jax
import numpy as np
import pytest

from experiments.configs.tiny import tiny_config
from kopaths.evaluation.runs import load_run, read_run_config
from kopaths.training.checkpointing import CheckpointError, Checkpointer, IncompatibleCheckpointError
from kopaths.training.run_log import read_metrics
from kopaths.training.trainer import train


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(workdir)]


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ckpt") / "run")
    train(tiny_config("mlp", steps=4), workdir)
    return workdir


def _copy(src, tmp_path):
    dst = str(tmp_path / "run")
    shutil.copytree(src, dst)
    return dst


def test_resume_of_finished_run_is_a_no_op(trained_workdir, tmp_path):
    workdir = _copy(trained_workdir, tmp_path)
    result = train(tiny_config("mlp", steps=4), workdir)
    assert result.step == 4 and len(_losses(workdir)) == 4


def test_changed_model_config_gives_incompatible_error(trained_workdir, tmp_path):
    workdir = _copy(trained_workdir, tmp_path)
    c = tiny_config("mlp", steps=6)
    c.model.hidden_sizes = (64, 32)
    with pytest.raises(IncompatibleCheckpointError, match="config.model.*fresh --workdir"):
        train(c, workdir)


def _damage(step_dir, damage):
    if damage == "garbage_config":
        paths, mode = [os.path.join(step_dir, "config", "metadata")], "garbage"
    else:  # the array chunks of the OCDBT store
        paths = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "state"))
                 for f in fs if os.path.basename(r) == "d"]
        mode = damage
    assert paths
    for path in paths:
        if mode == "delete":
            os.remove(path)
            continue
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            if mode == "truncate":
                f.truncate(size // 2)
            else:
                f.write(b"\x00garbage{" * (size // 10 + 1))


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage_config"])
def test_corrupt_checkpoint_gives_clean_error(trained_workdir, tmp_path, damage):
    workdir = _copy(trained_workdir, tmp_path)
    _damage(os.path.join(workdir, "checkpoints", "4"), damage)
    with pytest.raises(CheckpointError, match=r"checkpoints/4 is corrupt.*delete .*checkpoints/4.*fresh --workdir"):
        train(tiny_config("mlp", steps=6), workdir)


def test_saved_config_and_parameters_without_rebuilding_the_optimiser(trained_workdir):
    ck = Checkpointer(os.path.join(trained_workdir, "checkpoints"), async_save=False)
    try:
        assert ck.all_steps() == [2, 4] and ck.latest_step() == 4
        config = ck.read_config(4)
        saved = ck.restore_saved_state(4)
    finally:
        ck.close()
    assert config["total_steps"] == 4 and config["model"]["name"] == "mlp"
    assert set(saved) == {"step", "params", "opt_state", "ema_params"} and int(saved["step"]) == 4
    run = load_run(trained_workdir)
    np.testing.assert_array_equal(
        np.asarray(jax.tree.leaves(run.velocity.params)[0]), np.asarray(jax.tree.leaves(saved["ema_params"])[0]))


def test_run_config_is_read_without_the_arrays(trained_workdir, tmp_path):
    assert read_run_config(trained_workdir).to_dict() == load_run(trained_workdir).config.to_dict()
    assert read_run_config(trained_workdir, 2).total_steps == 4
    workdir = _copy(trained_workdir, tmp_path)
    _damage(os.path.join(workdir, "checkpoints", "4"), "delete")  # no array chunk is left to read
    assert read_run_config(workdir).model.name == "mlp"
    with pytest.raises(CheckpointError):
        load_run(workdir)
    _damage(os.path.join(workdir, "checkpoints", "4"), "garbage_config")
    with pytest.raises(CheckpointError, match="checkpoints/4 is corrupt"):
        read_run_config(workdir)


def test_parameters_that_do_not_fit_the_model_are_refused(trained_workdir, tmp_path):
    workdir = _copy(trained_workdir, tmp_path)
    ck = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    state = ck.restore_saved_state(4)
    config = ck.read_config(4)
    config["model"]["hidden_sizes"] = [16, 16]
    ck.save(6, state, {"step": 6}, config, force=True)
    ck.close()
    with pytest.raises(IncompatibleCheckpointError, match="do not fit its saved model config"):
        load_run(workdir, 6)
