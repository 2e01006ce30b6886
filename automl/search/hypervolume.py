"""Hypervolume of an accuracy-vs-latency front, and its history against compute spent."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

__all__ = ["hypervolume_2d", "non_dominated", "pareto_points"]

T = TypeVar("T")


def non_dominated(items: Iterable[T], key: Callable[[T], tuple[float, float]]) -> list[T]:
    """The items whose (accuracy, latency) ``key`` no other item beats on both (accuracy up,
    latency down), fastest first; of equal points the first is kept."""
    front: list[T] = []
    best = -math.inf
    for item in sorted(items, key=lambda i: (key(i)[1], -key(i)[0])):
        if key(item)[0] > best:
            front.append(item)
            best = key(item)[0]
    return front


def pareto_points(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (accuracy up, latency down) points, sorted by latency."""
    return non_dominated(points, key=lambda p: p)


def hypervolume_2d(points: Iterable[tuple[float, float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (accuracy up, latency down) and bounded by ``reference``
    (accuracy, latency): the worst corner. Points not better than it on both count nothing."""
    ref_acc, ref_lat = float(reference[0]), float(reference[1])
    front = [(a, lat) for a, lat in pareto_points(points) if a > ref_acc and lat < ref_lat]
    area = 0.0
    # Sorted by latency with accuracy rising: each point adds the strip up to the next latency.
    for i, (acc, lat) in enumerate(front):
        nxt = front[i + 1][1] if i + 1 < len(front) else ref_lat
        area += (acc - ref_acc) * (nxt - lat)
    return area
