"""The epoch checkpoint of one trial: where it lives, whose it is, when it goes.

Every retry of a trial resumes from the same file (keyed by the original trial's number,
``automl.search.retries.trial_key``). The file is bound to the run that wrote it by an identity
that covers the study itself (its stored uuid), the whole space with its data split, the model and
the parameters, so a checkpoint of another study, space or trial is never resumed
(``automl.training.checkpoint`` quarantines it). A trial that ends for good (complete, pruned,
failed by its own fault, retries used up) discards its checkpoint; a stopped or interrupted one
keeps it for its retry.
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

__all__ = ["TrialCheckpoint"]

log = logging.getLogger(__name__)


class TrialCheckpoint:
    """The checkpoint of original trial ``key`` of study ``study_name`` under ``artifact_dir``."""

    def __init__(self, artifact_dir: Path, study_name: str, key: int) -> None:
        self.key = int(key)
        # The study name comes from the database, which whoever creates a study writes: it names
        # a folder only in its safe form, and the path is proven to stay in the artifact folder.
        self.path = inside(
            artifact_dir, "checkpoints", study_dir_name(study_name), f"trial-{self.key}.pt"
        )

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
