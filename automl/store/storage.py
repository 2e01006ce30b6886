"""Study storage: an embedded SQLite file by default, PostgreSQL for many workers.

URLs are validated and the database reached once at the boundary, so that a wrong URL is a
one-line ``StorageError`` naming the problem, never a traceback from deep inside SQLAlchemy.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from automl.errors import DatabaseUnreachableError, StorageError
from automl.files import describe, open_regular
from automl.store.grpc_proxy import HeartbeatProxy, NotAutomlProxyError

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_RETRY",
    "StaleTrialRetry",
    "StorageSettings",
    "check_writable",
    "default_storage_url",
    "is_grpc",
    "is_memory_sqlite",
    "is_sqlite",
    "normalize_url",
    "open_storage",
    "redact",
    "retried",
    "retried_numbers",
]

# Hour-long trials: a heartbeat a minute is cheap, and a worker silent for 5 minutes is gone.
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_GRACE_PERIOD = 300
DEFAULT_MAX_RETRY = 3


def default_storage_url() -> str:
    """``$AUTOML_STORAGE``, else an SQLite file ``automl.db`` in the working directory."""
    return os.environ.get("AUTOML_STORAGE") or "sqlite:///automl.db"


# Query keys whose values are secrets: libpq's password and sslpassword, and the usual others.
_SECRET_QUERY = re.compile(r"(?i)((?:ssl)?pass(?:word|wd)?|pwd|secret|token)=([^&\s#]*)")
# Characters a user name in a URL never holds unencoded: seeing one means the part before the
# last '@' is not "user" but something else (an '@' in a path or query), so all of it is hidden.
_NOT_A_USER = re.compile(r"[/?#=&@\s]")


def redact(url: str) -> str:
    """The URL with every secret hidden, for messages and logs.

    Works on the text, not on a parse, so that URLs no parser accepts are redacted too: whatever
    lies between ``://`` and the last ``@`` is credentials (an unencoded ``@`` in a password makes
    parsers split at the wrong one), of which only a plain user name is kept; password-like query
    values are hidden as well.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # SQLite URLs carry no credentials, and an '@' in their path is part of a folder name.
    at = -1 if scheme.lower().startswith("sqlite") else rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, colon, _ = userinfo.partition(":")
        if _NOT_A_USER.search(user):
            shown_user = "***"
        elif colon:
            shown_user = f"{user}:***"
        else:
            shown_user = user
        rest = f"{shown_user}@{hostpart}"
    rest = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", rest)
    return f"{scheme}{sep}{rest}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def is_memory_sqlite(parsed: sqlalchemy.engine.URL) -> bool:
    """An SQLite database that lives only as long as the process: ``sqlite://``,
    ``sqlite:///:memory:`` and the ``file:...?mode=memory`` URI forms."""
    db = parsed.database or ""
    return not db or ":memory:" in db or parsed.query.get("mode") == "memory"


def _sqlite_file(parsed: sqlalchemy.engine.URL) -> Path | None:
    """The database file of an SQLite URL, or None for in-memory and ``file:`` URI forms."""
    db = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or is_memory_sqlite(parsed) or db.startswith("file:"):
        return None
    return Path(db).expanduser()


@dataclass(frozen=True)
class StorageSettings:
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: int | None = None
    max_retry: int | None = DEFAULT_MAX_RETRY

    @property
    def effective_grace(self) -> int:
        return self.grace_period or max(DEFAULT_GRACE_PERIOD, 2 * self.heartbeat_interval)


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the trials that have a retry among ``trials``: those named in a later
    trial's ``retry_history``, the attribute Optuna's retry callback keeps."""
    return {int(n) for t in trials for n in t.system_attrs.get("retry_history", [])}


def retried(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Whether a retry of ``failed`` exists in ``study``."""
    return failed.number in retried_numbers(study.get_trials(deepcopy=False))


