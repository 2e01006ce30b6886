"""Choosing the device a worker trains and measures on."""

from __future__ import annotations

import torch

from automl.errors import ConfigError

__all__ = ["describe_device", "resolve_device"]


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """``None``/"auto": the first GPU if there is one, else the CPU. Unknown devices are errors."""
    if spec is None or str(spec) == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {spec!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r} asked for, but no CUDA GPU is available here; use 'cpu'"
            )
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} does not exist: this host has {torch.cuda.device_count()} GPU(s)"
            )
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise ConfigError(f"unsupported device {spec!r}; use 'cpu' or 'cuda:N'")
    # "cpu:3" names no particular core; one CPU device keeps the stored device names equal.
    return torch.device("cpu")


def describe_device(dev: torch.device) -> str:
    """A human-readable name stored with every trial: the GPU model or the CPU thread count."""
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"
