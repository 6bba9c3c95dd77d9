"""``python -m tiergate.cli``: the same as the ``tiergate`` command."""

from tiergate.cli import main

raise SystemExit(main())
