"""SQLite only: crash safety, the file lock, migrations, pragmas, reopening."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from sessions import (
    Append,
    ApprovalStatus,
    DatabaseInUse,
    StoreError,
    open_sqlite_store,
)
from sessions._schema import MIGRATIONS, Migration, migrate, user_version
from sessions._sqlite_sql import configure

from .helpers import (
    append_events,
    assert_contiguous,
    create_session,
    ev,
    make_approval,
    resolved,
)

HERE = Path(__file__).parent
CRASH_APPENDER = HERE / "_crash_appender.py"
HOLD_DB = HERE / "_hold_db.py"


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream | None) -> None:
        assert stream is not None
        self._stream = stream
        self._buffer = bytearray()

    async def readline(self) -> str | None:
        """The next line without its newline; None at end of stream."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                return None
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode()


def _raw(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(db_path, isolation_level=None)


# --- durability -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["", "poison"])
async def test_sigkill_mid_run_loses_no_committed_event(db_path: Path, mode: str) -> None:
    """With ``poison``, batches also hold appends that fail alone (a lone surrogate)."""
    db_path.parent.mkdir(parents=True)
    session_id = "ses_crash"
    promised: list[tuple[int, int, int]] = []
    refused = 0
    with trio.fail_after(60):  # a bound for a broken child, not a synchronisation
        async with trio.open_nursery() as nursery:
            command = [sys.executable, str(CRASH_APPENDER), str(db_path), session_id, mode]
            process: trio.Process = await nursery.start(
                partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
            )
            lines = LineReader(process.stdout)
            assert await lines.readline() == "ready"
            while len(promised) < 300 or (mode and refused < 20):
                line = await lines.readline()
                assert line is not None, "the child stopped early"
                if line == "refused":
                    refused += 1
                    continue
                seq, task, n = map(int, line.split())
                promised.append((seq, task, n))
            process.kill()
            # Lines already in the pipe were printed after their commit too.
            while (line := await lines.readline()) is not None:
                if line.count(" ") == 2:
                    seq, task, n = map(int, line.split())
                    promised.append((seq, task, n))
    assert process.returncode == -signal.SIGKILL

    # Reopening also proves the dead child's lock was released.
    async with open_sqlite_store(db_path) as store:
        events = await store.read_events(session_id)
        assert_contiguous(events)
        by_seq = {e.seq: e for e in events}
        for seq, task, n in promised:
            assert by_seq[seq].data == {"task": task, "n": n, "text": "x" * 200}
        assert len(events) < 8 * 5_000, "the child was not killed mid-run"
        assert not [e for e in events if "poison" in e.data]
        # And the log continues without a gap.
        assert (await append_events(store, session_id, ev())).last_seq == len(events) + 1


async def test_reopening_continues_each_log(db_path: Path) -> None:
    async with open_sqlite_store(db_path, durability="full") as store:
        session = await create_session(store)
        await append_events(store, session.id, ev(), ev(), ev())
    async with open_sqlite_store(db_path) as store:
        assert await store.get_session(session.id) == session
        assert (await append_events(store, session.id, ev())).last_seq == 4
        assert_contiguous(await store.read_events(session.id))


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_pragmas(tmp_path: Path, durability: str, synchronous: int) -> None:
    conn = _raw(tmp_path / "p.db")
    try:
        configure(conn, "full" if durability == "full" else "normal", 1234)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (1234,)
    finally:
        conn.close()


# --- one writer process -----------------------------------------------------------------


async def test_second_open_in_the_same_process_is_refused(db_path: Path) -> None:
    async with open_sqlite_store(db_path):
        with pytest.raises(DatabaseInUse, match="in use by another agent-runtime process"):
            async with open_sqlite_store(db_path):
                pass  # pragma: no cover
    async with open_sqlite_store(db_path):  # released on close
        pass


async def test_a_second_open_through_a_symlink_is_refused(db_path: Path) -> None:
    """The lock is the file's: through a link to it, or to its directory, it is the same."""
    async with open_sqlite_store(db_path):
        linked_file = db_path.with_name("linked.db")
        linked_file.symlink_to(db_path)
        linked_dir = db_path.parent.with_name(db_path.parent.name + "-link")
        linked_dir.symlink_to(db_path.parent, target_is_directory=True)
        for path in (linked_file, linked_dir / db_path.name):
            with pytest.raises(DatabaseInUse, match="in use by another agent-runtime process"):
                async with open_sqlite_store(path):
                    pass  # pragma: no cover


@pytest.mark.slow
async def test_second_process_is_refused_until_the_first_exits(db_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            command = [sys.executable, str(HOLD_DB), str(db_path)]
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    check=False,
                )
            )
            line = await LineReader(process.stdout).readline()
            assert line == f"holding {process.pid}"
            with pytest.raises(DatabaseInUse, match=rf"pid {process.pid}\b") as caught:
                async with open_sqlite_store(db_path):
                    pass  # pragma: no cover
            assert str(db_path) in str(caught.value)
            assert process.stdin is not None
            await process.stdin.aclose()
    assert process.returncode == 0
    async with open_sqlite_store(db_path) as store:
        await create_session(store)


