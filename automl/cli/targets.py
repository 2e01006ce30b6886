"""``--device`` / ``--batch-size`` of the commands that show a front: the latency target read."""

from __future__ import annotations

import argparse

from automl.cli.argtypes import positive_int


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default=None,
        metavar="TARGET",
        help="show the front with the latencies timed on this target: 'cpu', 'cuda:<GPU model>' "
        "or a name given to `automl remeasure --name` (default: the workers' own)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="the target's latency batch size (default: the space's)",
    )


def target_words(device: str | None, batch_size: int | None) -> str:
    if device is None:
        return ""
    return f" on {device}" + (f" at batch {batch_size}" if batch_size else "")
