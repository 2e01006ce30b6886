"""How a searched parameter is written: a fixed value, a list of choices or a range.

Each kind samples itself from an Optuna trial under the parameter's name, so the space never
branches on the kind of a parameter when it suggests a point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

__all__ = ["Choice", "FloatRange", "IntRange", "Param"]


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if len(self.choices) == 1:
            return self.choices[0]
        return trial.suggest_categorical(name, list(self.choices))


Param = FloatRange | IntRange | Choice
