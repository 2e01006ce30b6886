"""Data sets, held-out validation splits and K independently augmented views per image."""

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
