"""Orbax checkpoints of the train state, data-iterator state and config, with clear errors.

A checkpoint step holds three items: ``state`` (the :class:`TrainState` pytree, sharded
arrays), ``data`` (the iterator state, JSON) and ``config`` (the run config, JSON). Saves
are asynchronous and atomic (orbax commits a temporary directory by renaming it); the last
``max_to_keep`` steps are kept.
"""

from __future__ import annotations

import os

import base64
import json
import logging
import pickle
from typing import Any

import orbax.checkpoint as ocp
from etils import epath

__all__ = ["CheckpointError", "IncompatibleCheckpointError", "Checkpointer", "COMPAT_KEYS"]

log = logging.getLogger(__name__)

#: Config sections that must match between a checkpoint and the run that resumes it.
COMPAT_KEYS = ("model", "path")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be restored (corrupt, truncated or unreadable)."""


class IncompatibleCheckpointError(CheckpointError):
    """A checkpoint was written by a run with a different model, path or data shape."""


def _encode(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return {"json": obj}
    except (TypeError, ValueError):
        return {"pickle_b64": base64.b64encode(pickle.dumps(obj)).decode("ascii")}


def _decode(record: Any) -> Any:
    if "json" in record:
        return record["json"]
    return pickle.loads(base64.b64decode(record["pickle_b64"]))


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class Checkpointer:
    """Thin wrapper around ``ocp.CheckpointManager`` for kopaths runs.

    Args:
      directory: checkpoint root (``<workdir>/checkpoints``).
      max_to_keep: number of most recent steps kept.
      async_save: write in a background thread after the device-to-host copy.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.fspath(directory))  # orbax requires an absolute path
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(epath.Path(self.directory), options=options)

    def latest_step(self) -> int | None:
        """The newest fully committed step, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All committed steps, ascending."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: Any, config: dict, *, force: bool = False) -> bool:
        """Starts an (async) save of ``state``, ``data_state`` and ``config`` at ``step``."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_encode(data_state)),
            config=ocp.args.JsonSave(_normalise(config)),
        )
        return self._manager.save(int(step), args=args, force=force)

    def restore(self, step: int, abstract_state: Any, config: dict) -> tuple[Any, Any]:
        """Restores ``(state, data_state)`` at ``step`` into the shardings of ``abstract_state``.

        Raises:
          IncompatibleCheckpointError: the saved model/path config differs from ``config``
            or the saved arrays do not fit ``abstract_state``.
          CheckpointError: the checkpoint is corrupt or unreadable.
        """
        where = f"{self.directory}/{step}"
        try:
            saved = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
            raise CheckpointError(
                f"Checkpoint {where} is corrupt or unreadable ({type(e).__name__}: {_short(e)}); "
                f"delete {where} to resume from an earlier step, or use a fresh --workdir."
            ) from e
        current = _normalise(config)
        for key in COMPAT_KEYS:
            if saved.get(key) != current.get(key):
                raise IncompatibleCheckpointError(
                    f"Checkpoint {where} was written with config.{key}={saved.get(key)} but this run has "
                    f"config.{key}={current.get(key)}; restore the original config or use a fresh --workdir."
                )
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()),
            )
            state, data = restored["state"], _decode(restored["data"])
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"Checkpoint {where} is corrupt, truncated or from an incompatible kopaths version "
                f"({type(e).__name__}: {_short(e)}); "
                f"delete {where} to resume from an earlier step, or use a fresh --workdir."
            ) from e
        log.info("Restored checkpoint %s", where)
        return state, data

    def read_config(self, step: int) -> dict:
        """The run config saved with ``step`` (``CheckpointError`` if it cannot be read)."""
        where = f"{self.directory}/{step}"
        try:
            return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
            raise CheckpointError(f"Checkpoint {where} is corrupt or unreadable ({type(e).__name__}: {_short(e)}).") from e

    def restore_saved_state(self, step: int) -> dict:
        """The saved train state at ``step`` as nested dicts of arrays, without a target structure
        (enough to evaluate a model without rebuilding its optimiser)."""
        where = f"{self.directory}/{step}"
        try:
            return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"Checkpoint {where} is corrupt, truncated or unreadable ({type(e).__name__}: {_short(e)}); "
                f"delete {where} or evaluate another step."
            ) from e

    def wait(self) -> None:
        """Blocks until pending async saves are committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases resources."""
        self._manager.wait_until_finished()
        self._manager.close()


def _short(e: Exception, limit: int = 300) -> str:
    msg = " ".join(str(e).split())
    return msg if len(msg) <= limit else msg[:limit] + "..."

