"""Image reading for prediction: unambiguous grey/RGB conversion, normalisation as in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl.export import ImageError, Preprocessing
from automl.export.preprocess import images_to_tensor, list_images

RGB = Preprocessing("synthetic", 3, 4, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))


def test_grey_image_feeds_an_rgb_model_replicated(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 51, np.uint8), mode="L").save(tmp_path / "g.png")
    x = images_to_tensor([tmp_path / "g.png"], RGB)
    assert x.shape == (1, 3, 4, 4)
    expected = (torch.tensor([0.2, 0.2, 0.2]) - torch.tensor(RGB.mean)) / torch.tensor(RGB.std)
    torch.testing.assert_close(x[0, :, 0, 0], expected)


def test_rgba_and_jpeg_are_read(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8), mode="RGB").save(tmp_path / "b.jpg")
    paths = list_images([tmp_path])
    assert [p.name for p in paths] == ["a.png", "b.jpg"]
    x = images_to_tensor(paths, RGB)
    assert x.shape == (2, 3, 4, 4)
    assert float(x[0, 0, 0, 0]) == pytest.approx((1.0 - 0.5) / 0.5)  # alpha dropped, red kept


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no image files"):
        list_images([tmp_path])
