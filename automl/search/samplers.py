"""The sampler a space asks for (``[sampler]``), seeded as given."""

from __future__ import annotations

import optuna

from automl.search.survey_sampler import SurveySampler
from automl.space import SamplerName, SearchSpace

__all__ = ["make_sampler"]


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    sm = space.sampler
    if sm.name == SamplerName.TPE:
        return optuna.samplers.TPESampler(
            seed=sm.seed, n_startup_trials=sm.n_startup_trials, multivariate=True, group=True
        )
    if sm.name == SamplerName.NSGAII:
        return optuna.samplers.NSGAIISampler(seed=sm.seed, population_size=sm.population_size)
    if sm.name == SamplerName.GP:
        # Optuna's Gaussian process (log EHVI for two objectives; it reads the constraints
        # every trial stores). The co-training parameters exist for K > 1 only, so it models
        # the parameters every trial has and draws the co-training ones at random, which it
        # would warn about on every trial.
        return optuna.samplers.GPSampler(
            seed=sm.seed,
            n_startup_trials=sm.n_startup_trials,
            warn_independent_sampling=False,
        )
    if sm.name == SamplerName.SURVEY:
        return SurveySampler(
            seed=sm.seed,
            n_startup_trials=sm.n_startup_trials,
            max_latency_ms=space.constraints.max_latency_ms,
        )
    return optuna.samplers.RandomSampler(seed=sm.seed)
