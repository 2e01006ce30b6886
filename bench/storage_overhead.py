"""Per-trial storage overhead of the worker loop (tickets, atomic claims, heartbeats, retries)
against plain Optuna doing the same work, on the PostgreSQL server, side by side.

    python bench/storage_overhead.py [--trials 200] [--storage postgresql+psycopg2://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import optuna

from automl.search.runner import run_trials
from automl.search.study import DIRECTIONS
from automl.store.storage import StorageSettings, open_storage


def _work(trial: optuna.Trial) -> tuple[float, float]:
    """A quick objective: the same suggestions and attributes in both runs."""
    k = trial.suggest_categorical("split_factor", [1, 2, 4])
    w = trial.suggest_float("width_mult", 0.5, 2.0, log=True)
    trial.set_user_attr("n_params", int(1e5 * w * w))
    trial.set_user_attr("latency_ms", k * w)
    return 1.0 / (1.0 + k * w), k * w


class _Quick:
    def run(self, trial: optuna.Trial, key: int) -> tuple[float, float]:
        return _work(trial)


def plain(url: str, n: int) -> float:
    name = f"bench-plain-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=url, study_name=name, directions=DIRECTIONS)
    t0 = time.perf_counter()
    study.optimize(_work, n_trials=n)
    dt = time.perf_counter() - t0
    optuna.delete_study(study_name=name, storage=url)
    return dt / n


def ours(url: str, n: int) -> float:
    name = f"bench-automl-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url, StorageSettings(heartbeat_interval=60))
    study = optuna.create_study(storage=storage, study_name=name, directions=DIRECTIONS)
    t0 = time.perf_counter()
    for _ in range(n):  # the tickets are part of the cost
        study.enqueue_trial({})
    stats = run_trials(study, storage, _Quick())  # type: ignore[arg-type]
    dt = time.perf_counter() - t0
    assert stats.completed == n
    optuna.delete_study(study_name=name, storage=url)
    return dt / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--storage", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p, o = [], []
    for _ in range(args.rounds):
        p.append(plain(args.storage, args.trials))
        o.append(ours(args.storage, args.trials))
    mp, mo = statistics.median(p), statistics.median(o)
    print(
        f"# storage overhead per trial, {args.trials} trials x {args.rounds} rounds, {args.storage}"
    )
    print(f"plain optuna.optimize: {mp * 1e3:.2f} ms/trial")
    print(f"automl worker loop:    {mo * 1e3:.2f} ms/trial")
    print(f"ratio automl / plain:  {mo / mp:.2f}")


if __name__ == "__main__":
    main()
