"""ODE solves of a velocity model: samples, kinetic energy along trajectories, and likelihoods.

* :mod:`kopaths.ode.sampling` — Euler/midpoint/Heun at a given NFE, dopri5/tsit5 per example;
  :class:`~kopaths.ode.sampling.ScheduleTransformedVelocity` samples along any path.
* :mod:`kopaths.ode.energy` — KE along the model's own trajectories; ideal-flow scores.
* :mod:`kopaths.ode.likelihood` — log-likelihoods and bits/dim with K dequantisation samples.

All three are fields on one private solve, :func:`kopaths.ode._core.integrate`.
"""

from kopaths.ode.energy import KineticEnergyResult, ideal_flow_scores, ideal_velocity, kinetic_energy_along_samples
from kopaths.ode.likelihood import BitsPerDimResult, LikelihoodResult, bits_per_dim, log_prob
from kopaths.ode.sampling import (
    ADAPTIVE_SOLVERS,
    FIXED_STEP_SOLVERS,
    SampleResult,
    ScheduleTransformedVelocity,
    VelocityFn,
    sample,
    sample_adaptive,
    sample_fixed,
)

__all__ = [
    "ADAPTIVE_SOLVERS",
    "FIXED_STEP_SOLVERS",
    "BitsPerDimResult",
    "KineticEnergyResult",
    "LikelihoodResult",
    "SampleResult",
    "ScheduleTransformedVelocity",
    "VelocityFn",
    "bits_per_dim",
    "ideal_flow_scores",
    "ideal_velocity",
    "kinetic_energy_along_samples",
    "log_prob",
    "sample",
    "sample_adaptive",
    "sample_fixed",
]
