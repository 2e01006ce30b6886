"""Shared fixtures: real storages (SQLite files and the PostgreSQL server) and tiny spaces."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import torch

PG_URL = os.environ.get("AUTOML_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")

torch.set_num_threads(min(2, torch.get_num_threads()))


def _pg_available() -> str | None:
    try:
        engine = sqlalchemy.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as e:  # any failure means: no server here
        return str(e).splitlines()[0]


_PG_PROBLEM = _pg_available()


def require_pg() -> None:
    if _PG_PROBLEM is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable in CI: {_PG_PROBLEM}")
    pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {_PG_PROBLEM}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_pg()
    yield PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every storage the service supports, for real."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'studies.db'}"
    else:
        require_pg()
        yield PG_URL


@pytest.fixture
def study_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique study name, deleted from PostgreSQL afterwards so the shared database stays clean."""
    name = f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    yield name
    if _PG_PROBLEM is None:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=PG_URL)


TINY_SPACE = """
[study]
name = "{name}"

[data]
dataset = "digits"
val_fraction = 0.15

[model]
name = "convnet_s"

[train]
epochs = {epochs}
batch_size = 64
lr = 0.05
max_steps_per_epoch = {steps}

[search]
split_factor = [1, 2]
width_mult = {{ low = 0.5, high = 1.0 }}
cot_weight = {{ low = 0.1, high = 1.0 }}
cot_kind = ["js", "kl"]

[objectives]
latency_batch_size = 1
latency_mode = "sequential"
latency_min_run_s = 0.1
latency_warmup_s = 0.05

[sampler]
name = "random"
seed = 0

[pruner]
enabled = false
"""


@pytest.fixture
def tiny_space_file(tmp_path: Path) -> Path:
    """A space whose trials take about a second on CPU (digits, a few steps per epoch)."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPACE.format(name="tiny", epochs=2, steps=4))
    return path


def write_space(tmp_path: Path, name: str = "tiny", epochs: int = 2, steps: int = 4) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY_SPACE.format(name=name, epochs=epochs, steps=steps))
    return path


REPO = Path(__file__).resolve().parent.parent


def spawn_worker(
    url: str, study: str, cwd: Path, *extra: str, threads: int | None = None
) -> subprocess.Popen[str]:
    """A real worker process (``python -m workers``) on ``study``, its output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        # Many workers on two cores: one thread each, or OpenMP threads spin against each other.
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers",
            "--storage",
            url,
            "--study",
            study,
            "--no-progress",
            *extra,
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trials_done(log: str) -> int:
    """How many trials a worker completed, from its closing log line."""
    return int(log.split("worker done: ")[1].split(" complete")[0])
