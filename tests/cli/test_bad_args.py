"""Every CLI command, given bad arguments, ends with one error line and exit code 2.

The table has entries for every subcommand the parser knows: adding a command without adding its
bad arguments here fails ``test_every_command_is_walked``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from automl.cli import _build_parser, main
from tests.helpers import REPO, write_space

# Each case: the argv after the command, built from a scratch folder, and a piece of text the
# error line must contain (the option or value at fault).
Case = tuple[Callable[[Path], list[str]], str]


def _space(d: Path) -> str:
    return str(write_space(d))


def _file(d: Path) -> str:
    path = d / "a-file"
    path.write_text("x")
    return str(path)


def _db(d: Path) -> str:
    """A study database that exists and holds no study (read-only commands refuse a missing one)."""
    url = f"sqlite:///{d / 'studies.db'}"
    if not (d / "studies.db").exists():
        optuna.storages.RDBStorage(url).engine.dispose()
    return url


def _fifo(d: Path, name: str = "x.toml") -> str:
    """A FIFO with no writer: opening it for reading blocks, the way a careless path hangs."""
    path = d / name
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def _folder(d: Path, name: str = "dir.toml") -> str:
    (d / name).mkdir(exist_ok=True)
    return str(d / name)


def _unwritable(d: Path) -> str:
    """A folder path nobody can create, root included (sysfs and procfs refuse new entries)."""
    return "/sys/automl-report" if Path("/sys/kernel").is_dir() else "/proc/automl-report"


BAD_ARGS: dict[str, list[Case]] = {
    "train": [
        (lambda d: ["--epochs", "0"], "--epochs"),
        (lambda d: ["--eval-limit", "0"], "--eval-limit"),
        (lambda d: ["--train-limit", "-3"], "--train-limit"),
        (lambda d: ["--batch-size", "many"], "--batch-size"),
        (lambda d: ["--lr", "nan"], "--lr"),
        (lambda d: ["--split-factor", "0"], "split_factor"),
        (lambda d: ["--checkpoint", str(d)], "--checkpoint"),
        (lambda d: ["--checkpoint", _file(d) + "/ckpt.pt"], "--checkpoint"),
        (lambda d: ["--cot-kind", "xx"], "--cot-kind"),
        (lambda d: ["--bogus"], "--bogus"),
    ],
    "search": [
        (lambda d: [], "--space"),
        (lambda d: ["--space", str(d / "missing.toml")], "missing.toml"),
        (lambda d: ["--space", _space(d), "--n-trials", "-1"], "--n-trials"),
        (lambda d: ["--space", _space(d), "--n-trials", "0"], "--n-trials"),
        (lambda d: ["--space", _space(d), "--n-trials", "2.5"], "--n-trials"),
        (lambda d: ["--space", _space(d), "--timeout", "0"], "--timeout"),
        (lambda d: ["--space", _space(d), "--timeout", "inf"], "--timeout"),
        (lambda d: ["--space", _space(d), "--time-budget", "-5"], "--time-budget"),
        (lambda d: ["--space", _space(d), "--heartbeat-interval", "-1"], "--heartbeat-interval"),
        (lambda d: ["--space", _space(d), "--heartbeat-interval", "0"], "--heartbeat-interval"),
        (lambda d: ["--space", _space(d), "--bogus"], "--bogus"),
        # files that are not what the argument says: named, not waited on
        (lambda d: ["--space", _folder(d)], "is a folder"),
        (lambda d: ["--space", _fifo(d)], "is a FIFO"),
        (lambda d: ["--space", "/dev/null"], "is a character device"),
        (lambda d: ["--space", _space(d), "--storage", f"sqlite:///{_fifo(d, 'x.db')}"], "FIFO"),
        (lambda d: ["--space", _space(d), "--storage", f"sqlite:///{_space(d)}"], "a text file"),
    ],
    "worker": [
        (lambda d: [], "--study"),
        (lambda d: ["--study", "s", "--n-trials", "0"], "--n-trials"),
        (lambda d: ["--study", "s", "--heartbeat-interval", "-1"], "--heartbeat-interval"),
        (lambda d: ["--study", "s", "--grace-period", "0"], "--grace-period"),
        (lambda d: ["--study", "s", "--grace-period", "-10"], "--grace-period"),
        (lambda d: ["--study", "s", "--max-retry", "-1"], "--max-retry"),
        (lambda d: ["--study", "s", "--grace-period", "30"], "--grace-period 30"),
        (lambda d: ["--study", "s", "--stats-json", _folder(d, "stats")], "is a folder"),
        (lambda d: ["--study", "s", "--stats-json", _fifo(d, "stats")], "is a FIFO"),
        (lambda d: ["--study", "s", "--storage", f"sqlite:///{_folder(d, 'db')}"], "a folder"),
        (
            lambda d: ["--study", "s", "--heartbeat-interval", "5", "--grace-period", "5"],
            "--grace-period 5",
        ),
    ],
    "status": [
        (lambda d: ["--storage", "mysql://u@h/db"], "mysql"),
        (lambda d: ["--bogus"], "--bogus"),
        (lambda d: ["--grace-period", "0"], "--grace-period"),
    ],
    "report": [
        (lambda d: [], "--out"),
        (lambda d: ["--out", _file(d)], "--out"),
        (lambda d: ["--out", _file(d) + "/sub"], "--out"),
        (lambda d: ["--out", _unwritable(d)], "--out"),
        (lambda d: ["--storage", _db(d), "--study", "nope", "--out", str(d / "rep")], "nope"),
    ],
    "trace": [
        (lambda d: ["--out", str(d / "tb")], "--trial"),
        (lambda d: ["--trial", "-1", "--out", str(d / "tb")], "--trial"),
        (lambda d: ["--trial", "0"], "--out"),
        (lambda d: ["--storage", _db(d), "--study", "nope", "--trial", "0", "--out", "tb"], "nope"),
    ],
    "remeasure": [
        (lambda d: ["--batch-size", "0"], "--batch-size"),
        (lambda d: ["--min-run", "-1"], "--min-run"),
        (lambda d: ["--cpu-share", "0"], "--cpu-share"),
        (lambda d: ["--storage", _db(d), "--study", "nope"], "nope"),
        (lambda d: ["--storage", str(d / "missing.db"), "--study", "s"], "missing.db"),
        (lambda d: ["--storage", f"sqlite:///{_folder(d, 'db')}", "--study", "s"], "a folder"),
    ],
    "dashboard": [
        (lambda d: ["--port", "99999"], "--port"),
        (lambda d: ["--port", "0"], "--port"),
        (lambda d: ["--port", "http"], "--port"),
        (lambda d: ["--host", "0.0.0.0"], "--allow-remote"),
        (lambda d: ["--storage", _db(d), "--study", "nope"], "nope"),
        (lambda d: ["--storage", f"sqlite:///{_fifo(d, 'x.db')}"], "is a FIFO"),
    ],
    "grpc-proxy": [
        (lambda d: ["--port", "99999"], "--port"),
        (lambda d: ["--port", "-1"], "--port"),
    ],
    "export": [
        (lambda d: [], "--trial"),
        (lambda d: ["--trial", "0", "--out", str(d / "o"), "--format", "pdf"], "--format"),
        (lambda d: ["--trial", "0", "--out", str(d / "o"), "--members", "x"], "--members"),
        (lambda d: ["--trial", "0", "--out", str(d / "o"), "--members", "0"], "--members"),
        (
            lambda d: ["--trial", "0", "--out", str(d / "o"), "--latency-batch", "0"],
            "--latency-batch",
        ),
        (lambda d: ["--trial", "0", "--out", str(d / "o"), "--latency-s", "-1"], "--latency-s"),
        (
            lambda d: ["--trial", "best", "--out", str(d / "o"), "--max-latency-ms", "0"],
            "--max-latency-ms",
        ),
    ],
    "predict": [
        (lambda d: [], "--model"),
        (lambda d: ["--model", str(d / "none"), "x.png"], "none"),
        (lambda d: ["--model", str(d), "x.png", "--top-k", "x"], "--top-k"),
        (lambda d: ["--model", str(d), "x.png", "--top-k", "0"], "--top-k"),
        (lambda d: ["--model", str(d), "x.png", "--batch-size", "0"], "--batch-size"),
    ],
}


def _commands() -> set[str]:
    parser = _build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)  # type: ignore[arg-type]


def test_every_command_is_walked() -> None:
    assert _commands() == set(BAD_ARGS), "add bad-argument cases for new commands to BAD_ARGS"
    assert all(len(cases) >= 2 for cases in BAD_ARGS.values())


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # No study from the environment, and a working folder whose automl.db is this test's own.
    for var in ("AUTOML_STORAGE", "AUTOML_STUDY", "AUTOML_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _assert_one_error_line(stderr: str, expected: str, *, argparse_error: bool) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.rstrip("\n").splitlines()
    assert lines, "nothing on stderr"
    last = lines[-1]
    if argparse_error:
        # argparse's usage block, then its one error line.
        assert lines[0].startswith("usage: automl"), stderr
        assert ": error: " in last, stderr
    else:
        assert len(lines) == 1, stderr
        assert last.startswith("automl: error: "), stderr
    assert expected in last, stderr


@pytest.mark.parametrize(
    ("command", "index"),
    [(c, i) for c, cases in BAD_ARGS.items() for i in range(len(cases))],
    ids=lambda v: str(v),
)
def test_bad_arguments_end_with_one_line_and_exit_2(
    command: str, index: int, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_args, expected = BAD_ARGS[command][index]
    argv = [command, *make_args(scratch)]
    try:
        code = main(argv)
        argparse_error = False
    except SystemExit as e:
        code = e.code  # type: ignore[assignment]
        argparse_error = True
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    _assert_one_error_line(err, expected, argparse_error=argparse_error)


def _run(*argv: str, cwd: Path, module: str = "automl") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_real_processes_exit_2_with_one_line(tmp_path: Path) -> None:
    """The same through the entry points a user and a container run."""
    search = _run("search", "--space", _space(tmp_path), "--n-trials", "-1", cwd=tmp_path)
    assert search.returncode == 2, search.stderr
    _assert_one_error_line(search.stderr, "--n-trials", argparse_error=True)
    assert not (tmp_path / "automl.db").exists(), "a refused search must not create a database"

    worker = _run("--study", "s", "--grace-period", "0", cwd=tmp_path, module="workers")
    assert worker.returncode == 2, worker.stderr
    _assert_one_error_line(worker.stderr, "--grace-period", argparse_error=True)


def test_dashboard_on_a_busy_port_is_one_line(
    scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["dashboard", "--storage", _db(scratch), "--port", str(port)])
    _, err = capsys.readouterr()
    assert code == 2, err
    _assert_one_error_line(err, f"--port {port}", argparse_error=False)
    assert "in use" in err


def test_report_for_a_missing_study_leaves_no_folder(
    scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = scratch / "new" / "report"
    code = main(["report", "--storage", _db(scratch), "--study", "nope", "--out", str(out)])
    assert code == 2 and "nope" in capsys.readouterr().err
    assert not (scratch / "new").exists()
