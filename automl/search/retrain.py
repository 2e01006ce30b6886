"""The final phase's retrain: the search's most accurate network trained again, longer.

With a time budget, ``[scheduler] final = "retrain"`` and ``final_share > 0``, the last share of
the budget does not resume paused trials (``final = "continue"``, ``automl.search.promotion``):
it trains the configuration of the most accurate completed trial again, from its first epoch,
with as many epochs as the time left holds. The point of the search's schedule is to rank
configurations cheaply; the model a user ships wants the longest schedule the budget allows, and
a schedule has to be planned for its length: a cosine that has reached its floor cannot be
stretched, so a retrain gets a full warm-up and cosine of its own length.

``final = "restart"`` is the same ticket, trained from the weights the source ended with instead
of from a new initialisation (a warm restart: the source's finished cosine is not stretched, a new
warm-up and cosine of the retrain's length begins from where the source ended). On the demo's
network, 100 epochs after the search's 27, it was ahead of the retrain in 3 of 4 seeds, median
+0.11 points, within the seed spread (``bench/final_phase_restart.py``, RESULTS.md section 6).
A restart whose source weights cannot be read trains from scratch and says so.

The retrain is a WAITING ticket with the source's parameters and two system attributes:
``final_epochs`` (its epoch count, which also enters its configuration id, so that the source's
outcome is never reused for it) and ``retrains`` (the source's number). It trains one seed
(``[search] repeats`` is for ranking, not for the shipped model), no rung stops it, and its
``final_phase`` attribute says what it started from. The most accurate trial is always on the
front, so the retrain's point replaces the source's there: same network, same latency.
"""

from __future__ import annotations

import statistics

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.store.attrs import TrialAttr

__all__ = [
    "FINAL_EPOCHS",
    "FROM_WEIGHTS",
    "RETRAINS",
    "RETRAIN_FILL",
    "enqueue_retrain",
    "retrain_epochs",
    "retrain_source",
]

FINAL_EPOCHS = "final_epochs"
RETRAINS = "retrains"
# On a restart ticket: the source trial whose weights the run starts from.
FROM_WEIGHTS = "from_weights_of"

# The share of the time left that the retrain's epochs are sized to fill: the rest covers the
# epochs' spread on a shared machine and the end of the trial (test accuracy, member subsets,
# weights). A retrain that overran the budget would be stopped before its last epoch, leaving the
# front without it, so the estimate errs short.
RETRAIN_FILL = 0.8


def _epoch_s(t: FrozenTrial) -> float | None:
    """Seconds per epoch of ``t``: the median of its epochs, or its wall time per epoch where
    that is longer (the checkpoint and the storage writes between epochs are not in the
    epochs' own times)."""
    seconds = t.user_attrs.get(TrialAttr.EPOCH_SECONDS)
    if not isinstance(seconds, list):
        return None
    values = [float(s) for s in seconds if isinstance(s, int | float) and s > 0]
    if not values:
        return None
    per_epoch = statistics.median(values)
    if t.datetime_start is not None and t.datetime_complete is not None:
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        per_epoch = max(per_epoch, wall / len(values))
    return per_epoch


def retrain_source(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial with the best validation accuracy (the faster among equals) that
    trained itself (not a reuse of another's outcome) and records its epoch times."""
    done = [
        t
        for t in trials
        if t.state is TrialState.COMPLETE
        and t.values
        and TrialAttr.REUSED_FROM not in t.user_attrs
        and _epoch_s(t) is not None
    ]
    if not done:
        return None
    return max(done, key=lambda t: (t.values[0], -t.values[1], -t.number))


def retrain_epochs(source: FrozenTrial, seconds: float) -> int:
    """How many of ``source``'s epochs fit in ``RETRAIN_FILL`` of ``seconds``."""
    per_epoch = _epoch_s(source)
    if per_epoch is None:
        return 0
    return int(RETRAIN_FILL * seconds / per_epoch)


def enqueue_retrain(
    study: optuna.Study, source: FrozenTrial, epochs: int, *, from_weights: bool = False
) -> int | None:
    """The WAITING ticket that retrains ``source``'s configuration for ``epochs`` (with
    ``from_weights``, starting from the weights ``source`` ended with), and its number;
    ``None`` when a worker beside this one has already enqueued a retrain of it (each worker of a
    budgeted run reaches its own final phase: one retrain of a configuration is enough)."""

    def ours() -> list[FrozenTrial]:
        return [
            t
            for t in study.get_trials(deepcopy=False)
            if t.system_attrs.get(RETRAINS) == source.number and t.state is not TrialState.FAIL
        ]

    if ours():
        return None
    curve = source.user_attrs.get(TrialAttr.CURVE)
    before = len(curve) if isinstance(curve, list) else None
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=source.params,
            distributions=source.distributions,
            user_attrs={
                TrialAttr.FINAL_PHASE: {
                    "retrains": source.number,
                    "epochs_before": before,
                    "accuracy_before": source.values[0],
                    "epochs_planned": epochs,
                    "from_weights": from_weights,
                }
            },
            system_attrs={FINAL_EPOCHS: epochs, RETRAINS: source.number}
            | ({FROM_WEIGHTS: source.number} if from_weights else {}),
        )
    )
    # Two workers that enqueued at once both find the lower-numbered ticket, and claim one run.
    return min(t.number for t in ours())
