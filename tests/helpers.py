"""Helpers shared by the tests: the PostgreSQL test server, tiny spaces, worker processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy

PG_URL = os.environ.get("AUTOML_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        engine = sqlalchemy.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as e:  # any failure means: no server here
        return str(e).splitlines()[0]


PG_PROBLEM = _pg_available()


def require_pg() -> None:
    if PG_PROBLEM is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable in CI: {PG_PROBLEM}")
    pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {PG_PROBLEM}")


def unpooled_storage(url: str) -> optuna.storages.RDBStorage:
    """A plain Optuna storage whose connections close after each use, for tests that poll."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})


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


def write_space(tmp_path: Path, name: str = "tiny", epochs: int = 2, steps: int = 4) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY_SPACE.format(name=name, epochs=epochs, steps=steps))
    return path


REPO = Path(__file__).resolve().parent.parent


def spawn_worker(
    url: str,
    study: str,
    cwd: Path,
    *extra: str,
    threads: int | None = None,
    stats_json: Path | None = None,
) -> subprocess.Popen[str]:
    """A real worker process (``python -m workers``) on ``study``, its output captured; with
    ``stats_json`` it writes the counts of the trials it ran there (see ``trials_done``)."""
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
            *(["--stats-json", str(stats_json)] if stats_json is not None else []),
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


def trials_done(stats_json: Path) -> int:
    """How many trials a worker completed, from the counts it wrote (``--stats-json``)."""
    return int(json.loads(stats_json.read_text())["completed"])
