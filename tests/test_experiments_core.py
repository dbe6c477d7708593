"""Smoke tests of the core experiments (n/sqrt(d) scaling, checkerboard KO) on tiny generated data."""

from __future__ import annotations

import json
import math
import pytest

from experiments import checkerboard_ko, separation_scaling


def test_separation_scaling_quick(tmp_path):
    out = tmp_path / "scaling"
    table = separation_scaling.main(["--quick", "--outdir", str(out)])
    for name in ("scaling.png", "lambda_curves.png", "table.json", "README.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "table.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(table["rows"]))
    rows = on_disk["rows"]
    assert len(rows) == 8 and {r["family"] for r in rows} == {"gaussian", "lowrank"}
    for r in rows:
        assert r["n_over_sqrt_d"] == pytest.approx(r["n"] / math.sqrt(r["d"]))
        # Theorem 4.1 and the trivial bounds 0 <= integral <= pi/2 (lambda >= s^2/(1+s^2)).
        assert 0.0 <= r["integral_one_minus_lambda"] <= min(r["bound_3n_over_sqrt_d"], 0.5 * math.pi + 1e-6)
        assert r["bound_holds"]
        # Quadrature KE of Cond-OT against the identity KE = 2 - integral.
        assert r["ke_condot"] == pytest.approx(r["ke_condot_identity"], abs=1e-3)
        if not r["ko_degenerate"]:
            assert r["ke_ko"] <= r["ke_condot"] + 1e-6
            assert r["ke_gap_condot_minus_ko"] >= -1e-6
            assert r["gap_le_integral"]  # gap = 2 cos(Phi) - I <= I (derived)
    assert on_disk["summary"]["bound_holds_all"] and on_disk["summary"]["gap_le_integral_all"]
    # At fixed n, lambda tends to 1 as d grows: the integral shrinks from d=4 to d=64.
    for fam in ("gaussian", "lowrank"):
        for n in (8, 32):
            by_d = {r["d"]: r["integral_one_minus_lambda"] for r in rows if r["family"] == fam and r["n"] == n}
            assert by_d[64] < by_d[4]
    assert "python -m experiments.separation_scaling --quick" in (out / "README.md").read_text()


def test_checkerboard_ko_quick(tmp_path):
    out = tmp_path / "checkerboard"
    table = checkerboard_ko.main(["--quick", "--outdir", str(out)])
    for name in ("checkerboard_ko.png", "table.json", "exact_ko_schedule.json", "bounded_ko_schedule.json",
                 "bounded_ko_diagnostics.json", "lambda_hat.json", "README.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    on_disk = json.loads((out / "table.json").read_text())
    assert on_disk["ko"] == json.loads(json.dumps(table["ko"]))
    ke = on_disk["kinetic_energy"]
    assert ke["KO"] <= ke["Cond-OT"] + 1e-4 and ke["KO"] <= ke["SI (cosine)"] + 1e-4
    assert ke["KO"] == pytest.approx(on_disk["ko"]["b"], rel=5e-3)  # KE(KO) = b
    assert on_disk["ko"]["b_shooting"] == pytest.approx(on_disk["ko"]["b"], abs=1e-5)
    assert on_disk["ko"]["max_abs_diff_alpha"] < 1e-4 and on_disk["ko"]["max_abs_diff_sigma"] < 1e-4
    integral = on_disk["lambda"]["integral_one_minus_lambda"]
    assert 0.0 < integral <= min(3 * 2048 / math.sqrt(2), 0.5 * math.pi + 1e-6)
    assert ke["Cond-OT"] == pytest.approx(on_disk["kinetic_energy_condot_identity"], abs=1e-3)

    tail = on_disk["tail_sensitivity"]
    if tail is not None:
        assert tail["b_as_fitted"] == pytest.approx(on_disk["ko"]["b"], rel=1e-3)
        assert 0.0 <= tail["tail_fraction_of_Phi"] <= 1.0

    from kopaths import load_ko_schedule

    sched = load_ko_schedule(out / "exact_ko_schedule.json")
    assert sched.b == pytest.approx(on_disk["ko"]["b"])
    bounded = load_ko_schedule(out / "bounded_ko_schedule.json")
    assert bounded.max_speed < sched.max_speed and bounded.energy <= 1.0011 * sched.energy
    assert ke["KO (bounded)"] == pytest.approx(bounded.energy, rel=1e-4)
    est = json.loads((out / "lambda_hat.json").read_text())  # raw, noisy: read as JSON, not validated
    assert est["num_data"] == 2048 and est["dim"] == 2 and len(est["snr"]) == 32 == len(est["stderr"])
