"""Experiment configs: every path builds, the main job embeds the trainer config, and the
runlocal variants train through ``kopaths train``."""

import json
import os
import subprocess
import sys

import pytest

from kopaths import configs
from kopaths.configs import ConfigError
from kopaths.main_job.trained_models import trainer_config
from kopaths.training.defaults import PATHS
from kopaths.training.run_log import read_metrics
from kopaths.training.trainer import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Subprocesses only check behaviour, so they skip XLA's expensive LLVM passes (halves compile time).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
CONFIGS = {"fmnist_unet": "unet", "checkerboard_mlp": "mlp"}


def _file(name):
    return os.path.join(REPO, "experiments", "configs", f"{name}.py")


def _load(name):
    return configs.load_module(_file(name))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("path", PATHS)
def test_config_variants_build(name, path):
    module = _load(name)
    full, local = module.get_config(path), module.get_config(f"{path},runlocal")
    assert full.path.name == local.path.name == path and full.model.name == CONFIGS[name]
    assert local.total_steps < 10 <= full.total_steps
    json.dumps(full.to_dict())  # checkpoints store the config as JSON


@pytest.mark.parametrize("arg", ["ddim", "ko,cpu,runlocal", "ko,cond_ot"])
def test_config_arg_errors(arg):
    with pytest.raises(ConfigError, match="cannot use"):
        _load("fmnist_unet").get_config(arg)
    with pytest.raises(ConfigError, match=r"variant in \('runlocal',\)"):
        _load("checkerboard_mlp").get_config("ko,cpu")


def test_fmnist_cpu_variant_is_the_main_job_model_and_the_main_job_embeds_the_trainer_config():
    main_job = configs.load(_file("main_job"))
    c = _load("fmnist_unet").get_config("ko,cpu")
    assert c.model.to_dict() == main_job.train.model.to_dict()
    ko = trainer_config(main_job, "ko", outdir="/nonexistent")
    assert ko.path.name == "ko" and ko.path.ko_variant == main_job.ko.variant and ko.seed == main_job.seed
    assert ko.data.to_dict() == main_job.data.to_dict() and ko.path.ko_num_noise == main_job.separation.num_noise
    assert trainer_config(main_job, "vp", outdir="/nonexistent").time_sampling.t_max < 1.0
    # KO trains on the bounded path with Cond-OT's snr density and weighting (the README's evidence)
    ko = trainer_config(main_job, "ko", outdir="/nonexistent")
    assert (ko.path.ko_variant, ko.time_sampling.reference) == ("bounded", "cond_ot")
    assert trainer_config(main_job, "cond_ot", outdir="/nonexistent").time_sampling.reference == ""
    # Table 1 averages the last three checkpoints, all of them late in training.
    last3 = [c.total_steps - k * c.checkpoint.every_steps for k in range(3)]
    assert c.checkpoint.max_to_keep >= 3 and min(last3) >= 0.8 * c.total_steps


@pytest.mark.parametrize("path", ["vp", "cosine"])
def test_runlocal_paths_train(tmp_path, path):
    c = _load("checkerboard_mlp").get_config(f"{path},runlocal")
    c.data.name = "synthetic:checkerboard"
    c.progress_bar = False
    result = train(c, str(tmp_path))
    losses = [r["loss"] for r in read_metrics(str(tmp_path))]
    assert result.step == c.total_steps == len(losses) and all(l > 0 for l in losses)


def _main(config_arg, workdir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=FAST_COMPILE, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    name, arg = config_arg
    cmd = [sys.executable, "-m", "kopaths", "train", f"--config=experiments/configs/{name}.py:{arg}",
           f"--workdir={workdir}", f"--config.data.name=synthetic:{_load(name).get_config(arg).data.name}",
           "--config.progress_bar=True"]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("config_arg", [("checkerboard_mlp", "ko,runlocal"), ("fmnist_unet", "cond_ot,runlocal")])
def test_runlocal_through_main(tmp_path, config_arg):
    workdir = str(tmp_path / "run")
    proc = _main(config_arg, workdir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = read_metrics(workdir)
    total = _load(config_arg[0]).get_config(config_arg[1]).total_steps
    assert [r["step"] for r in records] == list(range(1, total + 1))
    assert "step/s" in proc.stderr  # the tqdm bar
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == str(total)
    if config_arg[1].startswith("ko"):
        assert os.path.exists(os.path.join(workdir, "ko_schedule.json"))
