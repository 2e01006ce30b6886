"""Argument types that refuse impossible numbers while argparse parses them.

argparse turns the ``ArgumentTypeError`` into ``automl <cmd>: error: argument --x: ...`` and exit
code 2, so a negative trial count or a port past 65535 never reaches a study or a socket.
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "add_cpu_share_arg",
    "non_negative_float",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1..65535, got {text!r}")
    return value


def _cpu_share(text: str) -> int | None:
    from automl.errors import ConfigError
    from automl.measure.host_share import parse_cpu_share

    try:
        return parse_cpu_share(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--cpu-share ")) from None


def add_cpu_share_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cpu-share",
        type=_cpu_share,
        default=None,
        metavar="auto|off|N",
        help="split this host's cores among the workers on it (auto: those running; N: as if N "
        "ran; off: no split); latency measurements on one host never overlap either way",
    )
