"""How long ago each running trial's worker last sent a heartbeat.

Optuna's RDB storage keeps one heartbeat row per running trial but offers only the list of trials
already past the grace period (``_get_stale_trial_ids``), not their ages. ``automl status`` wants
the age of every running trial, stale or not, so it reads the same table with the same query
Optuna uses, timed by the database's own clock (workers' and readers' clocks may differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

__all__ = ["Heartbeat", "heartbeat_ages"]


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
