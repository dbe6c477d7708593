"""The data configuration (an ``ml_collections.ConfigDict``) and where prepared data live."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import ml_collections

__all__ = [
    "LOCAL_DATASETS",
    "STOCK_PREFIX",
    "DataOptions",
    "as_options",
    "default_data_config",
    "resolve_data_dir",
    "validate_data_config",
]

#: Dataset names served by kopaths' own TFDS builders.
LOCAL_DATASETS = ("fashion_mnist", "mnist", "checkerboard")
#: Prefix of names passed through to stock TFDS builders, e.g. ``"tfds:cifar10"``.
STOCK_PREFIX = "tfds:"
DATA_DIR_ENV = "KOPATHS_DATA_DIR"


def default_data_config(name: str = "fashion_mnist") -> ml_collections.ConfigDict:
    """Returns the default data configuration for ``name``.

    Fields:
      name: ``"fashion_mnist"`` (default), ``"mnist"``, ``"checkerboard"`` or ``"tfds:<stock name>"``
        (e.g. ``"tfds:cifar10"``, ``"tfds:imagenet_resized/32x32"``).
      data_dir: TFDS data dir; ``None`` means ``$KOPATHS_DATA_DIR`` or ``~/tensorflow_datasets``.
      source_path: where the raw files are read at prepare time (the Fashion-MNIST IDX folder, or the
        MNIST pickle); ``None`` means the default location (see :mod:`kopaths.data.builders`).
      resolution: side length after box-downsampling; ``None`` keeps the native resolution.
      dequantize: uniform dequantisation of 8-bit data (ignored for continuous data).
      split: split read by the training iterator.
      eval_split: split for evaluation.
      stats_split: split on which the normalisation statistics are computed (and cached).
    """
    cfg = ml_collections.ConfigDict()
    cfg.name = name
    cfg.data_dir = None
    cfg.source_path = None
    cfg.resolution = None
    cfg.dequantize = name != "checkerboard"
    cfg.split = "train"
    cfg.eval_split = "test"
    cfg.stats_split = "train"
    validate_data_config(cfg)
    return cfg


def resolve_data_dir(data_dir: str | None) -> str:
    """Returns ``data_dir`` or, when it is ``None``, ``$KOPATHS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    if data_dir:
        return os.path.expanduser(str(data_dir))
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return os.path.expanduser(env)
    return os.path.expanduser("~/tensorflow_datasets")


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """A validated, immutable data config: what the data layer works with below its entry points.

    Built once from a config (:func:`as_options`); read like one (``opts.name``,
    ``opts.get("resolution")``). ``shape``, ``num_examples`` and ``data_seed`` belong to the synthetic
    source (:mod:`kopaths.data.synthetic`).
    """

    name: str
    data_dir: str | None = None
    source_path: str | None = None
    resolution: int | None = None
    dequantize: bool = True
    split: str = "train"
    eval_split: str = "test"
    stats_split: str = "train"
    shape: tuple[int, ...] | None = None
    num_examples: int = 256
    data_seed: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read, as on the config it came from."""
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def as_options(cfg: Mapping[str, Any] | DataOptions) -> DataOptions:
    """Validates a data config (a ConfigDict, a dict or :class:`DataOptions`) and returns its options.

    Raises ``ValueError`` for an unknown dataset, an unknown field or an invalid value.
    """
    if isinstance(cfg, DataOptions):
        return cfg
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    fields = {f.name for f in dataclasses.fields(DataOptions)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"Unknown data config field(s) {unknown}; valid: {sorted(fields)}.")
    name = values.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"data_cfg.name must be a non-empty string, got {name!r}.")
    if name.split(":", 1)[0] != "synthetic":
        if name not in LOCAL_DATASETS and not (name.startswith(STOCK_PREFIX) and len(name) > len(STOCK_PREFIX)):
            raise ValueError(
                f"Unknown dataset {name!r}. Use one of {list(LOCAL_DATASETS)} or 'tfds:<name>' "
                "(e.g. 'tfds:cifar10', 'tfds:imagenet_resized/32x32'), or 'synthetic[:<dataset>]'."
            )
    res = values.get("resolution")
    if res is not None and (isinstance(res, bool) or not isinstance(res, int) or res < 1):
        raise ValueError(f"data_cfg.resolution must be None or a positive int, got {res!r}.")
    if name == "checkerboard" and res is not None:
        raise ValueError("data_cfg.resolution applies to images only; the checkerboard is 2-D.")
    if not isinstance(values.get("dequantize", True), bool):
        raise ValueError(f"data_cfg.dequantize must be a bool, got {values.get('dequantize')!r}.")
    if values.get("shape") is not None:
        values["shape"] = tuple(int(v) for v in values["shape"])
    return DataOptions(**{k: v for k, v in values.items() if v is not None or k in ("data_dir", "source_path",
                                                                                    "resolution", "shape")})


def validate_data_config(cfg: Mapping[str, Any] | DataOptions) -> None:
    """Raises ``ValueError`` if ``cfg`` names an unknown dataset or holds an unknown or invalid field."""
    as_options(cfg)
