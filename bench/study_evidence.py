"""How a finished search spent its time and what evidence it bought, read from its study.

For ``make demo`` (or any study): trials by how they ended, distinct networks and configurations,
configurations trained more than once to the same epochs (should be none), the share of the
trials' wall time spent outside training epochs (building, latency, layout choice, member subsets,
evaluation, storage), how many distinct networks reached each rung, and whether every front point
is a distinct network.

    make demo
    python bench/study_evidence.py --storage sqlite:///automl.db --study fashion-mnist-cpu
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl.search.study import load_study
from automl.store.attrs import TrialAttr
from bench._common import machine


def _epochs(t: FrozenTrial) -> int:
    curve = t.user_attrs.get(TrialAttr.CURVE)
    return len(curve) if isinstance(curve, list) else 0


def _trained_seconds(t: FrozenTrial) -> float:
    """Seconds of this attempt's own epochs (a resumed run's earlier epochs are not its own)."""
    seconds = t.user_attrs.get(TrialAttr.EPOCH_SECONDS) or []
    start = int(t.user_attrs.get(TrialAttr.RESUMED_FROM_EPOCH) or 0)
    if t.user_attrs.get(TrialAttr.REUSED_FROM) is not None:
        return 0.0
    return float(sum(s for s in seconds[start:] if isinstance(s, int | float)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default="sqlite:///automl.db")
    ap.add_argument("--study", default="fashion-mnist-cpu")
    args = ap.parse_args()
    study = load_study(args.study, args.storage)
    trials = study.trials()
    print(f"# {machine()}")
    print(f"study {args.study}: {len(trials)} trials")
    states = Counter(
        "paused" if t.user_attrs.get(TrialAttr.PAUSED) else t.state.name.lower() for t in trials
    )
    print("ended: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    nets = {t.user_attrs.get(TrialAttr.NETWORK) for t in finished} - {None}
    configs = {t.user_attrs.get(TrialAttr.CONFIG) for t in finished} - {None}
    print(f"space: {sum(len(c.widths) for c in study.networks())} distinct networks")
    print(f"tried: {len(nets)} networks in {len(configs)} configurations")
    reused = sum(1 for t in trials if t.user_attrs.get(TrialAttr.REUSED_FROM) is not None)
    print(f"reused outcomes (trained nothing): {reused}")
    # A configuration trained twice to the same epochs by two different runs (not a retry or a
    # continuation of one run, which share their original trial's number).
    runs: dict[tuple[object, int], set[int]] = {}
    for t in finished:
        if t.user_attrs.get(TrialAttr.REUSED_FROM) is not None:
            continue
        key = int(t.system_attrs.get("continues", t.system_attrs.get("failed_trial", t.number)))
        runs.setdefault((t.user_attrs.get(TrialAttr.CONFIG), _epochs(t)), set()).add(key)
    twice = {k: v for k, v in runs.items() if len(v) > 1 and k[0] is not None}
    print(f"configurations trained twice to the same epochs: {len(twice)}")
    wall = trained = 0.0
    for t in trials:
        if t.datetime_start is None or t.datetime_complete is None:
            continue
        wall += (t.datetime_complete - t.datetime_start).total_seconds()
        trained += _trained_seconds(t)
    if wall:
        print(
            f"trial wall time {wall:.0f} s, in training epochs {trained:.0f} s: "
            f"{100 * (1 - trained / wall):.1f}% outside training"
        )
    for rung in (1, 3, 9, 27):
        reached = {t.user_attrs.get(TrialAttr.NETWORK) for t in finished if _epochs(t) >= rung}
        print(f"distinct networks with >= {rung} epochs: {len(reached - {None})}")
    front = study.pareto_front()
    front_nets = [study.trials()[r.number].user_attrs.get(TrialAttr.NETWORK) for r in front]
    print(
        f"front: {len(front)} points, {len(set(front_nets))} distinct networks "
        f"(trials {[r.number for r in front]})"
    )


if __name__ == "__main__":
    main()
