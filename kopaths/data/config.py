"""The data configuration (an ``ml_collections.ConfigDict``) and where prepared data live."""

from __future__ import annotations

import os

import ml_collections

__all__ = [
    "LOCAL_DATASETS",
    "STOCK_PREFIX",
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


def validate_data_config(cfg: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` if ``cfg`` names an unknown dataset or holds an invalid field."""
    name = cfg.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"data_cfg.name must be a non-empty string, got {name!r}.")
    if name not in LOCAL_DATASETS and not (name.startswith(STOCK_PREFIX) and len(name) > len(STOCK_PREFIX)):
        raise ValueError(
            f"Unknown dataset {name!r}. Use one of {list(LOCAL_DATASETS)} or 'tfds:<name>' "
            "(e.g. 'tfds:cifar10', 'tfds:imagenet_resized/32x32')."
        )
    res = cfg.get("resolution")
    if res is not None and (isinstance(res, bool) or not isinstance(res, int) or res < 1):
        raise ValueError(f"data_cfg.resolution must be None or a positive int, got {res!r}.")
    if name == "checkerboard" and res is not None:
        raise ValueError("data_cfg.resolution applies to images only; the checkerboard is 2-D.")
    if not isinstance(cfg.get("dequantize", False), bool):
        raise ValueError(f"data_cfg.dequantize must be a bool, got {cfg.get('dequantize')!r}.")
