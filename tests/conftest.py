"""Shared fixtures: small datasets with known separation functions."""

import os
import sys

import numpy as np
import pytest

from kopaths.lambda_fit import LambdaFit

# The experiment drivers and configs import as ``experiments.*`` from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rademacher_lambda(snr: np.ndarray) -> np.ndarray:
    r"""Exact lambda for x1 uniform on {-1, +1} in d=1: E tanh^2(s^2 + s eps), by Gauss-Hermite."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    return np.array([np.sum(weights * np.tanh(s * s + s * nodes) ** 2) for s in np.atleast_1d(snr)])


@pytest.fixture(scope="session")
def rademacher_fit() -> LambdaFit:
    snr = np.tan(np.linspace(0.0, 0.5 * np.pi * (1 - 1e-4), 400))
    return LambdaFit.from_table(snr, np.maximum.accumulate(rademacher_lambda(snr)))
