"""Opening a PostgreSQL store without importing psycopg unless one is opened.

psycopg is an optional dependency (the ``postgres`` extra), so ``sessions``
imports this module, which imports ``_postgres`` (and psycopg) only on call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from ._errors import StoreError
from ._postgres_schema import PG_MIGRATIONS
from ._schema import Migration
from ._store import GroupCommitStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(db: str) -> bool:
    """Whether *db* names a PostgreSQL database (a URL) rather than an SQLite file."""
    return db.startswith(POSTGRES_SCHEMES)


def open_postgres_store(
    dsn: str,
    *,
    readers: int = 4,
    queue_size: int = 1024,
    max_batch: int = 1024,
    drain_timeout: float = 10.0,
    lease_ttl: float = 5.0,
    migrations: Sequence[Migration] | None = None,
) -> AbstractAsyncContextManager[GroupCommitStore]:
    """Open the PostgreSQL database *dsn* as a session store (see ``_postgres.py``).

    Raises (on entering):
        StoreError: psycopg is not installed (the message says how to install it).
        StorageUnavailable: the database cannot be reached.
        DatabaseInUse: another store has this database open.
    """
    return _open(dsn, readers, queue_size, max_batch, drain_timeout, lease_ttl, migrations)


@asynccontextmanager
async def _open(
    dsn: str,
    readers: int,
    queue_size: int,
    max_batch: int,
    drain_timeout: float,
    lease_ttl: float,
    migrations: Sequence[Migration] | None,
) -> AsyncIterator[GroupCommitStore]:
    try:
        from . import _postgres
    except ImportError as exc:
        raise StoreError(
            f"a postgresql:// database needs psycopg ({exc}): pip install 'agent-runtime[postgres]'"
        ) from None
    async with _postgres.open_store_at(
        dsn,
        readers=readers,
        queue_size=queue_size,
        max_batch=max_batch,
        drain_timeout=drain_timeout,
        lease_ttl=lease_ttl,
        migrations=PG_MIGRATIONS if migrations is None else migrations,
    ) as store:
        yield store
