"""The public API: importable with the core dependencies alone, and complete."""

import subprocess
import sys

import kopaths

HEAVY = ("flax", "tensorflow_datasets", "grain", "orbax", "matplotlib", "ml_collections", "tqdm", "absl")


def test_import_needs_only_the_core_dependencies():
    code = f"import sys, kopaths; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_public_api_exports_what_other_projects_need():
    for name in ("flow_matching_loss", "SnrMatchedSampler", "sample", "sample_fixed", "sample_adaptive", "log_prob",
                 "bits_per_dim", "ScheduleTransformedVelocity", "solve_ko", "solve_ko_from_data", "schedule_diagnostics",
                 "PATHS", "estimate_lambda", "fit_lambda", "kinetic_energy"):
        assert name in kopaths.__all__ and hasattr(kopaths, name), name
    assert sorted(kopaths.__all__) == sorted(set(kopaths.__all__))
