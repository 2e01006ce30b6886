"""Files that are not what their name or their argument says: a storage that is a text file, an
image, a truncated database, a folder or a FIFO; a database this process may not write; a space
that is a folder, a FIFO, a device or a huge file; images that are FIFOs or declare billions of
pixels. Each is one line naming what the path is, never a traceback or a hang; real files, real
processes and real databases throughout."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

import automl
from automl.cli import main
from automl.data.images import MAX_IMAGE_PIXELS, open_image
from automl.errors import DataError, SearchSpaceError
from automl.space import load_space
from automl.space.search_space import MAX_SPACE_BYTES
from tests.helpers import PG_URL, REPO, require_pg

SMOKE = REPO / "search_spaces" / "smoke.toml"


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("AUTOML_STORAGE", "AUTOML_STUDY", "AUTOML_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("automl: error: "), err
    return lines[0]


def _run(
    *argv: str, cwd: Path, prefix: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "automl", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _png(width: int, height: int) -> bytes:
    """A PNG file of a few dozen bytes whose header declares ``width`` x ``height`` grey pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _study_db(path: Path) -> Path:
    """A real study database of a few dozen pages."""
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="x")
    for i in range(20):
        study.enqueue_trial({"a": i})
    return path


@pytest.fixture(scope="module")
def study_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _study_db(tmp_path_factory.mktemp("db") / "whole.db").read_bytes()


# -- --storage: a path that is not a study database ---------------------------------------------

