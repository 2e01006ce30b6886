"""A study's latency service: every architecture timed the same way, on one scale per host.

``LatencyTimer.time`` times a network with the space's protocol (``automl.measure.latency``): the
host's measurement lock held (``automl.measure.host_share``), paired with the study's reference
network unless the space says otherwise. The reference is the study's baseline (undivided, default
width); its time is settled once per host, device, batch size and thread count, kept in the study
(``StudyAttr.LATENCY_REFERENCE_PREFIX``) and in the host folder, so that every worker and every
study on one host multiplies its ratios by the same number. The trial pipeline and ``automl
remeasure`` both time through here.
"""

from __future__ import annotations

import contextlib
import json
import platform
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from automl.data import DataBundle
from automl.device import resolve_device
from automl.measure.host_share import HostShare, quiet_wait_s, wait_for_quiet_cpu
from automl.measure.latency import LatencyRecord, Reference, measure, settle_reference
from automl.measure.targets import device_label, target_key
from automl.models import create_model
from automl.models.ensemble import Ensemble
from automl.space import SearchSpace
from automl.store.attrs import StudyAttr, TrialAttr
from automl.store.retry import DEFAULT_TIMEOUT_S, db_retry

__all__ = [
    "REFERENCE_SETTLE_FACTOR",
    "LatencyTimer",
    "ModelInput",
    "latency_attrs",
    "record_from_attrs",
]

# How much longer than a trial's measurement the reference is settled for.
REFERENCE_SETTLE_FACTOR = 3.0


