"""``agent-runtime migrate``: an SQLite database written by the real runtime, into PostgreSQL."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import psycopg
import pytest
import trio

from server._cli import main
from sessions import (
    Approval,
    ApprovalStatus,
    Event,
    SessionStore,
    Turn,
    open_postgres_store,
    open_sqlite_store,
)

from ..pg import fresh_schema
from .helpers import BOB, STEP, WsClient, drive_turn, make_config, start_server

PROCESS_TIMEOUT = 60.0


async def _cli_migrate(source: str, target: str) -> tuple[int, list[str]]:
    """``python -m server migrate`` in a process of its own: exit status and stderr lines."""
    with trio.fail_after(PROCESS_TIMEOUT):
        result = await trio.run_process(
            [sys.executable, "-m", "server", "migrate", "--from", source, "--to", target],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.stdout == b""
    return result.returncode, result.stderr.decode().splitlines()


def _command_ids(db: str) -> dict[str, list[str]]:
    """Every session's command ids, from the SQLite file (the store cannot list them)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT session_id, command_id FROM commands ORDER BY 1, 2")
        ids: dict[str, list[str]] = {}
        for session_id, command_id in rows:
            ids.setdefault(str(session_id), []).append(str(command_id))
        return ids
    finally:
        conn.close()


def _log(events: list[Event]) -> list[tuple[object, ...]]:
    return [(e.seq, e.type, e.data, e.ts, e.turn_id) for e in events]


async def _rows(store: SessionStore, session_id: str) -> tuple[list[Turn], list[Approval]]:
    """The session's turn rows and approvals, found from its log."""
    events = await store.read_events(session_id)
    turns = [await store.get_turn(t) for t in dict.fromkeys(e.turn_id for e in events if e.turn_id)]
    calls = dict.fromkeys(str(e.data["call_id"]) for e in events if e.type == "approval.requested")
    approvals = [await store.get_approval(session_id, c) for c in calls]
    assert None not in turns and None not in approvals
    return [t for t in turns if t], [a for a in approvals if a]


async def _message(client: WsClient, content: str) -> list[dict[str, object]]:
    ack = await client.command({"type": "user_message", "id": content, "content": content})
    assert ack["status"] == "accepted", ack
    with trio.fail_after(STEP):
        return await drive_turn(client)


