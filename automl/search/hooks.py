"""What happens after a trial ends besides the search itself: hooks the caller plugs in.

The search does not know how trials are shown; the views do (the trial's note and the study's plots
in optuna-dashboard, ``automl.views.dashboard.publish_trial_end``). The package's root registers
that publisher as a default, so that every entry point (the CLI, a worker, ``study.optimize``)
publishes alike, and the dependency still points from the views to the search. A hook is called
with the study, its space and the ended trial's id; it must never fail a trial (the publisher only
warns).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from automl.space import SearchSpace

__all__ = ["TrialEndHook", "default_trial_end_hooks", "register_trial_end_hook"]

TrialEndHook = Callable[[optuna.Study, SearchSpace, int], None]

_DEFAULTS: list[TrialEndHook] = []


def register_trial_end_hook(hook: TrialEndHook) -> None:
    """Call ``hook`` after every trial that ends (complete, pruned, failed) in this process."""
    if hook not in _DEFAULTS:
        _DEFAULTS.append(hook)


def default_trial_end_hooks() -> tuple[TrialEndHook, ...]:
    return tuple(_DEFAULTS)
