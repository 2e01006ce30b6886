"""Refusals: tampered or corrupted bundles, pickles in weights, bad trials, bad images.

Every refusal is an ``AutoMLError`` with a one-line message; the CLI prints it and exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

import automl
from automl.cli import main
from automl.errors import AutoMLError
from automl.export import BundleError, ImageError, TrialSelectionError, export_trial, read_bundle
from automl.export.bundle import sha256
from automl.export.predict import predict_files
from tests.export.conftest import Trained

UNPICKLED: list[str] = []


def mark_unpickled(what: str) -> None:
    UNPICKLED.append(what)


class _Evil:
    """Unpickling this object runs code: it calls ``mark_unpickled``."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (mark_unpickled, ("evil",))


@pytest.fixture(scope="module")
def bundle(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "bundle"
    export_trial(trained.url, trained.study, 1, out, fmt="torchscript")
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _one_line(e: pytest.ExceptionInfo[AutoMLError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_flipped_byte_is_a_checksum_mismatch(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path / "b")
    data = bytearray((b / "weights.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch") as e:
        automl.load_model(b)
    assert "weights.pt" in _one_line(e)


@pytest.mark.parametrize("name", ["model.json", "classes.json", "model.ts"])
def test_tampered_file_is_refused(bundle: Path, tmp_path: Path, name: str) -> None:
    b = _copy(bundle, tmp_path / "b")
    with (b / name).open("ab") as f:
        f.write(b" ")
    with pytest.raises(BundleError, match="checksum mismatch"):
        read_bundle(b)


def test_missing_file_and_not_a_bundle(bundle: Path, tmp_path: Path) -> None:
    b = _copy(bundle, tmp_path / "b")
    (b / "classes.json").unlink()
    with pytest.raises(BundleError, match="missing"):
        read_bundle(b)
    with pytest.raises(BundleError, match="not an automl bundle"):
        read_bundle(tmp_path)


def test_pickled_object_in_weights_is_never_unpickled(bundle: Path, tmp_path: Path) -> None:
    """Even with a manifest re-signed to match, loading uses weights_only=True and refuses."""
    b = _copy(bundle, tmp_path / "b")
    state = torch.load(b / "weights.pt", weights_only=True)
    state["evil"] = _Evil()
    torch.save(state, b / "weights.pt")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"]["weights.pt"]["sha256"] = sha256(b / "weights.pt")
    (b / "manifest.json").write_text(json.dumps(manifest))
    UNPICKLED.clear()
    with pytest.raises(BundleError, match="refusing to unpickle"):
        automl.load_model(b)
    assert UNPICKLED == []


def test_trial_errors_exit_2(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["export", "--storage", trained.url, "--study", trained.study, "--out"]
    assert main([*base, str(tmp_path / "a"), "--trial", "99"]) == 2
    assert "has no trial 99" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "a"), "--trial", "best", "--max-latency-ms", "1e-9"]) == 2
    assert "fits --max-latency-ms" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*base, str(blocker / "sub"), "--trial", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("automl: error: --out") and "not writable" in err and err.count("\n") == 1


def test_failed_and_weightless_trials(trained: Trained, tmp_path: Path) -> None:
    """A trial that did not complete, and a completed one without weights (added by hand)."""
    study = automl.load_study(trained.study, trained.url).optuna_study
    failed = study.ask()
    failed.set_user_attr("fail_reason", "boom")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    # Dominated values, so the Pareto front of the shared study is unchanged.
    study.add_trial(optuna.trial.create_trial(values=[0.0, 1e9]))
    weightless = len(study.trials) - 1
    with pytest.raises(TrialSelectionError, match="is FAIL, not COMPLETE") as e:
        export_trial(trained.url, trained.study, failed.number, tmp_path / "a")
    assert "boom" in _one_line(e)
    with pytest.raises(TrialSelectionError, match="no weights.pt artifact"):
        export_trial(trained.url, trained.study, weightless, tmp_path / "b")


def test_bad_images(bundle: Path, tmp_path: Path) -> None:
    from PIL import Image

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="not a readable image"):
        predict_files(bundle, [broken])
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(big)
    with pytest.raises(ImageError, match="pass --resize"):
        predict_files(bundle, [big])
    _, probs, _ = predict_files(bundle, [big], resize=True)
    assert probs.shape == (1, 10)
    colour = tmp_path / "colour.png"
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb, mode="RGB").save(colour)
    with pytest.raises(ImageError, match="colour image"):
        predict_files(bundle, [colour])
    grey_as_rgb = tmp_path / "grey_rgb.png"
    Image.fromarray(np.full((8, 8, 3), 77, np.uint8), mode="RGB").save(grey_as_rgb)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(grey)
    _, p1, _ = predict_files(bundle, [grey_as_rgb])
    _, p2, _ = predict_files(bundle, [grey])
    torch.testing.assert_close(p1, p2)
    with pytest.raises(ImageError, match="no such file"):
        predict_files(bundle, [tmp_path / "nope.png"])


def test_predict_on_hostile_image_files_is_one_line_in_a_real_process(
    bundle: Path, digit_pngs: tuple[Path, torch.Tensor], tmp_path: Path
) -> None:
    """A folder holding a FIFO named x.png is predicted without it (before: a hang until killed);
    a FIFO named directly, and a PNG declaring 60000x60000 pixels, are one line each."""
    import os
    import struct
    import subprocess
    import sys
    import zlib

    from tests.helpers import REPO

    folder = tmp_path / "imgs"
    folder.mkdir()
    pngs, _ = digit_pngs
    (folder / "a.png").write_bytes((pngs / "d00.png").read_bytes())
    os.mkfifo(folder / "x.png")

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def predict(*images: Path) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "automl", "predict", "--model", str(bundle)]
        argv += ["--format", "csv", *map(str, images)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)

    ok = predict(folder)
    assert ok.returncode == 0, ok.stderr
    assert "a.png" in ok.stdout and "x.png" not in ok.stdout
    for path, words in ((folder / "x.png", "is a FIFO (named pipe), not an image file"),
                        (bomb, "bomb.png: declares more than")):  # fmt: skip
        out = predict(path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and words in lines[0], out.stderr


def test_best_of_a_study_without_a_front_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import REPO

    url = f"sqlite:///{tmp_path / 's.db'}"
    automl.create_study(REPO / "search_spaces" / "smoke.toml", storage=url)  # nothing run yet
    argv = ["export", "--storage", url, "--study", "smoke", "--out", str(tmp_path / "o")]
    assert main([*argv, "--trial", "best"]) == 2
    err = capsys.readouterr().err
    assert "the study has no completed trial yet" in err and "None" not in err, err
    assert err.count("\n") == 1
