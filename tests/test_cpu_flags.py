"""Tests for the XLA:CPU defaults kopaths sets at import (kopaths._cpu_flags)."""

import os
import subprocess
import sys

import jax.numpy as jnp

from kopaths import _cpu_flags

FLAG = _cpu_flags.CPU_XLA_FLAGS[0]


def _flags_after_import(**env) -> str:
    run_env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "KOPATHS_XLA_DEFAULTS")}
    run_env.update(env)
    code = "import kopaths, os; print(os.environ.get('XLA_FLAGS', ''))"
    return subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_adds_the_flag_and_keeps_the_users_flags():
    assert _flags_after_import() == FLAG
    assert _flags_after_import(XLA_FLAGS="--xla_cpu_enable_fast_math=false").split() == [
        "--xla_cpu_enable_fast_math=false", FLAG]


def test_users_own_value_and_the_opt_out_win():
    own = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    assert _flags_after_import(XLA_FLAGS=own) == own
    assert _flags_after_import(KOPATHS_XLA_DEFAULTS="0") == ""


def test_nothing_changes_once_jax_runs(monkeypatch):
    jnp.zeros(()).block_until_ready()  # backends are up
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert _cpu_flags.apply() == []
    assert "XLA_FLAGS" not in os.environ
