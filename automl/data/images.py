"""Decoding one image file a user or a data set names, with limits: only a regular file (a FIFO
named x.png blocks a reader for ever), and no more pixels than ``MAX_IMAGE_PIXELS`` (a PNG of a
few kilobytes may declare 60000x60000 pixels, 10 GiB once decoded)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from automl.errors import DataError
from automl.files import FileKindError, describe, open_regular

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["MAX_IMAGE_PIXELS", "open_image"]

# 8192 x 8192: well past any photo a classifier is trained or run on (ImageNet's largest are
# about 5000 pixels wide), and 192 MiB of RGB at most once decoded.
MAX_IMAGE_PIXELS = 1 << 26


def _too_large(path: Path, size: str) -> DataError:
    return DataError(
        f"{path}: declares {size} pixels, more than the {MAX_IMAGE_PIXELS} (8192x8192) an image "
        "may have here; scale it down first"
    )


def open_image(path: str | Path) -> Image.Image:
    """The decoded image at ``path`` (its file closed again), or a one-line ``DataError``."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        fd = open_regular(p)
    except FileKindError:
        raise DataError(
            f"{p} is {describe(p) or 'not a regular file'}, not an image file"
        ) from None
    except OSError as e:
        raise DataError(f"{p}: cannot read it ({e.strerror or type(e).__name__})") from None
    with os.fdopen(fd, "rb") as f, warnings.catch_warnings():
        # Pillow's own limit warns from 89 Mpx and refuses from 179 Mpx; this one is lower.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(f)
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:  # read from the header, before decoding
                raise _too_large(p, f"{width}x{height}")
            img.load()
        except Image.DecompressionBombError:
            raise _too_large(p, f"more than {MAX_IMAGE_PIXELS}") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(
                f"{p}: not a readable image ({type(e).__name__}); pass a PNG or JPEG"
            ) from e
    return img
