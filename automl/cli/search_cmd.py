"""``automl search``: create or resume a study and run its trials here."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from automl.cli.argtypes import add_cpu_share_arg, positive_float, positive_int
from automl.cli.common import add_storage_args
from automl.errors import ConfigError
from automl.measure.host_share import HostShare
from automl.search.hooks import default_trial_end_hooks
from automl.search.study import create_study
from automl.search.worker import install_stop_handlers
from automl.space.networks import describe_counts
from automl.store.attrs import StudyAttr, TrialAttr
from automl.store.storage import DEFAULT_HEARTBEAT_INTERVAL, StorageSettings, redact
from automl.views.report import format_front
from automl.views.report.data import collect
from automl.views.report.page import answer_lines
from automl.views.trial_text import readable_params

if TYPE_CHECKING:
    from automl.space import SearchSpace


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="create or resume a study from a search space and run trials")
    p.add_argument("--space", required=True, help="search space TOML file (see search_spaces/)")
    add_storage_args(p)
    p.add_argument(
        "--n-trials",
        type=positive_int,
        default=None,
        help="trials to add and run (default: 10 unless --timeout)",
    )
    p.add_argument(
        "--timeout", type=positive_float, default=None, help="stop starting trials after S seconds"
    )
    p.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        metavar="S",
        help="end within S seconds: start no trial that would not fit, stop a running one at "
        "its next epoch boundary (it resumes on the next run)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--enqueue-only",
        action="store_true",
        help="add trials for workers until the study holds --n-trials in all (again: none), "
        "run none here",
    )
    p.add_argument(
        "--heartbeat-interval", type=positive_int, default=None, help="seconds between heartbeats"
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="seconds without a heartbeat before a running trial counts as dead and is retried "
        "(default: 300, or twice the heartbeat interval)",
    )
    add_cpu_share_arg(p)
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars: one line per trial as it ends instead",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="store a torch.profiler trace (TensorBoard format) of a few steps with each trial",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.time_budget is not None and not args.time_budget > 0:
        raise ConfigError(
            f"--time-budget must be a positive number of seconds, got {args.time_budget}"
        )
    if args.grace_period is not None and args.grace_period < 1:
        raise ConfigError(
            f"--grace-period must be a positive number of seconds, got {args.grace_period}"
        )
    settings = None
    if args.heartbeat_interval or args.grace_period:
        settings = StorageSettings(
            heartbeat_interval=args.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL,
            grace_period=args.grace_period,
        )
    study = create_study(
        args.space,
        storage=args.storage,
        study_name=args.study,
        artifact_dir=args.artifacts,
        settings=settings,
        # Trials run here need the device now; enqueued ones run on the workers' devices. The
        # data set is checked either way (the workers read the same [data] root).
        device=None if args.enqueue_only else args.device,
    )
    n_trials = args.n_trials
    if n_trials is None and args.timeout is None:
        n_trials = 10
    print(
        f"study {study.study_name!r} in {redact(study.storage_url)}: "
        f"{len(study.trials())} trials so far; artifacts in {study.artifact_dir}"
    )
    # What the space holds, before anything trains: a width range is a handful of networks.
    print(f"the space holds {describe_counts(study.networks())}")
    if args.enqueue_only:
        # The study's target counts every trial ever enqueued (the baseline included), so the
        # same command run again (a compose stack brought up again) adds none: a study asked for
        # N trials runs N, however often its init job runs.
        target = int(study.optuna_study.user_attrs.get(StudyAttr.TARGET_TRIALS) or 0)
        study.add_trials(max(0, (n_trials or 0) - target))
        print(f"{study.waiting_trials()} trials waiting for workers")
        return 0
    # Ctrl-C and SIGTERM as for a worker: the running trial ends at its epoch boundary and is
    # left waiting with its checkpoint, so the next run resumes it at once.
    stop = threading.Event()
    signalled = (
        install_stop_handlers(stop)
        if threading.current_thread() is threading.main_thread()
        else lambda: None
    )
    hooks = None
    if args.no_progress:
        # Without bars a search would print nothing for minutes: one line per ended trial.
        hooks = (*default_trial_end_hooks(), print_trial_end)
        print("progress bars off: one line per trial as it ends")
    with HostShare(args.cpu_share) as share:
        stats = study.optimize(
            n_trials=n_trials,
            timeout=args.timeout,
            budget_s=args.time_budget,
            device=args.device,
            progress=not args.no_progress,
            profile=args.profile,
            stop_event=stop,
            host_share=share,
            on_trial_end=hooks,
        )
    signum = signalled()
    if signum is not None:
        print(
            f"automl: {signal.Signals(signum).name}: stopped after {stats.total} trials; "
            f"{study.waiting_trials()} left waiting, the same command resumes them",
            file=sys.stderr,
        )
        return 128 + signum
    print(
        f"ran {stats.total} trials here: {stats.completed} complete, {stats.pruned} pruned, "
        f"{stats.failed} failed"
        + (f"; {stats.reused} reused a configuration already trained" if stats.reused else "")
    )
    if stats.final is not None:
        f = stats.final
        # A retrain (or restart) goes first, then paused networks with what is left.
        what = {
            "continue": "paused networks resumed",
            "retrain": "the most accurate configuration retrained, then paused networks",
            "restart": "the most accurate configuration trained on, then paused networks",
        }[study.space.scheduler.final]
        print(
            f"final phase ({what}): {f.completed} trained to the end"
            + (f", {f.total - f.completed} stopped by the budget" if f.total > f.completed else "")
        )
    if stats.exhausted:
        print(
            "every configuration the sampler proposes has been tried: the search ended early "
            "(widen the space or try another sampler for more)"
        )
    data = collect(study)
    print("Pareto front (validation accuracy vs latency):")
    print(format_front(data.front))
    print("\n".join(answer_lines(data)))
    return 0


def print_trial_end(study: optuna.Study, space: SearchSpace, trial_id: int) -> None:
    """One line for a trial that ended: state, outcome, epochs, parameters."""
    t = study._storage.get_trial(trial_id)
    curve = t.user_attrs.get(TrialAttr.CURVE) or []
    epochs = sum(1 for v in curve if v is not None)
    if t.state is TrialState.COMPLETE and t.values is not None:
        outcome = f"accuracy {t.values[0]:.4f}, latency {t.values[1]:.3g} ms"
    else:
        why = t.user_attrs.get(TrialAttr.PRUNED_REASON) or t.user_attrs.get(TrialAttr.FAIL_REASON)
        outcome = str(why or "no reason stored")[:160]
    state = "stopped" if t.state is TrialState.PRUNED else t.state.name.lower()
    print(
        f"trial #{t.number} {state} after {epochs} epoch(s): {outcome}; "
        f"{readable_params(t.params)}",
        flush=True,
    )
