"""``python -m dreamsmith ...``: the engine's command line."""

from .core.cli import main

raise SystemExit(main())
