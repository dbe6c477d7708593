"""kopaths: kinetic-optimal Gaussian probability paths for flow matching, in JAX.

The stable public API is what this module exports; submodules hold the details. Importing it needs
only the core dependencies (JAX, equinox, diffrax, optimistix, optax, NumPy, SciPy); the trainer,
the data pipeline, the evaluation networks and the figures live in ``kopaths.training``,
``kopaths.data``, ``kopaths.evaluation`` and ``kopaths.main_job`` (extras ``train``, ``data``, ``plot``).

Importing kopaths before JAX's first computation selects XLA:CPU's faster convolution path
(:mod:`kopaths._cpu_flags`; ``KOPATHS_XLA_DEFAULTS=0`` keeps XLA's own default).
"""

from kopaths import _cpu_flags

_cpu_flags.apply()

from kopaths.diagnostics import ScheduleDiagnostics, schedule_diagnostics
from kopaths.ideal import marginal_velocity, posterior_mean
from kopaths.kinetic import conditional_energy, kinetic_energy, kinetic_energy_density, kinetic_energy_monte_carlo
from kopaths.ko import (
    KO_VARIANTS,
    DegenerateLambdaError,
    KOSchedule,
    KOSolution,
    load_ko_schedule,
    load_ko_solution,
    solve_ko,
    solve_ko_from_data,
    solve_ko_from_estimate,
    solve_ko_variant,
)
from kopaths.lambda_fit import LambdaFit, fit_lambda
from kopaths.normalization import AffineStats, normalize
from kopaths.ode import (
    ScheduleTransformedVelocity,
    bits_per_dim,
    kinetic_energy_along_samples,
    log_prob,
    sample,
    sample_adaptive,
    sample_fixed,
)
from kopaths.objective import (
    LogitNormalTimes,
    SnrMatchedSampler,
    UniformTimes,
    flow_matching_loss,
    log_snr_weighting,
    make_time_sampler,
)
from kopaths.paths import (
    conditional_velocity,
    epsilon_to_velocity,
    sample_xt,
    velocity_to_epsilon,
    velocity_to_x1,
    x1_to_velocity,
)
from kopaths.schedules import (
    PATHS,
    CondOTSchedule,
    CosineSchedule,
    LinearVPSchedule,
    PathSpec,
    PolarOutput,
    PolynomialSchedule,
    Schedule,
    SchedulerOutput,
    TabulatedSchedule,
    VPSchedule,
    get_schedule,
    path_spec,
)
from kopaths.separation import LambdaEstimate, covariance_spectrum, estimate_lambda, gaussian_lambda, linear_mmse, snr_grid

__version__ = "0.1.0"

__all__ = [
    "KO_VARIANTS",
    "PATHS",
    "AffineStats",
    "CondOTSchedule",
    "CosineSchedule",
    "DegenerateLambdaError",
    "KOSchedule",
    "KOSolution",
    "LambdaEstimate",
    "LambdaFit",
    "LinearVPSchedule",
    "LogitNormalTimes",
    "PathSpec",
    "PolarOutput",
    "PolynomialSchedule",
    "Schedule",
    "ScheduleDiagnostics",
    "ScheduleTransformedVelocity",
    "SchedulerOutput",
    "SnrMatchedSampler",
    "TabulatedSchedule",
    "UniformTimes",
    "VPSchedule",
    "bits_per_dim",
    "conditional_energy",
    "conditional_velocity",
    "covariance_spectrum",
    "epsilon_to_velocity",
    "estimate_lambda",
    "fit_lambda",
    "flow_matching_loss",
    "gaussian_lambda",
    "get_schedule",
    "kinetic_energy",
    "kinetic_energy_along_samples",
    "kinetic_energy_density",
    "kinetic_energy_monte_carlo",
    "linear_mmse",
    "load_ko_schedule",
    "load_ko_solution",
    "log_prob",
    "log_snr_weighting",
    "make_time_sampler",
    "marginal_velocity",
    "normalize",
    "path_spec",
    "posterior_mean",
    "sample",
    "sample_adaptive",
    "sample_fixed",
    "sample_xt",
    "schedule_diagnostics",
    "snr_grid",
    "solve_ko",
    "solve_ko_from_data",
    "solve_ko_from_estimate",
    "solve_ko_variant",
    "velocity_to_epsilon",
    "velocity_to_x1",
    "x1_to_velocity",
]
