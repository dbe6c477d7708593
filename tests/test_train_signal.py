"""Ctrl-C (SIGINT) during training writes a checkpoint at the current step and exits cleanly."""

import os
import signal
import subprocess
import sys
import time

from kopaths.training.run_log import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sigint_saves_and_exits(tmp_path):
    workdir = str(tmp_path / "run")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "kopaths", "train", f"--config={REPO}/experiments/configs/tiny.py:mlp,steps=1000000",
           f"--workdir={workdir}", "--config.checkpoint.every_steps=1000000"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while len(read_metrics(workdir)) < 3:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]  # interrupted: the checkpoint is saved, rerun to resume
    assert "saving a checkpoint and stopping" in err and "interrupted at step" in err
    last = read_metrics(workdir)[-1]["step"]
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps == [last] and 3 <= last < 1000000