# (a path made from a scratch folder and a real study database's bytes, what the line says)
NOT_A_DATABASE: dict[str, tuple[Callable[[Path, bytes], Path], str]] = {
    "text file": (lambda d, db: _write(d / "notes.txt", b"hello\n"), "a text file"),
    "png": (lambda d, db: _write(d / "plot.png", _png(4, 4)), "a PNG image"),
    "folder": (lambda d, db: _mkdir(d / "studies"), "a folder"),
    "fifo": (lambda d, db: _fifo(d / "pipe.db"), "a FIFO"),
    "truncated database": (
        lambda d, db: _write(d / "cut.db", db[:12288]),
        "truncated: 12288 bytes where its header records",
    ),
    "header only": (lambda d, db: _write(d / "head.db", db[:50]), "truncated: 50 bytes"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


@pytest.mark.parametrize("case", sorted(NOT_A_DATABASE))
@pytest.mark.parametrize("command", ["search", "dashboard"])
def test_a_storage_that_is_not_a_database_is_one_line(
    case: str,
    command: str,
    scratch: Path,
    study_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, words = NOT_A_DATABASE[case]
    assert len(study_bytes) > 12288, "the truncated case needs a database past three pages"
    path = make(scratch, study_bytes)
    before = _digest(path)
    argv = {
        "search": ["search", "--space", str(SMOKE), "--n-trials", "1", "--no-progress"],
        "dashboard": ["dashboard", "--read-only", "--port", "1"],
    }[command]
    code = main([*argv, "--storage", f"sqlite:///{path}"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and words in line and str(path) in line, line
    assert _digest(path) == before, "a refused storage must be left as it was"


def test_a_path_without_a_url_scheme_says_how_to_write_it(
    scratch: Path, study_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(scratch / "automl-local.db", study_bytes)
    assert main(["dashboard", "--storage", "automl-local.db", "--port", "1"]) == 2
    assert "write sqlite:///automl-local.db" in _one_line(capsys.readouterr().err)


# -- a database this process may not write --------------------------------------------------------


def _without_root_powers() -> tuple[str, ...]:
    """The command prefix under which file permissions hold for this process: root ignores them
    unless its capability to override them is dropped."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only file is writable to root")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search")


def test_commands_that_write_refuse_a_read_only_database_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    automl.create_study(SMOKE, storage=f"sqlite:///{db}")
    db.chmod(0o444)
    before = _digest(db)
    prefix = _without_root_powers()
    url = f"sqlite:///{db}"
    for argv in (
        ["search", "--space", str(SMOKE), "--storage", url, "--n-trials", "1", "--no-progress"],
        ["worker", "--storage", url, "--study", "smoke", "--n-trials", "1", "--no-progress"],
    ):
        out = _run(*argv, cwd=tmp_path, prefix=prefix, timeout=60)
        line = _one_line(out.stderr)
        assert out.returncode == 2, out.stderr
        assert "is read-only (attempt to write a readonly database)" in line, line
    # Reading still works: a read-only database is fine for commands that only read.
    status = _run("status", "--storage", url, "--study", "smoke", cwd=tmp_path, prefix=prefix)
    assert status.returncode == 0, status.stderr
    assert _digest(db) == before


def test_a_folder_sqlite_cannot_write_its_journal_in_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        out = _run(
            "search", "--space", str(SMOKE), "--storage", f"sqlite:///{folder / 'new.db'}",
            "--n-trials", "1", cwd=tmp_path, prefix=_without_root_powers(), timeout=60,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert out.returncode == 2 and "is not writable" in _one_line(out.stderr), out.stderr
    assert not (folder / "new.db").exists()


@pytest.mark.postgres
def test_a_read_only_postgres_transaction_is_one_line(tmp_path: Path) -> None:
    require_pg()
    # Every transaction of this connection is read-only, as on a hot standby.
    url = PG_URL + "?options=-c%20default_transaction_read_only%3Don"
    out = _run(
        "search", "--space", str(SMOKE), "--storage", url, "--study", "ro-pg-h23",
        "--n-trials", "1", "--no-progress", cwd=tmp_path, timeout=60,
    )  # fmt: skip
    line = _one_line(out.stderr)
    assert out.returncode == 2, out.stderr
    assert "refused a write (cannot execute INSERT in a read-only transaction)" in line, line
    assert "ro-pg-h23" not in optuna.get_all_study_names(PG_URL)


# -- --space: a path that is not a TOML file ------------------------------------------------------


def test_a_space_that_is_not_a_file_says_what_it_is(tmp_path: Path) -> None:
    folder = _mkdir(tmp_path / "space.toml")
    with pytest.raises(SearchSpaceError, match=r"space.toml is a folder, not a TOML file"):
        load_space(folder)
    with pytest.raises(SearchSpaceError, match="is a character device"):
        load_space("/dev/null")
    with pytest.raises(SearchSpaceError, match="is a FIFO"):
        load_space(_fifo(tmp_path / "named.toml"))
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space(tmp_path / "missing.toml")
    huge = tmp_path / "huge.toml"
    huge.write_text("a = [" + "1," * (MAX_SPACE_BYTES // 2) + "]\n")
    with pytest.raises(SearchSpaceError, match="larger than 1024 KiB"):
        load_space(huge)


def test_a_named_fifo_as_space_does_not_hang_the_command(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "space.toml")
    out = _run("search", "--space", str(fifo), "--n-trials", "1", cwd=tmp_path, timeout=60)
    line = _one_line(out.stderr)
    assert out.returncode == 2 and "is a FIFO (named pipe), not a TOML file" in line, line
    assert not (tmp_path / "automl.db").exists()


def test_a_space_piped_by_descriptor_is_read(tmp_path: Path) -> None:
    """A pipe the shell hands over by descriptor is read (process substitution, /dev/stdin)."""
    for form in ("/dev/fd/{}", "/proc/self/fd/{}"):
        read, write = os.pipe()
        os.write(write, SMOKE.read_bytes())
        os.close(write)
        try:
            assert load_space(form.format(read)).name == "smoke"
        finally:
            os.close(read)
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash for process substitution")
    code = "import sys; from automl.space import load_space; print(load_space(sys.argv[1]).name)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    line = f'"{sys.executable}" -c "{code}" <(cat "{SMOKE}")'
    out = subprocess.run([bash, "-c", line], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "smoke", out.stderr


# -- images -------------------------------------------------------------------------------------


def test_images_declaring_too_many_pixels_are_refused_before_decoding(tmp_path: Path) -> None:
    bomb = _write(tmp_path / "bomb.png", _png(60000, 60000))  # Pillow's own limit refuses it
    with pytest.raises(DataError, match=r"bomb.png: declares more than \d+ pixels"):
        open_image(bomb)
    side = int(MAX_IMAGE_PIXELS**0.5) + 1  # past this module's limit, below Pillow's
    big = _write(tmp_path / "big.png", _png(side, side))
    with pytest.raises(DataError, match=rf"big.png: declares {side}x{side} pixels"):
        open_image(big)
    from PIL import Image

    Image.new("L", (64, 48)).save(tmp_path / "fine.png")
    assert open_image(tmp_path / "fine.png").size == (64, 48)


def test_an_image_that_is_a_fifo_is_refused_not_waited_for(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"x.png is a FIFO \(named pipe\), not an image file"):
        open_image(fifo)
