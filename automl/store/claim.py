"""Taking a WAITING trial as one atomic step, on every storage.

Optuna moves a trial from WAITING to RUNNING by reading its row ``FOR UPDATE`` and writing the
new state. PostgreSQL locks the row, so of two workers one sees RUNNING and backs off; SQLite
ignores ``FOR UPDATE`` and Python's sqlite3 reads outside a transaction, so two processes can both
read WAITING and both claim the trial. On SQLite the claim is one conditional ``UPDATE ... WHERE
state = 'WAITING'``, which the database applies to one writer only.
"""

from __future__ import annotations

from datetime import datetime

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import update

__all__ = ["claim_trial"]


def claim_trial(storage: BaseStorage, trial_id: int) -> bool:
    """Move trial ``trial_id`` from WAITING to RUNNING; ``False`` when it is no longer WAITING
    (another worker took it). Raises Optuna's ``UpdateFinishedTrialError`` for a finished trial
    as ``set_trial_state_values`` does."""
    if not (isinstance(storage, RDBStorage) and storage.engine.dialect.name == "sqlite"):
        return storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
    table = models.TrialModel.__table__
    with storage.engine.begin() as conn:
        done = conn.execute(
            update(table)
            .where(table.c.trial_id == trial_id, table.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=datetime.now())
        )
    if done.rowcount == 1:
        return True
    # Not WAITING: finished (Optuna's error, as its own claim raises it) or taken.
    storage.check_trial_is_updatable(trial_id, storage.get_trial(trial_id).state)
    return False
