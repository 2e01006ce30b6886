from __future__ import annotations

from automl.cli import main

raise SystemExit(main())
