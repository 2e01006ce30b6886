"""A sampler for a front whose latencies are known: expected hypervolume improvement per network.

Optuna's samplers model both objectives from the trials they saw. Here one of them is known before
training: the latency survey (``automl.search.startup``) timed every network of the space. So
``[sampler] name = "survey"`` models only the accuracy, and scores each network not tried yet by
the hypervolume its point would add to the front at its measured latency, in expectation over
the accuracy model:

- the model: a Gaussian process on (log width, log K) of the validation accuracy of the finished
  trials (Matern 5/2 with a noise term, scikit-learn's; its hyperparameters fitted by maximum
  likelihood at every suggestion, on a dozen points a few milliseconds);
- the score: E[HV(front + (a, latency)) - HV(front)] with a ~ N(mean, sd) of the model, by
  Gauss-Hermite quadrature; the reference point is the worst accuracy seen (less the model's noise)
  and 5% past the slowest network of the survey;
- the choice: the untried network with the highest score (the faster one of equals); its K and
  width are the trial's, the co-training settings of a K > 1 network are drawn at random.

Until the survey is stored and ``n_startup_trials`` trials have finished, and once every network
has been tried, it samples at random (with the workers' configuration check, a repeat of a K = 1
network costs nothing; a K > 1 one explores other co-training settings). A network over
``[constraints] max_latency_ms`` is never proposed. The survey happens for this sampler whatever
``startup`` says.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from automl.search.hypervolume import hypervolume_2d
from automl.search.startup import SurveyPoint, stored_survey
from automl.store.attrs import TrialAttr

__all__ = ["SurveySampler", "expected_improvement"]

# The parameters this sampler chooses; every other one is drawn at random.
_CHOSEN = ("split_factor", "width_mult")
# Gauss-Hermite nodes and weights for E[f(a)], a ~ N(mean, sd).
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(16)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def expected_improvement(
    front: Sequence[tuple[float, float]],
    latency_ms: float,
    mean: float,
    sd: float,
    reference: tuple[float, float],
) -> float:
    """E[HV(front + (a, latency_ms)) - HV(front)], a ~ N(mean, sd), accuracy up, latency down."""
    base = hypervolume_2d(front, reference)
    gains = [
        hypervolume_2d([*front, (mean + sd * float(z), latency_ms)], reference) - base
        for z in _NODES
    ]
    return float(np.dot(_WEIGHTS, gains))


class SurveySampler(BaseSampler):
    """Chooses the K and width of each trial by expected hypervolume improvement over the
    surveyed networks (see the module's docstring)."""

    def __init__(
        self,
        seed: int | None = None,
        n_startup_trials: int = 8,
        max_latency_ms: float | None = None,
    ) -> None:
        self._random = RandomSampler(seed=seed)
        self._seed = seed
        self._n_startup = n_startup_trials
        self._max_latency_ms = max_latency_ms
        self._space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self._space.calculate(study)
        return {n: d for n, d in space.items() if n in _CHOSEN}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        fixed = trial.system_attrs.get("fixed_params") or {}
        if not search_space or all(n in fixed for n in search_space):
            return {}  # an enqueued trial (the start, a retry): its network is given
        survey = stored_survey(study)
        if survey is None:
            return {}
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state is TrialState.COMPLETE]
        if len(done) < max(2, self._n_startup):
            return {}
        points = [
            SurveyPoint(
                int(p["split_factor"]), float(p["width_mult"]), p["network"], float(p["latency_ms"])
            )
            for p in survey["points"]
        ]
        pick = self._choose(points, trials, done)
        if pick is None:
            return {}
        return {n: v for n, v in pick.params().items() if n in search_space}

    def _choose(
        self, points: list[SurveyPoint], trials: list[FrozenTrial], done: list[FrozenTrial]
    ) -> SurveyPoint | None:
        failed = TrialState.FAIL
        tried = {t.user_attrs.get(TrialAttr.NETWORK) for t in trials if t.state is not failed}
        candidates = [
            p
            for p in points
            if p.network not in tried
            and (self._max_latency_ms is None or p.latency_ms <= self._max_latency_ms)
        ]
        if not candidates:
            return None
        if any("width_mult" not in t.params for t in done):
            return None  # the width is not searched: nothing to model
        # A trial's network is the one its width builds: modelled at the network's own width.
        width_of = {p.network: p.width_mult for p in points}

        def width(t: FrozenTrial) -> float:
            net = t.user_attrs.get(TrialAttr.NETWORK)
            return width_of[net] if net in width_of else float(t.params["width_mult"])

        x = np.array(
            [[math.log(width(t)), math.log(float(t.params.get("split_factor", 1)))] for t in done]
        )
        y = np.array([float(t.values[0]) for t in done])
        mean, sd, noise = _fit_predict(
            x,
            y,
            np.array([[math.log(p.width_mult), math.log(p.split_factor)] for p in candidates]),
        )
        front = [(float(t.values[0]), float(t.values[1])) for t in done]
        slowest = max(p.latency_ms for p in points)
        reference = (float(y.min()) - noise, slowest * 1.05)
        scores = [
            expected_improvement(front, p.latency_ms, m, s, reference)
            for p, m, s in zip(candidates, mean, sd, strict=True)
        ]
        cost = _cost_per_latency_ms(done)
        if cost is not None:
            # Per second of training: a network that adds a little for a quarter of the time is
            # worth more than one that adds a little more for all of it.
            scores = [sc / (cost * p.latency_ms) for sc, p in zip(scores, candidates, strict=True)]
        best = max(range(len(candidates)), key=lambda i: (scores[i], -candidates[i].latency_ms))
        return candidates[best]

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def _cost_per_latency_ms(done: list[FrozenTrial]) -> float | None:
    """Training seconds per millisecond of latency, the median over the trials that trained
    (a reused outcome trained nothing); ``None`` before two of them."""
    ratios = [
        float(t.user_attrs[TrialAttr.TRAIN_SECONDS]) / float(t.values[1])
        for t in done
        if t.user_attrs.get(TrialAttr.TRAIN_SECONDS) and float(t.values[1]) > 0
    ]
    return float(np.median(ratios)) if len(ratios) >= 2 else None


def _fit_predict(
    x: np.ndarray, y: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """The GP's mean and standard deviation at ``at``, and its fitted noise (sd)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=[1.0, 1.0], length_scale_bounds=(0.05, 20.0), nu=2.5
    ) + WhiteKernel(1e-2, (1e-6, 1.0))
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=0)
    with warnings.catch_warnings():
        # A dozen points rarely pin every hyperparameter; the bounds keep the fit sane.
        warnings.simplefilter("ignore")
        gp.fit(x, y)
        mean, sd = gp.predict(at, return_std=True)
    scale = float(np.std(y)) if len(y) > 1 and np.std(y) > 0 else 1.0
    noise = math.sqrt(float(gp.kernel_.k2.noise_level)) * scale
    return np.asarray(mean), np.maximum(np.asarray(sd), 1e-9), noise
