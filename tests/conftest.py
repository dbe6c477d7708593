"""Shared fixtures: small datasets with known separation functions."""

import os
import shutil
import sys
import tempfile

# One persistent XLA compilation cache for the session, inherited by the subprocesses the CLI and
# sharding tests start: many tests compile the same tiny programs. Set before JAX is imported.
_XLA_CACHE = None if "JAX_COMPILATION_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="kopaths_test_xla_cache_")
if _XLA_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kopaths.lambda_fit import LambdaFit  # noqa: E402

# The experiment drivers and configs import as ``experiments.*`` from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_sessionfinish(session, exitstatus):
    if _XLA_CACHE:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


def rademacher_lambda(snr: np.ndarray) -> np.ndarray:
    r"""Exact lambda for x1 uniform on {-1, +1} in d=1: E tanh^2(s^2 + s eps), by Gauss-Hermite."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    return np.array([np.sum(weights * np.tanh(s * s + s * nodes) ** 2) for s in np.atleast_1d(snr)])


@pytest.fixture(scope="session")
def rademacher_fit() -> LambdaFit:
    snr = np.tan(np.linspace(0.0, 0.5 * np.pi * (1 - 1e-4), 400))
    return LambdaFit.from_table(snr, np.maximum.accumulate(rademacher_lambda(snr)))
