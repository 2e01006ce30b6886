"""``automl status``: trials by state, what runs where, and the front so far."""

from __future__ import annotations

import argparse
from collections import Counter

from optuna.trial import FrozenTrial, TrialState

from automl.attrs import TrialAttr
from automl.cli.common import add_storage_args, resolve_study_name
from automl.report import format_front, reference_point
from automl.scheduler import RungScheduler
from automl.search_progress import TrialStage, hypervolume_by_compute, trial_stages
from automl.storage import redact
from automl.study import ATTR_TARGET, AutoMLStudy, load_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="show a study's trials by state, running trials and the front"
    )
    add_storage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name = resolve_study_name(args.storage, args.study)
    study = load_study(name, args.storage, artifact_dir=args.artifacts)
    trials = study.trials()
    counts = Counter(t.state.name for t in trials)
    target = study.optuna_study.user_attrs.get(ATTR_TARGET)
    print(f"study {name!r} in {redact(study.storage_url)} (space {study.space.source})")
    print(
        f"trials: {len(trials)}"
        + (f" of {target} asked for" if target else "")
        + " | "
        + ", ".join(f"{s.name.lower()} {counts.get(s.name, 0)}" for s in TrialState)
    )
    running = [t for t in trials if t.state is TrialState.RUNNING]
    for t in running:
        where = t.user_attrs.get(TrialAttr.HOST, "?")
        dev = t.user_attrs.get(TrialAttr.DEVICE, "?")
        curve = t.user_attrs.get(TrialAttr.CURVE, [])
        print(
            f"  running #{t.number} on {where} {dev}, started "
            f"{t.datetime_start:%Y-%m-%d %H:%M:%S}, epochs done {len(curve)}, params {t.params}"
        )
    failed = [t for t in trials if t.state is TrialState.FAIL]
    for t in failed[-5:]:
        print(
            f"  failed #{t.number}: {t.user_attrs.get(TrialAttr.FAIL_REASON) or 'no reason stored'}"
        )
    _early_stopping(study, trials)
    print("Pareto front:")
    print(format_front(study.pareto_front()))
    return 0


# How many of the latest trials the per-trial table shows, and points of the compute history.
SHOWN_TRIALS = 15
HISTORY_POINTS = 6


def _early_stopping(study: AutoMLStudy, trials: list[FrozenTrial]) -> None:
    """The early-stopping rule, each recent trial's epochs, rung and reason, and the front's
    hypervolume against the compute spent."""
    stopper = study.space.early_stopper()
    kind = study.space.scheduler_kind
    if isinstance(stopper, RungScheduler):
        rule = f"asha, eta {stopper.eta}, rungs at epochs {stopper.rungs} of {stopper.epochs}"
    else:
        rule = str(kind)
    print(f"early stopping: {rule}")
    ended = [t for t in trials if t.state is not TrialState.WAITING]
    if ended:
        shown = ended[-SHOWN_TRIALS:]
        more = f" (the last {len(shown)} of {len(ended)})" if len(shown) < len(ended) else ""
        print(f"trials{more}:\n  {TrialStage.HEADER}")
        for st in trial_stages(shown):
            print("  " + st.line())
    history = hypervolume_by_compute(trials, reference_point(study.optuna_study))
    if history:
        step = max(1, len(history) // HISTORY_POINTS)
        picks = history[step - 1 :: step]
        if picks[-1] is not history[-1]:
            picks.append(history[-1])
        print("hypervolume against compute (accuracy x ms above accuracy 0, under 1.1 x slowest):")
        for p in picks:
            print(
                f"  {p.trials_ended:>4} trials ended, {p.epochs:>5} epochs, "
                f"{p.seconds / 60:7.1f} min trained: {p.hypervolume:.4g}"
            )
