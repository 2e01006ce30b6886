"""The front over configurations, not trials: repeats merged, noise unable to write a trade-off.

A *configuration* is one network (family, K, the members' real channel widths) trained with one
set of training settings. Trials that share a configuration are repeats of one experiment and make
one point: their mean accuracy, with the spread of every accuracy seen (seeds of one trial
included), and the median latency with the widest inter-quartile range measured. A trial that
reused a stored outcome instead of training adds no evidence: it is listed with the configuration
it reused, never counted twice.

The denoise rule, applied to the non-dominated configurations fastest first: two neighbours are
separate trade-offs only when the slower one is slower by more than the larger of their two
latency IQRs *and* more accurate by more than the larger of their two accuracy spreads. When the
latency difference is inside the spread, the faster point's speed is noise and the more accurate
one stands for both; when only the accuracy difference is inside the spread, the extra accuracy is
noise and the faster one stands for both. A configuration trained once has no accuracy spread:
every accuracy difference counts for it.

A latency whose IQR is over ``NOISY_SPREAD_RATIO`` of its median was measured on a machine too busy
to rank on: such a point stays on the front, marked, and ``pick`` never returns it without saying
so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from optuna.trial import FrozenTrial, TrialState

from automl.search.hypervolume import non_dominated
from automl.search.records import ParetoRecord
from automl.store.attrs import TrialAttr

__all__ = [
    "NOISY_SPREAD_RATIO",
    "ConfigPoint",
    "Pick",
    "configuration_key",
    "configurations",
    "denoise",
    "front_of",
    "is_noisy",
    "knee",
    "network_front",
    "pick",
]

# A latency IQR over a quarter of the median cannot rank networks that differ by less than that.
NOISY_SPREAD_RATIO = 0.25

# Parameters resolved into the network id (K and the widths); the rest are training settings.
_ARCHITECTURE_PARAMS = ("split_factor", "width_mult")


def configuration_key(t: FrozenTrial) -> str:
    """The configuration a trial belongs to: the stored ``config`` id; else the ``network`` id
    with the parameters that are not architecture; else the trial alone (studies made before
    networks had ids)."""
    u = t.user_attrs
    if u.get(TrialAttr.CONFIG):
        return f"config:{u[TrialAttr.CONFIG]}"
    if u.get(TrialAttr.NETWORK):
        settings = sorted(
            (k, repr(v))
            for k, v in t.params.items()
            if k not in _ARCHITECTURE_PARAMS and not k.startswith("width")
        )
        return f"network:{u[TrialAttr.NETWORK]}|" + ",".join(f"{k}={v}" for k, v in settings)
    return f"trial:{t.number}"


def is_noisy(latency_ms: float | None, iqr_ms: float | None) -> bool:
    """Whether a latency's IQR is over ``NOISY_SPREAD_RATIO`` of its median."""
    if latency_ms is None or iqr_ms is None or not latency_ms > 0:
        return False
    return iqr_ms / latency_ms > NOISY_SPREAD_RATIO


@dataclass(frozen=True)
class ConfigPoint:
    """One configuration of completed trials: what the front, the report and the pick rank."""

    key: str
    # The first trial that trained it, its accuracy the mean and its latency the median of all
    # its trials: what tables print and ``automl export`` ships.
    record: ParetoRecord
    trials: tuple[int, ...]  # every trial that trained it, first first
    reused: tuple[int, ...]  # trials that reused its stored outcome instead of training
    accuracies: tuple[float, ...]  # every accuracy measured (each seed of each trial)
    # The trials of the front points this one stands for under the denoise rule (``denoise``).
    absorbed: tuple[int, ...] = field(default=())

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def accuracy(self) -> float:
        return self.record.accuracy

    @property
    def latency_ms(self) -> float:
        return self.record.latency_ms

    @property
    def latency_iqr_ms(self) -> float:
        return self.record.latency_iqr_ms or 0.0

    @property
    def split_factor(self) -> int:
        return self.record.split_factor

    @property
    def accuracy_spread(self) -> float:
        """Max minus min of the accuracies measured; 0 when measured once."""
        return max(self.accuracies) - min(self.accuracies) if len(self.accuracies) > 1 else 0.0

    @property
    def noisy(self) -> bool:
        return is_noisy(self.latency_ms, self.record.latency_iqr_ms)

    @property
    def spread_ratio(self) -> float | None:
        iqr = self.record.latency_iqr_ms
        return None if iqr is None or not self.latency_ms > 0 else iqr / self.latency_ms


