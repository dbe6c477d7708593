"""The main job's report: diagnostics table, figures and the model section, from stage outputs."""

import json
import os

import jax
import numpy as np
import pytest

from kopaths import configs
from kopaths.io import write_json
from kopaths.ko import solve_ko_variant
from kopaths.lambda_fit import fit_lambda
from kopaths.main_job import report, stages
from kopaths.normalization import normalize
from kopaths.separation import estimate_lambda, snr_grid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def stage_outputs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("report"))
    x = normalize(np.random.default_rng(0).standard_normal((400, 6)) * np.geomspace(2.0, 0.3, 6))[0]
    est = estimate_lambda(x, snr_grid(32), key=jax.random.key(0), num_noise=64)
    lam = fit_lambda(est, warn=False)
    variants = {v: solve_ko_variant(lam, 0.0, v) for v in ("exact", "bounded")}
    energies = stages.run_energies(out, lam, variants)
    write_json(os.path.join(out, "ko_solve.json"), {
        "chosen": "bounded", **{v: {k: getattr(s, k) for k in ("b", "energy", "max_speed", "gamma_floor")}
                                for v, s in variants.items()}})
    return out, est, lam, variants, energies


def test_diagnostics_rows_and_reference_paths(stage_outputs):
    _, _, _, variants, energies = stage_outputs
    names = list(report.reference_schedules(variants))
    assert names == ["Cond-OT", "SI (cosine)", "DDPM (VP)", "KO (exact)", "KO (bounded)"]
    rows = report.diagnostics_rows(energies)
    assert rows[0].startswith("| path | KE | conditional KE | irreducible FM loss") and len(rows) == 2 + len(names)
    cond_ot = next(r for r in rows if r.startswith("| Cond-OT |"))
    assert "| 2.0000 |" in cond_ot and cond_ot.endswith("| 1 |")


def test_report_writes_markdown_and_figures(stage_outputs):
    out, est, lam, variants, energies = stage_outputs
    cfg = configs.load(os.path.join(REPO, "experiments", "configs", "main_job.py"))
    path = report.run_report(cfg, out, est, lam, variants, energies, {"lambda-hat": 1.0}, ["## extra", ""])
    text = open(path).read()
    for name in ("lambda.png", "schedules.png", "energies.png", "diagnostics.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert "Training uses the **bounded** variant" in text and "## extra" in text and "m2 = tr(C^2)/d" in text
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]  # every file was written atomically
    assert "total 1 s." in text  # no training recorded: no evaluation / training ratio
    timed = report.run_report(cfg, out, est, lam, variants, energies, {"evaluation": 100.0, "training": 300.0}, [])
    assert "training 300 s, evaluation 100 s; total 400 s (evaluation / training = 0.33)." in open(timed).read()
    with open(os.path.join(out, "diagnostics.json")) as f:
        assert set(json.load(f)) == set(report.reference_schedules(variants))
