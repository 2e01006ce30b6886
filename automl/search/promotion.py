"""Pause and promote: asynchronous successive halving that keeps what it learned.

With ``[scheduler] kind = "asha"`` and ``mode = "promote"``, a trial that does not earn the next
rung is *paused*, not stopped: it ends PRUNED with ``TrialAttr.PAUSED`` set and its checkpoint
kept, and a WAITING *continuation* ticket is enqueued with its parameters and attributes and two
system attributes, ``continues`` (the original trial's number, which keys the checkpoint and the
seed: ``automl.search.retries.trial_key``) and ``resumed_epochs`` (the rung it paused at).

A continuation is claimed only once it is promotable: when enough trials at its rung rank below it
that it is among the best 1/eta there (the rule that paused it, asked again with what the storage
holds now), so any worker on the database promotes it, and the storage's atomic claim lets exactly
one resume it. The resumed trial continues from the checkpoint: the same weights, optimiser,
learning-rate schedule and curve. A continuation whose checkpoint is gone trains from epoch 0 and
says so in its note.

Paused checkpoints count against ``[scheduler] max_paused_checkpoints``: past it, the paused trial
whose point is dominated by the most others at its rung (the oldest among equals) is discarded, its
ticket failed with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from automl.search.scheduler import RungScheduler, nondominated_fronts, rank_at_rung
from automl.store.attrs import TrialAttr
from automl.store.claim import Tier

__all__ = [
    "CLAIM_TIERS",
    "CONTINUATIONS",
    "CONTINUES",
    "FRESH",
    "RESUMED_EPOCHS",
    "RETRIES",
    "PauseTrial",
    "enqueue_continuation",
    "evict_paused",
    "final_order",
    "is_continuation",
    "paused_point",
    "promotable",
]

log = logging.getLogger(__name__)

CONTINUES = "continues"
RESUMED_EPOCHS = "resumed_epochs"

# The claim order, as the three tiers of WAITING trials taken in turn, each in trial order:
# retries (Optuna's retry callback marks them ``failed_trial``), then promoted continuations,
# then fresh tickets.
RETRIES = Tier(has="failed_trial")
CONTINUATIONS = Tier(has=CONTINUES, lacks=("failed_trial",))
FRESH = Tier(lacks=("failed_trial", CONTINUES))
CLAIM_TIERS = (RETRIES, CONTINUATIONS, FRESH)


class PauseTrial(Exception):
    """The trial did not earn the next rung in promote mode: paused, its checkpoint kept."""

    def __init__(self, reason: str, rung: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rung = rung


def is_continuation(t: FrozenTrial) -> bool:
    """A ticket that resumes a paused trial (a retry of one is a retry first)."""
    return CONTINUES in t.system_attrs and "failed_trial" not in t.system_attrs


def paused_point(t: FrozenTrial) -> tuple[int, tuple[float, float]] | None:
    """(rung, (accuracy at the rung, latency)) of a continuation ticket or a paused trial."""
    rung = t.system_attrs.get(RESUMED_EPOCHS) if is_continuation(t) else None
    curve = t.user_attrs.get(TrialAttr.CURVE)
    lat = t.user_attrs.get(TrialAttr.LATENCY_MS)
    if not isinstance(curve, list) or lat is None:
        return None
    rung = int(rung) if rung is not None else len(curve)
    if not 0 < rung <= len(curve) or curve[rung - 1] is None:
        return None
    return rung, (float(curve[rung - 1]), float(lat))


def enqueue_continuation(study: optuna.Study, paused: FrozenTrial, key: int, rung: int) -> None:
    """The WAITING ticket that resumes ``paused`` (original trial ``key``) once promoted."""
    system_attrs = {
        k: v for k, v in paused.system_attrs.items() if k not in ("failed_trial", "retry_history")
    }
    system_attrs |= {CONTINUES: key, RESUMED_EPOCHS: rung}
    user_attrs = {
        k: v
        for k, v in paused.user_attrs.items()
        # Whether it resumed is the continuation's own to say (``EpochReporter``).
        if k
        not in (
            TrialAttr.FAIL_REASON,
            TrialAttr.PRUNED_REASON,
            TrialAttr.PAUSED,
            TrialAttr.RESUMED_FROM_EPOCH,
        )
    }
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=paused.params,
            distributions=paused.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )


def promotable(study: optuna.Study, ticket: FrozenTrial, scheduler: RungScheduler) -> bool:
    """Whether the paused trial behind ``ticket`` now ranks among the best 1/eta at its rung."""
    found = paused_point(ticket)
    if found is None:
        return False
    rung, point = found
    original = ticket.system_attrs.get(CONTINUES)
    others = [
        p
        for n, p in scheduler.at_rung(study, rung, ticket.number)
        if n != original and not _same_run(study, n, original)
    ]
    points = [*others, point]
    keep = max(1, len(points) // scheduler.eta)
    position, _ = rank_at_rung(points, len(points) - 1)
    return position < keep


def _same_run(study: optuna.Study, number: int, original: object) -> bool:
    """Whether trial ``number`` is an attempt of the run ``original`` (its own earlier pause)."""
    t = study.get_trials(deepcopy=False)[number]
    return t.system_attrs.get(CONTINUES) == original


def evict_paused(
    study: optuna.Study,
    storage: BaseStorage,
    limit: int,
    discard: Callable[[FrozenTrial], None],
) -> list[int]:
    """Past ``limit`` waiting continuations, fail the most dominated (oldest first among equals)
    and discard their checkpoints; returns the ticket numbers evicted."""
    tickets = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if is_continuation(t)
    ]
    excess = len(tickets) - limit
    if excess <= 0:
        return []
    pts = [paused_point(t) for t in tickets]
    points = [p[1] if p is not None else (0.0, float("inf")) for p in pts]
    fronts = nondominated_fronts(points)
    order = sorted(range(len(tickets)), key=lambda i: (-fronts[i], tickets[i].number))
    evicted = []
    for i in order[:excess]:
        t = tickets[i]
        reason = (
            f"paused checkpoint discarded: more than {limit} paused trials "
            "([scheduler] max_paused_checkpoints), and this one was among the most dominated"
        )
        try:
            storage.set_trial_user_attr(t._trial_id, TrialAttr.FAIL_REASON, reason)
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker claimed or evicted it first
        discard(t)
        evicted.append(t.number)
        log.info("trial %d: %s", t.number, reason)
    return evicted


def final_order(tickets: list[FrozenTrial]) -> list[int]:
    """The final phase's order over paused trials' tickets: the highest rung first, then the
    non-dominated ones at it (the front so far), then the more accurate."""
    scored = [(t.number, p) for t in tickets if (p := paused_point(t)) is not None]
    by_rung: dict[int, list[tuple[int, tuple[float, float]]]] = {}
    for number, (rung, point) in scored:
        by_rung.setdefault(rung, []).append((number, point))
    order: list[int] = []
    for rung in sorted(by_rung, reverse=True):
        group = by_rung[rung]
        fronts = nondominated_fronts([p for _, p in group])
        ranked = sorted(range(len(group)), key=lambda i: (fronts[i], -group[i][1][0]))
        order += [group[i][0] for i in ranked]
    return order
