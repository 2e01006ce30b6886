"""Hostile and careless names and storage URLs: refused in one line before anything is stored,
never printed with their secrets, never turned into paths outside the artifact folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from automl.cli import main
from automl.errors import ConfigError, StorageError
from automl.search.checkpoints import TrialCheckpoint
from automl.search.runner import run_trials
from automl.search.study import create_study, load_study
from automl.search.trial import TrialEnv
from automl.space import load_space
from automl.store.attrs import StudyAttr
from automl.store.names import MAX_STUDY_NAME, study_dir_name, validate_study_name
from automl.store.paths import inside
from automl.store.storage import open_storage, redact
from tests.helpers import REPO, require_pg, write_space

BAD_NAMES = [
    "/abs/dir",
    "../../x",
    "..",
    ".hidden",
    "-rf",
    "a/b",
    "a\\b",
    "a\x00b",
    "line\nbreak",
    "x" * 300,
    "x" * (MAX_STUDY_NAME + 1),
    "étude",
    "名前",
    "with space",
    "",
]
GOOD_NAMES = ["tiny", "cifar100-wrn28-10", "a.b_c-9", "X" * MAX_STUDY_NAME]

SECRET = "S3c"
# Each URL carries SECRET in a place a careless print would show.
SECRET_URLS = [
    f"postgresql://u:{SECRET}@ret@127.0.0.1:5432/test",
    f"postgresql://u:{SECRET}ret@127.0.0.1:5432/test",
    f"postgresql://u@127.0.0.1:1/test?password={SECRET}ret&connect_timeout=2",
    f"postgresql://u@127.0.0.1:1/test?sslpassword={SECRET}ret",
    f"postgresql://u:{SECRET}ret@host:notaport/db",
    f"postgresql+asyncpg://u:{SECRET}ret@127.0.0.1/test",
    f"postgresql+psycopg://u:{SECRET}ret@127.0.0.1/test",
    f"mysql://u:{SECRET}ret@127.0.0.1/test",
    f"grpc://u:{SECRET}ret@127.0.0.1:x",
    f"::garbage u:{SECRET}ret@",
    f"postgresql://u:pa/s:s{SECRET}?#@127.0.0.1:1/test",
]


def _one_error_line(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("automl: error: "), err
    return lines[0] + out


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_pass(name: str) -> None:
    assert validate_study_name(name) == name
    assert study_dir_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate_study_name(name)
    msg = str(e.value)
    assert "\n" not in msg and "\x00" not in msg
    assert "letters, digits" in msg and str(MAX_STUDY_NAME) in msg
    # A name from elsewhere still gets a folder: one plain component, the same every time.
    folder = study_dir_name(name)
    assert re.fullmatch(r"study-[0-9a-f]{16}", folder) and folder == study_dir_name(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_create_study_refuses_bad_names_and_stores_nothing(
    name: str, storage_url: str, tmp_path: Path
) -> None:
    space = write_space(tmp_path)
    before = set(optuna.get_all_study_names(storage_url)) if "postgresql" in storage_url else None
    with pytest.raises(ConfigError):
        create_study(space, storage=storage_url, study_name=name, artifact_dir=tmp_path / "art")
    if before is None:
        assert not (tmp_path / "studies.db").exists()
    else:
        assert set(optuna.get_all_study_names(storage_url)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_a_bad_name_in_the_space_file_is_refused(tmp_path: Path) -> None:
    space = write_space(tmp_path, name="../../escape")
    with pytest.raises(ConfigError, match="not a valid study name"):
        create_study(space, storage=f"sqlite:///{tmp_path / 'a.db'}")
    assert not (tmp_path / "a.db").exists()


@pytest.fixture(scope="module")
def present_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite database holding the study "present", shared by the read-only cases."""
    folder = tmp_path_factory.mktemp("present")
    db = folder / "automl.db"
    create_study(write_space(folder, name="present"), storage=f"sqlite:///{db}")
    return db


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])
@pytest.mark.parametrize("command", ["search", "worker", "status", "report", "trace", "export"])
def test_cli_refuses_bad_names_in_one_line(
    name: str,
    command: str,
    present_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "new.db" if command == "search" else present_db
    before = db.read_bytes() if db.exists() else None
    outside = tmp_path / "abs"
    name = name.replace("/abs/dir", str(outside))
    argv = {
        "search": ["search", "--space", str(tmp_path / "tiny.toml")],
        "worker": ["worker", "--no-progress"],
        "status": ["status"],
        "report": ["report", "--out", str(tmp_path / "rep")],
        "trace": ["trace", "--trial", "0", "--out", str(tmp_path / "tb")],
        "export": ["export", "--trial", "0", "--out", str(tmp_path / "bundle")],
    }[command]
    if command == "search":
        write_space(tmp_path)
    # --study=NAME: a name starting with '-' is still the option's value.
    rc = main([*argv, "--storage", f"sqlite:///{db}", f"--study={name}"])
    line = _one_error_line(capsys, rc)
    assert "valid study name" in line, line
    # Nothing written: no database for search, the shared one unchanged, no files at all here.
    assert (db.read_bytes() if db.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["tiny.toml"] if command == "search" else []
    )
    assert not (tmp_path.parent / "x").exists()


# --- paths -----------------------------------------------------------------------------------


def test_inside_keeps_paths_in_their_folder(tmp_path: Path) -> None:
    base = tmp_path / "art"
    assert inside(base, "checkpoints", "s", "trial-0.pt") == base / "checkpoints/s/trial-0.pt"
    for parts in (
        ("checkpoints", "/etc"),
        ("checkpoints", "..", ".."),
        ("..",),
        ("a/../../b",),
        ("checkpoints", "a\x00b"),
        ("checkpoints", "x" * 300),
        ("",),
        (".",),
    ):
        with pytest.raises(ConfigError):
            inside(base, *parts)
    # A link the folder's owner put inside it is followed, not refused.
    (tmp_path / "scratch").mkdir()
    base.mkdir()
    (base / "checkpoints").symlink_to(tmp_path / "scratch")
    assert inside(base, "checkpoints", "s").parent == base / "checkpoints"


@pytest.mark.parametrize("name", ["../../escape", "/abs/escape", "a\\b", "x" * 300, "étude"])
def test_checkpoint_paths_of_odd_names_stay_in_the_artifact_folder(
    name: str, tmp_path: Path
) -> None:
    art = tmp_path / "art"
    path = TrialCheckpoint(art, name, 3, "0123456789abcdef").path
    assert path.is_relative_to(art / "checkpoints") and path.name == "trial-3.pt"
    assert path.parent.name == f"{study_dir_name(name)}-0123456789ab"


def test_a_study_with_an_odd_name_created_elsewhere_runs_inside_the_folder(
    storage_url: str, tmp_path: Path
) -> None:
    """A study made by plain Optuna under a name create_study refuses: it opens and its trial
    runs, with its checkpoints under a digest folder, nothing outside the artifact folder."""
    sp = load_space(write_space(tmp_path, epochs=1, steps=2))
    name = f"../../escape-{tmp_path.name}"
    art = tmp_path / "art"
    raw = optuna.create_study(
        study_name=name, storage=storage_url, directions=["maximize", "minimize"]
    )
    try:
        raw.set_user_attr(StudyAttr.SPACE, sp.to_dict())
        raw.set_user_attr(StudyAttr.ARTIFACT_DIR, str(art))
        raw.enqueue_trial(sp.baseline_params())
        seen: list[Path] = []

        class Recording(TrialEnv):
            def checkpoint(self, study: optuna.Study, key: int) -> TrialCheckpoint:
                ckpt = super().checkpoint(study, key)
                seen.append(ckpt.path)
                return ckpt

        study = load_study(name, storage_url)
        assert study.artifact_dir == art
        env = Recording(study.space, device=torch.device("cpu"), artifact_dir=art)
        run_trials(study.optuna_study, study.storage, env)
        [trial] = study.trials()
        assert trial.state is TrialState.COMPLETE
        assert seen and all(p.parent == art / "checkpoints" / study_dir_name(name) for p in seen)
        assert not (tmp_path.parent / f"escape-{tmp_path.name}").exists()
        assert not (tmp_path / "escape").exists()
    finally:
        optuna.delete_study(study_name=name, storage=storage_url)


# --- storage URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:S3c@ret@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:S3c%40ret@host:5432/db", "postgresql://u:***@host:5432/db"),
        (
            "postgresql://u:pw@host/db?password=S3c&x=1",
            "postgresql://u:***@host/db?password=***&x=1",
        ),
        ("postgresql://host/db?PASSWORD=S3c", "postgresql://host/db?PASSWORD=***"),
        ("postgresql://host/db?password=a@S3c", "postgresql://***@S3c"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("grpc://u:S3c@proxy:13000", "grpc://u:***@proxy:13000"),
        ("grpc://proxy:13000", "grpc://proxy:13000"),
        ("not a url u:S3c@x", "***@x"),
        ("host=h password=S3c", "host=h password=***"),
        ("sqlite:////data/a@b/automl.db", "sqlite:////data/a@b/automl.db"),
    ],
)
def test_redact_hides_every_form_of_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    if "S3c" in shown:  # only where the secret is what follows the last '@': the host
        assert shown.endswith("@S3c")


