"""The tools users already run open a study in PostgreSQL with the URL that automl takes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from automl import create_study
from tests.helpers import free_port, write_space

pytestmark = pytest.mark.postgres


def _bare(url: str) -> str:
    """The URL as a user writes it: no driver named (SQLAlchemy 2.1 then picks psycopg 3)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed next to {sys.executable}"
    return found


def test_load_study_the_optuna_cli_and_optuna_dashboard_take_the_bare_url(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    url = _bare(pg_url)
    assert url.startswith("postgresql://")
    create_study(write_space(tmp_path), storage=url, study_name=study_name)

    study = optuna.load_study(study_name=study_name, storage=url)
    assert study.metric_names == ["accuracy", "latency_ms"]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING]  # the baseline

    listed = subprocess.run(
        [_tool("optuna"), "studies", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert study_name in {s["name"] for s in json.loads(listed.stdout)}

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [_tool("optuna-dashboard"), url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        names: set[str] | None = None
        while names is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=10
                ) as r:
                    names = {s["study_name"] for s in json.loads(r.read())["study_summaries"]}
            except OSError:
                time.sleep(0.5)
        if names is None:
            server.terminate()
            out, _ = server.communicate(timeout=10)
            pytest.fail(f"optuna-dashboard {url} did not serve: {out[-2000:]}")
        assert study_name in names
    finally:
        server.terminate()
        server.wait(timeout=10)
