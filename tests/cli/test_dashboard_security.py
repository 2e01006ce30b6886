"""``automl dashboard`` served for real: read-only refuses writes, the Host and Origin checks
refuse foreign pages, and a writable dashboard still takes legitimate writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from automl import create_study
from automl.cli import _build_parser
from automl.views.dashboard_guard import host_name
from tests.helpers import REPO, free_port, write_space


def _request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Served:
    def __init__(self, proc: subprocess.Popen[str], base: str, url: str) -> None:
        self.proc = proc
        self.base = base
        self.storage_url = url
        self.out = ""
        self.err = ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.out, self.err = self.proc.communicate(timeout=20)


@pytest.fixture
def study_db(tmp_path: Path) -> tuple[str, int, int]:
    """A real automl study in SQLite: its URL, study id and the id of its (baseline) trial."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = create_study(write_space(tmp_path), storage=url, artifact_dir=tmp_path / "art")
    [trial] = study.trials()
    return url, study.optuna_study._study_id, trial._trial_id


def _serve(tmp_path: Path, url: str, *flags: str) -> Served:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    argv = [
        "dashboard",
        "--storage",
        url,
        "--port",
        str(port),
        "--artifacts",
        str(tmp_path / "art"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl", *argv, *flags],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    served = Served(proc, f"http://127.0.0.1:{port}", url)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            served.stop()
            pytest.fail(f"dashboard exited {proc.returncode}: {served.err}")
        try:
            if _request(f"{served.base}/api/meta")[0] == 200:
                return served
        except OSError:
            time.sleep(0.3)
    served.stop()
    pytest.fail("dashboard did not answer within 90 s")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def start(url: str, *flags: str) -> Served:
        s = _serve(tmp_path, url, *flags)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _trial_states(url: str) -> list[TrialState]:
    return [t.state for t in optuna.load_study(study_name="tiny", storage=url).trials]


def test_read_only_dashboard_as_compose_runs_it(serve: Any, study_db: tuple[str, int, int]) -> None:
    url, study_id, trial_id = study_db
    d = serve(url, "--host", "0.0.0.0", "--allow-remote", "--read-only", "--study", "tiny")

    status, body = _request(f"{d.base}/api/studies")
    assert status == 200
    assert [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["tiny"]
    assert _request(f"{d.base}/dashboard/studies/{study_id}")[0] == 200

    status, body = _request(f"{d.base}/api/studies/{study_id}", "DELETE")
    assert status == 403 and "read-only" in json.loads(body)["reason"]
    status, _ = _request(
        f"{d.base}/api/trials/{trial_id}/tell", "POST", {"state": "Fail", "values": None}
    )
    assert status == 403
    assert (
        _request(f"{d.base}/api/studies/{study_id}/note", "PUT", {"version": 0, "body": "x"})[0]
        == 403
    )
    assert _request(f"{d.base}/api/studies", "POST", {"study_name": "new"})[0] == 403

    # DNS rebinding: a foreign name pointed at this address is refused, even for reading.
    foreign = {"Host": "evil.example:80"}
    assert _request(f"{d.base}/api/studies", headers=foreign)[0] == 403
    assert _request(f"{d.base}/api/studies", headers={"Host": "localhost:1"})[0] == 200

    d.stop()
    assert _trial_states(url) == [TrialState.WAITING], "the read-only dashboard changed the study"
    assert f"/dashboard/studies/{study_id}" in d.out
    warning = [ln for ln in d.err.splitlines() if ln.startswith("automl: warning:")]
    assert len(warning) == 1 and "anyone who can reach" in warning[0], d.err


def test_writable_dashboard_refuses_foreign_pages_but_takes_local_writes(
    serve: Any, study_db: tuple[str, int, int]
) -> None:
    url, study_id, trial_id = study_db
    d = serve(url)

    # A page on another site making the browser post to the dashboard (CSRF).
    status, body = _request(
        f"{d.base}/api/trials/{trial_id}/tell",
        "POST",
        {"state": "Fail", "values": None},
        headers={"Origin": "http://evil.example"},
    )
    assert status == 403 and "cross-site" in json.loads(body)["reason"]
    status, _ = _request(
        f"{d.base}/api/studies/{study_id}", "DELETE", headers={"Host": "evil.example"}
    )
    assert status == 403
    assert _trial_states(url) == [TrialState.WAITING]

    # The same dashboard, used from its own page, still writes: the refusals above were the
    # guard's, not a broken route.
    status, _ = _request(f"{d.base}/api/studies/{study_id}", "DELETE", headers={"Origin": d.base})
    assert status == 204
    assert optuna.get_all_study_names(url) == []


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8080", "localhost"),
        ("LocalHost.", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("evil.example:80", "evil.example"),
        ("[::1", None),
        ("[::1]x", None),
        ("host:port", None),
        ("", None),
        (None, None),
    ],
)
def test_host_header_names(header: str | None, name: str | None) -> None:
    assert host_name(header) == name


def test_compose_serves_the_dashboard_read_only() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    dashboard = compose["services"]["dashboard"]
    args = _build_parser().parse_args([str(a) for a in dashboard["command"]])
    assert args.read_only and args.allow_remote and args.host == "0.0.0.0"
    assert all(str(p).startswith("127.0.0.1:") for p in dashboard["ports"])


def test_study_flag_opens_the_dashboard_on_that_study(
    serve: Any, study_db: tuple[str, int, int]
) -> None:
    url, study_id, _ = study_db
    d = serve(url, "--study", "tiny")
    with urllib.request.urlopen(f"{d.base}/", timeout=10) as r:
        assert r.geturl() == f"{d.base}/dashboard/studies/{study_id}"
    # The study list (the dashboard's home button) stays reachable.
    with urllib.request.urlopen(f"{d.base}/dashboard", timeout=10) as r:
        assert r.geturl() == f"{d.base}/dashboard" and r.status == 200
    plain = serve(url)
    with urllib.request.urlopen(f"{plain.base}/", timeout=10) as r:
        assert r.geturl() == f"{plain.base}/dashboard"
