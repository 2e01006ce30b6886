"""fit's checkpoints: bound to the run's identity; foreign or damaged ones refused or quarantined."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl.data import load_dataset
from automl.errors import ConfigError
from automl.models import create_model
from automl.training import EpochRecord, TrainConfig, fit
from automl.training.checkpoint import QUARANTINE_DIR

CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=3, max_steps_per_epoch=2)


class _Stop(Exception):
    pass


def _stop(rec: EpochRecord) -> None:
    raise _Stop


def _interrupted_run(ckpt: Path, identity: str) -> None:
    data = load_dataset("digits", val_fraction=0.15)
    with pytest.raises(_Stop):
        fit(
            create_model("convnet_s", num_classes=10, in_chans=1),
            data,
            CFG,
            checkpoint_path=ckpt,
            callback=_stop,
            run_identity=identity,
        )


def _resume(ckpt: Path, identity: str, quarantine: bool) -> int:
    data = load_dataset("digits", val_fraction=0.15)
    return fit(
        create_model("convnet_s", num_classes=10, in_chans=1),
        data,
        CFG,
        checkpoint_path=ckpt,
        run_identity=identity,
        quarantine_bad_checkpoint=quarantine,
    ).resumed_from_epoch


def test_only_the_same_run_resumes_and_another_run_quarantines(tmp_path: Path) -> None:
    ckpt = tmp_path / "trial-0.pt"
    _interrupted_run(ckpt, "study-a")
    with pytest.raises(ConfigError, match="different training configuration or run"):
        _resume(ckpt, "study-b", quarantine=False)
    assert ckpt.is_file()  # refused, not touched
    assert _resume(ckpt, "study-b", quarantine=True) == 0
    assert len(list((tmp_path / QUARANTINE_DIR).glob("trial-0-*.pt"))) == 1
    ckpt.unlink()  # study-b's own, finished run
    _interrupted_run(ckpt, "study-a")
    assert _resume(ckpt, "study-a", quarantine=True) == 1


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "folder"])
def test_a_damaged_checkpoint_is_one_line_or_quarantined(tmp_path: Path, damage: str) -> None:
    ckpt = tmp_path / "trial-0.pt"
    _interrupted_run(ckpt, "x")
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "garbage":
        ckpt.write_bytes(b"\x80\x02not a checkpoint" * 50)
    else:
        ckpt.unlink()
        ckpt.mkdir()
    with pytest.raises(ConfigError) as info:
        _resume(ckpt, "x", quarantine=False)
    assert len(str(info.value).splitlines()) == 1 and str(ckpt) in str(info.value)
    assert _resume(ckpt, "x", quarantine=True) == 0
    assert len(list((tmp_path / QUARANTINE_DIR).iterdir())) == 1
    assert ckpt.is_file()  # the new run's own checkpoint
