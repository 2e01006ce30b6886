"""Train/validation/test splits and the batches of K views they yield."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from automl.data.augment import AugmentConfig, augment_batch
from automl.data.images import open_image

__all__ = ["FolderSplit", "Split", "TensorSplit"]

Batch = tuple[torch.Tensor, torch.Tensor]
"""(views (K, B, C, H, W) float32 normalised, labels (B,) int64)."""


class Split(Protocol):
    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        *,
        views: int,
        augment: AugmentConfig | None,
        gen: torch.Generator,
        shuffle: bool,
        drop_last: bool,
        device: torch.device,
    ) -> Iterator[Batch]: ...

    def num_batches(self, batch_size: int, drop_last: bool) -> int: ...


def _count(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else (n + batch_size - 1) // batch_size


@dataclass
class TensorSplit:
    """A split held in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.x[idx], self.y[idx], self.mean, self.std)

    def num_batches(self, batch_size: int, drop_last: bool) -> int:
        return _count(len(self), batch_size, drop_last)

    def batches(
        self,
        batch_size: int,
        *,
        views: int,
        augment: AugmentConfig | None,
        gen: torch.Generator,
        shuffle: bool,
        drop_last: bool,
        device: torch.device,
    ) -> Iterator[Batch]:
        n = len(self)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        cfg = augment or AugmentConfig()
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if drop_last and idx.numel() < batch_size:
                break
            xb = self.x[idx].to(device, non_blocking=True)
            yb = self.y[idx].to(device, non_blocking=True)
            if augment is None:
                one = augment_batch(xb, cfg, gen, self.mean, self.std)
                yield one.unsqueeze(0).expand(views, *one.shape), yb
            else:
                # The same images, an independent draw for every member.
                yield (
                    torch.stack(
                        [augment_batch(xb, cfg, gen, self.mean, self.std) for _ in range(views)]
                    ),
                    yb,
                )


class _MultiViewFiles(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable[[object], torch.Tensor],
        views: int,
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.views = views

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        # torchvision's loader would block on a FIFO and decode any declared size.
        img = open_image(path).convert("RGB")
        return torch.stack([self.transform(img) for _ in range(self.views)]), label


@dataclass
class FolderSplit:
    """An ImageNet-style split decoded from files per sample with torchvision.transforms.v2."""

    samples: list[tuple[str, int]]
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor
    num_workers: int = 4

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, idx: torch.Tensor) -> FolderSplit:
        picked = [self.samples[int(i)] for i in idx]
        return FolderSplit(picked, self.image_size, self.mean, self.std, self.num_workers)

    def num_batches(self, batch_size: int, drop_last: bool) -> int:
        return _count(len(self), batch_size, drop_last)

    def _transform(self, augment: AugmentConfig | None) -> Callable[[object], torch.Tensor]:
        from torchvision.transforms import v2

        norm = [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean.tolist(), self.std.tolist()),
        ]
        if augment is None:
            resize = round(self.image_size / 0.875)
            return v2.Compose([v2.Resize(resize), v2.CenterCrop(self.image_size), *norm])
        ops: list[object] = [v2.RandomResizedCrop(self.image_size)]
        if augment.hflip:
            ops.append(v2.RandomHorizontalFlip())
        if augment.autoaugment:
            ops.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET))
        ops.extend(norm)
        if augment.random_erasing > 0:
            ops.append(v2.RandomErasing(p=augment.random_erasing))
        return v2.Compose(ops)

    def batches(
        self,
        batch_size: int,
        *,
        views: int,
        augment: AugmentConfig | None,
        gen: torch.Generator,
        shuffle: bool,
        drop_last: bool,
        device: torch.device,
    ) -> Iterator[Batch]:
        ds = _MultiViewFiles(self.samples, self._transform(augment), views if augment else 1)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(seed),
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        for xb, yb in loader:
            xv = xb.transpose(0, 1).to(device, non_blocking=True)
            if xv.shape[0] != views:
                xv = xv.expand(views, *xv.shape[1:])
            yield xv, yb.to(device, non_blocking=True)


def list_image_folder(
    root: Path, class_to_idx: dict[str, int] | None = None
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """(path, label) pairs of a ``root/<class>/<image>`` tree, classes in sorted order."""
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    mapping = class_to_idx or {c: i for i, c in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    for c in classes:
        if c not in mapping:
            continue
        for f in sorted((root / c).rglob("*")):
            if f.suffix.lower() in exts:
                samples.append((str(f), mapping[c]))
    return samples, mapping
