"""Study names: one rule, checked wherever a study is created or named on the command line.

A study name becomes a folder name (``artifacts/checkpoints/<study>/``) on every worker that joins
the study, so whoever names a shared study must not be able to choose where workers write.
"""

from __future__ import annotations

import hashlib
import re

from automl.errors import ConfigError

__all__ = [
    "MAX_STUDY_NAME",
    "STUDY_NAME_RULE",
    "is_valid_study_name",
    "shown",
    "study_dir_name",
    "validate_study_name",
]

MAX_STUDY_NAME = 100
STUDY_NAME_RULE = (
    f"letters, digits, '.', '_' and '-', at most {MAX_STUDY_NAME} characters, starting with a "
    "letter or digit"
)
# ASCII only: a non-ASCII name may be stored in another Unicode normal form by a file system
# (macOS) or shown differently by a terminal, and then no longer names the same folder.
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_STUDY_NAME - 1}}}")


def is_valid_study_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def shown(name: str, limit: int = 60) -> str:
    """The name as a message shows it: quoted and escaped (NUL, newlines), cut when long."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name)} characters)"


def validate_study_name(name: str, flag: str = "--study") -> str:
    """``name`` when it follows the rule, else a ``ConfigError`` saying which rule it breaks."""
    if not isinstance(name, str) or not is_valid_study_name(name):
        raise ConfigError(
            f"{flag} {shown(str(name))} is not a valid study name; use {STUDY_NAME_RULE} "
            "(pass --study NAME or set [study] name in the space file)"
        )
    return name


def study_dir_name(name: str) -> str:
    """The folder name for a study's files: the name itself when it follows the rule; a study
    created with another name (plain Optuna, an older automl) gets a stable digest of it, so that
    it still runs and its name cannot point anywhere."""
    if is_valid_study_name(name):
        return name
    return "study-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
