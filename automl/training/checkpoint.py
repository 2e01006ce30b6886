"""Epoch checkpoints: written atomically, read only when they belong to the run asking for them.

A checkpoint carries a fingerprint of everything that decides the run it continues. A file that
cannot be read (truncated, empty, not a checkpoint) or was written by another run is either
refused with a one-line ``ConfigError`` (a user's own ``--checkpoint`` file: the user decides) or
quarantined: renamed into ``quarantine/`` next to it, so that nothing is lost and the run starts
afresh (a trial's checkpoint, which no user chose).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from automl.errors import ConfigError

__all__ = ["QUARANTINE_DIR", "load_checkpoint", "quarantine", "run_fingerprint", "save_atomic"]

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"

# What a resumable checkpoint must hold (``_Run.checkpoint_payload``).
_REQUIRED = ("model", "optimizer", "epoch", "history", "fingerprint")


def run_fingerprint(recipe: str, identity: str | None) -> str:
    """The fingerprint stored in a checkpoint: the recipe's, bound to ``identity`` when given
    (the study, space, data split, model and parameters of a trial)."""
    if identity is None:
        return recipe
    digest = hashlib.sha256(json.dumps([recipe, identity]).encode()).hexdigest()
    return digest[:24]


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def quarantine(path: Path, reason: str) -> Path | None:
    """Move ``path`` into ``quarantine/`` beside it, named with the time; returns the new path,
    or ``None`` when it could not be moved (the run then overwrites it at its first epoch)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.parent / QUARANTINE_DIR / f"{path.stem}-{stamp}-{os.getpid()}{path.suffix}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except OSError as e:
        log.warning("checkpoint %s %s; it could not be moved aside (%s)", path, reason, e)
        return None
    log.warning("checkpoint %s %s; moved to %s, the run starts from epoch 0", path, reason, target)
    return target


def _problem(state: object, fingerprint: str) -> str | None:
    """Why ``state`` cannot be resumed from, or ``None``."""
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        return "is not a training checkpoint"
    if state["fingerprint"] != fingerprint:
        return (
            "was written by a different training configuration or run "
            "(another study, space, data split, model or recipe)"
        )
    return None


def load_checkpoint(
    path: Path | None,
    fingerprint: str,
    device: torch.device,
    *,
    quarantine_bad: bool = False,
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it continues the run with ``fingerprint``; ``None`` when there
    is none. A foreign or unreadable file raises ``ConfigError``, or with ``quarantine_bad`` is
    moved aside and ``None`` returned."""
    if path is None or not path.exists():
        return None
    problem: str | None
    state: object = None
    if not path.is_file():
        problem = "is not a file"
    else:
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # truncated, empty, garbage, unsafe pickle: all unreadable
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            problem = f"cannot be read ({type(e).__name__}{': ' + first if first else ''})"
        else:
            problem = _problem(state, fingerprint)
    if problem is None:
        assert isinstance(state, dict)
        return state
    if quarantine_bad:
        quarantine(path, problem)
        return None
    raise ConfigError(
        f"checkpoint {path} {problem}; delete it, pass another checkpoint path, or resume=False"
    )
