"""agent-runtime's network server, CLI and terminal client."""

from ._cli import main

__all__ = ["main"]