@dataclass(frozen=True)
class ModelInput:
    """What a model of the study is built for, kept in the study so that its architectures can
    be rebuilt where the data set is not (``automl remeasure`` on a deployment box)."""

    num_classes: int
    in_chans: int
    image_size: int

    @classmethod
    def of(cls, data: DataBundle) -> ModelInput:
        return cls(data.num_classes, data.in_chans, data.image_size)

    @classmethod
    def stored(cls, study: optuna.Study) -> ModelInput | None:
        raw = study.user_attrs.get(StudyAttr.MODEL_INPUT)
        if isinstance(raw, list) and len(raw) == 3 and all(isinstance(v, int) for v in raw):
            return cls(*raw)
        return None

    def store(self, study: optuna.Study) -> None:
        if ModelInput.stored(study) != self:
            study.set_user_attr(
                StudyAttr.MODEL_INPUT, [self.num_classes, self.in_chans, self.image_size]
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return (self.in_chans, self.image_size, self.image_size)


def _cpu_name() -> str:
    """The CPU's model name: a host record settled on one CPU is not reused on another."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def latency_attrs(lat: LatencyRecord, dev: torch.device) -> dict[str, Any]:
    """The trial attributes that record one measurement (``TrialAttr.LATENCY_*``)."""
    attrs: dict[str, Any] = {
        TrialAttr.LATENCY_MS: lat.median_ms,
        TrialAttr.LATENCY_IQR_MS: lat.iqr_ms,
        TrialAttr.LATENCY_MODE: lat.mode,
        TrialAttr.LATENCY_MODES: lat.modes,
        TrialAttr.LATENCY_CHANNELS_LAST: lat.channels_last,
        TrialAttr.LATENCY_BATCH_SIZE: lat.batch_size,
        TrialAttr.LATENCY_THREADS: lat.threads,
        TrialAttr.LATENCY_DEVICE: lat.device,
        TrialAttr.LATENCY_TARGET: target_key(device_label(dev), lat.batch_size),
    }
    if lat.ratio is not None:
        attrs[TrialAttr.LATENCY_RATIO] = lat.ratio
        attrs[TrialAttr.LATENCY_REFERENCE_MS] = lat.reference_ms
        attrs[TrialAttr.LATENCY_RAW_MS] = lat.raw_median_ms
    return attrs


def record_from_attrs(attrs: dict[str, Any]) -> LatencyRecord:
    """The measurement that ``latency_attrs`` stored (repeat counts are not kept: 0)."""
    return LatencyRecord(
        median_ms=float(attrs[TrialAttr.LATENCY_MS]),
        iqr_ms=float(attrs.get(TrialAttr.LATENCY_IQR_MS) or 0.0),
        mode=str(attrs.get(TrialAttr.LATENCY_MODE)),
        device=str(attrs.get(TrialAttr.LATENCY_DEVICE)),
        batch_size=int(attrs.get(TrialAttr.LATENCY_BATCH_SIZE) or 1),
        threads=int(attrs.get(TrialAttr.LATENCY_THREADS) or 1),
        repeats=0,
        calls_per_repeat=0,
        modes=dict(attrs.get(TrialAttr.LATENCY_MODES) or {}),
        channels_last=bool(attrs.get(TrialAttr.LATENCY_CHANNELS_LAST, True)),
        ratio=attrs.get(TrialAttr.LATENCY_RATIO),
        reference_ms=attrs.get(TrialAttr.LATENCY_REFERENCE_MS),
        raw_median_ms=attrs.get(TrialAttr.LATENCY_RAW_MS),
    )


class LatencyTimer:
    """Times the architectures of one study with its space's protocol, on this host."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        host_share: HostShare | None = None,
        db_timeout_s: float = DEFAULT_TIMEOUT_S,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.space = space
        self.host_share = host_share
        self.db_timeout_s = db_timeout_s
        self.stop_event = stop_event
        self._references: dict[str, Reference] = {}
        # Told what a slow step is waiting for (the trial's progress line); set by its owner.
        self.on_phase: Callable[[str], None] | None = None

    def _phase(self, what: str) -> None:
        if self.on_phase is not None:
            self.on_phase(what)

    def device(self, training_device: torch.device) -> torch.device:
        """Where latency is timed: ``[objectives] latency_device``, else the training device."""
        wanted = self.space.objectives.latency_device
        return training_device if wanted is None else resolve_device(wanted)

    def measuring(self, dev: torch.device) -> contextlib.AbstractContextManager[int | None]:
        """The host's measurement lock (automl.measure.host_share), yielding the threads
        granted."""
        if self.host_share is None:
            return contextlib.nullcontext(None)
        return self.host_share.measuring(cpu=dev.type == "cpu")

    def baseline_model(self, num_classes: int, in_chans: int) -> Ensemble:
        """The same network as the trials' (its options included), undivided, at the default
        width: the yardstick of relative budgets and of paired latency. Its weights matter to
        neither, so the process's random state is left alone."""
        model = self.space.model
        return create_model(
            model.name,
            num_classes=num_classes,
            in_chans=in_chans,
            split_factor=1,
            width_mult=model.default_width_mult,
            **model.options,
        )

    def _retry_db(self, fn: Callable[[], Any], what: str) -> Any:
        return db_retry(fn, what=what, timeout_s=self.db_timeout_s, stop_event=self.stop_event)

    def reference(
        self,
        study: optuna.Study,
        model_input: ModelInput,
        dev: torch.device,
        x: torch.Tensor,
        threads: int | None,
    ) -> Reference:
        """The study's baseline network and its settled time on this host, device, batch size
        and thread count: settled once by the first worker there, read by the others."""
        n_threads = threads or torch.get_num_threads()
        key = f"{socket.gethostname()}|{device_label(dev)}|b{x.shape[0]}|t{n_threads}"
        if key in self._references:
            return self._references[key]
        model = self.baseline_model(model_input.num_classes, model_input.in_chans)
        # The host's own record holds the scale across studies: same reference network (its
        # configuration and input), same device, batch and threads.
        host_key = json.dumps(
            [model.model_config, list(x.shape), device_label(dev), n_threads, _cpu_name()],
            sort_keys=True,
            default=str,
        )
        share = self.host_share
        attr = StudyAttr.LATENCY_REFERENCE_PREFIX + key
        stored = study.user_attrs.get(attr)
        if not (isinstance(stored, int | float) and stored > 0) and share is not None:
            stored = share.settled(host_key)
        if isinstance(stored, int | float) and stored > 0:
            ref = Reference(model=model, median_ms=float(stored))
        else:
            obj = self.space.objectives
            if dev.type == "cpu" and share is not None:
                # Bounded ($AUTOML_QUIET_WAIT_S), and said where the user looks: a minute with
                # nothing on screen reads as a hang.
                self._phase(
                    f"waiting up to {quiet_wait_s():.0f} s for idle CPUs to settle the study's "
                    "latency reference (once per host)"
                )
                wait_for_quiet_cpu()
                self._phase("settling the latency reference")
            ref = settle_reference(
                model,
                x,
                device=dev,
                threads=n_threads,
                warmup_s=obj.latency_warmup_s,
                run_s=obj.latency_min_run_s * REFERENCE_SETTLE_FACTOR,
            )
            if share is not None:
                share.settle(host_key, ref.median_ms)
        if study.user_attrs.get(attr) != ref.median_ms:
            self._retry_db(
                lambda: study.set_user_attr(attr, ref.median_ms), "store the reference latency"
            )
        self._references[key] = ref
        return ref

    def settled_reference(self, dev: torch.device, batch_size: int) -> Reference | None:
        """A reference this timer already settled for ``dev`` and ``batch_size`` (any thread
        count), or ``None``."""
        prefix = f"{socket.gethostname()}|{device_label(dev)}|b{batch_size}|"
        return next((r for k, r in self._references.items() if k.startswith(prefix)), None)

    def time(
        self,
        study: optuna.Study,
        model: Ensemble,
        model_input: ModelInput,
        dev: torch.device,
        x: torch.Tensor,
        min_run_s: float | None = None,
    ) -> tuple[LatencyRecord, Reference | None]:
        """``model``'s latency on ``dev`` for input ``x`` with the space's protocol: the host's
        measurement lock held, paired with the reference unless the space says otherwise."""
        obj = self.space.objectives
        with self.measuring(dev) as granted:
            threads = obj.latency_threads or granted
            reference = (
                self.reference(study, model_input, dev, x, threads) if obj.latency_paired else None
            )
            lat = measure(
                model,
                x,
                mode=obj.latency_mode,
                device=dev,
                threads=threads,
                warmup_s=obj.latency_warmup_s,
                min_run_s=obj.latency_min_run_s if min_run_s is None else min_run_s,
                reference=reference,
            )
        return lat, reference
