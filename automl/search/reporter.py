"""What happens after every epoch of a trial: its curve stored, the early stopper asked, a stop
obeyed.

The curve and epoch times are user attributes written after every epoch (what ``automl status``,
the schedulers of other workers and the dashboard read while the trial runs). The early stopper is
the space's (``automl.search.scheduler.early_stopper``); a trial it stops raises
``optuna.TrialPruned`` with its reason, rung and epoch recorded. A worker asked to stop ends the
trial at the epoch boundary with ``StopRequested``: its checkpoint is already written.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import optuna

from automl.search.promotion import PauseTrial
from automl.search.scheduler import RungScheduler
from automl.search.stop import EarlyStopper
from automl.store.attrs import TrialAttr
from automl.store.retry import DEFAULT_TIMEOUT_S, db_retry
from automl.training import EpochRecord

__all__ = ["EpochReporter", "StopRequested", "record_intermediate_values"]


class StopRequested(Exception):
    """The worker was asked to stop; the trial is left to be retried from its checkpoint."""


class EpochReporter:
    """What happens after every epoch of a trial: store the curve, ask the early stopper (the
    space's scheduler), obey a stop.

    A retry inherits the interrupted run's attributes: its curve fills the epochs that the resumed
    run skips, so that index e is always epoch e (``None`` where neither run recorded it).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        *,
        latency_ms: float,
        stopper: EarlyStopper | None,
        epochs: int,
        stop_event: threading.Event,
        db_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.trial = trial
        self.latency_ms = latency_ms
        self.stopper = stopper
        self.epochs = epochs
        self.stop_event = stop_event
        self.db_timeout_s = db_timeout_s
        self.rungs: list[int] = stopper.rungs if isinstance(stopper, RungScheduler) else []
        self.prior_curve: list[float | None] = list(trial.user_attrs.get(TrialAttr.CURVE, []))
        self.prior_seconds: list[float | None] = list(
            trial.user_attrs.get(TrialAttr.EPOCH_SECONDS, [])
        )
        self.curve: list[float | None] = []
        self.seconds: list[float | None] = []
        self.first_epoch: int | None = None

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        return db_retry(fn, what=what, timeout_s=self.db_timeout_s, stop_event=self.stop_event)

    def _record(self, rec: EpochRecord) -> None:
        for values, prior in ((self.curve, self.prior_curve), (self.seconds, self.prior_seconds)):
            del values[rec.epoch :]
            while len(values) < rec.epoch:
                values.append(prior[len(values)] if len(values) < len(prior) else None)
        self.curve.append(rec.val_accuracy)
        self.seconds.append(rec.seconds)

    def __call__(self, rec: EpochRecord) -> None:
        trial = self.trial
        if self.first_epoch is None:
            self.first_epoch = rec.epoch
            if rec.epoch > 0:
                # Resumed from a checkpoint: said now, not only when the trial completes, so that
                # a resumed run that is then stopped at a rung or paused says so too.
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.RESUMED_FROM_EPOCH, rec.epoch),
                    "record the resume",
                )
        self._record(rec)
        curve = list(self.curve)
        seconds = [None if s is None else round(s, 3) for s in self.seconds]
        self._retry(lambda: trial.set_user_attr(TrialAttr.CURVE, curve), "store the curve")
        self._retry(
            lambda: trial.set_user_attr(TrialAttr.EPOCH_SECONDS, seconds), "store epoch times"
        )
        last_epoch = rec.epoch + 1 >= self.epochs
        stopper = self.stopper
        if stopper is not None and not last_epoch:
            stop = self._retry(
                lambda: stopper.decide(
                    trial.study, trial.number, rec.epoch, rec.val_accuracy, self.latency_ms
                ),
                "read other trials' curves",
            )
            if stop is not None and stop.pause and stop.rung is not None:
                raise PauseTrial(stop.reason, stop.rung)
            if stop is not None:
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.PRUNED_REASON, stop.reason),
                    "record why the trial stopped",
                )
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.STOPPED_EPOCH, rec.epoch + 1),
                    "record why the trial stopped",
                )
                if stop.rung is not None:
                    rung = stop.rung
                    self._retry(
                        lambda: trial.set_user_attr(TrialAttr.RUNG, rung), "record the rung"
                    )
                raise optuna.TrialPruned(stop.reason)
            if self.rungs and rec.epoch + 1 in self.rungs:
                # The highest rung passed: what `automl status` and the report show.
                self._retry(
                    lambda: trial.set_user_attr(TrialAttr.RUNG, rec.epoch + 1), "record the rung"
                )
        if self.stop_event.is_set() and not last_epoch:
            raise StopRequested(f"stopped after epoch {rec.epoch + 1}")


def record_intermediate_values(
    trial: optuna.Trial, history: list[EpochRecord], db_timeout_s: float = DEFAULT_TIMEOUT_S
) -> None:
    """Store the validation accuracy per epoch as the trial's intermediate values (step = epoch),
    what optuna-dashboard lists on the trial's page, once the trial has trained every epoch.

    Not per epoch through ``trial.report``: it refuses two-objective studies. Not for a trial that
    stops early either: Optuna's TPE sampler ranks PRUNED trials by their last intermediate value
    through ``study.direction``, which raises in a two-objective study, so one pruned trial with
    intermediate values would stop every later trial from sampling. A trial that trained to the
    end completes (or fails), and TPE does not read those values.
    """
    storage, trial_id = trial.storage, trial._trial_id
    for rec in history:
        db_retry(
            functools.partial(
                storage.set_trial_intermediate_value, trial_id, rec.epoch, rec.val_accuracy
            ),
            what="store the learning curve",
            timeout_s=db_timeout_s,
        )
