"""Heartbeats: a running trial's worker sends them, ``automl status`` reads their ages.

``HeartbeatThread`` records the running trial's heartbeat every interval (a failed write, the
database away, is retried at the next one).

Optuna's RDB storage keeps one heartbeat row per running trial but offers only the list of trials
already past the grace period (``_get_stale_trial_ids``), not their ages. ``automl status`` wants
the age of every running trial, stale or not, so it reads the same table with the same query
Optuna uses, timed by the database's own clock (workers' and readers' clocks may differ).

Behind the gRPC proxy there is no heartbeat table: a worker there writes its heartbeat into a
trial system attribute (``PROXIED_HEARTBEAT``), which passes through any storage. No database
clock times it, and the hosts' clocks may differ, so the stored time is only for people to read:
a trial is stale when the attribute has not changed for the grace period as this process has
watched it, on its own monotonic clock (``stale_proxied``). A process therefore finds a trial
stale at the earliest a grace period after it first looked; a worker looks before every claim.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "PROXIED_HEARTBEAT",
    "Heartbeat",
    "HeartbeatThread",
    "grace_period",
    "heartbeat_ages",
    "heartbeat_interval",
    "proxied_beat",
    "record_proxied_heartbeat",
    "stale_proxied",
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
    storage without heartbeats (the gRPC proxy, or one opened without an interval)."""
    if not isinstance(storage, RDBStorage) or (grace := grace_period(storage)) is None:
        return {}
    import sqlalchemy
    from optuna.storages._rdb import models

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


def grace_period(storage: RDBStorage) -> float | None:
    """Seconds without a heartbeat after which an RDB storage's trial is stale (Optuna's rule);
    ``None`` for a storage opened without heartbeats."""
    if not storage.heartbeat_interval:
        return None
    return float(storage.grace_period or 2 * storage.heartbeat_interval)


# The system attribute through which workers behind the gRPC proxy beat. Its value is [trial id,
# the worker's time.time()]: Optuna copies system attributes into a retry and the project into a
# continuation, and a copy names another trial, so it counts as no heartbeat of the new one.
PROXIED_HEARTBEAT = "automl:heartbeat"


def record_proxied_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    storage.set_trial_system_attr(trial_id, PROXIED_HEARTBEAT, [trial_id, time.time()])


def proxied_beat(trial: FrozenTrial) -> float | None:
    """The worker's time of the trial's last proxied heartbeat; ``None`` when it sent none."""
    value = trial.system_attrs.get(PROXIED_HEARTBEAT)
    if not (isinstance(value, list) and len(value) == 2 and value[0] == trial._trial_id):
        return None
    return float(value[1])


class _Watch:
    """The proxied heartbeat of each running trial as last seen, and since when (monotonic)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, float]] = {}
        self.lock = threading.Lock()


# One watch per storage object: the worker keeps one storage for its life, and a storage that is
# dropped takes its watch with it.
_WATCHES: weakref.WeakKeyDictionary[BaseStorage, _Watch] = weakref.WeakKeyDictionary()
_WATCHES_LOCK = threading.Lock()


def stale_proxied(
    storage: BaseStorage, running: Iterable[FrozenTrial], grace_s: float
) -> list[int]:
    """Ids of the ``running`` trials whose proxied heartbeat has not changed for ``grace_s``
    seconds of this process's watch over ``storage``; trials without one are left to Optuna's
    heartbeats (and to ``automl.store.liveness``)."""
    now = time.monotonic()
    with _WATCHES_LOCK:
        watch = _WATCHES.setdefault(storage, _Watch())
    stale = []
    with watch.lock:
        seen = {}
        for t in running:
            beat = proxied_beat(t)
            if beat is None:
                continue
            last = watch.seen.get(t._trial_id)
            since = last[1] if last is not None and last[0] == beat else now
            seen[t._trial_id] = (beat, since)
            if now - since > grace_s:
                stale.append(t._trial_id)
        watch.seen = seen  # a trial no longer running is forgotten
    return stale


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
