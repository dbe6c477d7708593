"""Smoke tests of the training experiments: each driver trains, scores and aggregates over seeds."""

from __future__ import annotations

import json

from experiments import checkerboard_nfe, ideal_flow, table1


def test_checkerboard_nfe_quick(tmp_path):
    out = tmp_path / "out"
    results = checkerboard_nfe.main(["--quick", "--root", str(tmp_path / "root"), "--out", str(out)])
    cell = results["table"]["ko_bounded"]["euler_2|sliced_w2"]
    assert cell["interval"]["n"] == 2 and "minus_cond_ot" in cell
    assert (out / "samples.png").stat().st_size > 0 and "| KO (bounded) |" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["seeds"] == [0, 1]


def test_table1_quick(tmp_path):
    out = tmp_path / "out"
    results = table1.main(["--quick", "--root", str(tmp_path / "root"), "--out", str(out)])
    assert set(results["table"]) == {"cond_ot", "ko"} and "nll" in results["columns"]
    assert results["table"]["ko"]["euler_2"]["interval"]["n"] == 2
    assert (out / "ko" / "ko_schedule.json").exists() and "| KO |" in (out / "results.md").read_text()


def test_ideal_flow_quick(tmp_path):
    results = ideal_flow.main(["--quick", "--out", str(tmp_path)])
    paths = results["datasets"]["fashion_mnist"]["paths"]
    assert set(paths) == {"vp", "si", "cond_ot", "ko", "ko_bounded"}
    assert all(p["nfe_mean"] > 0 for p in paths.values()) and (tmp_path / "results.md").exists()
