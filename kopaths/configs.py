"""Config files: the one loader behind the CLI, the experiments and the tests.

A config file is a Python file defining ``get_config(arg=None) -> ml_collections.ConfigDict``;
``file.py:arg`` passes ``arg`` (parse it with :func:`parse_arg`). :func:`load` imports the file,
calls ``get_config``, **locks** the result and applies ml_collections-style dotted overrides
(``--config.train.total_steps=100`` on the command line, ``"train.total_steps=100"`` here). Every
problem is a :class:`ConfigError` with one line that names the file and line or the field:

* a missing file, a syntax or import error, an exception inside ``get_config``, or a return value
  that is not a ``ConfigDict``;
* an override of a field that does not exist (with the closest valid name) or of the wrong type
  (with the field's type).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
import traceback
import types
from typing import Any, Sequence

import ml_collections

__all__ = ["ConfigError", "load", "load_module", "apply_overrides", "parse_arg", "split_config_args", "repository_config"]


class ConfigError(ValueError):
    """A config file or override that cannot be used (the message is one line)."""


def _where(exc: BaseException, file: str) -> str:
    """``file:line`` of the innermost frame of ``exc`` inside ``file`` (or just ``file``)."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{exc.filename or file}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename) == os.path.abspath(file)]
    return f"{file}:{frames[-1].lineno}" if frames else file


def load_module(path: str) -> types.ModuleType:
    """Imports a config file by path (not through ``sys.path``), with one-line errors."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist.")
    name = "_kopaths_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"{_where(e, path)}: syntax error in config file: {e.msg}.") from None
    except Exception as e:  # noqa: BLE001 - any error of the user's file
        raise ConfigError(f"{_where(e, path)}: config file failed to import: {type(e).__name__}: {e}") from None
    return module


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _set(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    node = cfg
    *parents, leaf = key.split(".")
    for i, name in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            _unknown(node, name, ".".join(parents[: i + 1]))
        node = node[name]
    if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"config field {'.'.join(parents)} is not a section; cannot set {key}.")
    if leaf not in node:
        _unknown(node, leaf, key)
    current = node[leaf]
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, ml_collections.ConfigDict) and not isinstance(value, (dict, ml_collections.ConfigDict)):
        raise ConfigError(f"config field {key} is a section; set one of its fields {sorted(current.keys())}.")
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        expected = type(current).__name__ if current is not None else "the field's type"
        raise ConfigError(f"config field {key} expects {expected}, got {value!r} ({type(value).__name__}): {e}") from None


def _unknown(node, name: str, key: str):
    names = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?" if close else ""
    raise ConfigError(f"unknown config field {key}{hint} (valid here: {', '.join(names)})")


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Applies ``"a.b=value"`` items (values parsed as Python literals, else strings) to ``cfg``."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"config override must be key=value, got {item!r}.")
        _set(cfg, key.strip(), _value(raw))
    return cfg


def load(spec: str, overrides: Sequence[str] = (), *, lock: bool = True) -> ml_collections.ConfigDict:
    """Loads ``file.py[:arg]``, locks it and applies ``overrides`` (see the module docstring)."""
    file, _, arg = str(spec).partition(":")
    module = load_module(file)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"{file}: config file defines no get_config() function.")
    try:
        cfg = get_config(arg) if arg else get_config()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{_where(e, file)}: get_config({arg!r}) failed: {type(e).__name__}: {e}") from None
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"{file}: get_config() must return an ml_collections.ConfigDict, got {type(cfg).__name__}.")
    if lock:
        cfg.lock()
    return apply_overrides(cfg, overrides)


def parse_arg(arg: str | None, **choices: Sequence[str]) -> dict[str, Any]:
    """Parses a config file's ``:arg``, e.g. ``"ko,runlocal,steps=4"`` with ``path=(...)``, ``variant=(...)``.

    Each comma-separated word must belong to exactly one of the ``choices`` (at most one word per
    choice; absent ones are ``None``); ``key=value`` items are returned as parsed literals.
    """
    out: dict[str, Any] = {name: None for name in choices}
    for word in [w.strip() for w in (arg or "").split(",") if w.strip()]:
        if "=" in word:
            key, _, raw = word.partition("=")
            out[key.strip()] = _value(raw)
            continue
        owners = [name for name, allowed in choices.items() if word in allowed]
        if len(owners) != 1 or out[owners[0]] is not None:
            raise ConfigError(f"config arg {arg!r}: cannot use {word!r}; expected at most one of each of "
                              + "; ".join(f"{name} in {tuple(allowed)}" for name, allowed in choices.items()))
        out[owners[0]] = word
    return out


def split_config_args(argv: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """Splits ``--config=FILE`` / ``--config FILE`` and ``--config.x=v`` items out of ``argv``.

    Returns ``(config spec or None, overrides as "x=v", the other arguments)``.
    """
    spec, overrides, rest = None, [], []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--config":
            if i + 1 >= len(items):
                raise ConfigError("--config needs a file (FILE.py[:arg]).")
            spec, i = items[i + 1], i + 2
            continue
        if item.startswith("--config="):
            spec = item[len("--config="):]
        elif item.startswith("--config."):
            body = item[len("--config."):]
            if "=" not in body:
                if i + 1 >= len(items):
                    raise ConfigError(f"{item} needs a value (--config.key=value).")
                body, i = f"{body}={items[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(item)
        i += 1
    return spec, overrides, rest


def repository_config(name: str) -> str:
    """Path of ``experiments/configs/<name>`` in the repository this kopaths was installed from."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "experiments", "configs", name)
    if not os.path.isfile(path):
        raise ConfigError(f"no --config given and the default {path} is not there; pass --config FILE.py.")
    return path


if __name__ == "__main__":  # pragma: no cover - `python -m kopaths.configs FILE[:arg] [key=value ...]` prints a config
    print(load(sys.argv[1], sys.argv[2:]))
