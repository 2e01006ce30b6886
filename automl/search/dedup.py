"""Never pay twice for the same evidence: configurations trained, networks timed, once each.

A trial's *configuration* is its network (``automl.space.networks.Network``: the family, K and
every layer's shape) plus every training setting that changes the result (the co-training weight,
kind and warm-up, learning rate, weight decay and its division, dropout). Within a study:

- a configuration already trained to the end (COMPLETE) is not trained again: the new trial takes
  the stored outcome (its values, test accuracy, curve and latency, ``TrialAttr.REUSED_FROM``
  naming the source), so that the sampler sees the true value of the point it asked for again
  (an honest repeat observation) instead of a made-up failure it would keep re-proposing;
- a configuration stopped or paused at a rung (PRUNED) is stopped at the same epochs, with the same
  curve and reason: at that fidelity its outcome is known, and a paused one is resumed through its
  own continuation if it is promoted;
- a configuration that is training elsewhere at this moment is not started a second time: the
  trial fails with "not trained: the same configuration is training as trial N" (a FAIL is left
  out of the samplers' history, so nothing false is learnt);
- a network already timed on this host and latency target is not timed again: its latency
  attributes are copied (``latency_from``).

Two workers that reach one new configuration at the same instant both train it: the check reads
the storage, it does not lock it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.errors import AutoMLError
from automl.search.retries import trial_key
from automl.space import SearchSpace, TrialParams
from automl.space.networks import Network
from automl.store.attrs import TrialAttr

__all__ = [
    "NOT_TRAINED",
    "SameConfigurationRunning",
    "config_id",
    "known_latency",
    "known_subset_latencies",
    "same_configuration",
]

# Attributes that belong to the attempt, not to the configuration's outcome.
_OWN = {
    TrialAttr.WORKER_PROCESS,
    TrialAttr.HOST,
    TrialAttr.DEVICE,
    TrialAttr.FAIL_REASON,
    TrialAttr.RETRIED_AFTER,
    TrialAttr.TRAIN_SECONDS,
    TrialAttr.RESUMED_FROM_EPOCH,
    TrialAttr.REUSED_FROM,
    TrialAttr.EPOCH_SECONDS,
    # A start's pick is the ticket's, not the configuration's.
    TrialAttr.STARTUP,
    # A reusing trial is stopped where its source paused; it is not itself paused (it has no
    # checkpoint and no continuation: the source's resumes for both).
    TrialAttr.PAUSED,
}


# How the reason of a trial that was not trained because its configuration is training starts.
NOT_TRAINED = "not trained: the same configuration is training as trial"


class SameConfigurationRunning(AutoMLError):
    """The trial's configuration is training in another trial right now."""


def config_id(
    network: Network, params: TrialParams, space: SearchSpace, epochs: int | None = None
) -> str:
    """A stable id of the network with the training settings that change its result; ``epochs``
    when a trial trains another schedule than the space's (a final-phase retrain)."""
    settings: dict[str, Any] = {
        "lr": params.lr,
        "weight_decay": params.weight_decay,
        "divide_weight_decay": params.divide_weight_decay,
        "drop_rate": space.model.drop_rate,
    }
    if epochs is not None and epochs != space.train.epochs:
        # Left out otherwise, so that the ids stored before stay the ids of the same runs.
        settings["epochs"] = epochs
    if params.split_factor > 1:
        # With K = 1 the co-training term is off: its settings change nothing.
        settings |= {
            "cot_weight": params.cot_weight,
            "cot_kind": params.cot_kind,
            "cot_warmup_epochs": params.cot_warmup_epochs,
        }
    text = json.dumps([network.id, settings], sort_keys=True)
    return f"{network.id}/{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _source(trials: list[FrozenTrial], t: FrozenTrial) -> FrozenTrial:
    """The trial that trained what ``t`` holds (``t`` itself unless it reused another's)."""
    seen = set()
    while (n := t.user_attrs.get(TrialAttr.REUSED_FROM)) is not None and n not in seen:
        seen.add(n)
        if not 0 <= int(n) < len(trials):
            break
        t = trials[int(n)]
    return t


def _curve_len(t: FrozenTrial) -> int:
    curve = t.user_attrs.get(TrialAttr.CURVE)
    return len(curve) if isinstance(curve, list) else 0


def same_configuration(study: optuna.Study, trial: optuna.Trial, config: str) -> FrozenTrial | None:
    """The stored trial whose outcome ``trial`` (of configuration ``config``) takes: a finished
    one first, else the furthest-stopped one; raises ``SameConfigurationRunning`` when the
    configuration is only training elsewhere; ``None`` when it is new."""
    trials = study.get_trials(deepcopy=False)
    own = trials[trial.number]
    key = trial_key(own)
    others = [
        t
        for t in trials
        if t.number != trial.number
        and trial_key(t) != key
        and t.user_attrs.get(TrialAttr.CONFIG) == config
    ]
    complete = [t for t in others if t.state is TrialState.COMPLETE and t.values]
    if complete:
        return _source(trials, complete[0])
    stopped = [t for t in others if t.state is TrialState.PRUNED and _curve_len(t)]
    if stopped:
        return _source(trials, max(stopped, key=lambda t: (_curve_len(t), -t.number)))
    running = [t for t in others if t.state is TrialState.RUNNING]
    if running:
        raise SameConfigurationRunning(f"{NOT_TRAINED} {running[0].number}")
    return None


def outcome_attrs(source: FrozenTrial) -> dict[str, Any]:
    """What a reusing trial copies from ``source``: everything but the attempt's own records."""
    return {k: v for k, v in source.user_attrs.items() if k not in _OWN}


def known_subset_latencies(study: optuna.Study, latency_from: object) -> dict[int, dict[str, Any]]:
    """The subset latencies (m -> latency fields) of the trial whose measurement a trial reused,
    once that trial stored them."""
    trials = study.get_trials(deepcopy=False)
    if not isinstance(latency_from, int) or not 0 <= latency_from < len(trials):
        return {}
    points = trials[latency_from].user_attrs.get(TrialAttr.SUBSET_POINTS) or []
    fields = ("latency_ms", "latency_iqr_ms", "latency_mode")
    return {
        int(p["members"]): {f: p[f] for f in fields if f in p}
        for p in points
        if isinstance(p, dict) and "members" in p and "latency_ms" in p
    }


def known_latency(
    study: optuna.Study, trial: optuna.Trial, network: str, host: str, target: str
) -> dict[str, Any] | None:
    """The latency attributes of ``network`` timed on ``host`` for ``target`` by an earlier
    trial of the study, or ``None``."""
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if (
            t.number != trial.number
            and a.get(TrialAttr.NETWORK) == network
            and a.get(TrialAttr.HOST) == host
            and a.get(TrialAttr.LATENCY_TARGET) == target
            and a.get(TrialAttr.LATENCY_MS) is not None
            and a.get(TrialAttr.LATENCY_FROM) is None
        ):
            out = {k: v for k, v in a.items() if k.startswith("latency_") and k != "latency_from"}
            out[TrialAttr.LATENCY_FROM] = t.number
            return out
    return None
