"""Early stopping for accuracy-vs-latency studies: asynchronous successive halving, two objectives.

A trial's epochs are grouped into rungs (``min_epochs``, ``min_epochs * eta``, ... below the
recipe's epochs). When a trial reaches a rung it is ranked against every trial that reached the
same rung before it, by non-dominated sorting of (validation accuracy at the rung, latency) and,
inside a front, by crowding distance (the ends of a front first: they hold the fastest and the most
accurate models). It goes on only when it is among the best ``1/eta`` of them; otherwise it stops
for good (PRUNED, its rung and the reason as attributes). No worker waits for a cohort, and every
decision is read from the storage, so any number of workers on one database share the rungs.

Latency is measured before training and does not change with the weights, so it is exact at every
rung; only the accuracy is a partial-training estimate.

``[scheduler] kind`` picks the rule: ``"asha"`` (this module), ``"dominance"`` (the Pareto pruner
of ``automl.search.pruning``, configured by ``[pruner]``) or ``"none"``. Without a
``[scheduler]`` section the ``[pruner]`` section decides, as it did before the section existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from automl.search.pruning import ParetoPruner
from automl.search.stop import EarlyStopper, Stop
from automl.space import SchedulerKind, SearchSpace
from automl.store.attrs import TrialAttr

__all__ = [
    "EarlyStopper",
    "RungScheduler",
    "Stop",
    "crowding_distances",
    "early_stopper",
    "nondominated_fronts",
    "rank_at_rung",
    "rungs",
]


def rungs(min_epochs: int, eta: int, epochs: int) -> list[int]:
    """Epoch counts at which trials are ranked: ``min_epochs * eta**i`` below ``epochs``."""
    out: list[int] = []
    r = min_epochs
    while r < epochs:
        out.append(r)
        r *= eta
    return out


Point = tuple[float, float]  # (accuracy, higher is better; latency, lower is better)


def _dominates(a: Point, b: Point) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def nondominated_fronts(points: list[Point]) -> list[int]:
    """The front index of every point (0: non-dominated) by non-dominated sorting."""
    front = [0] * len(points)
    left = set(range(len(points)))
    level = 0
    while left:
        current = {i for i in left if not any(_dominates(points[j], points[i]) for j in left)}
        for i in current:
            front[i] = level
        left -= current
        level += 1
    return front


def crowding_distances(points: list[Point], members: list[int]) -> dict[int, float]:
    """Crowding distance of each of ``members`` (indices into ``points``, one front): the ends of
    the front are infinite, the others the normalised sides of the box their neighbours span."""
    dist = dict.fromkeys(members, 0.0)
    if len(members) <= 2:
        return dict.fromkeys(members, math.inf)
    for obj in (0, 1):
        order = sorted(members, key=lambda i: points[i][obj])
        lo, hi = points[order[0]][obj], points[order[-1]][obj]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for prev, cur, nxt in zip(order, order[1:], order[2:], strict=False):
            dist[cur] += (points[nxt][obj] - points[prev][obj]) / (hi - lo)
    return dist


def rank_at_rung(points: list[Point], me: int) -> tuple[int, int]:
    """(position, front) of point ``me``: how many points rank strictly before it (an earlier
    front, or its front with a larger crowding distance), and its front index."""
    fronts = nondominated_fronts(points)
    mine = fronts[me]
    same = [i for i, f in enumerate(fronts) if f == mine]
    crowd = crowding_distances(points, same)
    before = sum(1 for f in fronts if f < mine)
    before += sum(1 for i in same if i != me and crowd[i] > crowd[me])
    return before, mine


# Attempts whose retry carries their curve (a stopped or crashed run) are not counted twice.
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


@dataclass(frozen=True)
class RungScheduler:
    """Asynchronous successive halving on (accuracy, latency) over the rungs of ``epochs``."""

    eta: int
    min_epochs: int
    epochs: int
    promote: bool = False

    @property
    def rungs(self) -> list[int]:
        return rungs(self.min_epochs, self.eta, self.epochs)

    def at_rung(self, study: optuna.Study, rung: int, exclude: int) -> list[tuple[int, Point]]:
        """(trial number, point) of every counted trial that reached ``rung`` epochs."""
        out = []
        for t in study.get_trials(deepcopy=False, states=_COUNTED):
            if t.number == exclude or t.user_attrs.get(TrialAttr.REUSED_FROM) is not None:
                # A reused outcome is its source's point: counted once.
                continue
            if int(t.system_attrs.get("resumed_epochs", 0)) >= rung:
                # A resumed run carries the curve of the run it continues: counted there.
                continue
            curve = t.user_attrs.get(TrialAttr.CURVE)
            lat = t.user_attrs.get(TrialAttr.LATENCY_MS)
            if not isinstance(curve, list) or len(curve) < rung or lat is None:
                continue
            if curve[rung - 1] is None:  # an epoch a resumed trial did not record itself
                continue
            out.append((t.number, (float(curve[rung - 1]), float(lat))))
        return out

    def decide(
        self, study: optuna.Study, trial_number: int, epoch: int, accuracy: float, latency_ms: float
    ) -> Stop | None:
        done = epoch + 1
        if done not in self.rungs:
            return None
        level = self.rungs.index(done) + 1
        others = self.at_rung(study, done, trial_number)
        points = [p for _, p in others] + [(accuracy, latency_ms)]
        keep = max(1, len(points) // self.eta)
        position, front = rank_at_rung(points, len(points) - 1)
        if position < keep:
            return None
        return Stop(
            reason=(
                f"{'paused' if self.promote else 'stopped'} at rung {level} of "
                f"{len(self.rungs)} (epoch {done}): ranked "
                f"{position + 1} of "
                f"{len(points)} trials there by (accuracy, latency) (front {front + 1}); "
                f"the best {keep} (1/{self.eta}) go on"
            ),
            rung=done,
            pause=self.promote,
        )


def early_stopper(space: SearchSpace, epochs: int | None = None) -> EarlyStopper | None:
    """What decides after each epoch whether a trial of ``space`` goes on (``None``: every trial
    trains its full budget); ``epochs`` defaults to the recipe's."""
    kind = space.scheduler_kind
    if kind is SchedulerKind.ASHA:
        sc = space.scheduler
        return RungScheduler(
            sc.eta, sc.min_epochs, epochs or space.train.epochs, promote=sc.mode == "promote"
        )
    if kind is SchedulerKind.DOMINANCE:
        return ParetoPruner.of(space.pruner)
    return None
