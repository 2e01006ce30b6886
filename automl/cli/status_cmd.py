"""``automl status``: trials by state, what runs where (stale ones flagged with their heartbeat's
age), the time spent and left, latencies too noisy to rank on, the front so far (the baseline
beside it when dominated), whether dividing pays (one line per K) and the model to ship with the
command that ships it. ``--all`` lists every trial with the columns of the report's table."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

from automl.cli.argtypes import positive_float, positive_int
from automl.cli.common import add_storage_args, resolve_study_name
from automl.cli.targets import add_target_args, target_words
from automl.search.front import NOISY_SPREAD_RATIO
from automl.search.progress import hypervolume_by_compute
from automl.search.scheduler import RungScheduler, early_stopper
from automl.search.startup import stored_survey
from automl.search.study import AutoMLStudy, load_study
from automl.space.networks import describe_counts
from automl.store.attrs import StudyAttr, TrialAttr
from automl.store.heartbeats import Heartbeat, heartbeat_ages
from automl.store.storage import StorageSettings, redact
from automl.views.report import format_front, reference_point
from automl.views.report.data import collect
from automl.views.report.page import answer_lines, baseline_words
from automl.views.trial_text import duration, readable_params
from automl.views.trials_table import TrialRow, format_rows

_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


# A latency whose inter-quartile range is over a quarter of its median cannot rank trials that
# differ by less than that: the machine was too noisy while it was measured. One threshold for
# every view and for `automl export --trial best`.
WIDE_SPREAD_RATIO = NOISY_SPREAD_RATIO


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="show a study's trials by state, running trials and the front"
    )
    add_storage_args(p)
    p.add_argument(
        "--grace-period",
        type=positive_int,
        default=None,
        help="seconds without a heartbeat after which a running trial is shown as stale "
        "(default: the workers' default, max(300, 2 x heartbeat interval))",
    )
    add_target_args(p)
    p.add_argument(
        "--all",
        action="store_true",
        help="list every trial (K, width, co-training, state, epochs, rung, accuracies, latency "
        "and its IQR, size, why it stopped), not only the latest",
    )
    p.add_argument(
        "--max-latency-ms",
        type=positive_float,
        default=None,
        help="latency budget of the recommended model (default: the knee of the front)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name = resolve_study_name(args.storage, args.study)
    settings = StorageSettings(grace_period=args.grace_period)
    study = load_study(name, args.storage, artifact_dir=args.artifacts, settings=settings)
    trials = study.trials()
    counts = Counter(t.state.name for t in trials)
    target = study.optuna_study.user_attrs.get(StudyAttr.TARGET_TRIALS)
    if target and len(trials) > int(target):
        # More trials than were ever asked for: an open-ended search (--timeout, workers) ran
        # here, and "30 of 1" would be nonsense; no target, no time left.
        target = None
    print(f"study {name!r} in {redact(study.storage_url)} (space {study.space.source})")
    print(
        f"trials: {len(trials)}"
        + (f" of {target} asked for" if target else "")
        + " | "
        + ", ".join(f"{s.name.lower()} {counts.get(s.name, 0)}" for s in TrialState)
    )
    print(networks_line(study, trials))
    paused = study.paused_trials()
    if paused:
        print(
            f"paused: {len(paused)} trials wait for a promotion with their checkpoints kept "
            f"(tickets {', '.join(f'#{t.number}' for t in paused[:10])}"
            + (", ..." if len(paused) > 10 else "")
            + ")"
        )
    now = datetime.now()
    print(time_line(trials, target, now))
    beats = heartbeat_ages(study.storage, name)
    running = [t for t in trials if t.state is TrialState.RUNNING]
    for t in running:
        print("  " + running_line(t, beats.get(t.number), now))
    failed = [t for t in trials if t.state is TrialState.FAIL]
    for t in failed[-5:]:
        print(
            f"  failed #{t.number}: {t.user_attrs.get(TrialAttr.FAIL_REASON) or 'no reason stored'}"
        )
    wide = wide_latency_spreads(trials)
    if wide:
        listed = ", ".join(f"#{n} (IQR {100 * r:.0f}% of the median)" for n, r in wide)
        print(
            f"warning: latency too noisy to rank on for {len(wide)} trial(s): {listed}; "
            f"the inter-quartile range is over {WIDE_SPREAD_RATIO:.0%} of the median: measure on "
            "a quieter machine or raise [objectives] latency_min_run_s"
        )
    data = collect(
        study, device=args.device, batch_size=args.batch_size, max_latency_ms=args.max_latency_ms
    )
    _early_stopping(study, trials, data.rows, show_all=args.all)
    print(f"Pareto front{target_words(args.device, args.batch_size)}:")
    print(format_front(data.front))
    if data.baseline is not None and not data.on_front(data.baseline):
        # The baseline stays in view when the front dominates it: it is what K > 1 must beat.
        print("baseline (K = 1 at the default width), dominated:")
        print(format_front([data.baseline]))
    elif data.baseline is None:
        print(baseline_words(data))
    print("\n".join(answer_lines(data)))
    return 0


def networks_line(study: AutoMLStudy, trials: list[FrozenTrial]) -> str:
    """What the space holds and how much of it the trials have seen."""
    nets = {t.user_attrs.get(TrialAttr.NETWORK) for t in trials} - {None}
    configs = {t.user_attrs.get(TrialAttr.CONFIG) for t in trials} - {None}
    reused = sum(1 for t in trials if t.user_attrs.get(TrialAttr.REUSED_FROM) is not None)
    line = (
        f"networks: the space holds {describe_counts(study.networks(keep=False))}; trials so far "
        f"tried {len(nets)} of them in {len(configs)} configurations"
        + (f", {reused} trials reused an outcome already stored" if reused else "")
    )
    survey = stored_survey(study.optuna_study)
    if survey is not None and survey["points"]:
        ms = sorted(float(p["latency_ms"]) for p in survey["points"])
        started = sum(1 for t in trials if TrialAttr.STARTUP in t.user_attrs)
        line += (
            f"; all {len(ms)} timed before training on {survey.get('host') or '?'} "
            f"({survey.get('target') or '?'}, {ms[0]:.3f} to {ms[-1]:.3f} ms, "
            f"{float(survey.get('seconds') or 0):.0f} s), {started} trials of the start "
            "spread over them"
        )
    return line


def running_line(t: FrozenTrial, beat: Heartbeat | None, now: datetime) -> str:
    """One running trial: where, how long, which epoch, its heartbeat (stale or not), params."""
    where = t.user_attrs.get(TrialAttr.HOST, "?")
    dev = t.user_attrs.get(TrialAttr.DEVICE, "?")
    curve = t.user_attrs.get(TrialAttr.CURVE, [])
    elapsed = duration((now - t.datetime_start).total_seconds()) if t.datetime_start else "?"
    if beat is None or beat.age_s is None:
        heart = "no heartbeat"
    elif beat.stale:
        heart = (
            f"STALE: last heartbeat {duration(beat.age_s)} ago (grace {duration(beat.grace_s)}); "
            "its worker is probably gone, the next worker or search retries it"
        )
    else:
        heart = f"heartbeat {duration(beat.age_s)} ago"
    return (
        f"running #{t.number} on {where} {dev} for {elapsed}, epochs done {len(curve)}, {heart}; "
        f"{readable_params(t.params)}"
    )


def time_line(trials: list[FrozenTrial], target: int | None, now: datetime) -> str:
    """The study's elapsed time and, with a target, an estimate of the time left from the mean
    time of the trials that ended, shared by the trials running now."""
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    if not starts:
        return "elapsed: nothing has started yet"
    active = any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    last = now if active or not ends else max(ends)
    spent = duration((last - min(starts)).total_seconds())
    line = f"elapsed: {spent} since the first trial started"
    ended = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state in _ENDED and t.datetime_start is not None and t.datetime_complete is not None
    ]
    if not target or not ended:
        return line
    mean_s = sum(ended) / len(ended)
    left = max(0, int(target) - len(ended))
    if left == 0:
        return line + f"; {len(ended)} of {target} trials ended"
    parallel = max(1, sum(1 for t in trials if t.state is TrialState.RUNNING))
    eta = mean_s * left / parallel
    return (
        line + f"; about {duration(eta)} left: {left} of {target} trials to end at "
        f"{duration(mean_s)} each (mean so far), {parallel} at a time"
    )


def wide_latency_spreads(trials: list[FrozenTrial]) -> list[tuple[int, float]]:
    """(number, IQR / median) of the trials whose stored latency spread exceeds
    ``WIDE_SPREAD_RATIO``."""
    out = []
    for t in trials:
        med = t.user_attrs.get(TrialAttr.LATENCY_MS)
        iqr = t.user_attrs.get(TrialAttr.LATENCY_IQR_MS)
        if med is None or iqr is None or not float(med) > 0:
            continue
        ratio = float(iqr) / float(med)
        if ratio > WIDE_SPREAD_RATIO:
            out.append((t.number, ratio))
    return out


# How many of the latest trials the per-trial table shows, and points of the compute history.
SHOWN_TRIALS = 15
HISTORY_POINTS = 6


def _early_stopping(
    study: AutoMLStudy, trials: list[FrozenTrial], rows: list[TrialRow], *, show_all: bool
) -> None:
    """The early-stopping rule, the trials (the latest, or all) with their epochs, rung and
    reason, and the front's hypervolume against the compute spent."""
    stopper = early_stopper(study.space)
    kind = study.space.scheduler_kind
    if isinstance(stopper, RungScheduler):
        rule = f"asha, eta {stopper.eta}, rungs at epochs {stopper.rungs} of {stopper.epochs}"
    else:
        rule = str(kind)
    print(f"early stopping: {rule}")
    ended = [r for r in rows if r.state != "waiting"]
    if ended:
        shown = ended if show_all else ended[-SHOWN_TRIALS:]
        more = (
            f" (the last {len(shown)} of {len(ended)}; --all for every one)"
            if len(shown) < len(ended)
            else ""
        )
        print(f"trials{more}:")
        for line in format_rows(shown).splitlines():
            print("  " + line)
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
