"""Options shared by the subcommands."""

from __future__ import annotations

import argparse
import os


def add_storage_args(p: argparse.ArgumentParser, *, study_required: bool = False) -> None:
    p.add_argument(
        "--storage",
        default=None,
        help="database URL (default: $AUTOML_STORAGE, else sqlite:///automl.db); "
        "postgresql://user@host:5432/db for many workers",
    )
    p.add_argument(
        "--study",
        default=os.environ.get("AUTOML_STUDY"),
        required=study_required and not os.environ.get("AUTOML_STUDY"),
        help="study name (default: $AUTOML_STUDY, or the space's name)",
    )
    p.add_argument(
        "--artifacts",
        default=os.environ.get("AUTOML_ARTIFACTS"),
        help="artifact folder for weights, curves and checkpoints (default: stored in the study)",
    )


def resolve_study_name(storage: str | None, name: str | None) -> str:
    """The study asked for, or the only study in the storage."""
    if name is not None:
        return name
    import optuna

    from automl.errors import StorageError
    from automl.store.storage import default_storage_url, open_storage

    rdb = open_storage(default_storage_url() if storage is None else storage, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
    if len(names) != 1:
        raise StorageError(
            f"pass --study NAME; this storage holds {len(names)} studies: "
            f"{', '.join(names) or 'none'}"
        )
    return names[0]
