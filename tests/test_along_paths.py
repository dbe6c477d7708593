"""Sampling one model along several paths: the continuous flow is shared, fixed-step errors are not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _fields import gaussian_velocity
from kopaths.evaluation.along_paths import evaluate_along_paths, frechet_with_bootstrap, transformed_velocity
from kopaths.evaluation.distances import feature_statistics
from kopaths.ode.sampling import sample_fixed
from kopaths.schedules import CondOTSchedule, CosineSchedule, PolynomialSchedule

C = 2.0


def test_every_path_reaches_the_same_samples_but_euler_errors_differ():
    trained = CondOTSchedule()
    velocity = gaussian_velocity(trained, C)  # exact flow x1 = C x0 on every path with sigma_1 = 0
    x0 = jax.random.normal(jax.random.key(0), (64, 3))
    target = np.asarray(C * x0)

    def score(x):
        return {"error": float(np.max(np.abs(np.asarray(x) - target)))}

    paths = {"cond_ot": trained, "cosine": CosineSchedule(), "poly2": PolynomialSchedule(2.0)}
    out = evaluate_along_paths(velocity, trained, paths, x0, euler_nfe=(4, 64), tol=1e-6, score=score)
    for name, rec in out.items():
        assert rec["dopri5"]["error"] < 1e-3, name
        assert rec["euler_64"]["error"] < rec["euler_4"]["error"]
        for n in (4, 64):  # the dopri5 samples are exact to 1e-3, so the solver error is the Euler error
            x = np.asarray(sample_fixed(transformed_velocity(velocity, trained, paths[name]), x0, method="euler", nfe=n).x)
            exact_rmse = np.sqrt(np.mean((x - target) ** 2))
            assert rec[f"euler_{n}"]["solver_rmse"] == pytest.approx(exact_rmse, rel=0.02, abs=2e-4), (name, n)
        assert rec["euler_64"]["solver_rmse"] < rec["euler_4"]["solver_rmse"]
        assert rec["dopri5"]["nfe_mean"] >= 7 and rec["dopri5"]["kinetic_energy"] > 0
    assert len({round(rec["euler_4"]["error"], 6) for rec in out.values()}) == 3  # the sampling path matters at low NFE
    assert transformed_velocity(velocity, trained, trained) is velocity


def test_frechet_with_bootstrap():
    rng = np.random.default_rng(0)
    reference = feature_statistics(rng.standard_normal((20000, 4)))
    same = frechet_with_bootstrap(rng.standard_normal((1000, 4)), reference, num_bootstrap=50)
    shifted = frechet_with_bootstrap(rng.standard_normal((1000, 4)) + 1.0, reference, num_bootstrap=50)
    assert same["fd"] < 0.05 and shifted["fd"] == pytest.approx(4.0, abs=0.3)
    assert 0 < same["fd_bootstrap_se"] < 0.05 and same["num_samples"] == 1000
