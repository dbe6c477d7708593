"""Prepares one of kopaths' own datasets into a TFDS data dir (idempotent).

Usage::

    python -m kopaths.data.prepare --dataset fashion_mnist [--data_dir DIR] [--source_path PATH]

``--data_dir`` defaults to ``$KOPATHS_DATA_DIR`` or ``~/tensorflow_datasets``. The native-resolution
normalisation statistics of the train split are computed and cached as well.
"""

from __future__ import annotations

import argparse
import sys
import time

from kopaths.data.config import LOCAL_DATASETS, default_data_config
from kopaths.data.errors import DataNotFoundError
from kopaths.data.iterator import data_spec
from kopaths.data.sources import prepare_dataset


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 with a message when data are missing)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=LOCAL_DATASETS, default="fashion_mnist")
    parser.add_argument("--data_dir", default=None, help="TFDS data dir (default $KOPATHS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--source_path", default=None,
                        help="Fashion-MNIST IDX folder or MNIST mnist.pkl.gz (default: the standard location)")
    args = parser.parse_args(argv)
    cfg = default_data_config(args.dataset)
    cfg.data_dir = args.data_dir
    cfg.source_path = args.source_path
    start = time.perf_counter()
    try:
        path = prepare_dataset(cfg)
        spec = data_spec(cfg)
    except DataNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dataset}: prepared at {path} ({spec.num_train_examples} train examples, "
          f"example shape {spec.element_shape}, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
