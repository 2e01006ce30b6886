"""Operating points for free: a trained K-member ensemble answering with fewer members.

For m = 1..K-1 the subset is the first m members ordered by validation accuracy (best first; the
greedy choice, not a search over all C(K, m) subsets). Its validation accuracy (the model's combine
rule over the m members) and its latency (``automl.measure.latency.measure``, the trial's execution
mode, batch and threads, a shorter budget) are stored on the trial as ``subset_points``. The subset
latencies are measured after training with that shorter budget, the trial's own latency before
training with the space's budget: compare them with their spread in mind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automl.data import DataBundle
from automl.measure.latency import Reference, measure
from automl.models import DividedNet
from automl.models.members import member_order, select_members
from automl.search.records import ParetoRecord
from automl.store.attrs import TrialAttr
from automl.training import evaluate

__all__ = [
    "SubsetLatency",
    "front_with_subsets",
    "store_subset_points",
    "subset_points",
]


@dataclass(frozen=True)
class SubsetLatency:
    """How subset latencies are measured: the trial's settings, a short budget."""

    batch_size: int = 1
    mode: str = "auto"
    threads: int | None = None
    warmup_s: float = 0.1
    min_run_s: float = 0.25
    # The trial's own reference (automl.measure.latency): subset latencies in the same units as
    # its own.
    reference: Reference | None = None
    # The host's measurement lock (automl.measure.host_share), held around each timing only,
    # yielding the threads granted; the subsets' accuracy is evaluated outside it.
    measuring: Callable[[], AbstractContextManager[int | None]] | None = None


def subset_points(
    model: DividedNet,
    data: DataBundle,
    device: torch.device,
    latency: SubsetLatency,
    member_accuracies: Sequence[float],
    known: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``[{members, member_indices, accuracy, latency_ms, latency_iqr_ms, latency_mode}]`` for
    m = 1..K-1 (empty for K = 1). ``known`` maps m to the latency fields of an m-member subset
    of the same network already timed on this host and target: members are alike in shape, so
    any m of them time the same, and those are not timed again."""
    k = model.split_factor
    order = member_order(member_accuracies, k)
    shape = (latency.batch_size, data.in_chans, data.image_size, data.image_size)
    points = []
    for m in range(1, k):
        indices = sorted(order[:m])
        subset = select_members(model, indices)
        acc = evaluate(subset, data.val, device=device).accuracy
        if known and m in known:
            points.append({"members": m, "member_indices": indices, "accuracy": acc, **known[m]})
            continue
        with latency.measuring() if latency.measuring else nullcontext(None) as granted:
            lat = measure(
                subset,
                torch.randn(*shape),
                mode=latency.mode,
                device=device,
                threads=latency.threads or granted,
                warmup_s=latency.warmup_s,
                min_run_s=latency.min_run_s,
                reference=latency.reference,
            )
        points.append(
            {
                "members": m,
                "member_indices": indices,
                "accuracy": acc,
                "latency_ms": lat.median_ms,
                "latency_iqr_ms": lat.iqr_ms,
                "latency_mode": lat.mode,
            }
        )
    return points


def store_subset_points(
    trial: optuna.Trial,
    model: DividedNet,
    data: DataBundle,
    device: torch.device,
    objectives: Any,
    member_accuracies: Sequence[float],
    *,
    reference: Reference | None = None,
    measuring: Callable[[], AbstractContextManager[int | None]] | None = None,
    known: dict[int, dict[str, Any]] | None = None,
) -> None:
    """The objective's hook after training: store the subset points of a K > 1 trial.

    ``objectives`` is the space's ``[objectives]`` section; its budget is capped to keep this cheap.
    """
    if model.split_factor < 2:
        return
    settings = SubsetLatency(
        batch_size=objectives.latency_batch_size,
        mode=str(objectives.latency_mode),
        threads=objectives.latency_threads,
        warmup_s=min(objectives.latency_warmup_s, 0.1),
        min_run_s=min(objectives.latency_min_run_s, 0.25),
        reference=reference,
        measuring=measuring,
    )
    points = subset_points(model, data, device, settings, member_accuracies, known)
    trial.set_user_attr(TrialAttr.SUBSET_POINTS, points)


def _feasible(t: FrozenTrial) -> bool:
    return all(c <= 0 for c in t.constraints.values())


def front_with_subsets(study: optuna.Study) -> list[ParetoRecord]:
    """The Pareto front over every completed, feasible trial and its subset points.

    A subset point is a ``ParetoRecord`` of its trial with ``subset_members`` set (the number of
    members) and its own accuracy, latency and member accuracies. Sorted by latency.
    """
    candidates: list[ParetoRecord] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not t.values or not _feasible(t):
            continue
        full = ParetoRecord.from_trial(t)
        candidates.append(full)
        for p in t.user_attrs.get(TrialAttr.SUBSET_POINTS) or []:
            accs = full.member_accuracies
            idx = list(p.get("member_indices", []))
            candidates.append(
                replace(
                    full,
                    accuracy=float(p["accuracy"]),
                    latency_ms=float(p["latency_ms"]),
                    member_accuracies=[accs[i] for i in idx if i < len(accs)],
                    latency_mode=p.get("latency_mode"),
                    latency_iqr_ms=p.get("latency_iqr_ms"),
                    subset_members=int(p["members"]),
                )
            )

    def dominated(r: ParetoRecord) -> bool:
        return any(
            o.accuracy >= r.accuracy
            and o.latency_ms <= r.latency_ms
            and (o.accuracy > r.accuracy or o.latency_ms < r.latency_ms)
            for o in candidates
        )

    return sorted((r for r in candidates if not dominated(r)), key=lambda r: r.latency_ms)