# In a stale trial's ``fail_reason``: the sweep that failed it was to enqueue its retry next.
RETRY_PROMISED = "; retried (retry "


class StaleTrialRetry(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of trials whose worker went silent, with the retry bound kept readable:
    a trial whose worker dies every time (a crash in native code) fails for good after
    ``max_retry`` retries instead of looping through the pool for ever."""

    def __init__(self, max_retry: int | None, grace_period: int) -> None:
        super().__init__(max_retry=max_retry)
        self.max_retry = max_retry
        self.grace_period = grace_period

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # A worker that was stopping enqueues its trial's retry before failing it
        # (``automl.search.retries.retry_later``); killed in between, the trial goes stale with
        # its retry already waiting, and a second one would train the same trial twice.
        if retried(study, trial):
            return
        super().__call__(study, trial)

    def reason(self, retries_so_far: int, cause: str | None = None) -> str:
        """What a stale trial's ``fail_reason`` says, before it is failed."""
        why = cause or (
            f"its worker sent no heartbeat for {self.grace_period} s (killed, crashed in native "
            "code such as a segfault or abort, or its machine was lost)"
        )
        if self.max_retry is not None and retries_so_far >= self.max_retry:
            return f"{why}; not retried: it already failed this way {retries_so_far} time(s)"
        bound = "" if self.max_retry is None else f" of {self.max_retry}"
        return f"{why}{RETRY_PROMISED}{retries_so_far + 1}{bound}) from its last checkpoint"


def is_grpc(url: str) -> bool:
    return url.startswith("grpc://")


def _open_grpc(url: str, settings: StorageSettings) -> optuna.storages.BaseStorage:
    """A client of the gRPC storage proxy (``automl grpc-proxy``) at grpc://host:port, with
    heartbeats and claims through it (``automl.store.grpc_proxy``)."""
    hostport = url[len("grpc://") :].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or "@" in host:
        raise StorageError(f"gRPC storage URL {redact(url)!r} must be grpc://HOST:PORT")
    try:
        proxy = HeartbeatProxy(
            host=host,
            port=int(port),
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.effective_grace,
            retry=StaleTrialRetry(settings.max_retry, settings.effective_grace),
        )
    except ImportError as e:
        raise StorageError(
            "grpc:// storage needs grpcio: pip install -e '.[grpc]' in the automl checkout"
        ) from e
    try:
        proxy.check_server()
        proxy.get_all_studies()
    except NotAutomlProxyError as e:
        raise StorageError(
            f"{host}:{port} is a plain Optuna gRPC proxy; workers need automl's, which passes "
            "their heartbeats and claims on: run 'automl grpc-proxy' there"
        ) from e
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


_SUPPORTED_FORMS = (
    "sqlite:///PATH (one machine) or postgresql://USER@HOST:PORT/DB (many workers; the "
    "password in PGPASSWORD or percent-encoded)"
)


def _driver_is_supported(backend: str, driver: str) -> bool:
    if backend == "sqlite":
        return driver in ("", "pysqlite")
    if driver == "psycopg":
        return importlib.util.find_spec("psycopg") is not None
    # Async drivers (asyncpg) cannot serve Optuna's synchronous storage; others are untested.
    return driver in ("", "psycopg2")


def _check_url(url: str) -> sqlalchemy.engine.URL:
    if not url.strip():
        raise StorageError(
            "--storage is empty; pass a database URL such as sqlite:///automl.db, or leave "
            "--storage out to use $AUTOML_STORAGE or sqlite:///automl.db"
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        if "://" not in url and describe(url) is not None:
            raise StorageError(
                f"--storage {url!r} is a path, not a database URL; for an SQLite file write "
                f"sqlite:///{url}"
            ) from e
        raise StorageError(
            f"storage URL {redact(url)!r} is not a database URL; use {_SUPPORTED_FORMS}"
        ) from e
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"storage URL {redact(url)!r} uses unsupported backend {backend!r}; use "
            f"{_SUPPORTED_FORMS}"
        )
    if not _driver_is_supported(backend, driver):
        missing = " (not installed)" if driver == "psycopg" else ""
        raise StorageError(
            f"storage URL {redact(url)!r} uses driver {driver!r}{missing}, which automl does not "
            f"support; use {_SUPPORTED_FORMS}"
        )
    if parsed.host is not None and "@" in parsed.host:
        raise StorageError(
            f"storage URL {redact(url)!r} has an '@' that is not percent-encoded in its user name "
            "or password; write it as %40, or leave the password out of the URL and set "
            "PGPASSWORD"
        )
    if backend == "sqlite":
        if is_memory_sqlite(parsed):
            raise StorageError(
                f"storage URL {redact(url)!r} is an in-memory SQLite database: the study would "
                "vanish when this process exits; use a file, e.g. sqlite:///automl.db"
            )
        path = _sqlite_file(parsed)
        if path is not None:
            folder = path.resolve().parent
            if not folder.is_dir():
                raise StorageError(
                    f"storage URL {redact(url)!r}: folder {folder} does not exist; "
                    "create it or use another path"
                )
            _check_sqlite_file(path)
    return parsed


_SQLITE_MAGIC = b"SQLite format 3\x00"
# What a file that is not a database most often is, to say so (first bytes -> words).
_LOOKS_LIKE = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
)


