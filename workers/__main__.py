"""``python -m workers``: the same as ``automl worker`` (what containers run)."""

from __future__ import annotations

import sys

from automl.cli import main

raise SystemExit(main(["worker", *sys.argv[1:]]))
