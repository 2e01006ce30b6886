"""Class probabilities of image files with an exported bundle, in the runtime asked for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from automl.errors import ConfigError
from automl.export.bundle import read_bundle
from automl.export.preprocess import images_to_tensor, list_images
from automl.export.programs import Format, load_program

__all__ = ["RUNTIMES", "predict_files"]

RUNTIMES = ("auto", "program", "eager")


def predict_files(
    bundle: str | Path,
    images: Sequence[str | Path],
    *,
    resize: bool = False,
    runtime: str = "auto",
    batch_size: int = 64,
) -> tuple[list[Path], torch.Tensor, list[str]]:
    """(image paths, probabilities (N, classes), class names) for the images."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    rb = read_bundle(bundle)  # checksums first: nothing is loaded from a tampered bundle
    paths = list_images(images)
    x = images_to_tensor(paths, rb.loaded.preprocessing, resize=resize)
    use_program = runtime == "program" or (
        runtime == "auto" and rb.format is not Format.EXPORTED_PROGRAM
    )
    run = load_program(rb.format, rb.program_path) if use_program else rb.loaded.predict_proba
    with torch.inference_mode():
        probs = torch.cat(
            [run(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]
        )
    return paths, probs, rb.loaded.class_names
