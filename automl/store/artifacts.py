"""A trial's stored files (Optuna artifacts), read back by name.

The trial stores ``weights.pt`` (``{"model_config", "state_dict"}``, plain tensors and JSON-like
values) and its learning curve as artifacts in the study's file store. Two readers need the
weights: ``automl export`` (the shipped model) and the final phase's restart (the search's best
model trained on). Both read the last artifact of that name, unpickled with
``torch.load(weights_only=True)`` so that a file in the store cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

__all__ = ["WEIGHTS_ARTIFACT", "ArtifactMissing", "download_trial_file", "load_weights"]

WEIGHTS_ARTIFACT = "weights.pt"


class ArtifactMissing(LookupError):
    """The trial stored no artifact of that name."""


def download_trial_file(
    storage: BaseStorage, artifact_dir: str | Path, trial: FrozenTrial, filename: str, dest: Path
) -> None:
    """Copy the last artifact named ``filename`` of ``trial`` to ``dest``. Raises
    ``ArtifactMissing`` when the trial has none, and the store's own error when its file is gone."""
    metas = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == filename]
    if not metas:
        raise ArtifactMissing(f"trial {trial.number} has no {filename} artifact")
    download_artifact(
        artifact_store=FileSystemArtifactStore(str(artifact_dir)),
        artifact_id=metas[-1].artifact_id,
        file_path=str(dest),
    )


def load_weights(path: Path) -> dict[str, Any]:
    """A ``weights.pt`` file: ``{"model_config", "state_dict"}``. Raises ``ValueError`` for
    anything else (an ``UnpicklingError`` inside for more than tensors and plain values)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"not a plain state dict ({e.__class__.__name__})") from e
    if not isinstance(payload, dict) or not {"state_dict", "model_config"} <= payload.keys():
        raise ValueError("not a dict of model_config and state_dict")
    return dict(payload)
