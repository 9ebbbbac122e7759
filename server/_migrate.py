"""``agent-runtime migrate --from PATH.db --to postgresql://...``: SQLite into PostgreSQL.

Stop the server that uses the SQLite file first: the SQLite store is opened the
normal way, which takes the file's lock (a running server makes the command
refuse to start, exit status 2). PostgreSQL servers may already run on the
target; migrating before they start is simplest (see docs/deployment.md).

What is copied, per session, through the stores' own read and write paths:

- **Live sessions**: the session row and its whole log in one transaction
  (:meth:`~sessions.GroupCommitStore.import_session`): every event with the
  same seq, type, data, ``ts`` and ``turn_id``. The owner's live-session count
  moves with it; ``max_live_sessions`` is not applied (the sessions exist).
- **Turn rows**, ended or not, as they are: a turn left waiting for a tool
  result or an approval when the server stopped goes on on PostgreSQL.
- **Approvals** with their status and resolution (a resolved one is written
  pending, then resolved: the store allows no other way in).
- **Command records** (idempotency): each command id with its original ack, so
  a client repeating a command sent before the move gets ``duplicate``, not a
  second effect. The record does not keep the seqs of the events the command
  produced (the store writes those only with the events): the runtime answers a
  duplicate from the ack alone, and those events are in the copied log.

Not copied: **deleted sessions** (no API reads them; the move drops them, and
the summary counts them); **leases** (PostgreSQL's own); SQLite's schema
version. The store cannot list every session of every owner, nor a session's
turns, approvals and command ids, so those ids are read straight from the
SQLite file (read-only, while the store holds its lock); every value is then
read through the store.

Re-running is safe. A session already in PostgreSQL is not imported again:
with the same log it counts as *already there*, and any turn, approval or
command row missing there is added (a run cut short between a session's
import and its rows is completed); with that log and more (it went on in
PostgreSQL) it is left alone; with another log it is reported as a conflict.
Exit status: 0 when every session is in PostgreSQL, 1 if any failed or
conflicts. Progress and the summary go to stderr.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from sessions import (
    Append,
    ApprovalStatus,
    CommandRecord,
    Conflict,
    SessionStore,
    StoreError,
    is_postgres_dsn,
    open_postgres_store,
    open_sqlite_store,
)

from ._config import MEMORY_DB
from ._errors import ConfigurationError
from ._startup import redact_dsn

_SQLITE_HEADER: Final = b"SQLite format 3\x00"
# Appends of one session's rows in flight at once: the writer group-commits them.
_IN_FLIGHT: Final = 64


def check_arguments(source: str, target: str) -> Path:
    """The SQLite file to copy, once ``--from`` and ``--to`` make sense.

    Raises:
        ConfigurationError: one sentence naming the flag and what it needs.
    """
    if is_postgres_dsn(source):
        raise ConfigurationError(
            f"--from must be an SQLite database file, not a PostgreSQL URL ({redact_dsn(source)})"
        )
    if source == MEMORY_DB:
        raise ConfigurationError("--from :memory: has nothing to copy; give the SQLite file")
    if not is_postgres_dsn(target):
        raise ConfigurationError(f"--to must be a postgresql://USER@HOST/DB URL, got {target!r}")
    path = Path(source)
    if not path.is_file():
        raise ConfigurationError(f"--from {source}: no such file")
    with path.open("rb") as file:
        if file.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
            raise ConfigurationError(f"--from {source}: not an SQLite database")
    # Opening the store would create agent-runtime's tables in any other SQLite file.
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as error:
        raise ConfigurationError(f"--from {source}: cannot be read: {error}") from None
    if version < 1:
        raise ConfigurationError(f"--from {source}: not an agent-runtime database")
    return path


class Outcome(enum.Enum):
    COPIED = "copied"
    PRESENT = "already there"
    CONTINUED = "went on in PostgreSQL"
    DELETED = "deleted (not copied)"
    CONFLICT = "conflicts"
    FAILED = "failed"


@attrs.define
class Summary:
    """How many sessions ended how."""

    counts: dict[Outcome, int] = attrs.field(factory=lambda: dict.fromkeys(Outcome, 0))

    @property
    def ok(self) -> bool:
        return not (self.counts[Outcome.CONFLICT] or self.counts[Outcome.FAILED])

    def line(self) -> str:
        parts = ", ".join(f"{self.counts[o]} {o.value}" for o in Outcome)
        return f"done: {sum(self.counts.values())} sessions: {parts}"


@attrs.define
class _Rows:
    """The ids of one session's rows, which the store cannot list."""

    turns: list[str]
    approvals: list[str]
    commands: list[str]


