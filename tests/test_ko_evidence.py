"""Smoke test of the KO evidence driver: train variants x sampling paths x seeds, aggregated with intervals."""

from __future__ import annotations

import json

from experiments import ko_evidence


def test_quick_run_trains_evaluates_and_aggregates(tmp_path):
    out = tmp_path / "out"
    results = ko_evidence.main(["--quick", "--root", str(tmp_path / "root"), "--out", str(out)])
    setting = results["settings"][0]
    cells = setting["cells"]["cells"]
    assert setting["cells"]["seeds"] == {"cond_ot": [0, 1], "ko_bounded_matched": [0, 1]}
    cell = cells["ko_bounded_matched|ko_bounded|euler_2"]
    assert cell["fd"]["n"] == 2 and len(cell["per_seed"]) == 2 and "minus_baseline" in cell
    assert cells["cond_ot|cond_ot|euler_2"]["minus_baseline"]["mean"] == 0.0
    assert cell["solver_rmse"]["n"] == 2 and cell["solver_rmse"]["mean"] > 0 and "solver_rmse_minus_baseline" in cell
    assert cells["cond_ot|cond_ot|euler_4"]["solver_rmse"]["mean"] < cells["cond_ot|cond_ot|euler_2"]["solver_rmse"]["mean"]
    assert "solver_rmse" not in cells["cond_ot|cond_ot|dopri5"]
    assert set(setting["ko"]) == {"ko_exact", "ko_bounded", "ko_parametric"}
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["settings"][0]["cells"]["cells"].keys() == cells.keys()
    assert "| ko_bounded_matched | ko_bounded |" in (out / "results.md").read_text()
    assert "Solver error" in (out / "results.md").read_text()
    # a rerun reuses every finished evaluation
    again = ko_evidence.main(["--quick", "--root", str(tmp_path / "root"), "--out", str(out)])
    assert again["settings"][0]["cells"] == setting["cells"]
    # tables from what is finished: a variant without evaluations is left out, nothing is trained
    (out / "fashion_mnist_7px" / "eval" / "cond_ot_seed1.json").unlink()
    partial = ko_evidence.main(["--quick", "--aggregate_only", "--root", str(tmp_path / "root"), "--out", str(out)])
    seeds = partial["settings"][0]["cells"]["seeds"]
    assert seeds == {"cond_ot": [0], "ko_bounded_matched": [0, 1]}
    assert "minus_baseline" not in partial["settings"][0]["cells"]["cells"]["ko_bounded_matched|ko_bounded|euler_2"]
    assert not (out / "fashion_mnist_7px" / "eval" / "cond_ot_seed1.json").exists()
