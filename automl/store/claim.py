"""Taking a WAITING trial as one atomic step, on every storage, without a herd.

Optuna moves a trial from WAITING to RUNNING by reading its row ``FOR UPDATE`` and writing the
new state. PostgreSQL locks the row, so of two workers one sees RUNNING and backs off; SQLite
ignores ``FOR UPDATE`` and Python's sqlite3 reads outside a transaction, so two processes can both
read WAITING and both claim the trial. On SQLite the claim is one conditional ``UPDATE ... WHERE
state = 'WAITING'``, which the database applies to one writer only.

Which trial to take: the WAITING trials fall in ``Tier`` s (which system attributes they carry),
taken in trial order within a tier. Reading every waiting trial whole and trying them in the same
order costs each claim a read of the whole queue, and a burst of N workers racing for the same
first trial N² attempts. So ``WaitingQueue.claim_first`` asks each storage for as little as it can:

- PostgreSQL: one ``UPDATE ... WHERE trial_id = (SELECT ... ORDER BY number LIMIT 1 FOR UPDATE
  SKIP LOCKED) RETURNING trial_id``. A row another worker is claiming is skipped, not waited for
  or lost to, so N workers take N different trials in one statement each, in trial order.
- SQLite (one writer at a time, one machine): the first id of the tier, read alone, then the
  conditional update; a lost race (rare) reads again.
- The gRPC proxy (``automl.store.grpc_proxy``): the proxy claims as a direct worker does, in
  one call (``ClaimsOnServer``).
- Other storages (Optuna's in-memory one, a plain Optuna proxy), which answer only with whole
  trials: the waiting trials are read once per claim; the first is tried, and a worker that lost
  it tries the others from a random place, so that the losers of one race do not all meet again
  at the next trial.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import ColumnElement, Select, and_, exists, not_, select, true, update

__all__ = ["ClaimsOnServer", "Tier", "WaitingQueue", "claim_trial"]

_TRIALS = models.TrialModel.__table__
_SYSTEM_ATTRS = models.TrialSystemAttributeModel.__table__


def _now_utc() -> datetime:
    # Optuna's RDB schema keeps naive UTC in datetime_start (its model converts on access).
    return datetime.now(UTC).replace(tzinfo=None)


def claim_trial(storage: BaseStorage, trial_id: int) -> bool:
    """Move trial ``trial_id`` from WAITING to RUNNING; ``False`` when it is no longer WAITING
    (another worker took it). Raises Optuna's ``UpdateFinishedTrialError`` for a finished trial
    as ``set_trial_state_values`` does."""
    if not (isinstance(storage, RDBStorage) and storage.engine.dialect.name == "sqlite"):
        return storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
    with storage.engine.begin() as conn:
        done = conn.execute(
            update(_TRIALS)
            .where(_TRIALS.c.trial_id == trial_id, _TRIALS.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=_now_utc())
        )
    if done.rowcount == 1:
        return True
    # Not WAITING: finished (Optuna's error, as its own claim raises it) or taken.
    storage.check_trial_is_updatable(trial_id, storage.get_trial(trial_id).state)
    return False


def _taken(storage: BaseStorage, trial_id: int) -> bool:
    """``claim_trial``, a trial finished meanwhile (a ticket failed by another worker) counting
    as one taken by someone else."""
    try:
        return claim_trial(storage, trial_id)
    except UpdateFinishedTrialError:
        return False


@dataclass(frozen=True)
class Tier:
    """The WAITING trials that carry system attribute ``has`` (``None``: whichever) and none of
    ``lacks``."""

    has: str | None = None
    lacks: tuple[str, ...] = ()

    def holds(self, system_attrs: Mapping[str, object]) -> bool:
        return (self.has is None or self.has in system_attrs) and not any(
            key in system_attrs for key in self.lacks
        )

    def where(self) -> ColumnElement[bool]:
        """The same test in SQL, on Optuna's ``trials`` table."""

        def carries(key: str) -> ColumnElement[bool]:
            return exists().where(
                _SYSTEM_ATTRS.c.trial_id == _TRIALS.c.trial_id, _SYSTEM_ATTRS.c.key == key
            )

        tests = [carries(self.has)] if self.has is not None else []
        tests += [not_(carries(key)) for key in self.lacks]
        return and_(true(), *tests)


@runtime_checkable
class ClaimsOnServer(Protocol):
    """A storage whose server claims the first free trial of a tier (``WaitingQueue.claim_first``
    run there)."""

    def claim_first(self, study_id: int, tier: Tier, wait: bool) -> int | None: ...