async def test_migrate_copies_every_session_and_they_go_on_in_postgres(tmp_path: Path) -> None:
    db = str(tmp_path / "sessions.db")
    with fresh_schema() as dsn:
        # An SQLite database written by the real runtime: approvals, tool calls, a turn
        # left waiting for an approval when the server stops, a deleted session.
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, make_config(db=db))
            done = await server.new_session(agent="coder", title="done")
            async with server.ws(done) as client:
                for content in ("create a.py with x", "read a.txt"):
                    assert (await _message(client, content))[-1]["reason"] == "completed"
            waiting = await server.new_session(BOB, agent="coder")
            async with server.ws(waiting, BOB) as client:
                ack = await client.command(
                    {"type": "user_message", "id": "m1", "content": "create b.py with y"}
                )
                assert ack["status"] == "accepted", ack
                request = (await client.until_type("approval.requested"))[-1]
            gone = await server.new_session()
            async with server.http() as http:
                assert (await http.delete(f"/v1/sessions/{gone}")).status_code == 204
            # The server holds the SQLite file: the command refuses to start.
            status, lines = await _cli_migrate(db, dsn)
            assert status == 2 and len(lines) == 1, lines
            assert "is in use by another agent-runtime process" in lines[0], lines
            server.shutdown.set()

        commands = _command_ids(db)
        status, lines = await _cli_migrate(db, dsn)
        assert status == 0, lines
        assert lines[0].startswith("agent-runtime migrate: copying ")
        rows = f"2 turns, 1 approval, {len(commands[done])} commands"
        assert f"{done}: copied (alice): " in lines[1] and rows in lines[1], lines
        assert f"{waiting}: copied (bob): " in lines[2], lines
        assert f"{gone}: deleted in SQLite, not copied" in lines[3], lines
        assert lines[-1].endswith(
            "done: 3 sessions: 2 copied, 0 already there, "
            "0 went on in PostgreSQL, 1 deleted (not copied), 0 conflicts, 0 failed"
        )

        async with open_sqlite_store(db) as lite, open_postgres_store(dsn) as pg:
            for session_id in (done, waiting):
                assert await pg.get_session(session_id) == await lite.get_session(session_id)
                assert _log(await pg.read_events(session_id)) == _log(
                    await lite.read_events(session_id)
                )
                assert await _rows(pg, session_id) == await _rows(lite, session_id)
            for session_id, ids in commands.items():
                for command_id in ids:
                    copied = await pg.get_command(session_id, command_id)
                    original = await lite.get_command(session_id, command_id)
                    assert copied is not None and original is not None
                    assert copied.ack == original.ack and copied.duplicate
            assert await pg.get_session(gone) is None
            assert await pg.active_turns() == await lite.active_turns()
            (turn,) = await pg.active_turns()  # the one waiting for bob's approval
            assert turn.session_id == waiting
            assert await pg.pending_approvals() == await lite.pending_approvals()
            done_log = len(await pg.read_events(done))
            waiting_log = len(await pg.read_events(waiting))
            _, approvals = await _rows(pg, done)
            assert [a.status for a in approvals] == [ApprovalStatus.APPROVED]

        # Run again: nothing to do.
        status, lines = await _cli_migrate(db, dsn)
        assert status == 0, lines
        assert f"{done}: already in PostgreSQL, skipped" in lines[1], lines
        assert "2 already there" in lines[-1] and "0 copied" in lines[-1], lines

        # A run cut short after a session's import: its missing rows are added.
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("DELETE FROM approvals WHERE session_id = %s", (done,))
            admin.execute("DELETE FROM commands WHERE session_id = %s", (done,))
        status, lines = await _cli_migrate(db, dsn)
        assert status == 0, lines
        added = f"added the missing 0 turns, 1 approval, {len(commands[done])} commands"
        assert f"{done}: already in PostgreSQL; {added}" in lines[1], lines
        async with open_sqlite_store(db) as lite, open_postgres_store(dsn) as pg:
            assert await _rows(pg, done) == await _rows(lite, done)

        # A server on PostgreSQL carries both sessions on.
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, make_config(db=dsn))
            async with server.ws(done, after=done_log) as client:
                events = await _message(client, "hello again")
                assert events[0]["seq"] == done_log + 1 and events[-1]["reason"] == "completed"
                # A command sent before the move is not run twice.
                repeat = {"type": "user_message", "id": "read a.txt", "content": "read a.txt"}
                assert (await client.command(repeat))["status"] == "duplicate"
            async with server.ws(waiting, BOB, after=waiting_log) as client:
                approval = {"type": "approval", "id": "a1", "call_id": request["call_id"]}
                ack = await client.command({**approval, "decision": "approve"})
                assert ack["status"] == "accepted", ack
                with trio.fail_after(STEP):
                    assert (await drive_turn(client))[-1]["reason"] == "completed"
            server.shutdown.set()

        # Run again: both went on in PostgreSQL and are left as they are.
        status, lines = await _cli_migrate(db, dsn)
        assert status == 0, lines
        assert f"{done}: already in PostgreSQL, " in lines[1] and "left as it is" in lines[1]
        assert "2 went on in PostgreSQL" in lines[-1], lines


def _agent_runtime_db(path: Path) -> Path:
    async def create() -> None:
        async with open_sqlite_store(path):
            pass

    trio.run(create)
    return path


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("missing.db", "postgresql://u@h/db", "--from {dir}/missing.db: no such file"),
        ("text.db", "postgresql://u@h/db", "--from {dir}/text.db: not an SQLite database"),
        ("other.db", "postgresql://u@h/db", "--from {dir}/other.db: not an agent-runtime database"),
        ("ours.db", "{dir}/other.db", "--to must be a postgresql://USER@HOST/DB URL, got "),
        (":memory:", "postgresql://u@h/db", "--from :memory: has nothing to copy"),
        (
            "postgresql://u:secret@h/db",
            "postgresql://u@h/db",
            "--from must be an SQLite database file, not a PostgreSQL URL (postgresql://u:***@h/db)",
        ),
        ("ours.db", "postgresql://postgres@127.0.0.1:1/postgres", "the database is unavailable"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,
    target: str,
    message: str,
) -> None:
    (tmp_path / "text.db").write_text("not a database\n", encoding="utf-8")
    with sqlite3.connect(tmp_path / "other.db") as other:
        other.execute("CREATE TABLE t (x)")
    other.close()
    ours = _agent_runtime_db(tmp_path / "ours.db")
    before = ours.read_bytes()

    def place(arg: str) -> str:
        arg = arg.format(dir=tmp_path)
        return arg if arg.startswith(("postgresql:", ":memory:", "/")) else str(tmp_path / arg)

    assert main(["migrate", "--from", place(source), "--to", place(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # (One line, but for the database driver's own multi-line sentences.)
    assert captured.err.startswith("agent-runtime: "), captured.err
    assert message.format(dir=tmp_path) in captured.err.splitlines()[0], captured.err
    assert ours.read_bytes() == before  # nothing was opened for writing


@pytest.mark.parametrize(
    "argv",
    [["migrate"], ["migrate", "--from", "a.db"], ["migrate", "--to", "postgresql://u@h/db"]],
)
def test_missing_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "the following arguments are required: " in capsys.readouterr().err
