"""Which process runs a trial, so that a rerun on the same machine sees at once that it is gone.

A worker killed with SIGKILL (or a crashed ``automl search``) sends no more heartbeats, and the
storage calls its trial stale only after the grace period (300 s by default). When the process
that held the trial ran on this very machine, the operating system already knows whether it is
alive: the tag names the host, the boot and the process id, and a tag of this host and boot
whose process no longer exists means the trial can be retried now. Any doubt (another host,
another boot, a process id that exists, perhaps reused) leaves the decision to the heartbeat.

``worker_tags`` reads the tags of the running trials alone, not the whole trials: every worker
looks before every claim.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import select

from automl.store.attrs import TrialAttr

__all__ = ["gone_here", "process_tag", "worker_tags"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_tag() -> str:
    """``host|boot|pid`` of this process."""
    return f"{socket.gethostname()}|{_boot_id()}|{os.getpid()}"


def gone_here(tag: object) -> int | None:
    """The process id of ``tag`` when it names a process of this host and boot that no longer
    exists; ``None`` otherwise (alive, elsewhere, or not a tag)."""
    if not isinstance(tag, str):
        return None
    parts = tag.rsplit("|", 2)
    if len(parts) != 3:
        return None
    host, boot, pid_text = parts
    boot_here = _boot_id()
    if host != socket.gethostname() or not boot_here or boot != boot_here:
        return None
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:  # alive, under another user
        return None
    return None


def worker_tags(storage: RDBStorage, study_id: int) -> dict[int, object]:
    """Trial id -> the stored tag of every RUNNING trial of ``study_id`` that has one."""
    trials = models.TrialModel.__table__
    attrs = models.TrialUserAttributeModel.__table__
    query = (
        select(trials.c.trial_id, attrs.c.value_json)
        .join_from(trials, attrs, attrs.c.trial_id == trials.c.trial_id)
        .where(
            trials.c.study_id == study_id,
            trials.c.state == TrialState.RUNNING,
            attrs.c.key == TrialAttr.WORKER_PROCESS.value,
        )
    )
    with storage.engine.connect() as conn:
        return {int(trial_id): json.loads(value) for trial_id, value in conn.execute(query)}
