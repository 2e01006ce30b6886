"""Data sets, held-out validation splits and K independently augmented views per image.

What this package guarantees: nothing is downloaded (a missing data set is a ``DataError`` naming
where it was looked for and how to get it); the validation split is seeded and held out of the
training set, the test split stays apart; each member gets its own augmented view of the same
images. ``load_dataset(name, root, ...)``, ``list_datasets()``, ``DataBundle``.
"""

from __future__ import annotations

from automl.data.augment import AugmentConfig, augment_batch, mixup
from automl.data.datasets import FASHION_MNIST_DEBIAN_ROOT, DataBundle, list_datasets, load_dataset
from automl.data.splits import FolderSplit, Split, TensorSplit

__all__ = [
    "FASHION_MNIST_DEBIAN_ROOT",
    "AugmentConfig",
    "DataBundle",
    "FolderSplit",
    "Split",
    "TensorSplit",
    "augment_batch",
    "list_datasets",
    "load_dataset",
    "mixup",
]
