"""One colour per K in every view (report HTML and PNG, dashboard plots): tab10's order."""

from __future__ import annotations

__all__ = ["K_COLOURS", "k_colour", "k_shade"]

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


def k_shade(k: int, i: int, n: int) -> str:
    """The ``i``-th of ``n`` shades of K's colour, dark to light: many trials of one K stay that
    K's colour and can still be told apart."""
    base = k_colour(k).lstrip("#")
    rgb = [int(base[j : j + 2], 16) for j in (0, 2, 4)]
    # From 35% darker to 45% lighter than the K colour; one trial keeps the colour itself.
    t = 0.0 if n <= 1 else -0.35 + 0.8 * i / (n - 1)
    mixed = [round(c * (1 + t)) if t < 0 else round(c + (255 - c) * t) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)
