"""A start spread over latency: the first trials cover the whole latency axis of the front.

A search's first trials are drawn at random (``[sampler] n_startup_trials``) because the sampler
knows nothing yet. One of the two objectives needs no training, though: latency is a property of
the network alone, timed in seconds where a trial trains for minutes. With ``[sampler] startup =
"latency"`` the worker that runs the study's baseline trial (trial 0, the undivided network at the
default width) first times every distinct network of the space (``automl.space.networks``) with
the trials' own protocol, lock and reference (``automl.search.timing``), keeps the survey in the
study, and fixes the network of the next ``n_startup_trials - 1`` trials: the networks at evenly
spaced ranks of the latency order, the baseline taking the place of the inner rank nearest to
its own (the fastest and the slowest network always stay), fastest first (a fast network is also
the cheapest to train, so the front fills in early). A pick fixes K and the width; the
co-training settings of a K > 1 pick stay the sampler's (random in its start). A trial of a
surveyed network later reads its latency from the survey instead of timing it again.

Why ranks and not evenly spaced latency values: one network's repeated measurements on a shared
machine spread by up to a few tenths of a millisecond, which moves the network nearest to a value
between networks close in latency; a rank moves by one at most (BENCHMARKS.md (f6) says what a
first prototype measured for each).

Where the picks go: onto the fresh empty tickets already waiting (``--n-trials``: the trials asked
for are not exceeded), and the rest are enqueued as tickets of their own only by a search without
a trial count (``--time-budget``/``--timeout``: ``next_startup_ticket``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from automl.errors import first_line
from automl.search.promotion import FRESH
from automl.space.widths import NetworkCount
from automl.store.attrs import StudyAttr, TrialAttr

__all__ = [
    "MAX_SURVEYED",
    "SurveyPoint",
    "assign_picks",
    "latency_spread",
    "next_startup_ticket",
    "run_survey",
    "stored_survey",
    "survey_widths",
    "surveyed_latency",
]

log = logging.getLogger(__name__)

# The most networks a survey times (a few seconds each); a space holding more is surveyed at
# evenly spaced widths of each K.
MAX_SURVEYED = 48
# Optuna keeps an enqueued trial's parameters in this system attribute.
_FIXED = "fixed_params"


@dataclass(frozen=True)
class SurveyPoint:
    """One network of the space, timed before any training."""

    split_factor: int
    width_mult: float  # the smallest width that builds it
    network: str
    latency_ms: float

    def params(self) -> dict[str, Any]:
        return {"split_factor": self.split_factor, "width_mult": self.width_mult}


def survey_widths(
    counts: Sequence[NetworkCount], limit: int = MAX_SURVEYED
) -> list[tuple[int, float]]:
    """(K, width) of every distinct network (``NetworkCount`` s), or of ``limit`` of them spread
    evenly over each K's widths in proportion to how many it holds."""
    every = [(c.split_factor, float(w)) for c in counts for w in c.widths]
    if len(every) <= limit:
        return every
    out: list[tuple[int, float]] = []
    for c in counts:
        share = max(1, round(limit * len(c.widths) / len(every)))
        n = len(c.widths)
        idx = sorted({round(i * (n - 1) / max(1, share - 1)) for i in range(share)})
        out += [(c.split_factor, float(c.widths[i])) for i in idx]
    return out


def latency_spread(points: Sequence[SurveyPoint], n: int, baseline: str) -> list[SurveyPoint]:
    """The ``n`` - 1 networks that join the baseline network (id ``baseline``) in the start: of
    ``n`` evenly spaced ranks of the latency order, the inner one nearest the baseline's rank is
    the baseline's (the fastest and the slowest network stay); fastest first. All other networks
    when the space holds no more than ``n``."""
    order = sorted(points, key=lambda p: (p.latency_ms, p.split_factor, p.width_mult))
    ids = [p.network for p in order]
    if n <= 1 or not order:
        return []
    if len(order) <= n:
        return [p for p in order if p.network != baseline]
    ranks = sorted({round(i * (len(order) - 1) / (n - 1)) for i in range(n)})
    if baseline in ids:
        at = ids.index(baseline)
        # The fastest and the slowest network bound the front's latency axis: the baseline
        # takes an inner rank's place where there is one.
        inner = [r for r in ranks if 0 < r < len(order) - 1] or ranks
        if at not in ranks:
            nearest = min(inner, key=lambda r: (abs(r - at), r))
            ranks[ranks.index(nearest)] = at
    return [order[r] for r in sorted(ranks) if order[r].network != baseline]


def _is_empty_fresh_ticket(t: optuna.trial.FrozenTrial) -> bool:
    # A ticket for the sampler: of the claim's fresh tier (not a retry nor a continuation), no
    # parameters given (a retrain's, the start's).
    return (
        t.state is TrialState.WAITING
        and FRESH.holds(t.system_attrs)
        and not t.system_attrs.get(_FIXED)
        and TrialAttr.STARTUP not in t.user_attrs
    )


