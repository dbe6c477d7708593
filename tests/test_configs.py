"""The config loader: locked configs, dotted overrides, and one-line errors with file and line."""

import textwrap

import ml_collections
import pytest

from kopaths.configs import ConfigError, apply_overrides, load, load_module, parse_arg, split_config_args

GOOD = """
import ml_collections

def get_config(arg=None):
    return ml_collections.ConfigDict(dict(seed=0, separation=dict(num_noise=2048, num_snr=256), paths=("a", "b"),
                                          name="x", lr=1e-3, arg=arg or ""))
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_load_locks_and_overrides(tmp_path):
    path = _write(tmp_path, "good.py", GOOD)
    cfg = load(f"{path}:hello", ["separation.num_noise=64", "paths=['c']", "name=ko", "lr=1", "seed=3"])
    assert cfg.arg == "hello" and cfg.separation.num_noise == 64 and cfg.paths == ("c",) and cfg.name == "ko"
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.seed == 3
    with pytest.raises(AttributeError):
        cfg.new_field = 1  # locked


@pytest.mark.parametrize("override, message", [
    ("separation.num_nosie=3", r"unknown config field separation.num_nosie; did you mean separation.num_noise\?"),
    ("seperation.num_noise=3", r"did you mean separation\?"),
    ("separation.num_noise=abc", r"separation.num_noise expects int"),
    ("seed=0.5", r"seed expects int"),
    ("separation=3", r"is a section"),
    ("justakey", r"key=value"),
])
def test_override_errors_are_one_line(tmp_path, override, message):
    path = _write(tmp_path, "good.py", GOOD)
    with pytest.raises(ConfigError, match=message) as info:
        load(path, [override])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("def get_config(:\n    pass\n", r"broken.py:1: syntax error"),
    ("import not_a_module_anywhere\n", r"broken.py:1: config file failed to import: ModuleNotFoundError"),
    ("def get_config():\n    return 3\n", r"must return an ml_collections.ConfigDict, got int"),
    ("x = 1\n", r"defines no get_config"),
    ("import ml_collections\n\ndef get_config():\n    c = ml_collections.ConfigDict()\n    return c.missing\n",
     r"broken.py:5: get_config\(''\) failed: AttributeError"),
])
def test_broken_config_files(tmp_path, text, message):
    path = _write(tmp_path, "broken.py", text)
    with pytest.raises(ConfigError, match=message) as info:
        load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_module(str(tmp_path / "missing.py"))


def test_parse_arg_and_split():
    assert parse_arg("ko,runlocal,steps=4", path=("ko", "cond_ot"), variant=("runlocal",)) == {
        "path": "ko", "variant": "runlocal", "steps": 4}
    assert parse_arg(None, path=("ko",)) == {"path": None}
    with pytest.raises(ConfigError, match="cannot use 'ddim'"):
        parse_arg("ddim", path=("ko",))
    with pytest.raises(ConfigError, match="cannot use 'ko'"):
        parse_arg("ko,ko", path=("ko",))
    spec, overrides, rest = split_config_args(["train", "--config", "f.py:ko", "--config.a.b=1", "--config.c", "2", "--workdir", "w"])
    assert spec == "f.py:ko" and overrides == ["a.b=1", "c=2"] and rest == ["train", "--workdir", "w"]
    with pytest.raises(ConfigError):
        split_config_args(["run", "--config"])
    cfg = apply_overrides(ml_collections.ConfigDict(dict(a=dict(b=(1, 2)))), ["a.b=[3]"])
    assert cfg.a.b == (3,)
