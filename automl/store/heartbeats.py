"""Heartbeats: a running trial's worker sends them, ``automl status`` reads their ages.

``HeartbeatThread`` records the running trial's heartbeat every interval (a failed write, the
database away, is retried at the next one).

Optuna's RDB storage keeps one heartbeat row per running trial but offers only the list of trials
already past the grace period (``_get_stale_trial_ids``), not their ages. ``automl status`` wants
the age of every running trial, stale or not, so it reads the same table with the same query
Optuna uses, timed by the database's own clock (workers' and readers' clocks may differ).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

__all__ = ["Heartbeat", "HeartbeatThread", "heartbeat_ages", "heartbeat_interval"]

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
    storage without heartbeats (the gRPC proxy, or one opened without an interval)."""
    if not isinstance(storage, RDBStorage) or not storage.heartbeat_interval:
        return {}
    import sqlalchemy
    from optuna.storages._rdb import models

    grace = float(storage.grace_period or 2 * storage.heartbeat_interval)
    study_id = storage.get_study_id_from_name(study_name)
    session = storage.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar()
        assert now is not None  # the database always answers now()
        # PostgreSQL answers with a timezone, the stored heartbeats have none (as in Optuna).
        now = now.replace(tzinfo=None)
        running = (
            session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        out = {}
        for t in running:
            beats = [h.heartbeat for h in t.heartbeats]
            age = (now - max(beats)).total_seconds() if beats else None
            out[int(t.number)] = Heartbeat(age, grace)
        return out
    finally:
        session.close()


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
