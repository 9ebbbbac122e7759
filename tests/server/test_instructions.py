"""Project instructions stored with a session: REST, WebSocket hello, the prompt, the store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from agents import builtin_modes
from sessions import Append, Session, new_id, now
from sessions._schema import MIGRATIONS, migrate
from sessions._sqlite import open_sqlite_store
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest, Stream, open_fake_openai
from tests.fakes.openai_server import stream_text as fake_text
from tests.server.helpers import (
    ALICE,
    STEP,
    Frame,
    LiveServer,
    WsClient,
    ended,
    make_config,
    start_server,
)

LIMIT = 64 * 1024
HEADER = "\n\n# Project instructions\n\n"
ASK_PROMPT = builtin_modes().get("ask").system_prompt
INSTRUCTIONS = "# Project\n\nUse tabs.\nRun `make check` before you finish.\n"


def _reply(request: RecordedRequest) -> Stream:
    del request
    return fake_text("ok", usage=(10, 1))


async def _openai_server(nursery: trio.Nursery, fake: FakeOpenAI) -> LiveServer:
    return await start_server(nursery, make_config(llm="openai", llm_url=fake.base_url))


async def _turn(server: LiveServer, session_id: str, text: str) -> None:
    async with server.http() as http:
        page = (await http.get(f"/v1/sessions/{session_id}/events?limit=1000")).json()
    async with server.ws(session_id, after=page["next_after"]) as client:
        ack = await client.command({"type": "user_message", "id": new_id("m"), "content": text})
        assert ack["status"] == "accepted", ack
        events = await client.until(ended)
        assert events[-1]["reason"] == "completed", events


async def _session(server: LiveServer, session_id: str) -> dict[str, Any]:
    async with server.http() as http:
        response = await http.get(f"/v1/sessions/{session_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _system(request: RecordedRequest) -> str:
    messages = request.json()["messages"]
    assert isinstance(messages, list) and isinstance(messages[0], dict)
    assert messages[0]["role"] == "system"
    content = messages[0]["content"]
    assert isinstance(content, str)
    return content


def _raw_value(raw: str, start: int) -> str:
    """The JSON text of the value that starts at *start* of *raw*, verbatim."""
    _, end = json.JSONDecoder().raw_decode(raw, start)
    return raw[start:end]


def _raw_parts(request: RecordedRequest) -> tuple[str, str, str]:
    """``(body up to the end of messages[0], messages[0], tools)`` as the bytes sent."""
    raw = request.raw.decode()
    start = raw.index('"messages":[') + len('"messages":[')
    system = _raw_value(raw, start)
    tools = _raw_value(raw, raw.index('"tools":') + len('"tools":'))
    return raw[: start + len(system)], system, tools


async def _expect_close(client: WsClient) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client._pump_one()
    reason = closed.value.reason
    assert reason is not None
    return reason.code


# -- REST and the prompt ---------------------------------------------------------------


async def test_instructions_set_on_create_are_shown_and_sent_as_the_system_prompt(
    nursery: trio.Nursery,
) -> None:
    async with open_fake_openai(_reply) as fake:
        server = await _openai_server(nursery, fake)
        async with server.http() as http:
            created = await http.post(
                "/v1/sessions", json={"agent": "ask", "instructions": INSTRUCTIONS}
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            assert created.json()["instructions"] == INSTRUCTIONS
            listed = (await http.get("/v1/sessions")).json()["sessions"]
            assert [s["instructions"] for s in listed] == [INSTRUCTIONS]
        assert (await _session(server, session_id))["instructions"] == INSTRUCTIONS
        await _turn(server, session_id, "hi")
        assert _system(fake.requests[0]) == ASK_PROMPT + HEADER + INSTRUCTIONS
        server.shutdown.set()


async def test_a_session_without_instructions_sends_the_mode_prompt_alone(
    nursery: trio.Nursery,
) -> None:
    async with open_fake_openai(_reply) as fake:
        server = await _openai_server(nursery, fake)
        session_id = await server.new_session(agent="ask")
        assert (await _session(server, session_id))["instructions"] is None
        await _turn(server, session_id, "hi")
        assert _system(fake.requests[0]) == ASK_PROMPT
        server.shutdown.set()


async def test_patch_changes_the_instructions_for_the_next_turn(nursery: trio.Nursery) -> None:
    async with open_fake_openai(_reply) as fake:
        server = await _openai_server(nursery, fake)
        session_id = await server.new_session(agent="ask", title="keep me")
        await _turn(server, session_id, "one")
        async with server.http() as http:
            patched = await http.patch(
                f"/v1/sessions/{session_id}", json={"instructions": "Be brief."}
            )
            assert patched.status_code == 200, patched.text
            assert patched.json()["instructions"] == "Be brief."
            assert patched.json()["title"] == "keep me"
        await _turn(server, session_id, "two")
        async with server.http() as http:
            both = await http.patch(
                f"/v1/sessions/{session_id}", json={"title": "renamed", "instructions": None}
            )
            assert both.status_code == 200, both.text
            assert (both.json()["title"], both.json()["instructions"]) == ("renamed", None)
            renamed = await http.patch(f"/v1/sessions/{session_id}", json={"title": "again"})
            assert renamed.json()["instructions"] is None
        await _turn(server, session_id, "three")
        systems = [_system(request) for request in fake.requests]
        assert systems == [ASK_PROMPT, ASK_PROMPT + HEADER + "Be brief.", ASK_PROMPT]
        server.shutdown.set()


async def test_the_prompt_prefix_is_byte_identical_across_turns(nursery: trio.Nursery) -> None:
    async with open_fake_openai(_reply) as fake:
        server = await _openai_server(nursery, fake)
        async with server.http() as http:
            created = await http.post(
                "/v1/sessions",
                json={"agent": "ask", "instructions": 'Ünïcode\tand "quotes"\r\nkept.'},
            )
        session_id = created.json()["id"]
        await _turn(server, session_id, "first")
        await _turn(server, session_id, "second")
        assert len(fake.requests) == 2
        (head1, system1, tools1), (head2, system2, tools2) = map(_raw_parts, fake.requests)
        assert system1 == system2
        assert tools1 == tools2
        assert head1 == head2  # model, and the system message, in the same bytes
        assert json.loads(system1)["content"].endswith('Ünïcode\tand "quotes"\r\nkept.')
        # The whole first request's history is a prefix of the second's.
        messages1 = fake.requests[0].json()["messages"]
        messages2 = fake.requests[1].json()["messages"]
        assert isinstance(messages1, list) and isinstance(messages2, list)
        assert messages2[: len(messages1)] == messages1
        server.shutdown.set()


# -- WebSocket hello -------------------------------------------------------------------


async def test_hello_sets_the_instructions_only_when_they_differ(server: LiveServer) -> None:
    session_id = await server.new_session()
    hello: Frame = {"type": "hello", "after": 0, "instructions": INSTRUCTIONS}
    async with server.ws(session_id, hello=hello) as client:
        await client.send({"type": "cancel", "id": "c1", "turn_id": "turn_none"})
        await client.ack("c1")
        assert client.sync is not None
        assert client.sync["session"]["instructions"] == INSTRUCTIONS
    first = await _session(server, session_id)
    assert first["instructions"] == INSTRUCTIONS
    # A reconnect with the same instructions writes nothing.
    async with server.ws(session_id, hello=hello) as client:
        await client.send({"type": "cancel", "id": "c2", "turn_id": "turn_none"})
        await client.ack("c2")
    assert (await _session(server, session_id))["updated_at"] == first["updated_at"]
    # A hello without the field leaves them alone; null clears them.
    async with server.ws(session_id) as client:
        await client.send({"type": "cancel", "id": "c3", "turn_id": "turn_none"})
        await client.ack("c3")
    assert (await _session(server, session_id))["instructions"] == INSTRUCTIONS
    async with server.ws(session_id, hello={"type": "hello", "instructions": None}) as client:
        await client.send({"type": "cancel", "id": "c4", "turn_id": "turn_none"})
        await client.ack("c4")
        assert client.sync is not None and client.sync["session"]["instructions"] is None
    assert (await _session(server, session_id))["instructions"] is None


async def test_a_hello_may_carry_instructions_at_the_limit(server: LiveServer) -> None:
    session_id = await server.new_session()
    text = "ü" * (LIMIT // 2)  # 64 KiB of UTF-8; escaped in JSON, far more than 64 KiB
    async with server.ws(session_id, hello={"type": "hello", "instructions": text}) as client:
        await client.send({"type": "cancel", "id": "c1", "turn_id": "turn_none"})
        await client.ack("c1")
    assert (await _session(server, session_id))["instructions"] == text


@pytest.mark.parametrize(
    ("instructions", "reason"),
    [
        (42, "hello.instructions must be a string or null"),
        ("x" * (LIMIT + 1), f"at most {LIMIT} bytes"),
        ("a\x00b", "must not contain NUL"),
    ],
)
async def test_a_hello_with_bad_instructions_is_refused(
    server: LiveServer, instructions: object, reason: str
) -> None:
    session_id = await server.new_session(instructions="kept")
    hello: Frame = {"type": "hello", "instructions": instructions}
    async with server.ws(session_id, hello=hello) as client:
        error = await client.error()
        assert error["code"] == "bad_hello"
        assert reason in error["message"] and "instructions" in error["message"]
        assert await _expect_close(client) == 1008
    assert (await _session(server, session_id))["instructions"] == "kept"


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        ({"instructions": 42}, "invalid_request", "field 'instructions' must be a string"),
        ({"instructions": ["a"]}, "invalid_request", "field 'instructions' must be a string"),
        ({"instructions": "x" * (LIMIT + 1)}, "invalid_request", f"at most {LIMIT} bytes"),
        ({"instructions": "é" * (LIMIT // 2 + 1)}, "invalid_request", f"at most {LIMIT} bytes"),
        ({"instructions": "a\x00b"}, "invalid_request", "must not contain NUL"),
        ({"instructions": "\ud800"}, "invalid_text", "instructions"),
    ],
)
async def test_bad_instructions_are_a_400_naming_the_field(
    server: LiveServer, body: dict[str, Any], code: str, reason: str
) -> None:
    session_id = await server.new_session(instructions="kept")
    # json.dumps escapes a lone surrogate (httpx's json= cannot encode one).
    raw, headers = json.dumps(body), {"Content-Type": "application/json"}
    async with server.http() as http:
        for response in (
            await http.post("/v1/sessions", content=raw, headers=headers),
            await http.patch(f"/v1/sessions/{session_id}", content=raw, headers=headers),
        ):
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == code
            assert reason in error["message"]
            assert "instructions" in error["message"]
        assert len((await http.get("/v1/sessions")).json()["sessions"]) == 1
    assert (await _session(server, session_id))["instructions"] == "kept"


async def test_instructions_at_the_limit_and_blank_ones(server: LiveServer) -> None:
    async with server.http() as http:
        full = await http.post("/v1/sessions", json={"instructions": "x" * LIMIT})
        assert full.status_code == 201, full.text
        assert full.json()["instructions"] == "x" * LIMIT
        blank = await http.post("/v1/sessions", json={"instructions": " \n "})
        assert blank.json()["instructions"] is None
        empty = await http.patch(f"/v1/sessions/{full.json()['id']}", json={})
        assert empty.status_code == 400
        assert empty.json()["error"]["code"] == "invalid_request"


# -- durability --------------------------------------------------------------------------


async def test_instructions_survive_a_server_restart(tmp_path: Path) -> None:
    config = make_config(db=str(tmp_path / "sessions.db"))
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, config)
        session_id = await server.new_session(instructions=INSTRUCTIONS)
        async with server.http() as http:
            other = (await http.post("/v1/sessions", json={})).json()["id"]
            await http.patch(f"/v1/sessions/{other}", json={"instructions": "patched"})
        server.shutdown.set()
    with trio.fail_after(STEP):
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, config)
            assert (await _session(server, session_id))["instructions"] == INSTRUCTIONS
            assert (await _session(server, other))["instructions"] == "patched"
            async with server.http(ALICE) as http:
                listed = (await http.get("/v1/sessions")).json()["sessions"]
            assert {s["id"]: s["instructions"] for s in listed} == {
                session_id: INSTRUCTIONS,
                other: "patched",
            }
            server.shutdown.set()


async def test_the_store_keeps_instructions_across_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    t = now()
    session = Session(new_id("ses"), "alice", "t", t, t, "ask", instructions=INSTRUCTIONS)
    plain = Session(new_id("ses"), "alice", "u", t, t, "ask")
    async with open_sqlite_store(db) as store:
        await store.append(Append(session.id, session=session))
        await store.append(Append(plain.id, session=plain))
    async with open_sqlite_store(db) as store:
        assert await store.get_session(session.id) == session
        assert await store.get_session(plain.id) == plain
        assert {s.id: s.instructions for s in await store.list_sessions("alice")} == {
            session.id: INSTRUCTIONS,
            plain.id: None,
        }


async def test_an_older_database_is_upgraded_with_no_instructions(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:2])
    conn.execute("INSERT INTO sessions VALUES ('ses_old', 'alice', 't', 1, 1, 'coder', 0)")
    conn.execute("INSERT INTO owners VALUES ('alice', 1)")
    conn.close()
    async with open_sqlite_store(db) as store:
        old = await store.get_session("ses_old")
        assert old is not None and old.instructions is None
