"""The search: studies, the workers' trial loop, one trial's life, early stopping, replays.

What this package guarantees: a study asked for N trials runs exactly N however many workers share
it (trials are claimed with the storage's atomic state change); a trial ends in one documented
state with its reason stored, and an interrupted one resumes from its last epoch; every decision a
worker takes (rungs, retries) is read from the storage, so workers on one database agree.

- ``study``: ``create_study``, ``load_study``, ``AutoMLStudy`` (``optimize``, ``pareto_front``).
- ``runner``: the claim loop (``run_trials``). ``trial``: one trial top to bottom (``run_trial``),
  with ``checkpoints``, ``reporter`` (after each epoch), ``budgets``, ``timing`` (latency on one
  scale per host) and ``subsets`` (the members' operating points) beside it. ``retries``: stale and
  interrupted trials. ``hooks``: what runs when a trial ends.
- ``scheduler`` (rungs, ASHA on two objectives) and ``pruning`` (dominance): early stopping.
- ``hypervolume``, ``progress``: the front's hypervolume and each trial's stage.
- ``worker``: the long-running worker. ``remeasure``: a study's front timed on another device.
  ``simulate``: a tabulated search replayed in simulated time.
"""

from __future__ import annotations

from automl.search.records import ParetoRecord
from automl.search.remeasure import RemeasureResult, remeasure
from automl.search.runner import RunStats, run_trials
from automl.search.study import AutoMLStudy, create_study, load_study
from automl.search.trial import TrialEnv, run_trial
from automl.search.worker import WorkerOptions, run_worker

__all__ = [
    "AutoMLStudy",
    "ParetoRecord",
    "RemeasureResult",
    "RunStats",
    "TrialEnv",
    "WorkerOptions",
    "create_study",
    "load_study",
    "remeasure",
    "run_trial",
    "run_trials",
    "run_worker",
]
