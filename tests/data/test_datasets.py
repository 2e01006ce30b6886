from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automl.data import (
    FASHION_MNIST_DEBIAN_ROOT,
    AugmentConfig,
    TensorSplit,
    augment_batch,
    load_dataset,
    mixup,
)
from automl.errors import DataError

CPU = torch.device("cpu")


def _first_batch(
    split: TensorSplit, views: int, augment: AugmentConfig | None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return next(
        split.batches(
            16, views=views, augment=augment, gen=gen, shuffle=False, drop_last=True, device=CPU
        )
    )


def test_fashion_mnist_from_the_debian_package() -> None:
    assert (FASHION_MNIST_DEBIAN_ROOT / "train-images-idx3-ubyte.gz").is_file(), (
        "run scripts/setup.sh: it installs Debian's dataset-fashion-mnist"
    )
    data = load_dataset("fashion_mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert (data.num_classes, data.in_chans, data.image_size) == (10, 1, 28)
    assert isinstance(data.train, TensorSplit) and data.train.x.dtype == torch.uint8


def test_validation_is_held_out_of_training_and_seeded() -> None:
    a = load_dataset("digits", val_fraction=0.2, split_seed=3)
    b = load_dataset("digits", val_fraction=0.2, split_seed=3)
    c = load_dataset("digits", val_fraction=0.2, split_seed=4)
    assert isinstance(a.train, TensorSplit) and isinstance(a.val, TensorSplit)
    assert isinstance(b.val, TensorSplit) and isinstance(c.val, TensorSplit)
    assert isinstance(a.test, TensorSplit) and isinstance(c.test, TensorSplit)
    assert torch.equal(a.val.x, b.val.x)  # same seed, same held-out images
    assert not torch.equal(a.val.x, c.val.x)
    train_rows = {bytes(r.numpy()) for r in a.train.x.flatten(1)}
    overlap = sum(bytes(r.numpy()) in train_rows for r in a.val.x.flatten(1))
    # digits has a few exact duplicate images; a shared index would make every one overlap.
    assert overlap <= 5
    assert len(a.train) + len(a.val) == 1797 - len(a.test)
    assert torch.equal(a.test.x, c.test.x)  # the test split never moves with the val split


def test_limits_take_subsets() -> None:
    data = load_dataset("digits", train_limit=100, eval_limit=50)
    assert (len(data.train), len(data.val), len(data.test)) == (100, 50, 50)


def test_k_views_differ_but_come_from_the_same_images() -> None:
    data = load_dataset("digits")
    assert isinstance(data.train, TensorSplit)
    flip_only = AugmentConfig(hflip=True)
    views, y = _first_batch(data.train, 4, flip_only)
    assert views.shape == (4, 16, 1, 8, 8)
    plain, y_plain = _first_batch(data.train, 1, None)
    assert torch.equal(y, y_plain)
    base = plain[0]
    # Each view of each image is that image or its mirror: same images, independent draws.
    for v in views:
        same = (v == base).flatten(1).all(1) | (v == base.flip(-1)).flatten(1).all(1)
        assert bool(same.all())
    assert not all(torch.equal(views[0], v) for v in views[1:])

    cropped, _ = _first_batch(data.train, 3, AugmentConfig(crop_padding=2, random_erasing=0.5))
    assert not torch.equal(cropped[0], cropped[1])


def test_views_are_reproducible_from_the_seed() -> None:
    data = load_dataset("digits")
    assert isinstance(data.train, TensorSplit)
    aug = AugmentConfig(crop_padding=1, hflip=True, random_erasing=0.3)
    a, _ = _first_batch(data.train, 2, aug, seed=5)
    b, _ = _first_batch(data.train, 2, aug, seed=5)
    assert torch.equal(a, b)


def test_random_crop_moves_content_by_at_most_the_padding() -> None:
    x = torch.zeros(8, 1, 10, 10, dtype=torch.uint8)
    x[:, :, 5, 5] = 255
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(
        x, AugmentConfig(crop_padding=2), gen, torch.tensor([0.0]), torch.tensor([1.0])
    )
    for img in out:
        ys, xs = torch.nonzero(img[0] > 0.5, as_tuple=True)
        if len(ys):  # the bright pixel may be cropped away only if it moved out of the frame
            assert abs(int(ys[0]) - 5) <= 2 and abs(int(xs[0]) - 5) <= 2


def test_mixup_is_drawn_once_and_shared_by_all_views() -> None:
    views = torch.randn(3, 6, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    mixed, perm, lam = mixup(views, 0.2, gen)
    assert 0.0 <= lam <= 1.0
    for i in range(3):
        torch.testing.assert_close(mixed[i], lam * views[i] + (1 - lam) * views[i][perm])
    _, _, lam_off = mixup(views, 0.0, gen)
    assert lam_off == 1.0


def test_missing_data_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("fashion_mnist", tmp_path / "nowhere")
    with pytest.raises(DataError, match="Fashion-MNIST idx files not found.*apt-get install"):
        load_dataset("fashion_mnist", tmp_path)
    with pytest.raises(DataError, match="CIFAR-100 not found"):
        load_dataset("cifar100", tmp_path)
    with pytest.raises(DataError, match="needs a data root"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="ROOT/train"):
        load_dataset("imagefolder", tmp_path)
    with pytest.raises(DataError, match="unknown data set 'mnist2'"):
        load_dataset("mnist2")


def test_image_folder_with_k_views(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (40, 36), color=(i * 20, 10, 200 if cls == "cat" else 0)).save(
                    d / f"{i}.png"
                )
    data = load_dataset("imagefolder", tmp_path, image_size=32, val_fraction=0.25)
    assert data.num_classes == 2 and len(data.test) == 12 and len(data.train) + len(data.val) == 12
    data.train.num_workers = 0  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(0)
    views, y = next(
        data.train.batches(
            4,
            views=2,
            augment=AugmentConfig(hflip=True),
            gen=gen,
            shuffle=True,
            drop_last=True,
            device=CPU,
        )
    )
    assert views.shape == (2, 4, 3, 32, 32) and y.shape == (4,)