def _looks_like(head: bytes) -> str:
    for magic, words in _LOOKS_LIKE:
        if head.startswith(magic):
            return words
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "a text file" if text.isprintable() or text.strip() else "binary data"


def _check_sqlite_file(path: Path) -> None:
    """An existing SQLite path must be a regular file that is a whole SQLite database: SQLite
    itself opens anything and only fails at the first query, deep inside Optuna, with "file is
    not a database" or a malformed-image error."""
    shown = path.resolve()
    kind = describe(path)
    if kind is None:
        return  # a new database
    if kind != "a regular file":
        raise StorageError(
            f"--storage names {shown}, which is {kind}, not an SQLite database file; "
            "point sqlite:/// at a database file (or at a new file name to create one)"
        )
    try:
        head = _head(path)
    except OSError as e:
        raise StorageError(f"cannot read the study database {shown}: {e.strerror or e}") from e
    if not head:
        return  # SQLite makes an empty file a new database
    if not head.startswith(_SQLITE_MAGIC):
        raise StorageError(
            f"--storage names {shown}, which is {_looks_like(head)}, not an SQLite database; "
            "point sqlite:/// at a study database (or at a new file name to create one)"
        )
    if len(head) < 100:
        raise StorageError(
            f"the study database {shown} is truncated: {len(head)} bytes, less than an SQLite "
            "header; restore it from a copy"
        )
    expected = _sqlite_size(head)
    if expected is None or path.with_name(path.name + "-journal").exists():
        return  # the size is not recorded, or a crashed write's journal will repair the file
    for attempt in range(3):
        actual = path.stat().st_size
        if actual >= expected:
            return
        time.sleep(0.2 * (attempt + 1))  # a commit growing the file right now
    raise StorageError(
        f"the study database {shown} is truncated: {actual} bytes where its header records "
        f"{expected}; restore it from a copy (sqlite3 .recover can save what is left)"
    )


def _head(path: Path) -> bytes:
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        return f.read(100)


def _sqlite_size(head: bytes) -> int | None:
    """The database size in bytes that the 100-byte SQLite header records, when it is valid
    (the "version-valid-for" number equals the change counter; see sqlite.org/fileformat.html)."""
    if len(head) < 100:
        return None
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if pages == 0 or head[24:28] != head[92:96]:
        return None
    return page * pages


def _require_database(parsed: sqlalchemy.engine.URL) -> None:
    """A command that only reads must not create an empty SQLite file from a mistyped path."""
    path = _sqlite_file(parsed)
    if path is not None and not path.is_file():
        raise StorageError(
            f"no study database at {path.resolve()}; check --storage (a database is created "
            "only by 'automl search')"
        )


