"""Data sets: in-memory tensors for small ones, file folders for ImageNet-style ones.

Nothing is downloaded: every loader reads a local root and a missing data set is a ``DataError``
that says where it looked and how to provide it.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from automl.data.augment import AugmentConfig
from automl.data.splits import FolderSplit, Split, TensorSplit, list_image_folder
from automl.errors import DataError

__all__ = [
    "FASHION_MNIST_DEBIAN_ROOT",
    "DataBundle",
    "check_available",
    "list_datasets",
    "load_dataset",
]

FASHION_MNIST_DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
# Where a user says where the data lives: the space file for searches and workers, the option of
# `automl train` for single runs.
ROOT_HINT = "set [data] root in the space file (automl train: --data-root)"


@dataclass
class DataBundle:
    """A data set ready for training: held-out validation for selection, test kept apart."""

    name: str
    num_classes: int
    in_chans: int
    image_size: int
    train: Split
    val: Split
    test: Split
    default_augment: AugmentConfig


@dataclass(frozen=True)
class _Raw:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: AugmentConfig


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08: unsigned byte
        raise DataError(f"{path} is not an idx file of unsigned bytes (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for d in (root, root / "raw", root / "FashionMNIST" / "raw"):
        for name in (f"{stem}.gz", stem):
            if (d / name).is_file():
                return d / name
    return None


_FASHION_STEMS = {
    "xtr": "train-images-idx3-ubyte",
    "ytr": "train-labels-idx1-ubyte",
    "xte": "t10k-images-idx3-ubyte",
    "yte": "t10k-labels-idx1-ubyte",
}


def _fashion_mnist_files(root: Path | None) -> dict[str, Path]:
    r = root if root is not None else FASHION_MNIST_DEBIAN_ROOT
    found = {k: _find_idx(r, s) for k, s in _FASHION_STEMS.items()}
    missing = [_FASHION_STEMS[k] for k, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST idx files not found under {r} (missing {', '.join(missing)}); "
            "install Debian's package with 'apt-get install dataset-fashion-mnist' or "
            f"{ROOT_HINT} naming the folder holding train-images-idx3-ubyte.gz"
        )
    return {k: p for k, p in found.items() if p is not None}


def _fashion_mnist(root: Path | None) -> _Raw:
    found = _fashion_mnist_files(root)
    arrs = {k: torch.from_numpy(_read_idx(p).copy()) for k, p in found.items()}
    return _Raw(
        arrs["xtr"][:, None],
        arrs["ytr"].long(),
        arrs["xte"][:, None],
        arrs["yte"].long(),
        10,
        AugmentConfig(crop_padding=2, hflip=True),
    )


def _digits(root: Path | None) -> _Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8x8 images with values 0..16; scale to the uint8 range every other data set uses.
    x = torch.from_numpy((d.images * 16).clip(0, 255).astype(np.uint8))[:, None]
    y = torch.from_numpy(d.target).long()
    # The digits have no official test split: a fixed permutation keeps 20% apart for good.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return _Raw(x[tr], y[tr], x[te], y[te], 10, AugmentConfig(crop_padding=1))


def _need_root(root: Path | None, name: str, expected: str) -> Path:
    if root is None:
        raise DataError(f"{name} needs a data root holding {expected}; {ROOT_HINT}")
    return root


# torchvision's folder for each CIFAR and the files in it that its loader opens.
_CIFAR_LAYOUT = {
    False: ("cifar-10-batches-py", [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]),
    True: ("cifar-100-python", ["train", "test"]),
}
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def _cifar_root(root: Path | None, hundred: bool) -> Path:
    name = "CIFAR-100" if hundred else "CIFAR-10"
    folder, files = _CIFAR_LAYOUT[hundred]
    r = _need_root(root, name, f"torchvision's {folder}/")
    missing = [f for f in files if not (r / folder / f).is_file()]
    if missing:
        raise DataError(
            f"{name} not found under {r}: expected torchvision's layout {r / folder} (missing "
            f"{', '.join(missing)}); unpack the official python archive there, or {ROOT_HINT}"
        )
    return r


def _svhn_root(root: Path | None) -> Path:
    r = _need_root(root, "SVHN", " and ".join(_SVHN_FILES))
    missing = [f for f in _SVHN_FILES if not (r / f).is_file()]
    if missing:
        raise DataError(
            f"SVHN not found under {r}: missing {', '.join(missing)}; put the official .mat "
            f"files there, or {ROOT_HINT}"
        )
    return r


def _torchvision_cifar(root: Path | None, hundred: bool) -> _Raw:
    from torchvision import datasets

    name = "CIFAR-100" if hundred else "CIFAR-10"
    root = _cifar_root(root, hundred)
    cls = datasets.CIFAR100 if hundred else datasets.CIFAR10
    try:
        tr = cls(str(root), train=True, download=False)
        te = cls(str(root), train=False, download=False)
    except RuntimeError as e:  # the files are there (checked above) but fail the checksums
        folder = "cifar-100-python" if hundred else "cifar-10-batches-py"
        raise DataError(
            f"{name} under {root / folder} fails torchvision's integrity check (truncated or "
            "other files?); unpack the official python archive there again"
        ) from e

    def conv(ds: datasets.CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    xtr, ytr = conv(tr)
    xte, yte = conv(te)
    return _Raw(
        xtr,
        ytr,
        xte,
        yte,
        100 if hundred else 10,
        AugmentConfig(crop_padding=4, hflip=True),
    )


def _svhn(root: Path | None) -> _Raw:
    from torchvision import datasets

    root = _svhn_root(root)
    try:
        tr = datasets.SVHN(str(root), split="train", download=False)
        te = datasets.SVHN(str(root), split="test", download=False)
    except RuntimeError as e:  # the files are there (checked above) but fail the checksums
        raise DataError(
            f"SVHN under {root} fails torchvision's integrity check (truncated or other files?); "
            "download the official train_32x32.mat and test_32x32.mat again"
        ) from e
    return _Raw(
        torch.from_numpy(tr.data),
        torch.from_numpy(tr.labels).long(),
        torch.from_numpy(te.data),
        torch.from_numpy(te.labels).long(),
        10,
        AugmentConfig(crop_padding=4),
    )


_MEAN_STD: dict[str, tuple[list[float], list[float]]] = {
    "digits": ([0.3], [0.35]),
    "fashion_mnist": ([0.286], [0.353]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "svhn": ([0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970]),
    "imagefolder": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}

_LOADERS: dict[str, Callable[[Path | None], _Raw]] = {
    "digits": _digits,
    "fashion_mnist": _fashion_mnist,
    "cifar10": lambda r: _torchvision_cifar(r, False),
    "cifar100": lambda r: _torchvision_cifar(r, True),
    "svhn": _svhn,
}


def list_datasets() -> list[str]:
    return sorted([*_LOADERS, "imagefolder"])


def _split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


def _limit(idx: torch.Tensor, limit: int | None) -> torch.Tensor:
    return idx if limit is None else idx[:limit]


def _imagefolder_dirs(root: Path | None) -> tuple[Path, Path]:
    """The training and test folders of an image folder data set, without listing the images
    (an ImageNet folder holds a million files)."""
    layout = "ROOT/train/<class>/<images> and ROOT/val/<class>/<images>"
    r = _need_root(root, "an image folder data set", layout)
    train_dir = r / "train"
    if not train_dir.is_dir() or not any(e.is_dir() for e in os.scandir(train_dir)):
        raise DataError(
            f"image folder data set needs {layout}, and {train_dir} holds no class folders; "
            f"move the images there, or {ROOT_HINT}"
        )
    test_dir = r / "val" if (r / "val").is_dir() else r / "test"
    if not test_dir.is_dir():
        raise DataError(
            f"image folder data set needs a test split at {r / 'val'} (or {r / 'test'}); "
            "add one with the same class folders as train"
        )
    return train_dir, test_dir


def _root_path(root: str | Path | None) -> Path | None:
    if root is None:
        return None
    if "\x00" in str(root):
        raise DataError(f"data root {str(root)!r} contains a NUL character; {ROOT_HINT}")
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data root {path} does not exist; {ROOT_HINT} naming an existing folder")
    if not path.is_dir():
        raise DataError(f"data root {path} is not a folder; {ROOT_HINT} naming a folder")
    return path


def check_available(name: str, root: str | Path | None = None) -> None:
    """Whether data set ``name`` is where ``load_dataset`` will look, checked from the files'
    presence alone (no reading): cheap enough to run before a study is stored."""
    path = _root_path(root)
    if name == "digits":  # bundled with scikit-learn
        return
    if name == "fashion_mnist":
        _fashion_mnist_files(path)
    elif name in ("cifar10", "cifar100"):
        _cifar_root(path, name == "cifar100")
    elif name == "svhn":
        _svhn_root(path)
    elif name == "imagefolder":
        _imagefolder_dirs(path)
    else:
        raise DataError(f"unknown data set {name!r}; available: {', '.join(list_datasets())}")


# (classes, channels, side) of the in-memory data sets, known without loading them.
_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (10, 1, 8),
    "fashion_mnist": (10, 1, 28),
    "cifar10": (10, 3, 32),
    "cifar100": (100, 3, 32),
    "svhn": (10, 3, 32),
}


def input_of(
    name: str, root: str | Path | None = None, image_size: int = 224
) -> tuple[int, int, int] | None:
    """(classes, channels, side) of data set ``name`` without reading an image: what a network
    is built for before the study exists. None for an image folder whose class folders are not
    on this machine (the workers may see another root)."""
    if name in _SHAPES:
        return _SHAPES[name]
    try:
        train_dir, _ = _imagefolder_dirs(_root_path(root))
        classes = sum(1 for e in os.scandir(train_dir) if e.is_dir())
    except (DataError, OSError):
        return None
    return classes, 3, image_size


def _imagefolder(
    root: Path | None,
    val_fraction: float,
    split_seed: int,
    image_size: int,
    train_limit: int | None,
    eval_limit: int | None,
) -> DataBundle:
    train_dir, test_dir = _imagefolder_dirs(root)
    mean, std = (torch.tensor(v) for v in _MEAN_STD["imagefolder"])
    train_samples, mapping = list_image_folder(train_dir)
    if not train_samples:
        raise DataError(f"no images found under {train_dir}; put ROOT/train/<class>/<images> there")
    test_samples, _ = list_image_folder(test_dir, mapping)
    workers = min(8, os.cpu_count() or 1)
    full = FolderSplit(train_samples, image_size, mean, std, workers)
    tr, va = _split_indices(len(full), val_fraction, split_seed)
    test = FolderSplit(test_samples, image_size, mean, std, workers)
    return DataBundle(
        name="imagefolder",
        num_classes=len(mapping),
        in_chans=3,
        image_size=image_size,
        train=full.subset(_limit(tr, train_limit)),
        val=full.subset(_limit(va, eval_limit)),
        test=test.subset(_limit(torch.arange(len(test)), eval_limit)),
        default_augment=AugmentConfig(hflip=True),
    )


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    image_size: int = 224,
) -> DataBundle:
    """Load data set ``name`` with a validation split held out of its training set.

    ``split_seed`` fixes which training images are held out; keep it equal across the trials of a
    study so that they are compared on the same validation images. ``train_limit`` and
    ``eval_limit`` take the first images of each (seeded, shuffled) split, for quick runs.
    ``image_size`` only applies to image folders; in-memory sets keep their native size.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    path = _root_path(root)
    if name == "imagefolder":
        return _imagefolder(path, val_fraction, split_seed, image_size, train_limit, eval_limit)
    if name not in _LOADERS:
        raise DataError(f"unknown data set {name!r}; available: {', '.join(list_datasets())}")
    raw = _LOADERS[name](path)
    mean, std = (torch.tensor(v) for v in _MEAN_STD[name])
    full = TensorSplit(raw.x_train, raw.y_train, mean, std)
    tr, va = _split_indices(len(full), val_fraction, split_seed)
    # A fixed order (independent of split_seed): the test subset is the same for every study.
    test_idx = torch.randperm(len(raw.y_test), generator=torch.Generator().manual_seed(0))
    return DataBundle(
        name=name,
        num_classes=raw.num_classes,
        in_chans=int(raw.x_train.shape[1]),
        image_size=int(raw.x_train.shape[-1]),
        train=full.subset(_limit(tr, train_limit)),
        val=full.subset(_limit(va, eval_limit)),
        test=TensorSplit(raw.x_test, raw.y_test, mean, std).subset(_limit(test_idx, eval_limit)),
        default_augment=raw.augment,
    )