def _feasible(t: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in t.constraints.values())


def _accuracies(t: FrozenTrial, value: float) -> list[float]:
    raw = t.user_attrs.get(TrialAttr.REPEAT_ACCURACIES)
    if isinstance(raw, list) and raw and all(isinstance(a, int | float) for a in raw):
        return [float(a) for a in raw]
    return [value]


def configurations(
    trials: Sequence[FrozenTrial], records: Iterable[ParetoRecord] | None = None
) -> list[ConfigPoint]:
    """The completed, feasible trials grouped into configurations, in order of first trial.

    ``records`` (default: each trial's own ``ParetoRecord``) gives the latency to rank on, e.g.
    the one measured on another target; a trial without a record is left out."""
    by_number = {t.number: t for t in trials}
    done = [
        t
        for t in trials
        if t.state is TrialState.COMPLETE and t.values is not None and _feasible(t)
    ]
    if records is None:
        recs = {t.number: ParetoRecord.from_trial(t) for t in done}
    else:
        wanted = {t.number for t in done}
        recs = {r.number: r for r in records if r.number in wanted and r.subset_members is None}
    groups: dict[str, list[FrozenTrial]] = {}
    reused: dict[str, list[int]] = {}
    for t in done:
        if t.number not in recs:
            continue
        src = t.user_attrs.get(TrialAttr.REUSED_FROM)
        if isinstance(src, int) and src in by_number:
            # Same configuration as the trial it reused: listed there, not counted again.
            reused.setdefault(configuration_key(by_number[src]), []).append(t.number)
            continue
        groups.setdefault(configuration_key(t), []).append(t)
    points = []
    for key, members in groups.items():
        first = recs[members[0].number]
        accs = [a for t in members for a in _accuracies(t, recs[t.number].accuracy)]
        values = [recs[t.number].accuracy for t in members]
        lats = [recs[t.number].latency_ms for t in members]
        iqrs = [
            float(r.latency_iqr_ms)
            for t in members
            if (r := recs[t.number]).latency_iqr_ms is not None
        ]
        record = replace(
            first,
            accuracy=statistics.fmean(values),
            latency_ms=statistics.median(lats),
            # The widest spread seen: a repeat measured on a busy machine is not hidden.
            latency_iqr_ms=max(iqrs) if iqrs else None,
        )
        points.append(
            ConfigPoint(
                key=key,
                record=record,
                trials=tuple(t.number for t in members),
                reused=tuple(reused.get(key, ())),
                accuracies=tuple(accs),
            )
        )
    # A reused trial whose source is not complete (or feasible) stands for itself.
    known = {p.key for p in points}
    for key, numbers in reused.items():
        if key not in known:
            for n in numbers:
                t = by_number[n]
                points.append(
                    ConfigPoint(
                        f"trial:{n}",
                        recs[n],
                        (n,),
                        (),
                        tuple(_accuracies(t, recs[n].accuracy)),
                    )
                )
    points.sort(key=lambda p: p.trials[0])
    return points


def denoise(front: Sequence[ConfigPoint]) -> list[ConfigPoint]:
    """The non-dominated ``front`` (fastest first) with neighbours inside each other's spread
    merged (the rule in the module text); each kept point lists those it stands for."""
    kept: list[ConfigPoint] = []
    for p in front:
        if not kept:
            kept.append(p)
            continue
        a = kept[-1]
        lat_noise = max(a.latency_iqr_ms, p.latency_iqr_ms)
        acc_noise = max(a.accuracy_spread, p.accuracy_spread)
        if p.latency_ms - a.latency_ms <= lat_noise:
            # a's speed advantage is inside the latency spread: p, more accurate, stands for both.
            kept[-1] = replace(p, absorbed=(*p.absorbed, *a.trials, *a.absorbed))
        elif p.accuracy - a.accuracy <= acc_noise:
            # p's extra accuracy is inside the accuracy spread: a, faster, stands for both.
            kept[-1] = replace(a, absorbed=(*a.absorbed, *p.trials, *p.absorbed))
        else:
            kept.append(p)
    return kept


def network_front(
    trials: Sequence[FrozenTrial], records: Iterable[ParetoRecord] | None = None
) -> list[ConfigPoint]:
    """The denoised front of the configurations of ``trials``, fastest first."""
    return front_of(configurations(trials, records))