class _Inventory:
    """Ids read straight from the SQLite file, read-only (the store holds its lock)."""

    def __init__(self, path: Path) -> None:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._limiter = trio.CapacityLimiter(1)

    def close(self) -> None:
        self._conn.close()

    async def _all(self, sql: str, params: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        def fetch() -> list[tuple[Any, ...]]:
            return list(self._conn.execute(sql, params).fetchall())

        return await trio.to_thread.run_sync(fetch, limiter=self._limiter)

    async def sessions(self) -> list[tuple[str, bool]]:
        """Every session, oldest first, and whether it is deleted."""
        rows = await self._all("SELECT id, deleted FROM sessions ORDER BY created_at, id")
        return [(str(sid), bool(deleted)) for sid, deleted in rows]

    async def rows_of(self, session_id: str) -> _Rows:
        async def ids(sql: str) -> list[str]:
            return [str(row[0]) for row in await self._all(sql, (session_id,))]

        return _Rows(
            turns=await ids("SELECT id FROM turns WHERE session_id = ? ORDER BY started_at, id"),
            approvals=await ids(
                "SELECT call_id FROM approvals WHERE session_id = ? ORDER BY requested_at, call_id"
            ),
            commands=await ids(
                "SELECT command_id FROM commands WHERE session_id = ? ORDER BY command_id"
            ),
        )


@attrs.define
class _Copied:
    turns: int = 0
    approvals: int = 0
    commands: int = 0

    def __bool__(self) -> bool:
        return bool(self.turns or self.approvals or self.commands)

    def __str__(self) -> str:
        return ", ".join(
            f"{n} {name if n == 1 else name + 's'}"
            for n, name in (
                (self.turns, "turn"),
                (self.approvals, "approval"),
                (self.commands, "command"),
            )
        )


async def migrate(
    source: Path,
    target: str,
    *,
    say: Callable[[str], None],
    started: Callable[[], None] = lambda: None,
) -> int:
    """Copy every live session of the SQLite file *source* into the PostgreSQL *target*.

    *say* gets the progress lines and the summary; *started* is called once
    both stores are open (failures before it are start-up failures).
    Returns the exit status: 0, or 1 if a session failed or conflicts.

    Raises:
        StoreError: a store cannot be opened (``StorageUnavailable``: no
            PostgreSQL; ``DatabaseInUse``: a server holds the SQLite file).
    """
    # PostgreSQL first: unreachable, it stops the command before the SQLite file is opened
    # (and its schema upgraded, if it is older).
    async with open_postgres_store(target) as pg, open_sqlite_store(source) as lite:
        started()
        say(f"copying {source} into {redact_dsn(target)}")
        inventory = _Inventory(source)
        summary = Summary()
        with contextlib.closing(inventory):
            sessions = await inventory.sessions()
            for n, (session_id, deleted) in enumerate(sessions, start=1):
                head = f"[{n}/{len(sessions)}] {session_id}"
                if deleted:
                    outcome, note = Outcome.DELETED, "deleted in SQLite, not copied"
                else:
                    try:
                        outcome, note = await _copy_session(lite, pg, inventory, session_id)
                    except (StoreError, ValueError) as error:  # ValueError: a log not 1..n
                        outcome, note = Outcome.FAILED, f"FAILED: {error}"
                summary.counts[outcome] += 1
                say(f"{head}: {note}")
    say(summary.line())
    return 0 if summary.ok else 1


async def _copy_session(
    lite: SessionStore, pg: SessionStore, inventory: _Inventory, session_id: str
) -> tuple[Outcome, str]:
    session = await lite.get_session(session_id)
    if session is None:  # cannot happen while the file is locked; as deleted
        return Outcome.DELETED, "deleted in SQLite, not copied"
    events = await lite.read_events(session_id)
    rows = await inventory.rows_of(session_id)
    if await pg.get_session(session_id) is None:
        try:
            await pg.import_session(session, events, max_live_sessions=None)
        except Conflict:
            return Outcome.CONFLICT, "a deleted session with this id is in PostgreSQL; not copied"
        copied = await _copy_rows(lite, pg, session_id, rows, fresh=True)
        return Outcome.COPIED, f"copied ({session.owner}): {len(events)} events, {copied}"
    theirs = await pg.read_events(session_id)
    if theirs == events:
        added = await _copy_rows(lite, pg, session_id, rows, fresh=False)
        if added:
            return Outcome.PRESENT, f"already in PostgreSQL; added the missing {added}"
        return Outcome.PRESENT, "already in PostgreSQL, skipped"
    if theirs[: len(events)] == events:
        more = len(theirs) - len(events)
        return Outcome.CONTINUED, f"already in PostgreSQL, {more} events more there; left as it is"
    return (
        Outcome.CONFLICT,
        f"in PostgreSQL with another log ({len(theirs)} events there, {len(events)} here);"
        " not copied",
    )


async def _copy_rows(
    lite: SessionStore, pg: SessionStore, session_id: str, rows: _Rows, *, fresh: bool
) -> _Copied:
    """Write the turn, approval and command rows that *pg* lacks (all of them if *fresh*)."""
    copied = _Copied()
    first: list[Append] = []
    then: list[Append] = []  # approvals' resolutions, once they are pending there
    for turn_id in rows.turns:
        turn = await lite.get_turn(turn_id)
        if turn is None or (not fresh and await pg.get_turn(turn_id) == turn):
            continue
        first.append(Append(session_id, turn=turn))
        copied.turns += 1
    for call_id in rows.approvals:
        approval = await lite.get_approval(session_id, call_id)
        current = None if fresh else await pg.get_approval(session_id, call_id)
        if approval is None or current == approval:
            continue
        pending = ApprovalStatus.PENDING
        if current is None:
            first.append(
                Append(
                    session_id,
                    approval=attrs.evolve(
                        approval, status=pending, resolution={}, resolved_by=None
                    ),
                )
            )
        elif current.status is not pending:
            continue  # resolved there since: PostgreSQL's is the newer
        if approval.status is not pending:
            then.append(Append(session_id, approval=approval))
        copied.approvals += 1
    for command_id in rows.commands:
        if not fresh and await pg.get_command(session_id, command_id) is not None:
            continue
        committed = await lite.get_command(session_id, command_id)
        if committed is None or committed.ack is None:
            continue
        first.append(
            Append(session_id, command=CommandRecord(session_id, command_id, committed.ack))
        )
        copied.commands += 1
    if first or then:
        await pg.acquire(session_id)
        try:
            await _commit_all(pg, first)
            await _commit_all(pg, then)
        finally:
            with contextlib.suppress(StoreError):  # else it lapses after its TTL
                await pg.release(session_id)
    return copied


async def _commit_all(store: SessionStore, appends: Sequence[Append]) -> None:
    """Commit *appends* concurrently (so they share transactions).

    Raises:
        StoreError: the first append that failed (the others still committed).
    """
    errors: list[StoreError] = []
    limiter = trio.CapacityLimiter(_IN_FLIGHT)

    async def one(append: Append) -> None:
        async with limiter:
            try:
                await store.append(append)
            except StoreError as error:
                errors.append(error)

    async with trio.open_nursery() as nursery:
        for append in appends:
            nursery.start_soon(one, append)
    if errors:
        raise errors[0]
