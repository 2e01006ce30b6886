"""Reading files a user names, safely: only regular files (a FIFO named like a file blocks a
reader for ever, a device such as /dev/zero never ends), and never more than a stated size.

Part of the foundation: the space loader, the image readers and the storage checks all take paths
from the command line and use the same words for what a path turned out to be.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["FileKindError", "TooLargeError", "describe", "kind_of", "open_regular", "read_capped"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
# The paths through which a shell hands a process a pipe it has set up itself: process
# substitution (<(...), /dev/fd/N) and a piped standard input. A writer exists on the other end,
# unlike a named FIFO met by chance, so reading one ends.
_DESCRIPTOR_PATHS = ("/dev/stdin", "/dev/fd/", "/proc/self/fd/")


class FileKindError(OSError):
    """The path exists but is not a regular file."""


class TooLargeError(OSError):
    """The file holds more bytes than the reader accepts."""


def kind_of(mode: int) -> str:
    """What a ``st_mode`` is, in words ("a regular file", "a folder", "a FIFO (named pipe)")."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def describe(path: str | Path) -> str | None:
    """What ``path`` is (following links), or None when nothing is there."""
    try:
        return kind_of(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_descriptor_path(path: str | Path) -> bool:
    text = str(path)
    return text == "/dev/stdin" or text.startswith(_DESCRIPTOR_PATHS[1:])


def open_regular(path: str | Path, *, allow_pipe_descriptor: bool = False) -> int:
    """A read-only descriptor of ``path``, which must be a regular file; with
    ``allow_pipe_descriptor`` also a pipe the shell passed as /dev/stdin or /dev/fd/N.

    Opened without blocking and checked on the open descriptor, so a FIFO put in a file's place
    between a check and the open cannot stall the caller. Raises ``FileNotFoundError``,
    ``FileKindError`` or another ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) or (
            allow_pipe_descriptor and stat.S_ISFIFO(mode) and _is_descriptor_path(path)
        ):
            os.set_blocking(fd, True)
            return fd
        raise FileKindError(f"{path} is {kind_of(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: str | Path, limit: int, *, allow_pipe_descriptor: bool = False) -> bytes:
    """The bytes of the regular file ``path`` (see ``open_regular``), refusing before it has read
    more than ``limit`` bytes: a huge file costs a stat or ``limit`` bytes, never its size."""
    fd = open_regular(path, allow_pipe_descriptor=allow_pipe_descriptor)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise TooLargeError(f"{path} holds {size} bytes, more than the {limit} allowed")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"{path} holds more than the {limit} bytes allowed")
    return data
