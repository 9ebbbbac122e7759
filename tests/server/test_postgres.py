"""The server on PostgreSQL (``--db postgresql://...``): turns, restart, resume, one writer."""

from __future__ import annotations

import trio

from server._config import ServeConfig
from server._startup import database_line, redact_dsn
from sessions import open_postgres_store

from ..pg import fresh_schema
from .helpers import STEP, drive_turn, make_config, start_server


async def _turn(
    config: ServeConfig, session_id: str | None, content: str, after: int = 0
) -> tuple[str, list[str]]:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, config)
        if session_id is None:
            session_id = await server.new_session(agent="coder")
        async with server.ws(session_id, after=after) as client:
            ack = await client.command({"type": "user_message", "id": content, "content": content})
            assert ack["status"] == "accepted", ack
            with trio.fail_after(STEP):
                events = await drive_turn(client)
        async with server.http() as http:
            logged = (await http.get(f"/v1/sessions/{session_id}/events")).json()
        server.shutdown.set()
    assert events[-1]["reason"] == "completed"
    return session_id, [event["type"] for event in logged["events"]]


async def test_a_session_survives_a_restart_of_a_server_on_postgres() -> None:
    with fresh_schema() as dsn:
        config = make_config(db=dsn)
        session_id, first = await _turn(config, None, "read a.txt")
        assert first[0] == "user.message" and first[-1] == "turn.ended"
        # A new server process on the same database: the log is there and grows.
        _, second = await _turn(config, session_id, "hello again", after=len(first))
        assert second[: len(first)] == first
        assert second.count("turn.ended") == 2


async def test_several_stores_may_open_one_postgres_database() -> None:
    # Replicas: each session is written by the one holding its lease
    # (tests/sessions/test_postgres_leases.py), not one writer per database.
    with fresh_schema() as dsn:
        async with open_postgres_store(dsn) as a, open_postgres_store(dsn) as b:
            assert a.replica is not None and b.replica is not None and a.replica != b.replica


def test_the_banner_never_shows_the_password() -> None:
    dsn = "postgresql://agent:s3cret@db.internal:5433/runtime?sslmode=require"
    assert "s3cret" not in redact_dsn(dsn)
    assert redact_dsn(dsn) == "postgresql://agent:***@db.internal:5433/runtime?sslmode=require"
    line = database_line(make_config(db=dsn))
    assert line.startswith("database: PostgreSQL") and "s3cret" not in line
    assert redact_dsn("postgresql://agent@db/runtime") == "postgresql://agent@db/runtime"
