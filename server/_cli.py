"""Command-line entry point (placeholder until the server lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    print("agent-runtime: server not yet implemented")
    return 0
