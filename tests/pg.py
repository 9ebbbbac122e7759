"""PostgreSQL for tests: the server named by ``AGENT_RUNTIME_TEST_POSTGRES``, one schema per test.

``.ci/run`` starts a throwaway cluster and sets the variable. Without it the
PostgreSQL tests skip, saying why, except under ``CI=true``, where they fail:
CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from tests.components import missing

ENV = "AGENT_RUNTIME_TEST_POSTGRES"
DSN = os.environ.get(ENV)


def require_postgres() -> str:
    """The server's DSN; skips (or, in CI, fails) the calling test without one."""
    if DSN:
        return DSN
    missing(f"no PostgreSQL: set {ENV} (.ci/run starts one)")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A DSN whose connections use a new, empty schema; dropped afterwards."""
    import psycopg

    base = require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            separator = "&" if "?" in base else "?"
            yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
