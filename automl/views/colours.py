"""One colour per K in every view (report HTML and PNG, dashboard plots): tab10's order."""

from __future__ import annotations

__all__ = ["K_COLOURS", "k_colour"]

K_COLOURS = {
    1: "#1f77b4",
    2: "#ff7f0e",
    4: "#2ca02c",
    8: "#d62728",
    16: "#9467bd",
}
_OTHER = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def k_colour(k: int) -> str:
    return K_COLOURS.get(k, _OTHER[k % len(_OTHER)])
