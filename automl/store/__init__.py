"""Where studies live: storage URLs, the database and its lost connections, heartbeats, the names
of what is stored, and the paths built from study names.

What this package guarantees: a URL is opened or refused in one line that never shows its password
(``storage``); a lost connection is waited out with back-off rather than failing work
(``retry``); every stored key has one documented name (``attrs``); a study name can never make a
worker write outside its artifact folder (``names``, ``paths``). It imports nothing of the package
above ``automl.errors``.

- ``attrs``: ``TrialAttr``, ``StudyAttr``.
- ``storage``: ``open_storage``, ``StorageSettings``, ``redact``, the URL rules, stale-trial
  retries.
- ``retry``: ``db_retry``. ``heartbeats``: ages and the heartbeat thread. ``liveness``: which
  process claimed a trial and whether it is gone. ``claim``: the claim of a waiting trial.
  ``grpc_proxy``: automl's gRPC storage proxy and its client. ``names`` / ``paths``: study names
  and the folders they name. ``artifacts``: a trial's stored files (its weights) read back.
"""

from __future__ import annotations

from automl.store.attrs import StudyAttr, TrialAttr
from automl.store.retry import DEFAULT_TIMEOUT_S, TRANSIENT_DB_ERRORS, db_retry
from automl.store.storage import StorageSettings, default_storage_url, open_storage, redact

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TRANSIENT_DB_ERRORS",
    "StorageSettings",
    "StudyAttr",
    "TrialAttr",
    "db_retry",
    "default_storage_url",
    "open_storage",
    "redact",
]