# --- migrations -------------------------------------------------------------------------


async def test_database_at_version_0_is_upgraded(db_path: Path) -> None:
    conn = _raw(db_path)
    conn.execute("CREATE TABLE notes (text TEXT)")  # someone's hand-made table
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    assert user_version(conn) == 0
    conn.close()
    async with open_sqlite_store(db_path) as store:
        session = await create_session(store)
        await append_events(store, session.id, ev())
    conn = _raw(db_path)
    try:
        assert user_version(conn) == len(MIGRATIONS)
        assert conn.execute("SELECT text FROM notes").fetchall() == [("keep me",)]
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    finally:
        conn.close()


_NEXT = Migration(
    version=len(MIGRATIONS) + 1,
    description="pin sessions",
    statements=(
        "ALTER TABLE sessions ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX sessions_pinned ON sessions (owner, pinned)",
    ),
)


async def test_older_schema_is_upgraded_keeping_its_data(db_path: Path) -> None:
    async with open_sqlite_store(db_path) as store:
        session = await create_session(store)
        await append_events(store, session.id, ev(n=1))
    async with open_sqlite_store(db_path, migrations=(*MIGRATIONS, _NEXT)) as store:
        assert await store.get_session(session.id) == session
        assert (await append_events(store, session.id, ev(n=2))).last_seq == 2
    conn = _raw(db_path)
    try:
        assert user_version(conn) == _NEXT.version
        assert conn.execute("SELECT pinned FROM sessions").fetchall() == [(0,)]
    finally:
        conn.close()