@pytest.mark.parametrize("url", SECRET_URLS)
def test_bad_urls_are_one_line_errors_without_the_password(url: str) -> None:
    with pytest.raises(StorageError) as e:
        open_storage(url)
    msg = str(e.value)
    assert SECRET not in msg and "\n" not in msg, msg


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:mem?mode=memory&uri=true"]
)
def test_in_memory_sqlite_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="in-memory SQLite database: the study would vanish"):
        create_study(write_space(tmp_path), storage=url)
    with pytest.raises(StorageError, match="in-memory"):
        load_study("tiny", storage=url)


def test_empty_storage_is_an_error_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOML_STORAGE", raising=False)
    space = write_space(tmp_path)
    with pytest.raises(StorageError, match="--storage is empty"):
        create_study(space, storage="")
    assert not (tmp_path / "automl.db").exists()
    # None still means the default.
    study = create_study(space, storage=None)
    assert study.storage_url == "sqlite:///automl.db" and (tmp_path / "automl.db").is_file()


def test_reading_never_creates_a_database(tmp_path: Path) -> None:
    typo = tmp_path / "atuoml.db"
    with pytest.raises(StorageError, match="no study database at .*atuoml.db; check --storage"):
        load_study("tiny", storage=f"sqlite:///{typo}")
    with pytest.raises(StorageError, match="no study database"):
        open_storage(f"sqlite:///{typo}", must_exist=True)
    assert not typo.exists()