def _probe(url: str, parsed: sqlalchemy.engine.URL) -> None:
    """Reach the database once, with a short timeout, so a wrong host fails fast and clearly."""
    sqlite = parsed.get_backend_name() == "sqlite"
    connect_args = {} if sqlite else {"connect_timeout": 5}
    engine = sqlalchemy.create_engine(
        url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            # SQLite opens any file and reads it only at the first query on a table: reading the
            # schema is what finds a file that is not, or no longer, a database.
            conn.execute(
                sqlalchemy.text("SELECT count(*) FROM sqlite_master" if sqlite else "SELECT 1")
            )
    except SQLAlchemyError as e:
        text = str(getattr(e, "orig", e)).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        # A driver may quote its connection parameters back; the password is not for the log.
        if parsed.password:
            reason = reason.replace(str(parsed.password), "***")
        # A file, not a server: nothing to wait for, unless another process holds its lock.
        if sqlite and "locked" not in reason:
            raise StorageError(
                f"cannot use the study database {redact(url)}: {reason}; check that the file is "
                "an automl study database and that its folder can be read"
            ) from e
        raise DatabaseUnreachableError(
            f"cannot connect to the study database {redact(url)}: {reason}; check that the server "
            "is running and the URL (host, port, user, database name) is right"
        ) from e
    finally:
        engine.dispose()


def _require_writable(parsed: sqlalchemy.engine.URL) -> None:
    """A command that writes must not start on an SQLite file it cannot write: the first write
    fails deep in Optuna as "invalid data in the commit", far from its cause."""
    path = _sqlite_file(parsed)
    if path is None:
        return
    shown = path.resolve()
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(
            f"the study database {shown} is read-only (attempt to write a readonly database); "
            "make it writable (chmod u+w), or work on a writable copy"
        )
    # SQLite writes its journal beside the database, and creates a new one there.
    if not os.access(shown.parent, os.W_OK | os.X_OK):
        raise StorageError(
            f"the folder {shown.parent} of the study database is not writable, and SQLite writes "
            "its journal there; make it writable, or put the database in another folder"
        )


def check_writable(url: str | None = None) -> None:
    """Refuse, in one line, an SQLite study database this process cannot write (a read-only
    file, or a folder where SQLite cannot write its journal): for commands that join a study and
    write to it, before they start work (a worker would otherwise retry for ever)."""
    url = default_storage_url() if url is None else url
    if not is_grpc(url):
        _require_writable(_check_url(normalize_url(url)))


def open_storage(
    url: str | None = None,
    settings: StorageSettings | None = None,
    *,
    must_exist: bool = False,
    write: bool | None = None,
) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage with heartbeat, retry of stale trials and pre-ping of connections,
    or, for grpc://host:port, a client of automl's gRPC storage proxy (heartbeats and claims
    through it: ``automl.store.grpc_proxy``).

    ``url`` None means the default (``$AUTOML_STORAGE`` or automl.db); an empty string is an
    error, not the default. With ``must_exist`` an SQLite file that is not there is an error
    instead of a new, empty database: what commands that only read (or join a study) ask for.
    ``write`` (default: not ``must_exist``, the commands that create) checks first that an SQLite
    database can be written.
    """
    url = default_storage_url() if url is None else url
    st = settings or StorageSettings()
    if is_grpc(url):
        return _open_grpc(url, st)
    url = normalize_url(url)
    parsed = _check_url(url)
    if must_exist:
        _require_database(parsed)
    if (not must_exist) if write is None else write:
        _require_writable(parsed)
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
    text = str(getattr(last, "orig", None) or last).strip()
    reason = text.splitlines()[0] if text else type(last).__name__
    raise StorageError(f"cannot open the study database {redact(url)}: {reason}") from last
