"""Which process runs a trial, so that a rerun on the same machine sees at once that it is gone.

A worker killed with SIGKILL (or a crashed ``automl search``) sends no more heartbeats, and the
storage calls its trial stale only after the grace period (300 s by default). When the process
that held the trial ran on this very machine, the operating system already knows whether it is
alive: the tag names the host, the boot and the process id, and a tag of this host and boot
whose process no longer exists means the trial can be retried now. Any doubt (another host,
another boot, a process id that exists, perhaps reused) leaves the decision to the heartbeat.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["gone_here", "process_tag"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_tag() -> str:
    """``host|boot|pid`` of this process."""
    return f"{socket.gethostname()}|{_boot_id()}|{os.getpid()}"


def gone_here(tag: object) -> int | None:
    """The process id of ``tag`` when it names a process of this host and boot that no longer
    exists; ``None`` otherwise (alive, elsewhere, or not a tag)."""
    if not isinstance(tag, str):
        return None
    parts = tag.rsplit("|", 2)
    if len(parts) != 3:
        return None
    host, boot, pid_text = parts
    boot_here = _boot_id()
    if host != socket.gethostname() or not boot_here or boot != boot_here:
        return None
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:  # alive, under another user
        return None
    return None
