"""A Pareto-aware pruner for accuracy-vs-latency studies.

Optuna's pruners compare one intermediate value, which a multi-objective study does not have: a
slow-to-learn trial may still be on the front if it is fast. Latency does not depend on the
weights, so every trial measures it before training; this pruner then stops a trial at epoch e only
when at least ``min_dominators`` finished trials were at least as fast *and* had, at the same
epoch, a validation accuracy higher by ``margin``: such a trial would be dominated unless it
overtook all of them in the remaining epochs. The curves are read from the trials' user attributes,
so a worker on another host sees them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.search.stop import Stop
from automl.space import PrunerSection
from automl.store.attrs import TrialAttr

__all__ = ["ParetoPruner"]


@dataclass(frozen=True)
class ParetoPruner(PrunerSection):
    """The ``[pruner]`` section's rule (its fields are the section's)."""

    @classmethod
    def of(cls, section: PrunerSection) -> ParetoPruner:
        return cls(**asdict(section))

    def dominators(
        self, trials: list[FrozenTrial], epoch: int, accuracy: float, latency_ms: float
    ) -> list[int]:
        """Numbers of finished trials that dominate (accuracy at ``epoch``, ``latency_ms``)."""
        out = []
        for t in trials:
            if t.state is not TrialState.COMPLETE:
                continue
            curve = t.user_attrs.get(TrialAttr.CURVE)
            lat = t.user_attrs.get(TrialAttr.LATENCY_MS)
            if not isinstance(curve, list) or lat is None or len(curve) <= epoch:
                continue
            if curve[epoch] is None:  # an epoch a resumed trial did not record itself
                continue
            if float(lat) <= latency_ms and float(curve[epoch]) >= accuracy + self.margin:
                out.append(t.number)
        return out

    def should_prune(
        self, study: optuna.Study, epoch: int, accuracy: float, latency_ms: float
    ) -> list[int] | None:
        """The dominating trials when the trial should stop, else ``None``."""
        if not self.enabled or epoch < self.warmup_epochs:
            return None
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        doms = self.dominators(trials, epoch, accuracy, latency_ms)
        return doms if len(doms) >= self.min_dominators else None

    def decide(
        self, study: optuna.Study, trial_number: int, epoch: int, accuracy: float, latency_ms: float
    ) -> Stop | None:
        """``automl.search.scheduler.EarlyStopper``: stop when ``should_prune`` finds dominators."""
        doms = self.should_prune(study, epoch, accuracy, latency_ms)
        if doms is None:
            return None
        return Stop(
            f"dominated at epoch {epoch + 1}: trials {doms} were as fast and more accurate by "
            f"at least {self.margin}"
        )
