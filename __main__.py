"""``python -m dreamsmith ...``: the engine's command line."""

from .core.app.cli import main

raise SystemExit(main())
