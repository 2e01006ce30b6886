"""Replay a tabulated benchmark: a search in simulated time, through the real sampler and scheduler.

A table (``bench/tabulate_grid.py``) holds, for a grid of configurations trained for real, the
latency, each epoch's validation accuracy and seconds, and the test accuracy. ``simulate`` runs a
study on it with ``n_workers`` asynchronous workers: each free worker asks the study's sampler for
a trial (the space's own ``suggest``, so the parameters and distributions are a real study's),
looks its configuration up in the table (the nearest grid point), and "trains" it epoch by epoch
in simulated time; after every epoch the real ``EpochReporter`` stores the curve and asks the real
early stopper (``[scheduler]``), exactly as a worker does. Nothing is trained, so a search of
hours replays in seconds and search methods compare on many seeds.

Promote mode (``RungScheduler.promote``) is replayed with the real rules: a trial that does not
earn its rung is paused (PRUNED, ``paused``), a free worker first resumes a paused trial that has
become promotable (``automl.search.promotion.promotable``, through a real continuation ticket),
and with ``final_share`` the last share of the wall clock starts no new trial and resumes the
paused ones in the final phase's order (``final_order``), trained to the end without rungs.

Time: a trial first spends the row's ``latency_seconds`` (latency is measured before training),
then epoch e ends ``sum(epoch_seconds[:e])`` later. Compute is the sum of what the trials' epochs
(and latency measurements) cost, partial epochs at the end of the budget left out.

A table of networks (``bench/tabulate_networks.py``) holds every distinct network of a space at a
few co-training settings with several seeds, and one latency per network. There a sampled width is
the network it builds (the widest network whose smallest width is at most the sampled one), a trial
draws one of its configuration's seed rows, and each epoch of a network costs the 10th percentile
of all its epochs' seconds (the table is trained at idle priority on a shared machine: its fastest
epochs are the network's own cost, the slow ones the machine's). With ``reuse`` the simulator does
what the workers do (``automl.search.dedup``): a configuration already trained or stopped is not
trained again (the trial takes the stored outcome at no cost), one training elsewhere is not
started twice (the trial fails at no cost), and each network's latency is paid for once.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import random
import statistics
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.errors import ConfigError
from automl.search.dedup import (
    SameConfigurationRunning,
    config_id,
    outcome_attrs,
    same_configuration,
)
from automl.search.hypervolume import hypervolume_2d
from automl.search.promotion import (
    CONTINUES,
    RESUMED_EPOCHS,
    PauseTrial,
    enqueue_continuation,
    final_order,
    promotable,
)
from automl.search.reporter import EpochReporter
from automl.search.scheduler import EarlyStopper, RungScheduler
from automl.search.startup import SurveyPoint, latency_spread
from automl.space import SearchSpace, TrialParams
from automl.space.networks import Network
from automl.store.attrs import StudyAttr, TrialAttr
from automl.training import EpochRecord

__all__ = ["Event", "Row", "Table", "finished_history", "hypervolume_history", "simulate"]

DIRECTIONS = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]


@dataclass(frozen=True)
class Row:
    config: dict[str, Any]
    latency_ms: float
    latency_seconds: float
    val_accuracy: list[float]
    epoch_seconds: list[float]
    test_accuracy: float
    seed: int = 0
    network: str | None = None  # a table of networks: the network's id

    def cost(self, epoch: int) -> float:
        """Compute that epoch ``epoch`` (1-based) costs, the latency measurement with the first."""
        return self.epoch_seconds[epoch - 1] + (self.latency_seconds if epoch == 1 else 0.0)

    @property
    def full_cost(self) -> float:
        return self.latency_seconds + sum(self.epoch_seconds)


@dataclass
class Table:
    rows: list[Row]
    epochs: int
    header: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Table:
        lines = Path(path).read_text().splitlines()
        if not lines:
            raise ConfigError(f"{path}: an empty table; make it with bench/tabulate_grid.py")
        header = json.loads(lines[0])
        if any('"kind":"latency"' in line.replace(" ", "") for line in lines[1:]):
            return cls._load_networks(path, header, [json.loads(line) for line in lines[1:]])
        rows = []
        for line in lines[1:]:
            r = json.loads(line)
            rows.append(
                Row(
                    config=r["config"],
                    latency_ms=float(r["latency_ms"]),
                    latency_seconds=float(r["latency_seconds"]),
                    val_accuracy=[float(v) for v in r["val_accuracy"]],
                    epoch_seconds=[float(v) for v in r["epoch_seconds"]],
                    test_accuracy=float(r["test_accuracy"]),
                )
            )
        if not rows:
            raise ConfigError(f"{path}: no configuration in the table yet")
        epochs = int(header.get("epochs", len(rows[0].val_accuracy)))
        short = [r.config for r in rows if len(r.val_accuracy) < epochs]
        if short:
            raise ConfigError(f"{path}: {len(short)} rows have fewer than {epochs} epochs")
        return cls(rows, epochs, header)

    @classmethod
    def _load_networks(
        cls, path: str | Path, header: dict[str, Any], lines: list[dict[str, Any]]
    ) -> Table:
        """A table of networks: training rows (a configuration and seed each) and one latency
        row per network; rows of a network without a latency yet are left out."""
        latency = {r["network"]: r for r in lines if r.get("kind") == "latency"}
        train = [r for r in lines if r.get("kind") == "train" and r["network"] in latency]
        epochs = int(header["epochs"])
        by_net: dict[str, list[dict[str, Any]]] = {}
        for r in train:
            by_net.setdefault(r["network"], []).append(r)
        costs = {net: [_epoch_cost(rs, epochs)] * epochs for net, rs in by_net.items()}
        rows = [
            Row(
                config=r["config"],
                latency_ms=float(latency[r["network"]]["latency_ms"]),
                latency_seconds=float(latency[r["network"]]["latency_seconds"]),
                val_accuracy=[float(v) for v in r["val_accuracy"]],
                epoch_seconds=costs[r["network"]],
                test_accuracy=float(r["test_accuracy"]),
                seed=int(r["seed"]),
                network=str(r["network"]),
            )
            for r in train
            if len(r["val_accuracy"]) >= epochs
        ]
        if not rows:
            raise ConfigError(f"{path}: no configuration with its latency in the table yet")
        return cls(rows, epochs, header)

    @property
    def by_network(self) -> bool:
        return self.rows[0].network is not None

    def with_latency_cost(self, scale: float) -> Table:
        """The same table with each latency measurement's cost scaled by ``scale`` (0: free, as
        when an epoch lasts minutes and the measurement seconds)."""
        rows = [
            dataclasses.replace(r, latency_seconds=r.latency_seconds * scale) for r in self.rows
        ]
        return Table(rows, self.epochs, self.header)

    def lookup(self, params: dict[str, Any], rng: random.Random | None = None) -> Row:
        """The row nearest to a trial's parameters: K and the kind exactly, the width on a log
        scale, the co-training weight linearly (K = 1 rows ignore the co-training keys). In a
        table of networks the width is the network it builds, then the nearest co-training
        setting of that network, and ``rng`` draws one of the configuration's seed rows (the
        first without it)."""
        if self.by_network:
            return self._lookup_network(params, rng)
        k = int(params.get("split_factor", 1))
        width = float(params.get("width_mult", 1.0))
        candidates = [r for r in self.rows if int(r.config["split_factor"]) == k]
        if k > 1:
            kind = str(params.get("cot_kind", "js"))
            candidates = [r for r in candidates if r.config.get("cot_kind") == kind]
        if not candidates:
            raise ConfigError(f"the table has no configuration with K = {k} for {params}")

        def distance(r: Row) -> tuple[float, float]:
            dw = abs(math.log(float(r.config["width_mult"])) - math.log(width))
            dc = abs(float(r.config.get("cot_weight", 0.0)) - float(params.get("cot_weight", 0.0)))
            return (round(dw, 9), dc)

        return min(candidates, key=distance)

    def _lookup_network(self, params: dict[str, Any], rng: random.Random | None) -> Row:
        k = int(params.get("split_factor", 1))
        width = float(params.get("width_mult", 1.0))
        candidates = [r for r in self.rows if int(r.config["split_factor"]) == k]
        if not candidates:
            raise ConfigError(f"the table has no configuration with K = {k} for {params}")
        # Channels only grow with the width: the network is the last one starting at or below it.
        starts = sorted({float(r.config["width_mult"]) for r in candidates})
        start = max((w for w in starts if w <= width + 1e-9), default=starts[0])
        candidates = [r for r in candidates if float(r.config["width_mult"]) == start]
        # Then the nearest co-training setting of the network: the kind if the table has it there
        # (a table still being filled may lack it), the nearest weight.
        kind, cw = str(params.get("cot_kind", "js")), float(params.get("cot_weight", 0.0))

        def distance(r: Row) -> tuple[bool, float]:
            c = r.config
            return (c.get("cot_kind", kind) != kind, abs(float(c.get("cot_weight", 0.0)) - cw))

        best = min(candidates, key=distance).config
        seeds = [r for r in candidates if r.config == best]
        return rng.choice(seeds) if rng is not None else seeds[0]

    def reference_point(self, test: bool = False) -> tuple[float, float]:
        """A fixed hypervolume reference from the whole table: the worst final validation (or
        test) accuracy and the slowest latency (points equal to it count nothing)."""
        return (
            min(r.test_accuracy if test else r.val_accuracy[-1] for r in self.rows),
            max(r.latency_ms for r in self.rows),
        )

    def row_of(self, config: dict[str, Any]) -> Row:
        """The row of exactly ``config`` (a table config dict)."""
        for r in self.rows:
            if r.config == config:
                return r
        raise ConfigError(f"no row for {config} in the table")


def _epoch_cost(rows: list[dict[str, Any]], epochs: int) -> float:
    """A network's cost per epoch: the 10th percentile of every epoch of its rows."""
    seconds = [float(s) for r in rows for s in r["epoch_seconds"][:epochs]]
    if len(seconds) < 2:
        return seconds[0]
    return statistics.quantiles(seconds, n=10, method="inclusive")[0]


