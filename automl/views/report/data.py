"""What a report of a study shows, read once from the study: every trial as a row, the
configurations and their denoised front (``automl.search.front``), the per-K verdict, the model to
ship, the undivided baseline, the hypervolume against compute, the learning curves, and the words
that title the axes (direction, device, batch size).

Every figure and table of ``automl report`` (HTML and PNG) is drawn from one ``ReportData``, so
they cannot disagree. The front is exactly ``study.pareto_front()`` and every latency shown is a
``ParetoRecord``'s ``latency_ms``: a study that ranks latency per device changes that one call.
Accuracy is a fraction everywhere, as the study stores it and the other views print it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from automl.search.front import ConfigPoint, Pick, configurations, front_of, pick
from automl.search.progress import (
    ComputePoint,
    TrialStage,
    hypervolume_by_compute,
    reference_point,
    trial_stages,
)
from automl.search.records import ParetoRecord
from automl.search.study import AutoMLStudy
from automl.store.attrs import TrialAttr
from automl.store.storage import redact
from automl.views.trials_table import TrialRow, trial_rows
from automl.views.verdict import headline, k_verdicts

__all__ = [
    "ACCURACY_LABEL",
    "Curve",
    "ReportData",
    "collect",
    "fmt_acc",
    "fmt_latency",
    "fmt_millions",
    "is_baseline",
]

ACCURACY_LABEL = "validation accuracy (fraction), higher is better ↑"


@dataclass(frozen=True)
class Curve:
    """Validation accuracy per epoch of one trial (None where no epoch was recorded)."""

    number: int
    split_factor: int
    state: str
    accuracies: list[float | None]


@dataclass(frozen=True)
class ReportData:
    study_name: str
    front: list[ParetoRecord]  # study.pareto_front(), fastest first
    completed: list[ParetoRecord]  # every completed trial, the front included
    baseline: ParetoRecord | None  # the undivided network at the default width, when completed
    device: str  # the devices the latencies were measured on, as stored with the trials
    batch_size: int  # the batch the latency was measured at
    reference: tuple[float, float]  # hypervolume's worst corner: (accuracy, latency ms)
    history: list[ComputePoint]  # hypervolume against compute, one point per ended trial
    stages: list[TrialStage]  # how far each trial went, why it stopped
    curves: list[Curve]
    rows: list[TrialRow]  # every trial, in trial order
    points: list[ConfigPoint]  # every finished, feasible configuration
    front_points: list[ConfigPoint]  # the denoised front of ``points``, fastest first
    verdicts: list[str]  # one line per K
    headline: str  # does dividing pay here?
    pick: Pick  # the model to ship
    # When only noisy latencies fit: the pick with them (said, never shipped silently).
    noisy_pick: Pick | None
    # The `automl export` command that ships the pick (or the noisy one); "" when there is none.
    ship_command: str
    stopped_shown: bool  # stopped trials are on the plot (their latency is the workers')
    baseline_row: TrialRow | None  # the baseline's trial, whatever its state (first one)

    @property
    def latency_label(self) -> str:
        return f"latency (ms) at batch {self.batch_size} on {self.device}, lower is better ←"

    @property
    def reference_words(self) -> str:
        """The hypervolume's reference point and unit, in words."""
        return (
            f"hypervolume = area (accuracy as a fraction × ms) that the front dominates above "
            f"accuracy {self.reference[0]:g} and below latency {self.reference[1]:.3g} ms "
            f"(1.1 × the slowest completed trial); larger is better"
        )

    def on_front(self, record: ParetoRecord) -> bool:
        return any(r.number == record.number for r in self.front)


def is_baseline(params: dict[str, Any], default_width: float) -> bool:
    """Whether ``params`` are those of the baseline ``create_study`` enqueues: K = 1 at the
    model's default width (a parameter the space does not search is at its fixed value)."""
    if int(params.get("split_factor", 1)) != 1:
        return False
    width = params.get("width_mult", default_width)
    return math.isclose(float(width), float(default_width), rel_tol=1e-9)


def ship_command(study: AutoMLStudy, number: int) -> str:
    """The exact ``automl export`` command that ships trial ``number`` (password hidden)."""
    return (
        f"automl export --storage {redact(study.storage_url)} --study {study.study_name} "
        f"--trial {number} --out bundle-{number}"
    )


def collect(
    study: AutoMLStudy,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    max_latency_ms: float | None = None,
) -> ReportData:
    """Read everything a report shows from ``study`` (one pass over its trials); with ``device``
    the latencies of that target (``AutoMLStudy.pareto_front``); ``max_latency_ms`` the budget
    of the recommended pick (default: the knee of the front)."""
    ost = study.optuna_study
    trials = ost.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.values is not None]
    completed = (
        [ParetoRecord.from_trial(t) for t in complete]
        if device is None
        else study.completed_records(device=device, batch_size=batch_size)
    )
    default_width = study.space.model.default_width_mult
    # The first completed one: a retried baseline has the same parameters, and trial 0 comes first.
    baseline = next((r for r in completed if is_baseline(r.params, default_width)), None)
    points = configurations(trials, None if device is None else completed)
    front_points = front_of(points)
    front = [p.record for p in front_points]
    chosen = pick(points, max_latency_ms)
    noisy = pick(points, max_latency_ms, allow_noisy=True) if chosen.point is None else None
    shipped = chosen.point or (noisy.point if noisy is not None else None)
    devices = sorted({r.device for r in (front or completed) if r.device})
    ref = reference_point(ost)
    rows = trial_rows(trials, study.space)
    curves = []
    # The state in the rows' words (stopped, paused), not Optuna's (pruned).
    said = {r.number: r.state for r in rows}
    for t in trials:
        raw = t.user_attrs.get(TrialAttr.CURVE)
        if isinstance(raw, list) and any(v is not None for v in raw):
            curves.append(
                Curve(
                    t.number,
                    int(t.params.get("split_factor", 1)),
                    said.get(t.number, t.state.name.lower()),
                    [None if v is None else float(v) for v in raw],
                )
            )
    return ReportData(
        study_name=ost.study_name,
        front=front,
        completed=completed,
        baseline=baseline,
        device=" / ".join(devices) or "device not recorded",
        batch_size=batch_size or study.space.objectives.latency_batch_size,
        reference=(float(ref[0]), float(ref[1])),
        history=hypervolume_by_compute(trials, ref),
        stages=trial_stages(trials),
        curves=curves,
        rows=rows,
        points=points,
        front_points=front_points,
        verdicts=k_verdicts(rows, points, front_points),
        headline=headline(rows, points, front_points),
        pick=chosen,
        noisy_pick=noisy if noisy is not None and noisy.point is not None else None,
        ship_command="" if shipped is None else ship_command(study, shipped.number),
        stopped_shown=device is None,
        baseline_row=next(
            (
                r
                for r in rows
                if r.split_factor == 1
                and math.isclose(r.width if r.width is not None else default_width, default_width)
            ),
            None,
        ),
    )


def fmt_acc(acc: float | None) -> str:
    return "-" if acc is None else f"{acc:.4f}"


def fmt_latency(ms: float | None) -> str:
    if ms is None:
        return "-"
    # Three significant digits: 0.663 ms and 1683 ms alike, never 1.6828735555489198.
    return f"{ms:.3g} ms" if ms < 1000 else f"{ms:,.0f} ms"


def fmt_millions(n: float | None, unit: str) -> str:
    return "-" if n is None else f"{n / 1e6:.3g} {unit}"
