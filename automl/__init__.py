"""Multi-objective AutoML for divide-and-co-training networks.

Search the division factor K, the width and the co-training weights of a network for the best
trade-off between accuracy and measured inference latency, with Optuna studies kept in SQLite or
PostgreSQL.
"""

from __future__ import annotations

import warnings as _warnings

import optuna as _optuna

from automl._version import __version__
from automl.errors import (
    AutoMLError,
    ConfigError,
    DataError,
    DivergedError,
    ModelError,
    SearchSpaceError,
    StorageError,
    TrainingError,
)
from automl.export import load_model
from automl.models import create_model, fuse, list_models, unfuse
from automl.search.hooks import register_trial_end_hook
from automl.search.records import ParetoRecord
from automl.search.study import AutoMLStudy, create_study, load_study
from automl.space import SearchSpace, load_space
from automl.views.dashboard import publish_trial_end

# Every trial that ends in this process publishes its note and the study's plots to
# optuna-dashboard, whichever entry point ran it: the views are wired to the search here, at the
# root, so that the search itself never imports a view.
register_trial_end_hook(publish_trial_end)

# Heartbeats, metric names and grouped TPE are marked experimental in Optuna; we rely on them on
# purpose, so their warnings are silenced for calls made from this package only.
_warnings.filterwarnings(
    "ignore", category=_optuna.exceptions.ExperimentalWarning, module=r"automl(\..*)?$"
)
_warnings.filterwarnings(
    "ignore",
    message=r"Argument ``(group|heartbeat_interval|grace_period)``",
    category=_optuna.exceptions.ExperimentalWarning,
)

__all__ = [
    "AutoMLError",
    "AutoMLStudy",
    "ConfigError",
    "DataError",
    "DivergedError",
    "ModelError",
    "ParetoRecord",
    "SearchSpace",
    "SearchSpaceError",
    "StorageError",
    "TrainingError",
    "__version__",
    "create_model",
    "create_study",
    "fuse",
    "list_models",
    "load_model",
    "load_space",
    "load_study",
    "unfuse",
]
