"""kopaths data: TFDS datasets (own builders and stock pass-through) and a grain input pipeline.

Public API::

    default_data_config(name="fashion_mnist") -> ml_collections.ConfigDict
    make_train_iterator(data_cfg, *, seed, global_batch_size, start_step=0,
                        process_index=None, process_count=None) -> TrainIterator
    load_array(data_cfg, split=None, max_examples=None) -> (x float32, AffineStats)
    load_normalized(data_cfg, num_examples=None) -> x   # exactly normalised, for lambda-hat
    data_spec(data_cfg) -> DataSpec

Names ``"synthetic"`` / ``"synthetic:<dataset>"`` select a small in-memory stand-in (tests, smoke runs).
    prepare_dataset(data_cfg) -> str   # also: python -m kopaths.data.prepare --dataset fashion_mnist
"""

from kopaths.data.config import default_data_config, resolve_data_dir
from kopaths.data.errors import DataNotFoundError
from kopaths.data.iterator import DataSpec, TrainIterator, data_spec, load_array, load_normalized, make_train_iterator
from kopaths.data.sources import open_split, prepare_dataset
from kopaths.data.synthetic import is_synthetic, synthetic_data_config
from kopaths.data.transforms import Dequantization, box_downsample, to_uint8

__all__ = [
    "DataNotFoundError",
    "DataSpec",
    "Dequantization",
    "TrainIterator",
    "box_downsample",
    "data_spec",
    "default_data_config",
    "is_synthetic",
    "load_array",
    "load_normalized",
    "make_train_iterator",
    "open_split",
    "prepare_dataset",
    "resolve_data_dir",
    "synthetic_data_config",
    "to_uint8",
]
