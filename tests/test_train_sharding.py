"""4 simulated CPU devices (data x fsdp mesh) reproduce the 1-device loss trajectory."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from kopaths.training.run_log import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Subprocesses only check behaviour, so they skip XLA's expensive LLVM passes (halves compile time).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _run(workdir, arg, devices):
    flags = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "kopaths", "train", f"--config={REPO}/experiments/configs/tiny.py:{arg}",
           f"--workdir={workdir}"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


@pytest.mark.parametrize("model", ["mlp", "unet"])
def test_four_devices_match_one_device(tmp_path, model):
    arg = f"{model},steps=4,batch=8"
    log = _run(str(tmp_path / "four"), arg + ",fsdp=2", devices=4)
    assert "'data': 2, 'fsdp': 2" in log and "over 4 devices" in log
    split = int(log.split("Parameters: ")[1].split(" of ")[0])
    assert split > 0, "FSDP should split some of the tiny model's weights"

    assert "over 1 devices" in _run(str(tmp_path / "one"), arg, devices=1)
    one = [r["loss"] for r in read_metrics(str(tmp_path / "one"))]
    four = [r["loss"] for r in read_metrics(str(tmp_path / "four"))]
    assert len(one) == len(four) == 4
    assert len(set(np.round(one, 4))) > 1  # the trajectory moves, so equality is informative
    np.testing.assert_allclose(four, one, rtol=2e-5, atol=1e-6)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_device(tmp_path):
    """``scripts/train_multihost.sh`` on 2 local processes x 2 CPU devices (jax.distributed + gloo)."""
    arg = "mlp,steps=4,batch=8"
    workdir = str(tmp_path / "multi")
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}",
                   JAX_PLATFORMS="cpu", COORDINATOR=f"localhost:{port}", NUM_PROCESSES="2", PROCESS_ID=str(pid),
                   PYTHON=sys.executable, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [os.path.join(REPO, "scripts", "train_multihost.sh"), f"experiments/configs/tiny.py:{arg},fsdp=2", workdir]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
        assert "over 4 devices (2 processes)" in log
    _run(str(tmp_path / "one"), arg, devices=1)
    one = [r["loss"] for r in read_metrics(str(tmp_path / "one"))]
    multi = [r["loss"] for r in read_metrics(workdir)]
    assert len(multi) == 4
    np.testing.assert_allclose(multi, one, rtol=2e-5, atol=1e-6)
