"""kopaths: kinetic-optimal Gaussian probability paths for flow matching, in JAX.

The stable public API is what this module exports; submodules hold the details.
"""

from kopaths.ideal import marginal_velocity, posterior_mean
from kopaths.kinetic import conditional_energy, kinetic_energy, kinetic_energy_monte_carlo
from kopaths.ko import DegenerateLambdaError, KOSchedule, load_ko_schedule, solve_ko
from kopaths.lambda_fit import LambdaFit, fit_lambda
from kopaths.normalization import AffineStats, normalize
from kopaths.paths import (
    conditional_velocity,
    epsilon_to_velocity,
    sample_xt,
    velocity_to_epsilon,
    velocity_to_x1,
    x1_to_velocity,
)
from kopaths.schedules import (
    CondOTSchedule,
    CosineSchedule,
    LinearVPSchedule,
    PolynomialSchedule,
    Schedule,
    SchedulerOutput,
    TabulatedSchedule,
    VPSchedule,
    get_schedule,
)
from kopaths.separation import LambdaEstimate, estimate_lambda, gaussian_lambda, snr_grid

__version__ = "0.1.0"

__all__ = [
    "AffineStats",
    "CondOTSchedule",
    "CosineSchedule",
    "DegenerateLambdaError",
    "KOSchedule",
    "LambdaEstimate",
    "LambdaFit",
    "LinearVPSchedule",
    "PolynomialSchedule",
    "Schedule",
    "SchedulerOutput",
    "TabulatedSchedule",
    "VPSchedule",
    "conditional_energy",
    "conditional_velocity",
    "epsilon_to_velocity",
    "estimate_lambda",
    "fit_lambda",
    "gaussian_lambda",
    "get_schedule",
    "kinetic_energy",
    "kinetic_energy_monte_carlo",
    "load_ko_schedule",
    "marginal_velocity",
    "normalize",
    "posterior_mean",
    "sample_xt",
    "snr_grid",
    "solve_ko",
    "velocity_to_epsilon",
    "velocity_to_x1",
    "x1_to_velocity",
]