@dataclass(frozen=True)
class Pick:
    """What ``pick`` chose, and the warnings a user must read with it."""

    point: ConfigPoint | None
    budget_ms: float | None  # the budget it fits; None: the knee of the front
    skipped_noisy: tuple[ConfigPoint, ...]  # better fits left out for their noisy latency
    warnings: tuple[str, ...]
    reason: str  # why nothing was picked, when nothing was


def knee(front: Sequence[ConfigPoint]) -> ConfigPoint | None:
    """The front's knee: the point farthest from the line joining its two ends, both axes scaled
    to their range (of two points, the more accurate)."""
    if not front:
        return None
    pts = sorted(front, key=lambda p: p.latency_ms)
    if len(pts) <= 2:
        return pts[0] if len(pts) == 1 else max(pts, key=lambda p: p.accuracy)
    lo, hi = pts[0], pts[-1]
    lat_range = (hi.latency_ms - lo.latency_ms) or 1.0
    acc_range = (hi.accuracy - lo.accuracy) or 1.0

    def distance(p: ConfigPoint) -> float:
        x = (p.latency_ms - lo.latency_ms) / lat_range
        y = (p.accuracy - lo.accuracy) / acc_range
        # The chord runs from (0, 0) to (1, 1); a point above it gives more accuracy per ms.
        return (y - x) / math.sqrt(2)

    return max(pts, key=distance)


def front_of(points: Iterable[ConfigPoint]) -> list[ConfigPoint]:
    """The denoised front of ``points``, fastest first."""
    return denoise(non_dominated(points, key=lambda p: (p.accuracy, p.latency_ms)))


def pick(
    points: Sequence[ConfigPoint],
    max_latency_ms: float | None,
    *,
    allow_noisy: bool = False,
    at_knee: bool = True,
) -> Pick:
    """The model to ship among the configurations ``points``: the most accurate point of the
    front within ``max_latency_ms`` (ties: the faster), or the knee of the front without a
    budget (with ``at_knee=False``: the most accurate). Unless ``allow_noisy``, the front is
    drawn without the points whose latency is noisy (one of them would hide the quiet points it
    seems to dominate); the warnings say what was left out, or that the pick's own latency is
    noisy."""
    fits = [p for p in points if max_latency_ms is None or p.latency_ms <= max_latency_ms]
    if not fits:
        fastest = min((p.latency_ms for p in points), default=None)
        reason = (
            "the study has no completed trial yet"
            if fastest is None
            else f"nothing fits {max_latency_ms:g} ms; the fastest takes {fastest:.3g} ms"
        )
        return Pick(None, max_latency_ms, (), (), reason)

    def best(front: Sequence[ConfigPoint]) -> ConfigPoint | None:
        if not front:
            return None
        if max_latency_ms is None and at_knee:
            return knee(front)
        return max(front, key=lambda p: (p.accuracy, -p.latency_ms))

    everything = front_of(fits)
    chosen = best(everything if allow_noisy else front_of(p for p in fits if not p.noisy))
    warnings = []
    skipped: tuple[ConfigPoint, ...] = ()
    unfiltered = best(everything)
    if not allow_noisy and unfiltered is not None and unfiltered.noisy:
        # The noisy points that would have been picked or beat the pick's accuracy.
        skipped = tuple(
            p
            for p in everything
            if p.noisy and (p is unfiltered or chosen is None or p.accuracy > chosen.accuracy)
        )
    if skipped:
        listed = ", ".join(f"#{p.number} (IQR {100 * (p.spread_ratio or 0):.0f}%)" for p in skipped)
        warnings.append(
            f"left out for a latency spread over {NOISY_SPREAD_RATIO:.0%} of the median: {listed}; "
            "re-measure on a quiet machine (automl remeasure) or pass --allow-noisy"
        )
    if chosen is not None and chosen.noisy:
        warnings.append(
            f"trial #{chosen.number}'s latency spread is {100 * (chosen.spread_ratio or 0):.0f}% "
            f"of its median (over {NOISY_SPREAD_RATIO:.0%}): its latency cannot be trusted"
        )
    if chosen is None:
        reason = "every configuration that fits has a noisy latency"
        return Pick(None, max_latency_ms, skipped, tuple(warnings), reason)
    return Pick(chosen, max_latency_ms, skipped, tuple(warnings), "")
