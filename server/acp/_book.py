"""Where each ACP session works: its ``cwd``, kept by the adapter, not by the runtime.

An ACP session id *is* the runtime session id, and the runtime knows nothing of
directories (tool paths are workspace-relative, SPEC §4.2), so the workspace a
client named in ``session/new`` is the adapter's to remember. It is needed again
by ``session/list`` (every listed session names its cwd, and clients filter by
it). ``session/load`` and ``session/resume`` name a cwd themselves; that one wins
and is remembered.

The book is a small JSON file next to the database (:func:`book_path`:
``sessions.db`` → ``sessions.db-acp.json``, like SQLite's own ``-wal``), rewritten
whole (temporary file, then rename) each time a session's cwd changes; for an
in-memory or PostgreSQL store it lives in memory only. A missing or unreadable
file is an empty book (with a warning): nothing but listing depends on it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import trio

from sessions import is_postgres_dsn

from .._config import MEMORY_DB, ServeConfig

log = logging.getLogger("agent_runtime.acp")

_VERSION = 1


def book_path(config: ServeConfig) -> Path | None:
    """The book file for *config*'s database (``None``: keep it in memory)."""
    if config.db == MEMORY_DB or is_postgres_dsn(config.db):
        return None
    return Path(f"{config.db}-acp.json")


class SessionBook:
    """Session id → cwd, persisted to *path* when one is given.

    Cancellation: :meth:`remember` writes in a worker thread that completes even
    if the caller is cancelled (the file is replaced whole, never half written).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._cwds: dict[str, str] = {}
        self._lock = trio.Lock()

    @property
    def cwds(self) -> Mapping[str, str]:
        return self._cwds

    def cwd(self, session_id: str) -> str | None:
        return self._cwds.get(session_id)

    async def load(self) -> None:
        """Read the file (if any) into memory."""
        if self.path is not None:
            self._cwds = await trio.to_thread.run_sync(_read, self.path)

    async def remember(self, session_id: str, cwd: str) -> None:
        """Record that *session_id* works in *cwd* (written through when it changed)."""
        if self._cwds.get(session_id) == cwd:
            return
        async with self._lock:
            self._cwds[session_id] = cwd
            await self._save()

    async def forget(self, session_id: str) -> None:
        """Drop *session_id* (it was deleted; written through when it was known)."""
        if session_id not in self._cwds:
            return
        async with self._lock:
            self._cwds.pop(session_id, None)
            await self._save()

    async def _save(self) -> None:
        if self.path is not None:
            snapshot = dict(self._cwds)
            await trio.to_thread.run_sync(_write, self.path, snapshot)


def _read(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("cannot read %s (%s); starting with no known session directories", path, error)
        return {}
    sessions = document.get("sessions") if isinstance(document, dict) else None
    if not isinstance(sessions, dict):
        log.warning("%s is not a session book; ignoring it", path)
        return {}
    return {
        key: value["cwd"]
        for key, value in sessions.items()
        if isinstance(value, dict) and isinstance(value.get("cwd"), str)
    }


def _write(path: Path, cwds: dict[str, str]) -> None:
    document = {"version": _VERSION, "sessions": {key: {"cwd": cwd} for key, cwd in cwds.items()}}
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        log.warning("cannot write %s (%s); session directories are kept in memory", path, error)
