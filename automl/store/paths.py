"""Paths built from names that come from a study (study names, trial numbers), proven to stay
inside the folder they belong to."""

from __future__ import annotations

import os
from pathlib import Path

from automl.errors import ConfigError

__all__ = ["inside"]

# The longest file name Linux, macOS and Windows file systems all accept, in bytes.
_MAX_COMPONENT_BYTES = 255


def inside(base: str | Path, *parts: str) -> Path:
    """``base / parts...``, or a ``ConfigError`` when the result would not lie below ``base``.

    The check is on the normalised path, not the resolved one: symbolic links inside ``base``
    were put there by its owner (a checkpoint folder on a scratch disk) and are honoured, while
    ``..``, absolute parts, NUL and over-long names, which only a name can bring in, are refused.
    """
    root = Path(os.path.abspath(Path(base).expanduser()))
    for part in parts:
        if not part or "\x00" in part:
            raise ConfigError(
                f"path part {part!r} under {root} is empty or holds a NUL byte; use a plain name"
            )
        for component in Path(part).parts:
            if len(component.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT_BYTES:
                raise ConfigError(
                    f"path part {component[:40]!r}... under {root} is longer than "
                    f"{_MAX_COMPONENT_BYTES} bytes; use a shorter name"
                )
    path = Path(os.path.normpath(root.joinpath(*parts)))
    if path == root or not path.is_relative_to(root):
        raise ConfigError(
            f"path {'/'.join(parts)!r} leaves the folder {root} (an absolute path or '..'); "
            "use a plain name"
        )
    return path