@dataclass(frozen=True)
class Event:
    """One epoch reported by one trial, at a simulated time."""

    trial: int
    config: dict[str, Any]
    epoch: int
    time: float
    val_accuracy: float
    latency_ms: float
    test_accuracy: float | None  # at the last epoch only
    cost: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "config": self.config,
            "epoch": self.epoch,
            "time": round(self.time, 4),
            "val_accuracy": self.val_accuracy,
            "latency_ms": self.latency_ms,
            "test_accuracy": self.test_accuracy,
            "cost": round(self.cost, 4),
        }


@dataclass(order=True)
class _Pending:
    time: float
    seq: int
    trial_number: int = field(compare=False)
    epoch: int = field(compare=False)  # 1-based: the epoch that ends at ``time``


def simulate(
    table: Table,
    space: SearchSpace,
    sampler: optuna.samplers.BaseSampler,
    *,
    stopper: EarlyStopper | None,
    n_workers: int,
    wallclock_s: float,
    final_share: float = 0.0,
    reuse: bool = False,
    seed: int = 0,
    baseline: bool = False,
    survey_ms: dict[str, float] | None = None,
) -> list[Event]:
    """Run a search on ``table`` for ``wallclock_s`` simulated seconds; the epochs reported, in
    time order. The study lives in memory; its decisions are the sampler's and ``stopper``'s.
    ``reuse``: never train one configuration twice nor time one network twice (see above);
    ``seed`` draws the seed rows of a table of networks. ``baseline``: the first trial is the
    space's baseline, as a real study's is. ``survey_ms`` (a table of networks; implies
    ``baseline``): ``[sampler] startup = "latency"``, each network's latency as the survey
    measured it (``automl.search.startup``): every network's measurement is paid for first (one
    event of trial -1), the start's picks follow the baseline, and no trial times a network."""
    if n_workers < 1:
        raise ConfigError(f"n_workers must be >= 1, got {n_workers}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    survey_s = 0.0
    if baseline or survey_ms is not None:
        study.enqueue_trial(space.baseline_params())
    if survey_ms is not None:
        survey_s = _enqueue_start(study, table, space, survey_ms)
    never = threading.Event()
    events: list[Event] = []
    queue: list[_Pending] = []
    running: dict[int, tuple[optuna.Trial, Row, EpochReporter]] = {}
    # Paused trials (promote mode): trial number -> (its row, the epochs it trained).
    paused: dict[int, tuple[Row, int]] = {}
    final_from = wallclock_s * (1.0 - final_share)
    seq = 0
    rng = random.Random(seed)
    # Networks whose latency was measured (with ``reuse``; all of them after a survey).
    timed: set[str] = set() if survey_ms is None else {str(r.network) for r in table.rows}
    first_cost: dict[int, float] = {}  # a new trial's first epoch, with its latency if paid
    # A configuration reused at no cost asks again at once; a sampler that only proposes what is
    # known would never stop, so a worker gives up after this many such asks in a row.
    max_reused_asks = 200

    def resume(now: float, final: bool) -> bool:
        """Resume the paused trial a free worker takes now, if any."""
        nonlocal seq
        frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
        if final:
            order = final_order([_as_ticket(frozen[n], e) for n, (_, e) in paused.items()])
            chosen = order[0] if order else None
        else:
            rule = stopper if isinstance(stopper, RungScheduler) else None
            chosen = next(
                (
                    n
                    for n, (_, e) in sorted(paused.items())
                    if rule is not None and promotable(study, _as_ticket(frozen[n], e), rule)
                ),
                None,
            )
        if chosen is None:
            return False
        row, epochs = paused.pop(chosen)
        enqueue_continuation(study, frozen[chosen], chosen, epochs)
        trial = study.ask()  # the continuation: the only waiting trial
        reporter = EpochReporter(
            trial,
            latency_ms=row.latency_ms,
            stopper=None if final else stopper,
            epochs=table.epochs,
            stop_event=never,
        )
        running[trial.number] = (trial, row, reporter)
        heapq.heappush(
            queue, _Pending(now + row.epoch_seconds[epochs], seq, trial.number, epochs + 1)
        )
        seq += 1
        return True

    def known(trial: optuna.Trial, params: TrialParams, row: Row) -> bool:
        """With ``reuse``: settle ``trial`` at no cost when its configuration is known or
        training (what the worker does before training); whether it was settled."""
        if not reuse:
            return False
        net = Network(row.network or json.dumps(row.config), "", params.split_factor, 0, ())
        key = config_id(net, params, space)
        trial.set_user_attr(TrialAttr.CONFIG, key)
        try:
            source = same_configuration(study, trial, key)
        except SameConfigurationRunning as e:
            trial.set_user_attr(TrialAttr.FAIL_REASON, str(e))
            study.tell(trial, state=TrialState.FAIL)
            return True
        if source is None:
            return False
        for name, value in outcome_attrs(source).items():
            trial.set_user_attr(name, value)
        trial.set_user_attr(TrialAttr.REUSED_FROM, source.number)
        if source.state is TrialState.COMPLETE:
            study.tell(trial, list(source.values))
        else:
            study.tell(trial, state=TrialState.PRUNED)
        return True

    def start(now: float) -> None:
        nonlocal seq
        final = now >= final_from
        if resume(now, final) or final:
            return  # the final phase starts no new trial
        for _ in range(max_reused_asks):
            trial = study.ask()
            params = space.suggest(trial)
            row = table.lookup(trial.params, rng)
            if row.network is not None:
                trial.set_user_attr(TrialAttr.NETWORK, row.network)
            if not known(trial, params, row):
                break
        else:
            return  # this worker found nothing new to train
        timing = row.latency_seconds
        if reuse or survey_ms is not None:
            net = row.network or json.dumps(row.config)
            timing = 0.0 if net in timed else timing
            timed.add(net)
        trial.set_user_attr(TrialAttr.LATENCY_MS, row.latency_ms)
        reporter = EpochReporter(
            trial,
            latency_ms=row.latency_ms,
            stopper=stopper,
            epochs=table.epochs,
            stop_event=never,
        )
        running[trial.number] = (trial, row, reporter)
        ends = now + timing + row.epoch_seconds[0]
        heapq.heappush(queue, _Pending(ends, seq, trial.number, 1))
        first_cost[trial.number] = timing + row.epoch_seconds[0]
        seq += 1

    if survey_s > 0:
        events.append(Event(-1, {}, 0, survey_s, 0.0, 0.0, None, survey_s))
    for _ in range(n_workers):
        start(survey_s)
    while queue:
        p = heapq.heappop(queue)
        if p.time > wallclock_s:
            break
        trial, row, reporter = running[p.trial_number]
        acc = row.val_accuracy[p.epoch - 1]
        last = p.epoch == table.epochs
        events.append(
            Event(
                trial.number,
                row.config,
                p.epoch,
                p.time,
                acc,
                row.latency_ms,
                row.test_accuracy if last else None,
                first_cost.pop(trial.number, row.cost(p.epoch))
                if p.epoch == 1
                else row.cost(p.epoch),
            )
        )
        record = EpochRecord(p.epoch - 1, 0.0, 0.0, 0.0, 0.0, 0.0, acc, [acc], 0.0)
        try:
            reporter(record)
        except PauseTrial:
            trial.set_user_attr(TrialAttr.PAUSED, True)
            study.tell(trial, state=TrialState.PRUNED)
            paused[trial.number] = (row, p.epoch)
            del running[p.trial_number]
            start(p.time)
            continue
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            del running[p.trial_number]
            start(p.time)
            continue
        if last:
            trial.set_user_attr(TrialAttr.TEST_ACCURACY, row.test_accuracy)
            trial.set_user_attr(TrialAttr.TRAIN_SECONDS, sum(row.epoch_seconds))
            study.tell(trial, [acc, row.latency_ms])
            del running[p.trial_number]
            start(p.time)
        else:
            ends = p.time + row.epoch_seconds[p.epoch]
            heapq.heappush(queue, _Pending(ends, seq, p.trial_number, p.epoch + 1))
            seq += 1
    return events


def _enqueue_start(
    study: optuna.Study, table: Table, space: SearchSpace, survey_ms: dict[str, float]
) -> float:
    """Enqueue the start's picks after the baseline (``automl.search.startup``); the survey's
    cost, every network's measurement."""
    if not table.by_network:
        raise ConfigError("a latency start is simulated on a table of networks only")
    first: dict[str, Row] = {}
    for r in table.rows:
        first.setdefault(str(r.network), r)
    points = [
        SurveyPoint(
            int(r.config["split_factor"]), float(r.config["width_mult"]), net, survey_ms[net]
        )
        for net, r in first.items()
    ]
    study.set_user_attr(
        StudyAttr.LATENCY_SURVEY,
        {"host": "", "target": "", "points": [dataclasses.asdict(p) for p in points]},
    )
    base = table.lookup(space.baseline_params() | {"split_factor": 1})
    for p in latency_spread(points, space.sampler.n_startup_trials, str(base.network)):
        study.enqueue_trial(p.params())
    return sum(r.latency_seconds for r in first.values())


def _as_ticket(t: optuna.trial.FrozenTrial, epochs: int) -> optuna.trial.FrozenTrial:
    """A paused trial seen as its continuation ticket would be (for the promotion rules)."""
    ticket = optuna.trial.create_trial(
        state=TrialState.WAITING,
        user_attrs=t.user_attrs,
        system_attrs={CONTINUES: t.number, RESUMED_EPOCHS: epochs},
    )
    ticket.number = t.number
    return ticket


def finished_history(
    events: Iterable[dict[str, Any]],
    table: Table,
    checkpoints: list[float],
) -> list[list[dict[str, Any]]]:
    """The events of the trials that reached the last epoch, by each compute value of
    ``checkpoints`` (seconds spent, increasing). An event's cost is its own ``cost`` where it
    has one (a measurement reused costs nothing), else the table's, so that event streams of any
    tool compare alike."""
    spent = 0.0
    finished: list[dict[str, Any]] = []
    out: list[list[dict[str, Any]]] = []
    it = iter(sorted(events, key=lambda e: float(e["time"])))
    pending = next(it, None)
    for c in checkpoints:
        while pending is not None:
            cost = pending.get("cost")
            if cost is None:
                cost = table.row_of(pending["config"]).cost(int(pending["epoch"]))
            if spent + float(cost) > c:
                break
            spent += float(cost)
            if int(pending["epoch"]) == table.epochs:
                finished.append(pending)
            pending = next(it, None)
        out.append(list(finished))
    return out


def hypervolume_history(
    events: Iterable[dict[str, Any]],
    table: Table,
    checkpoints: list[float],
) -> tuple[list[float], list[float]]:
    """Validation and test hypervolume (the table's fixed references) of the trials that reached
    the last epoch, at each compute value of ``checkpoints`` (seconds spent, increasing); costs
    as ``finished_history`` counts them, test accuracies from the table."""
    val_ref, test_ref = table.reference_point(), table.reference_point(test=True)
    val_hv: list[float] = []
    test_hv: list[float] = []
    for done in finished_history(events, table, checkpoints):
        rows = [table.row_of(e["config"]) for e in done]
        val_hv.append(
            hypervolume_2d(
                [(float(e["val_accuracy"]), r.latency_ms) for e, r in zip(done, rows, strict=True)],
                val_ref,
            )
        )
        test_hv.append(hypervolume_2d([(r.test_accuracy, r.latency_ms) for r in rows], test_ref))
    return val_hv, test_hv
