"""Hypervolume of an accuracy-vs-latency front, and its history against compute spent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["hypervolume_2d", "pareto_points"]


def pareto_points(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (accuracy up, latency down) points, sorted by latency."""
    best: list[tuple[float, float]] = []
    for acc, lat in sorted(points, key=lambda p: (p[1], -p[0])):
        if not best or acc > best[-1][0]:
            best.append((acc, lat))
    return best


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
