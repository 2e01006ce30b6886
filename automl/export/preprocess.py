"""What a model expects of its input: normalisation, size, channels; and its class names.

Both are derived from the search space's ``[data]`` section, so they are known without loading the
data set: exactly the values the trial was trained with (``automl.data`` normalises uint8 images
by ``/255`` then ``(x - mean) / std``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.data.datasets import _MEAN_STD  # the one table of per-data-set statistics
from automl.data.images import open_image
from automl.errors import DataError
from automl.export.errors import BundleError, ImageError
from automl.files import describe
from automl.space import DataSection

__all__ = [
    "IMAGE_SUFFIXES",
    "Preprocessing",
    "class_names",
    "images_to_tensor",
    "list_images",
    "preprocessing_for",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

# Native (channels, size) of the in-memory data sets; image folders use the space's image_size.
_NATIVE: dict[str, tuple[int, int]] = {
    "digits": (1, 8),
    "fashion_mnist": (1, 28),
    "cifar10": (3, 32),
    "cifar100": (3, 32),
    "svhn": (3, 32),
}

_CLASS_NAMES: dict[str, list[str]] = {
    "digits": [str(i) for i in range(10)],
    "svhn": [str(i) for i in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ],
}


@dataclass(frozen=True)
class Preprocessing:
    """uint8 image (C, H, W) -> float input: ``(x / 255 - mean) / std`` per channel."""

    dataset: str
    in_chans: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        try:
            return cls(
                dataset=str(d["dataset"]),
                in_chans=int(d["in_chans"]),
                image_size=int(d["image_size"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(
                f"preprocessing.json is malformed ({e!r}); re-export the bundle"
            ) from e

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 -> normalised float32, as in training."""
        mean = torch.tensor(self.mean)[None, :, None, None]
        std = torch.tensor(self.std)[None, :, None, None]
        return (x_uint8.float() / 255.0 - mean) / std


def preprocessing_for(data: DataSection, in_chans: int) -> Preprocessing:
    """The preprocessing of a trial trained on ``data`` with a model of ``in_chans`` channels."""
    chans, size = _NATIVE.get(data.dataset, (3, data.image_size))
    if chans != in_chans:
        raise BundleError(
            f"data set {data.dataset!r} has {chans} channels but the model takes {in_chans}; "
            "the trial does not belong to this study's space"
        )
    mean, std = _MEAN_STD[data.dataset]
    return Preprocessing(data.dataset, chans, size, tuple(mean), tuple(std))


def class_names(data: DataSection, num_classes: int) -> list[str]:
    """Names of the classes in label order: known names, an image folder's class folders (sorted,
    as training maps them), else ``str(i)``."""
    names = _CLASS_NAMES.get(data.dataset)
    if names is None and data.dataset == "imagefolder" and data.root:
        train = Path(data.root).expanduser() / "train"
        if train.is_dir():
            names = sorted(p.name for p in train.iterdir() if p.is_dir())
    if names is None or len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return list(names)


def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, and those inside named folders (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        kind = describe(p)
        if kind == "a folder":
            # Regular files only: a FIFO or a device named x.png would block the reader, and a
            # folder named x.png is not an image either.
            found = sorted(
                f
                for f in p.iterdir()
                if f.suffix.lower() in IMAGE_SUFFIXES and describe(f) == "a regular file"
            )
            if not found:
                raise ImageError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)}) in folder")
            out.extend(found)
        elif kind == "a regular file":
            out.append(p)
        elif kind is None:
            raise ImageError(f"{p}: no such file or folder; pass image files or a folder of them")
        else:
            raise ImageError(f"{p} is {kind}, not an image file; pass image files or folders")
    if not out:
        raise ImageError("no images given; pass image files or a folder of them")
    return out


def _read(path: Path, pre: Preprocessing, resize: bool) -> torch.Tensor:
    from PIL import Image

    try:
        img = open_image(path)
    except DataError as e:
        raise ImageError(str(e)) from e
    if pre.in_chans not in (1, 3):
        raise ImageError(
            f"the model takes {pre.in_chans} channels; only 1 (grey) or 3 (RGB) come from images"
        )
    # Only unambiguous conversions: grey is replicated to RGB; an RGB image feeds a grey model
    # only when its three channels are equal (a grey image saved as RGB). Alpha is dropped.
    if img.mode not in ("L", "RGB"):
        img = img.convert("L" if img.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
    if pre.in_chans == 3 and img.mode == "L":
        img = img.convert("RGB")
    elif pre.in_chans == 1 and img.mode == "RGB":
        rgb = np.asarray(img)
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise ImageError(
                f"{path}: colour image but the model takes grey images; convert it to greyscale "
                "first (which conversion is right depends on your data)"
            )
        img = img.convert("L")
    if img.size != (pre.image_size, pre.image_size):
        if not resize:
            raise ImageError(
                f"{path}: image is {img.size[0]}x{img.size[1]} but the model takes "
                f"{pre.image_size}x{pre.image_size}; pass --resize to resize it (bilinear)"
            )
        img = img.resize((pre.image_size, pre.image_size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def images_to_tensor(
    paths: Sequence[Path], pre: Preprocessing, resize: bool = False
) -> torch.Tensor:
    """Normalised input (B, C, H, W) for the image files, checked against ``pre``."""
    return pre.normalise(torch.stack([_read(p, pre, resize) for p in paths]))
