"""The real components some tests need (PostgreSQL, Node clients, MCP servers, Chromium).

``.ci/run`` installs and starts them and names them in ``AGENT_RUNTIME_TEST_*``
variables. A test whose component is missing skips, saying how to get it, except
under ``CI=true``, where it fails: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip the calling test for a missing component, or fail it under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_executable(env: str, local: Path, reason: str) -> Path:
    """The executable *env* names, else *local* if it is one, else :func:`missing`.

    A variable naming something that is not an executable fails the test at once.
    """
    named = os.environ.get(env)
    if named:
        if not os.access(named, os.X_OK):
            pytest.fail(f"{env}={named} is not an executable")
        return Path(named)
    if os.access(local, os.X_OK):
        return local
    missing(reason)
