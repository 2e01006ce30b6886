"""Study storage: an embedded SQLite file by default, PostgreSQL for many workers.

URLs are validated and the database reached once at the boundary, so that a wrong URL is a
one-line ``StorageError`` naming the problem, never a traceback from deep inside SQLAlchemy.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from automl.errors import DatabaseUnreachableError, StorageError

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_RETRY",
    "StaleTrialRetry",
    "StorageSettings",
    "default_storage_url",
    "is_grpc",
    "is_sqlite",
    "normalize_url",
    "open_storage",
    "redact",
]

# Hour-long trials: a heartbeat a minute is cheap, and a worker silent for 5 minutes is gone.
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_GRACE_PERIOD = 300
DEFAULT_MAX_RETRY = 3


def default_storage_url() -> str:
    """``$AUTOML_STORAGE``, else an SQLite file ``automl.db`` in the working directory."""
    return os.environ.get("AUTOML_STORAGE") or "sqlite:///automl.db"


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


@dataclass(frozen=True)
class StorageSettings:
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: int | None = None
    max_retry: int | None = DEFAULT_MAX_RETRY

    @property
    def effective_grace(self) -> int:
        return self.grace_period or max(DEFAULT_GRACE_PERIOD, 2 * self.heartbeat_interval)


class StaleTrialRetry(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of trials whose worker went silent, with the retry bound kept readable:
    a trial whose worker dies every time (a crash in native code) fails for good after
    ``max_retry`` retries instead of looping through the pool for ever."""

    def __init__(self, max_retry: int | None, grace_period: int) -> None:
        super().__init__(max_retry=max_retry)
        self.max_retry = max_retry
        self.grace_period = grace_period

    def reason(self, retries_so_far: int) -> str:
        """What a stale trial's ``fail_reason`` says, before it is failed."""
        why = (
            f"its worker sent no heartbeat for {self.grace_period} s (killed, crashed in native "
            "code such as a segfault or abort, or its machine was lost)"
        )
        if self.max_retry is not None and retries_so_far >= self.max_retry:
            return f"{why}; not retried: it already failed this way {retries_so_far} time(s)"
        bound = "" if self.max_retry is None else f" of {self.max_retry}"
        return f"{why}; retried (retry {retries_so_far + 1}{bound}) from its last checkpoint"


def is_grpc(url: str) -> bool:
    return url.startswith("grpc://")


def _open_grpc(url: str) -> optuna.storages.BaseStorage:
    """A client of an Optuna gRPC storage proxy (``automl grpc-proxy``) at grpc://host:port."""
    hostport = url[len("grpc://") :].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StorageError(f"gRPC storage URL {url!r} must be grpc://HOST:PORT")
    try:
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
    except ImportError as e:
        raise StorageError("grpc:// storage needs grpcio: pip install 'automl[grpc]'") from e
    try:
        proxy.get_all_studies()
    except Exception as e:
        raise StorageError(
            f"cannot reach the gRPC storage proxy at {host}:{port}: {type(e).__name__}; "
            "check that 'automl grpc-proxy' runs there"
        ) from e
    return proxy


def normalize_url(url: str) -> str:
    """Pin PostgreSQL URLs without a driver to psycopg2, the driver this package installs.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not a dependency.
    """
    if is_grpc(url):
        return url
    parsed = _check_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
        return parsed.render_as_string(hide_password=False)
    return url


def _check_url(url: str) -> sqlalchemy.engine.URL:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StorageError(
            f"storage URL {url!r} is not a database URL; use e.g. sqlite:///automl.db or "
            "postgresql://user@host:5432/dbname"
        ) from e
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"storage URL {redact(url)!r} uses unsupported backend {backend!r}; use sqlite:/// "
            "(one machine) or postgresql:// (many workers)"
        )
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(str(parsed.database)).expanduser().resolve().parent
        if not folder.is_dir():
            raise StorageError(
                f"storage URL {url!r}: folder {folder} does not exist; "
                "create it or use another path"
            )
    return parsed


def _probe(url: str, parsed: sqlalchemy.engine.URL) -> None:
    """Reach the database once, with a short timeout, so a wrong host fails fast and clearly."""
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    engine = sqlalchemy.create_engine(
        url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except SQLAlchemyError as e:
        reason = (
            str(getattr(e, "orig", e)).strip().splitlines()[0]
            if str(getattr(e, "orig", e)).strip()
            else type(e).__name__
        )
        raise DatabaseUnreachableError(
            f"cannot connect to the study database {redact(url)}: {reason}; check that the server "
            "is running and the URL (host, port, user, database name) is right"
        ) from e
    finally:
        engine.dispose()


def open_storage(
    url: str | None = None, settings: StorageSettings | None = None
) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage with heartbeat, retry of stale trials and pre-ping of connections,
    or, for grpc://host:port, a client of a gRPC storage proxy (no heartbeats through it)."""
    url = url or default_storage_url()
    if is_grpc(url):
        return _open_grpc(url)
    st = settings or StorageSettings()
    url = normalize_url(url)
    parsed = _check_url(url)
    _probe(url, parsed)
    engine_kwargs: dict[str, object] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        engine_kwargs.update(pool_recycle=1800, connect_args={"connect_timeout": 10})
    else:
        # Several threads of one process (heartbeat, trial) share the file: wait for the lock.
        engine_kwargs["connect_args"] = {"timeout": 60}
    last: Exception | None = None
    # Workers starting together on a new database race to create Optuna's tables; the losers
    # see an integrity error and simply find the tables there on the next try.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=st.heartbeat_interval,
                    grace_period=st.effective_grace,
                    heartbeat_stale_trial_callback=StaleTrialRetry(
                        st.max_retry, st.effective_grace
                    ),
                )
        except (SQLAlchemyError, RuntimeError) as e:
            last = e
            time.sleep(0.2 * (attempt + 1))
    raise StorageError(f"cannot open the study database {redact(url)}: {last}") from last
