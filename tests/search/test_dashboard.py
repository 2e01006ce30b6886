"""optuna-dashboard, started by ``automl dashboard``, serves a study made by ``automl search``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import free_port, write_space


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_api_lists_the_study_objectives_and_attributes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AUTOML_STORAGE", None)
    search = subprocess.run(
        [
            sys.executable,
            "-m",
            "automl",
            "search",
            "--space",
            str(write_space(tmp_path)),
            "--n-trials",
            "2",
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert search.returncode == 0, search.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "automl", "dashboard", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        studies = None
        while time.monotonic() < deadline:
            try:
                studies = _get(f"{base}/api/studies")
                break
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "dashboard did not answer"
        [summary] = studies["study_summaries"]
        assert summary["study_name"] == "tiny"
        assert summary["directions"] == ["maximize", "minimize"]
        detail = _get(f"{base}/api/studies/{summary['study_id']}")
        assert detail["objective_names"] == ["accuracy", "latency_ms"]
        assert len(detail["trials"]) == 2
        for trial in detail["trials"]:
            assert trial["state"] == "Complete"
            keys = {a["key"] for a in trial["user_attrs"]}
            assert {
                "n_params",
                "flops",
                "member_accuracies",
                "test_accuracy",
                "latency_iqr_ms",
                "device",
            } <= keys
            assert {a["filename"] for a in trial["artifacts"]} == {
                "weights.pt",
                "learning_curve.json",
            }
        # Bound to loopback only by default.
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=10)
