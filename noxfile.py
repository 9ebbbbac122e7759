"""Checks for agent-runtime: ``nox`` runs lint, type and test."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "type", "test"]
nox.options.reuse_existing_virtualenvs = True

CODE = ["server", "agents", "sessions", "tests", "bench", "noxfile.py"]


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *CODE)
    session.run("ruff", "format", "--check", *CODE)


@nox.session(name="type")
def type_check(session: nox.Session) -> None:
    """``mypy --strict`` over all packages, tests, benchmarks and this file."""
    session.install("-e", ".[dev]", "nox")
    session.run("mypy")


@nox.session
def test(session: nox.Session) -> None:
    """The whole pytest suite (unit, live and crash tests)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)
