"""``automl status``: trials by state, what runs where, and the front so far."""

from __future__ import annotations

import argparse
from collections import Counter

from optuna.trial import TrialState

from automl.attrs import TrialAttr
from automl.cli.common import add_storage_args, resolve_study_name
from automl.report import format_front
from automl.storage import redact
from automl.study import ATTR_TARGET, load_study


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
    print("Pareto front:")
    print(format_front(study.pareto_front()))
    return 0
