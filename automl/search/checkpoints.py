"""The epoch checkpoint of one trial: where it lives, whose it is, when it goes.

Every retry of a trial resumes from the same file (keyed by the original trial's number,
``automl.search.retries.trial_key``), in a folder named for the study and its stored uuid: a study
of the same name in another database never looks at, let alone quarantines, this study's files. The
file is bound to the run that wrote it by an identity that covers the study itself (its stored
uuid), the whole space with its data split, the model and the parameters, so a checkpoint of another
study, space or trial is never resumed (``automl.training.checkpoint`` quarantines it). A trial that
ends for good (complete, pruned, failed by its own fault, retries used up) discards its checkpoint;
a stopped or interrupted one keeps it for its retry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import optuna

from automl.data import DataBundle
from automl.models.ensemble import Ensemble
from automl.space import SearchSpace
from automl.store.attrs import StudyAttr
from automl.store.names import study_dir_name
from automl.store.paths import inside

__all__ = ["TrialCheckpoint", "checkpoint_folder_name"]

log = logging.getLogger(__name__)


def checkpoint_folder_name(study_name: str, study_uuid: object) -> str:
    """The study's checkpoint folder: its safe name, then the first 12 hex digits of its uuid
    (a study made before studies had a uuid keeps the bare name)."""
    base = study_dir_name(study_name)
    if isinstance(study_uuid, str) and study_uuid.isalnum():
        return f"{base}-{study_uuid[:12]}"
    return base


class TrialCheckpoint:
    """The checkpoint of original trial ``key`` of study ``study_name`` (uuid ``study_uuid``)
    under ``artifact_dir``."""

    def __init__(
        self, artifact_dir: Path, study_name: str, key: int, study_uuid: object = None
    ) -> None:
        self.key = int(key)
        # The study name comes from the database, which whoever creates a study writes: it names
        # a folder only in its safe form, and the path is proven to stay in the artifact folder.
        folder = checkpoint_folder_name(study_name, study_uuid)
        self.path = inside(artifact_dir, "checkpoints", folder, f"trial-{self.key}.pt")
        # Where checkpoints lived before folders carried the uuid: a run interrupted then
        # resumes from it after the upgrade (its identity still proves whose it is).
        self._legacy = inside(
            artifact_dir, "checkpoints", study_dir_name(study_name), f"trial-{self.key}.pt"
        )

    @classmethod
    def of(cls, artifact_dir: Path, study: optuna.Study, key: int) -> TrialCheckpoint:
        return cls(artifact_dir, study.study_name, key, study.user_attrs.get(StudyAttr.UUID))

    def adopt_legacy(self) -> None:
        """Move a checkpoint left in the study's uuid-less folder into this one."""
        if self._legacy == self.path or self.path.exists() or not self._legacy.is_file():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._legacy.replace(self.path)
        except OSError as e:
            log.warning("could not move the checkpoint of trial %d: %s", self.key, e)

    def identity(
        self,
        study: optuna.Study,
        space: SearchSpace,
        params: dict[str, Any],
        model: Ensemble,
        data: DataBundle,
        storage_url: str | None = None,
    ) -> str:
        """What a checkpoint of this trial must have been written by: the study itself (its
        stored uuid), the whole space (data split included), the model and the parameters."""
        study_uuid = study.user_attrs.get(StudyAttr.UUID)
        if study_uuid is None:
            # A study created before studies had a uuid: its database and row stand in for it.
            study_uuid = f"{storage_url or '?'}#{study._study_id}"
        stored_space = {k: v for k, v in space.to_dict().items() if k != "source"}
        parts = {
            "study": study.study_name,
            "study_uuid": str(study_uuid),
            "space": stored_space,
            "trial": self.key,
            "params": dict(sorted(params.items())),
            "model": model.model_config,
            "input": [data.num_classes, data.in_chans, data.image_size, data.image_size],
            "train_size": len(data.train),
            "val_size": len(data.val),
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def discard(self) -> None:
        """Remove the checkpoint: its trial has ended and will not resume."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove the checkpoint of trial %d: %s", self.key, e)