async def test_version_3_events_and_approvals_move_to_rowid_tables_intact(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v4: the key indexes no longer hold each row (a large event or a call's large
    arguments was read in full by every write next to it); rows and keys survive."""
    big = "x" * 300_000
    waiting = attrs.evolve(make_approval("", "call_big"), arguments={"content": big})
    async with open_sqlite_store(db_path, migrations=MIGRATIONS[:3]) as store:
        session = await create_session(store)
        other = await create_session(store, "bob")
        await append_events(store, session.id, ev(text="a"), ev("message", text=big))
        await append_events(store, other.id, ev(text="b"))
        waiting = attrs.evolve(waiting, session_id=session.id)
        decided = resolved(make_approval(session.id), ApprovalStatus.APPROVED)
        await store.append(Append(session.id, (ev(text="c"),), approval=waiting))
        await store.append(Append(session.id, approval=make_approval(session.id)))
        await store.append(Append(session.id, approval=decided))
    conn = _raw(db_path)
    try:
        assert user_version(conn) == 3
        for table in ("events", "approvals"):  # WITHOUT ROWID until v4
            with pytest.raises(sqlite3.OperationalError, match="rowid"):
                conn.execute(f"SELECT rowid FROM {table}")
    finally:
        conn.close()
    caplog.set_level(logging.INFO, "agent_runtime.store")
    async with open_sqlite_store(db_path) as store:
        assert f"from version 3 to {len(MIGRATIONS)}" in caplog.text
        assert await store.pending_approvals() == [waiting]
        assert await store.get_approval(session.id, "call_1") == decided
        events = await store.read_events(session.id)
        assert [(e.seq, e.type, e.data["text"]) for e in events] == [
            (1, "text.delta", "a"),
            (2, "message", big),
            (3, "text.delta", "c"),
        ]
        assert [e.seq for e in await store.read_events(other.id)] == [1]
        assert (await append_events(store, session.id, ev(text="d"))).last_seq == 4
    conn = _raw(db_path)
    try:
        assert user_version(conn) == len(MIGRATIONS)
        keys = conn.execute("SELECT session_id, seq FROM events ORDER BY rowid").fetchall()
        # Copied in key order; the append after the upgrade comes last.
        copied = sorted([(session.id, 1), (session.id, 2), (session.id, 3), (other.id, 1)])
        assert keys == [*copied, (session.id, 4)]
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(
                "INSERT INTO events (session_id, seq, type, ts, data) VALUES (?, 4, 't', 0, '{}')",
                (session.id,),
            )
        assert conn.execute("SELECT COUNT(*) FROM approvals WHERE rowid > 0").fetchone() == (2,)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # Every constraint of the v1 tables holds on the rebuilt ones.
        conn.execute("PRAGMA foreign_keys = ON")
        sid = session.id
        broken_events = {
            "CHECK": (sid, 0, "t", 0.0, None, "{}"),
            "FOREIGN KEY": ("ses_nobody", 9, "t", 0.0, None, "{}"),
            "NOT NULL": (sid, 9, None, 0.0, None, "{}"),
        }
        approval = (sid, "call_x", "turn_1", "w", "{}", "r", 1.0, 2.0, "pending", "{}", None)
        broken_approvals = {
            "FOREIGN KEY": ("ses_nobody", *approval[1:]),
            "NOT NULL": (*approval[:4], None, *approval[5:]),
        }
        for expected, event_row in broken_events.items():
            with pytest.raises(sqlite3.IntegrityError, match=expected):
                conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", event_row)
        for expected, approval_row in broken_approvals.items():
            with pytest.raises(sqlite3.IntegrityError, match=expected):
                conn.execute(f"INSERT INTO approvals VALUES ({', '.join('?' * 11)})", approval_row)
        objects = dict(conn.execute("SELECT name, sql FROM sqlite_master").fetchall())
        assert "WHERE status = 'pending'" in objects["approvals_pending"]
        assert not objects.keys() & {"events_v4", "approvals_v4"}
    finally:
        conn.close()


async def test_newer_database_is_refused(db_path: Path) -> None:
    conn = _raw(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        async with open_sqlite_store(db_path):
            pass  # pragma: no cover


def test_a_migration_rolled_back_by_sqlite_reports_its_own_error(tmp_path: Path) -> None:
    """SQLite ends the transaction itself on some errors (disk full): the error
    raised is the migration's, not the failed ROLLBACK's."""
    ended = Migration(
        version=len(MIGRATIONS) + 1,
        description="ends its transaction, then fails",
        statements=("CREATE TABLE extra (x INTEGER)", "ROLLBACK", "SELECT x FROM extra"),
    )
    conn = _raw(tmp_path / "m.db")
    try:
        migrate(conn)
        with pytest.raises(sqlite3.OperationalError, match="no such table: extra"):
            migrate(conn, (*MIGRATIONS, ended))
        assert user_version(conn) == len(MIGRATIONS)
        assert not conn.in_transaction
    finally:
        conn.close()


def test_failing_migration_changes_nothing(tmp_path: Path) -> None:
    broken = Migration(
        version=len(MIGRATIONS) + 1,
        description="broken",
        statements=("CREATE TABLE extra (x INTEGER)", "ALTER TABLE nowhere ADD COLUMN y"),
    )
    conn = _raw(tmp_path / "m.db")
    try:
        assert migrate(conn) == len(MIGRATIONS)
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, (*MIGRATIONS, broken))
        assert user_version(conn) == len(MIGRATIONS)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "extra" not in tables
        assert not conn.in_transaction
    finally:
        conn.close()


async def test_a_file_that_is_not_a_database_is_refused(db_path: Path) -> None:
    path = trio.Path(db_path)
    await path.parent.mkdir(parents=True)
    await path.write_bytes(b"this is not a database, just text" * 100)
    with pytest.raises(StoreError, match="SQLITE_NOTADB"):
        async with open_sqlite_store(db_path):
            pass  # pragma: no cover
    await path.unlink()
    async with open_sqlite_store(db_path):  # nothing was left locked or open
        pass


async def test_a_directory_is_refused_and_leaves_no_thread_behind(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    await trio.Path(db_path).mkdir(parents=True)
    with pytest.raises(StoreError, match="SQLITE_CANTOPEN"):
        async with open_sqlite_store(db_path):
            pass  # pragma: no cover
    # aiosqlite's thread must be done before the loop closed: none is left to call it.
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    for worker in workers:
        worker.join(timeout=5)
    assert not failures, failures[0].exc_value
    assert not workers


async def test_opening_reads_no_history(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lazy loading (SPEC §6): start-up touches no event; a log is read on first access."""
    async with open_sqlite_store(db_path) as store:
        sessions = [await create_session(store) for _ in range(20)]
        for session in sessions:
            await append_events(store, session.id, ev(n=1), ev(n=2), ev(n=3))

    statements: list[str] = []
    real_connect = sqlite3.connect

    def tracing_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[call-overload]
        assert isinstance(conn, sqlite3.Connection)
        conn.set_trace_callback(statements.append)
        return conn

    # Only the library's connect is wrapped, to watch what our store asks SQLite.
    monkeypatch.setattr(sqlite3, "connect", tracing_connect)
    async with open_sqlite_store(db_path) as store:
        assert statements, "the trace saw the store's start-up"
        assert not [s for s in statements if "events" in s.lower() and "select" in s.lower()]
        events = await store.read_events(sessions[7].id)
        assert [e.data["n"] for e in events] == [1, 2, 3]
        reads = [s for s in statements if "from events" in s.lower()]
        assert reads and all(sessions[7].id in s for s in reads)
