"""Runs the README's library example, so the documented import path stays true."""

import pathlib
import re


def test_readme_python_example_runs(capsys):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    b, ke_ko, ke_ot = (float(v) for v in re.findall(r"= ([0-9.]+)", out))
    assert abs(b - ke_ko) < 1e-3 * max(1.0, b) and ke_ko <= ke_ot + 1e-6
    assert namespace["target"].shape == (8, 64)
