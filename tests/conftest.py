"""Shared fixtures: real storages (SQLite files and the PostgreSQL server)."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch

from tests.helpers import PG_PROBLEM, PG_URL, require_pg

# Workers started by the tests share a host folder of their own per pytest process (the xdist
# processes are not one host's workers), and settle their latency reference at once: the other
# xdist process keeps the CPUs busy, which a real worker would wait out (automl.measure.host_share).
os.environ.setdefault("AUTOML_HOST_DIR", tempfile.mkdtemp(prefix="automl-host-tests-"))
os.environ.setdefault("AUTOML_QUIET_WAIT_S", "0")

# Under pytest-xdist (make test runs two processes on two cores) one thread each: two threads per
# process would oversubscribe the cores, and most tests are small models bound by Python overhead.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # The same for the workers and CLIs the tests start: alone on their host folder, they would
    # take both cores (automl.measure.host_share) beside the other xdist process, and two OpenMP
    # threads on two busy cores spin-wait for each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _release_pg_connections() -> None:
    """Close the pooled connections of the storages a test left behind.

    Optuna's RDBStorage never disposes its engine; the pool's connections close only when the
    storage is collected, and storages sit in reference cycles. Without a collection after each
    test, a few hundred tests hold the server's 100 connections and a later test is refused.
    """
    gc.collect()


# One server for every test process: a test that restarts it (marked pg_restart) runs alone among
# the tests that may talk to it, which wait at the gate while it does (the others run on). Shared
# holds elsewhere, an exclusive one for it.
_PG_LOCKS = Path(tempfile.gettempdir()) / f"automl-tests-pg-{os.getuid()}"


# study_name deletes its study from the server afterwards.
_PG_FIXTURES = frozenset({"pg_url", "storage_url", "proxy_url", "study_name"})
# What a module that reaches the shared server names (the compose test's own server in a
# container, and URLs to closed ports, do not count).
_PG_WORDS = ("PG_URL", "require_pg")
_pg_modules: dict[Path, bool] = {}


def _touches_pg(item: pytest.Item) -> bool:
    """Whether a test may talk to the shared server: by its fixtures or markers, or, to be safe,
    by anything in its module that names the server. The others need not wait for a restart."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("storage_url") == "sqlite":
        names.discard("storage_url")  # its SQLite case: a file of its own
    if _PG_FIXTURES & names:
        return True
    if item.get_closest_marker("postgres") is not None:
        return True
    path = Path(str(item.path))
    if path not in _pg_modules:
        text = path.read_text(encoding="utf-8", errors="replace")
        _pg_modules[path] = any(word in text for word in _PG_WORDS)
    return _pg_modules[path]


@pytest.fixture(autouse=True)
def _server_restart_runs_alone(request: pytest.FixtureRequest) -> Iterator[None]:
    exclusive = request.node.get_closest_marker("pg_restart") is not None
    if not exclusive and not _touches_pg(request.node):
        yield  # never talks to the server: runs on while it restarts
        return
    with open(f"{_PG_LOCKS}.gate", "a+b") as gate, open(f"{_PG_LOCKS}.lock", "a+b") as lock:
        if exclusive:
            fcntl.flock(gate, fcntl.LOCK_EX)  # no test starts from here on
            fcntl.flock(lock, fcntl.LOCK_EX)  # the running ones have ended
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            fcntl.flock(lock, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_pg()
    yield PG_URL
    _release_pg_connections()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every storage the service supports, for real."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'studies.db'}"
    else:
        require_pg()
        yield PG_URL
        _release_pg_connections()


@pytest.fixture
def study_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique study name, deleted from PostgreSQL afterwards so the shared database stays clean."""
    # Parametrised test ids hold brackets, which a study name may not.
    name = f"t-{re.sub(r'[^A-Za-z0-9._-]', '-', request.node.name[:40])}-{uuid.uuid4().hex[:8]}"
    yield name
    if PG_PROBLEM is None:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=PG_URL)
        _release_pg_connections()


# The xdist groups that run as one unit in one process, longest first (measured with
# --durations): started first, they overlap with the many short tests instead of ending the run
# alone on one core while the other idles.
_LONG_GROUPS = ("pg-workers", "docker", "latency-targets", "browser")


def _group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return None
    name = mark.args[0] if mark.args else mark.kwargs.get("name")
    return str(name) if name is not None else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = {g: i for i, g in enumerate(_LONG_GROUPS)}
    items.sort(key=lambda item: order.get(_group(item) or "", len(order)))
