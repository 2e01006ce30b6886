"""Heartbeats: a running trial's worker sends them, ``automl status`` reads their ages.

``HeartbeatThread`` records the running trial's heartbeat every interval (a failed write, the
database away, is retried at the next one).

Optuna's RDB storage keeps one heartbeat row per running trial but offers only the list of trials
already past the grace period (``_get_stale_trial_ids``), not their ages. ``automl status`` wants
the age of every running trial, stale or not, so it reads the same table with the same query
Optuna uses, timed by the database's own clock (workers' and readers' clocks may differ). The
gRPC proxy answers its workers' stale check with the same ages (``stale_trial_ids``), for the
grace period of the worker that asks.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

__all__ = [
    "Heartbeat",
    "HeartbeatThread",
    "heartbeat_ages",
    "heartbeat_interval",
    "stale_trial_ids",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heartbeat:
    age_s: float | None  # seconds since the last heartbeat; None: the trial never sent one
    grace_s: float  # the storage's grace period: older than this, the trial counts as stale

    @property
    def stale(self) -> bool:
        return self.age_s is not None and self.age_s > self.grace_s


def heartbeat_ages(storage: optuna.storages.BaseStorage, study_name: str) -> dict[int, Heartbeat]:
    """Trial number -> last heartbeat of every RUNNING trial of ``study_name``; empty for a
    storage without heartbeats (the gRPC proxy's client, or one opened without an interval)."""
    if not isinstance(storage, RDBStorage) or not storage.heartbeat_interval:
        return {}
    grace = float(storage.grace_period or 2 * storage.heartbeat_interval)
    ages = _ages(storage, storage.get_study_id_from_name(study_name))
    return {number: Heartbeat(age, grace) for number, age in ages.values()}


def stale_trial_ids(storage: RDBStorage, study_id: int, grace_s: float) -> list[int]:
    """Ids of the RUNNING trials of ``study_id`` whose last heartbeat is older than ``grace_s``
    seconds (Optuna's rule, with the grace period given rather than the storage's own)."""
    return [
        trial_id
        for trial_id, (_, age) in _ages(storage, study_id).items()
        if Heartbeat(age, grace_s).stale
    ]


def _ages(storage: RDBStorage, study_id: int) -> dict[int, tuple[int, float | None]]:
    """Trial id -> (number, seconds since its last heartbeat or None) of every RUNNING trial,
    in one query (Optuna keeps at most one heartbeat row per trial)."""
    import sqlalchemy
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    beats = models.TrialHeartbeatModel.__table__
    query = (
        sqlalchemy.select(trials.c.trial_id, trials.c.number, beats.c.heartbeat)
        .select_from(trials.outerjoin(beats, beats.c.trial_id == trials.c.trial_id))
        .where(trials.c.study_id == study_id, trials.c.state == TrialState.RUNNING)
    )
    with storage.engine.connect() as conn:
        now = conn.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        assert now is not None  # the database always answers now()
        # PostgreSQL answers with a timezone, the stored heartbeats have none (as in Optuna).
        now = now.replace(tzinfo=None)
        return {
            int(trial_id): (int(number), None if beat is None else (now - beat).total_seconds())
            for trial_id, number, beat in conn.execute(query)
        }


def heartbeat_interval(storage: BaseStorage) -> float | None:
    """Seconds between heartbeats, or ``None`` for a storage without them (the gRPC proxy)."""
    if not isinstance(storage, BaseHeartbeat):
        return None
    interval = storage.get_heartbeat_interval()
    return float(interval) if interval else None


class HeartbeatThread:
    """Records the running trial's heartbeat; a failed write (database away) is retried later."""

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = heartbeat_interval(storage)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="automl-heartbeat")

    def _loop(self) -> None:
        assert self.interval is not None and isinstance(self.storage, BaseHeartbeat)
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a lost connection must not kill the trial
                log.warning("heartbeat for trial id %s failed (%s); retrying", self.trial_id, e)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> HeartbeatThread:
        if self.interval is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)
