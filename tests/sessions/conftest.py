"""Fixtures: every contract test runs against both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sessions import GroupCommitStore, open_memory_store, open_postgres_store, open_sqlite_store

from ..pg import fresh_schema
from .helpers import Opener


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "sessions.db"


@pytest.fixture
def postgres_dsn(kind: str) -> Iterator[str | None]:
    """For PostgreSQL: a DSN on a fresh schema (the same one for every reopen)."""
    if kind != "postgres":
        yield None
        return
    with fresh_schema() as dsn:
        yield dsn


@pytest.fixture
def opener(kind: str, db_path: Path, postgres_dsn: str | None) -> Opener:
    """Opens the store under test; for SQLite, the same file each time."""
    if kind == "memory":
        return open_memory_store
    if postgres_dsn is not None:
        dsn = postgres_dsn
        return lambda: open_postgres_store(dsn)
    return lambda: open_sqlite_store(db_path)


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[GroupCommitStore]:
    # Opened in the fixture's task: the tests call it from other tasks, as
    # hypercorn handlers do.
    async with opener() as opened:
        yield opened
