"""Latency per deployment target: the front for another device without retraining.

Latency does not depend on the weights, so a study's architectures can be timed anywhere. A
target is a device label (``cpu``, ``cuda:<GPU model>`` or a name the user chose), a batch size
and a runtime; its key reads ``cpu@b1`` (``/onnx`` appended for a runtime other than torch).

Where the numbers live:
- the worker's own measurement: the trial's user attributes (``TrialAttr.LATENCY_*``), its
  target under ``TrialAttr.LATENCY_TARGET``;
- a re-measurement (``automl remeasure``): a study user attribute per target and trial,
  ``automl:latency@<key>#<trial number>``, since Optuna does not let a finished trial change.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automl.errors import ConfigError
from automl.measure.latency import LatencyRecord
from automl.store.attrs import TrialAttr

__all__ = [
    "TargetLatency",
    "device_label",
    "known_targets",
    "latencies_for",
    "resolve_target",
    "store_remeasured",
    "target_key",
]

PREFIX = "automl:latency@"
DEFAULT_RUNTIME = "torch"


def device_label(dev: torch.device) -> str:
    """``cpu``, or ``cuda:`` and the GPU's model (two H200s are one target, an H200 and an A100
    two)."""
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return "cpu"


def target_key(label: str, batch_size: int, runtime: str = DEFAULT_RUNTIME) -> str:
    key = f"{label}@b{int(batch_size)}"
    return key if runtime == DEFAULT_RUNTIME else f"{key}/{runtime}"


@dataclass(frozen=True)
class TargetLatency:
    """One architecture's latency on one target, as stored."""

    median_ms: float
    iqr_ms: float
    mode: str
    device: str
    host: str
    batch_size: int
    threads: int
    ratio: float | None = None
    reference_ms: float | None = None
    runtime: str = DEFAULT_RUNTIME

    @classmethod
    def from_record(cls, rec: LatencyRecord, host: str | None = None) -> TargetLatency:
        return cls(
            median_ms=rec.median_ms,
            iqr_ms=rec.iqr_ms,
            mode=rec.mode,
            device=rec.device,
            host=host or socket.gethostname(),
            batch_size=rec.batch_size,
            threads=rec.threads,
            ratio=rec.ratio,
            reference_ms=rec.reference_ms,
        )

    @classmethod
    def from_trial(cls, t: FrozenTrial) -> TargetLatency | None:
        u = t.user_attrs
        if TrialAttr.LATENCY_MS not in u:
            return None
        return cls(
            median_ms=float(u[TrialAttr.LATENCY_MS]),
            iqr_ms=float(u.get(TrialAttr.LATENCY_IQR_MS, 0.0)),
            mode=str(u.get(TrialAttr.LATENCY_MODE, "?")),
            device=str(u.get(TrialAttr.LATENCY_DEVICE, u.get(TrialAttr.DEVICE, "?"))),
            host=str(u.get(TrialAttr.HOST, "?")),
            batch_size=int(u.get(TrialAttr.LATENCY_BATCH_SIZE, 0)),
            threads=int(u.get(TrialAttr.LATENCY_THREADS, 0)),
            ratio=u.get(TrialAttr.LATENCY_RATIO),
            reference_ms=u.get(TrialAttr.LATENCY_REFERENCE_MS),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TargetLatency:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def store_remeasured(study: optuna.Study, number: int, key: str, lat: TargetLatency) -> None:
    study.set_user_attr(f"{PREFIX}{key}#{int(number)}", lat.to_json())


def _remeasured(study_attrs: Mapping[str, Any]) -> dict[str, dict[int, TargetLatency]]:
    out: dict[str, dict[int, TargetLatency]] = {}
    for name, value in study_attrs.items():
        if not name.startswith(PREFIX) or "#" not in name:
            continue
        key, _, number = name[len(PREFIX) :].rpartition("#")
        try:
            out.setdefault(key, {})[int(number)] = TargetLatency.from_json(value)
        except (TypeError, ValueError):
            continue  # written by something else: not ours to read
    return out


def known_targets(study: optuna.Study, trials: Iterable[FrozenTrial] | None = None) -> list[str]:
    keys = set(_remeasured(study.user_attrs))
    for t in trials if trials is not None else study.get_trials(deepcopy=False):
        key = t.user_attrs.get(TrialAttr.LATENCY_TARGET)
        if key:
            keys.add(str(key))
    return sorted(keys)


def resolve_target(
    study: optuna.Study, device: str, batch_size: int | None, default_batch: int
) -> str:
    """The stored target that ``device`` (a label like ``cpu`` or a full key like ``cpu@b1``)
    names, or a one-line error that lists the targets there are."""
    known = known_targets(study)
    key = device if "@" in device else target_key(device, batch_size or default_batch)
    if key in known:
        return key
    # "cuda" names the one GPU model measured, when there is one.
    matches = [k for k in known if k.startswith(f"{device}:") and "@" not in device]
    matches = [k for k in matches if k.endswith(f"@b{batch_size or default_batch}")]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(known) or "none"
    raise ConfigError(
        f"no latency of study {study.study_name!r} is stored for target {key!r} (stored: "
        f"{listed}); measure it there with `automl remeasure --study {study.study_name} "
        f"--device {device.split('@')[0]}` on a machine with that device"
    )


def latencies_for(
    study: optuna.Study, key: str, trials: Iterable[FrozenTrial] | None = None
) -> dict[int, TargetLatency]:
    """Trial number -> latency on target ``key``, for the complete trials measured there; a
    re-measurement wins over the worker's own (it is the later and the asked-for one)."""
    again = _remeasured(study.user_attrs).get(key, {})
    out: dict[int, TargetLatency] = {}
    for t in trials if trials is not None else study.get_trials(deepcopy=False):
        if t.state is not TrialState.COMPLETE:
            continue
        if t.number in again:
            out[t.number] = again[t.number]
        elif t.user_attrs.get(TrialAttr.LATENCY_TARGET) == key:
            own = TargetLatency.from_trial(t)
            if own is not None:
                out[t.number] = own
    return out