def _label(i: int, picks: Sequence[SurveyPoint]) -> dict[str, Any]:
    # The baseline is the start's first trial; the picks follow it.
    p = picks[i]
    return {"pick": i + 2, "of": len(picks) + 1, "surveyed_ms": p.latency_ms}


def assign_picks(
    study: optuna.Study, storage: BaseStorage, picks: Sequence[SurveyPoint]
) -> list[dict[str, Any]]:
    """Fix the network of the first fresh empty tickets waiting, one pick each, in trial order;
    the picks left over are kept in the study for ``next_startup_ticket``. Returns them."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    tickets = [t for t in sorted(waiting, key=lambda t: t.number) if _is_empty_fresh_ticket(t)]
    for i, (ticket, pick) in enumerate(zip(tickets, picks, strict=False)):
        # A ticket claimed meanwhile by another worker samples its own point (its trial object
        # read the ticket already); the pick is then simply not used.
        storage.set_trial_system_attr(ticket._trial_id, _FIXED, pick.params())
        storage.set_trial_user_attr(ticket._trial_id, TrialAttr.STARTUP, _label(i, picks))
    left = [
        {"params": p.params(), "label": _label(i, picks)}
        for i, p in enumerate(picks)
        if i >= len(tickets)
    ]
    study.set_user_attr(StudyAttr.STARTUP_PENDING, left)
    return left


def next_startup_ticket(study: optuna.Study) -> bool:
    """Enqueue the next pick the start has not placed yet (a search without a trial count asks
    here before enqueueing an empty ticket); whether there was one. Two workers asking at one
    instant may both enqueue it: a K = 1 pick's second trial is then told apart by the workers'
    configuration check (``automl.search.dedup``), a K > 1 one samples other co-training
    settings."""
    pending = study.user_attrs.get(StudyAttr.STARTUP_PENDING)
    if not isinstance(pending, list) or not pending:
        return False
    placed = {
        (t.user_attrs.get(TrialAttr.STARTUP) or {}).get("pick")
        for t in study.get_trials(deepcopy=False)
        if isinstance(t.user_attrs.get(TrialAttr.STARTUP), dict)
    }
    for p in pending:
        if p["label"]["pick"] not in placed:
            study.enqueue_trial(p["params"], user_attrs={TrialAttr.STARTUP: p["label"]})
            return True
    study.set_user_attr(StudyAttr.STARTUP_PENDING, [])
    return False


def stored_survey(study: optuna.Study) -> dict[str, Any] | None:
    """The study's latency survey as stored (``run_survey``), or ``None``."""
    raw = study.user_attrs.get(StudyAttr.LATENCY_SURVEY)
    return raw if isinstance(raw, dict) and isinstance(raw.get("points"), list) else None


def surveyed_latency(
    study: optuna.Study, network: str, host: str, target: str
) -> dict[str, Any] | None:
    """The latency attributes the survey stored for ``network`` on ``host`` and ``target``."""
    survey = stored_survey(study)
    if survey is None or survey.get("host") != host or survey.get("target") != target:
        return None
    for p in survey["points"]:
        if isinstance(p, dict) and p.get("network") == network and isinstance(p.get("attrs"), dict):
            return dict(p["attrs"], **{TrialAttr.LATENCY_FROM: "survey"})
    return None


def run_survey(
    study: optuna.Study,
    counts: Sequence[NetworkCount],
    identify: Callable[[int, float], tuple[str, Any]],
    time_model: Callable[[Any], dict[str, Any]],
    baseline: tuple[str, dict[str, Any]],
    where: tuple[str, str],
    on_progress: Callable[[str], None] | None = None,
) -> list[SurveyPoint]:
    """Time every network of ``counts`` (``identify(K, width)``: its id and model;
    ``time_model(model)``: its latency attributes) and store the survey with ``where`` = (host,
    latency target); the baseline network's measurement ``baseline`` (id, attributes) is not
    repeated. Returns the points."""
    began = time.monotonic()
    widths = survey_widths(counts)
    base_id, base_attrs = baseline
    points: list[SurveyPoint] = []
    stored: list[dict[str, Any]] = []
    for i, (k, w) in enumerate(widths):
        if on_progress is not None:
            on_progress(f"timing the space's networks for the start ({i + 1}/{len(widths)})")
        net, model = identify(k, w)
        try:
            attrs = base_attrs if net == base_id else time_model(model)
        except RuntimeError as e:
            # A network this device cannot run (out of memory, an unsupported layer) is left
            # out of the survey, so out of the start and of the survey sampler's choices; a
            # trial that samples it still fails on its own, with its own reason.
            log.warning("latency survey: K = %d width %.4g left out: %s", k, w, first_line(e))
            continue
        p = SurveyPoint(k, w, net, float(attrs[TrialAttr.LATENCY_MS]))
        points.append(p)
        stored.append(dict(asdict(p), attrs=attrs))
    host, target = where
    study.set_user_attr(
        StudyAttr.LATENCY_SURVEY,
        {
            "host": host,
            "target": target,
            "seconds": round(time.monotonic() - began, 2),
            "points": stored,
        },
    )
    return points
