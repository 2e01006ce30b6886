"""The command line as a user runs it: real processes, real storage."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl.cli import main
from tests.helpers import REPO, write_space

AUTOML = [sys.executable, "-m", "automl"]


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AUTOML_STORAGE", None)
    return subprocess.run(
        [*AUTOML, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_search_smoke_space_end_to_end(tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = run_cli(
        "search",
        "--space",
        str(REPO / "search_spaces" / "smoke.toml"),
        "--n-trials",
        "3",
        "--no-progress",
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert "ran 3 trials here: 3 complete" in out.stdout
    assert "Pareto front" in out.stdout and "latency_ms" in out.stdout
    # Without bars, one line per trial; the closing verdict and the model to ship.
    assert out.stdout.count(" after 3 epoch(s): accuracy ") == 3
    assert "Does dividing pay here? " in out.stdout and "K = 1: " in out.stdout
    # (on a busy machine every latency may be noisy: then the pick is said as such)
    assert re.search(r"Ship it (anyway )?with: automl export --storage", out.stdout)
    assert (tmp_path / "automl.db").is_file() and (tmp_path / "artifacts").is_dir()
    print(f"smoke search, 3 trials: {elapsed:.1f}s")

    status = run_cli("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "complete 3" in status.stdout

    report = run_cli("report", "--out", "rep", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    for name in (
        "pareto.csv",
        "pareto.md",
        "pareto.html",
        "pareto_front.html",
        "pareto_front.png",
        "hypervolume.html",
        "hypervolume_compute.png",
    ):
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    assert (tmp_path / "rep" / "pareto_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _one_error_line(stderr: str, args: tuple[str, ...]) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("automl: error:")]
    assert len(lines) == 1, (args, stderr)
    assert "Traceback" not in stderr, (args, stderr)


def test_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(write_space(tmp_path).read_text().replace("epochs = 2", "epochs = -3"))
    # Through the entry point a user runs: a malformed space (our own check) and a bad argument
    # (argparse's), each in a real process.
    real: list[tuple[str, ...]] = [
        ("search", "--space", str(bad)),
        ("train", "--split-factor", "0"),
    ]
    for args in real:
        out = run_cli(*args, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        _one_error_line(out.stderr, args)
    # The other mistakes take the same path out of main(): run in this process, which spares a
    # start of Python and PyTorch per case.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOML_STORAGE", raising=False)
    cases: list[tuple[str, ...]] = [
        ("search", "--space", str(tmp_path / "missing.toml")),
        (
            "search",
            "--space",
            str(write_space(tmp_path)),
            "--storage",
            "postgresql://postgres@127.0.0.1:1/x",
        ),
        ("worker", "--study", "nothing-here", "--storage", f"sqlite:///{tmp_path / 'empty.db'}"),
        ("train", "--model", "resnet9000"),
        ("train", "--dataset", "cifar10", "--data-root", str(tmp_path)),
    ]
    for args in cases:
        code = main(list(args))
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        _one_error_line(err, args)


def test_worker_joins_a_study_made_by_search(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    out = run_cli(
        "search", "--space", str(space), "--n-trials", "3", "--enqueue-only", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "3 trials waiting for workers" in out.stdout
    out = run_cli(
        "worker",
        "--study",
        "tiny",
        "--storage",
        "sqlite:///automl.db",
        "--no-progress",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    trials = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{tmp_path / 'automl.db'}"
    ).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3


def test_train_command_prints_accuracies_params_and_flops(tmp_path: Path) -> None:
    out = run_cli(
        "train", "--dataset", "digits", "--epochs", "1", "-k", "2", "--threads", "2", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "validation accuracy: ensemble" in out.stdout
    assert "test accuracy:       ensemble" in out.stdout
    assert "params" in out.stdout and "FLOPs/image" in out.stdout