CLI_STORAGES = [
    "",
    "sqlite://",
    "sqlite:///:memory:",
    f"postgresql+asyncpg://u:{SECRET}ret@127.0.0.1/test",
    # An unsupported driver. Not psycopg: installed for plain Optuna tools, it reaches the server,
    # and a worker waits out an unreachable database instead of refusing it.
    f"postgresql+pg8000://u:{SECRET}ret@127.0.0.1/test",
    f"mysql://u:{SECRET}ret@127.0.0.1/test",
    f"postgresql://u:{SECRET}@ret@127.0.0.1:5432/test",
]


@pytest.mark.parametrize("storage", CLI_STORAGES)
@pytest.mark.parametrize(
    "command",
    ["search", "worker", "status", "status-named", "report", "trace", "export", "dashboard"],
)
def test_cli_refuses_bad_storages_in_one_line(
    storage: str,
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOML_STORAGE", raising=False)
    argv: list[str] = {
        "search": ["search", "--space", str(write_space(tmp_path))],
        "worker": ["worker", "--study", "tiny", "--no-progress"],
        "status": ["status"],
        "status-named": ["status", "--study", "tiny"],
        "report": ["report", "--study", "tiny", "--out", "rep"],
        "trace": ["trace", "--study", "tiny", "--trial", "0", "--out", "tb"],
        "export": ["export", "--study", "tiny", "--trial", "0", "--out", "bundle"],
        "dashboard": ["dashboard", "--port", "1"],
    }[command]
    rc = main([*argv, "--storage", storage])
    line = _one_error_line(capsys, rc)
    assert SECRET not in line, line
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".toml") == [], line


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--study", "tiny"],
        ["report", "--study", "tiny", "--out", "rep"],
        ["export", "--study", "tiny", "--trial", "0", "--out", "bundle"],
        ["export", "--trial", "0", "--out", "bundle"],
        ["dashboard", "--port", "1"],
        ["worker", "--study", "tiny", "--no-progress"],
    ],
)
def test_a_mistyped_sqlite_path_is_named_and_never_created(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "atuoml.db"
    rc = main([*argv, "--storage", f"sqlite:///{typo}"])
    line = _one_error_line(capsys, rc)
    assert f"no study database at {typo}; check --storage" in line
    assert list(tmp_path.iterdir()) == []


# --- the compose file ------------------------------------------------------------------------


def _compose_env() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    return dict(compose["x-automl-env"])


def test_compose_keeps_the_password_out_of_the_url() -> None:
    env = _compose_env()
    assert "POSTGRES_PASSWORD" not in env["AUTOML_STORAGE"]
    assert "@" not in env["AUTOML_STORAGE"]
    assert env["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert env["PGUSER"].startswith("${POSTGRES_USER")


def test_the_compose_url_with_pgpassword_reaches_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compose form for real: a password full of URL delimiters, given to libpq in
    PGPASSWORD, next to the URL the compose file builds (host and database of the test server)."""
    require_pg()
    url = _compose_env()["AUTOML_STORAGE"]
    url = re.sub(r"\$\{POSTGRES_DB:-[^}]*\}", "test", url)
    url = url.replace("//postgres:5432", "//127.0.0.1:5432")
    assert url == "postgresql+psycopg2://127.0.0.1:5432/test"
    password = "p@ss/w:rd?#%&x"
    monkeypatch.setenv("PGUSER", "postgres")
    monkeypatch.setenv("PGPASSWORD", password)
    rdb = open_storage(url)
    assert isinstance(optuna.get_all_study_names(rdb), list)


def test_real_processes_refuse_names_and_storages_with_exit_2(tmp_path: Path) -> None:
    """As a user or a container runs them: a separate process, its stderr one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("AUTOML_STORAGE", "AUTOML_STUDY")}
    env["PYTHONPATH"] = str(REPO)
    space = write_space(tmp_path)
    cases = [
        [sys.executable, "-m", "workers", "--storage", "sqlite:///automl.db", "--study", "../../x"],
        [sys.executable, "-m", "automl", "status", "--storage", "sqlite:///atuoml.db"],
        [sys.executable, "-m", "automl", "search", "--space", str(space), "--storage", "sqlite://"],
    ]
    for argv in cases:
        out = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 2, (argv, out.stderr)
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("automl: error: "), (argv, out.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]