class WaitingQueue:
    """The WAITING trials of one study, as one claim sees them."""

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        self.storage = storage
        self.study_id = study_id
        self._rdb = storage if isinstance(storage, RDBStorage) else None
        self._server = storage if isinstance(storage, ClaimsOnServer) else None
        # Without SQL the storage can only hand out whole trials: read them once for this claim.
        self._waiting: list[FrozenTrial] | None = None

    def _whole(self, tier: Tier) -> list[FrozenTrial]:
        if self._waiting is None:
            self._waiting = self.storage.get_all_trials(
                self.study_id, deepcopy=False, states=(TrialState.WAITING,)
            )
        return [t for t in self._waiting if tier.holds(t.system_attrs)]

    def _select(self, tier: Tier) -> Select[Any]:
        return (
            select(_TRIALS.c.trial_id)
            .where(
                _TRIALS.c.study_id == self.study_id,
                _TRIALS.c.state == TrialState.WAITING,
                tier.where(),
            )
            .order_by(_TRIALS.c.number)
        )

    def _ids(self, tier: Tier) -> list[int]:
        """The ids of the tier's waiting trials, in trial order."""
        if self._rdb is None:
            return [t._trial_id for t in self._whole(tier)]
        with self._rdb.engine.connect() as conn:
            return [int(i) for i in conn.execute(self._select(tier)).scalars()]

    def _trials(self, tier: Tier) -> Iterator[FrozenTrial]:
        """The tier's waiting trials, whole, in trial order (read one at a time over SQL: the
        caller may stop at the first)."""
        if self._rdb is None:
            yield from self._whole(tier)
            return
        for trial_id in self._ids(tier):
            frozen = self.storage.get_trial(trial_id)
            if frozen.state is TrialState.WAITING:
                yield frozen

    def claim_accepted(self, tier: Tier, accept: Callable[[FrozenTrial], bool]) -> int | None:
        """Take the first waiting trial of ``tier`` that ``accept`` takes (a decision that needs
        the whole trial); its id, or ``None``."""
        for frozen in self._trials(tier):
            if accept(frozen) and _taken(self.storage, frozen._trial_id):
                return frozen._trial_id
        return None

    @property
    def passes_over_held(self) -> bool:
        """Whether ``claim_first`` passes over a trial that another transaction holds at that
        instant (PostgreSQL: another worker claiming it, or writing to it; a server that claims
        may stand in front of PostgreSQL)."""
        if self._server is not None:
            return True
        return self._rdb is not None and self._rdb.engine.dialect.name == "postgresql"

    def claim_first(self, tier: Tier, *, wait: bool = False) -> int | None:
        """Take the first waiting trial of ``tier`` that no other worker is taking; its id, or
        ``None`` when the tier has none left, or none that is not held (``passes_over_held``;
        with ``wait`` a held trial is waited for instead)."""
        if self._server is not None:
            return self._server.claim_first(self.study_id, tier, wait)
        if self._rdb is not None and self.passes_over_held:
            return self._claim_first_pg(self._rdb, tier, skip_locked=not wait)
        if self._rdb is not None:
            while True:
                first = self._first_id(self._rdb, tier)
                if first is None or _taken(self.storage, first):
                    return first
        ids = self._ids(tier)
        if not ids:
            return None
        if _taken(self.storage, ids[0]):
            return ids[0]
        rest = ids[1:]
        start = random.randrange(len(rest)) if rest else 0
        return next((i for i in rest[start:] + rest[:start] if _taken(self.storage, i)), None)

    def _first_id(self, rdb: RDBStorage, tier: Tier) -> int | None:
        with rdb.engine.connect() as conn:
            found = conn.execute(self._select(tier).limit(1)).scalar()
        return None if found is None else int(found)

    def _claim_first_pg(self, rdb: RDBStorage, tier: Tier, skip_locked: bool) -> int | None:
        first = self._select(tier).limit(1).with_for_update(skip_locked=skip_locked)
        with rdb.engine.begin() as conn:
            got = conn.execute(
                update(_TRIALS)
                .where(
                    _TRIALS.c.trial_id == first.scalar_subquery(),
                    _TRIALS.c.state == TrialState.WAITING,
                )
                .values(state=TrialState.RUNNING, datetime_start=_now_utc())
                .returning(_TRIALS.c.trial_id)
            ).scalar()
        return None if got is None else int(got)
