"""``python -m server``: the ``agent-runtime`` command."""

from ._cli import main

raise SystemExit(main())
