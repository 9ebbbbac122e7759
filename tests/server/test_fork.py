"""``POST /v1/sessions/{id}/fork`` against the live server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.server.helpers import (
    ALICE,
    BOB,
    Frame,
    LiveServer,
    drive_turn,
    ended,
    make_config,
    small_limits,
    start_server,
)


async def all_events(http: httpx.AsyncClient, session_id: str) -> list[Frame]:
    response = await http.get(f"/v1/sessions/{session_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    events: list[Frame] = response.json()["events"]
    return events


def without_session(events: list[Frame]) -> list[Frame]:
    return [{k: v for k, v in e.items() if k != "session_id"} for e in events]


async def conversation(server: LiveServer, content: str = "create a.py with x") -> str:
    """A session whose one turn has run to its end (approved and answered)."""
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m1", "content": content})
        events = await drive_turn(client)
    assert events[-1]["reason"] == "completed"
    return session_id


async def test_a_fork_copies_the_log_and_answers_the_new_session(server: LiveServer) -> None:
    session_id = await conversation(server)
    async with server.http() as http:
        original = await all_events(http, session_id)
        response = await http.post(f"/v1/sessions/{session_id}/fork")
        assert response.status_code == 201, response.text
        fork = response.json()
        assert fork["forked_from"] == {"session_id": session_id, "at_seq": len(original)}
        assert fork["id"] != session_id
        assert fork["owner"] == "alice"
        assert fork["title"] == "create a.py with x (fork)"
        assert fork["current_agent"] == "coder"
        assert fork["running_turn"] is None
        shown = (await http.get(f"/v1/sessions/{fork['id']}")).json()
        usage = shown.pop("usage")  # only a single session's JSON has its totals
        assert usage["calls"] >= 1 and usage["compactions"] == 0
        assert shown == {k: v for k, v in fork.items() if k != "forked_from"}
        copied = await all_events(http, fork["id"])
        assert without_session(copied) == without_session(original)
        assert {e["session_id"] for e in copied} == {fork["id"]}
        assert await all_events(http, session_id) == original
        listed = (await http.get("/v1/sessions")).json()["sessions"]
        assert {s["id"] for s in listed} == {session_id, fork["id"]}


async def test_a_fork_mid_turn_is_closed_and_continues_over_websocket(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m1", "content": "create a.py with x"})
        request = (await client.until_type("approval.requested"))[-1]
        async with server.http() as http:
            response = await http.post(
                f"/v1/sessions/{session_id}/fork", json={"title": "second try"}
            )
            assert response.status_code == 201, response.text
            fork = response.json()
            assert fork["title"] == "second try"
            at_seq = fork["forked_from"]["at_seq"]
            assert at_seq == request["seq"]
            log = await all_events(http, fork["id"])
            tail = log[at_seq:]
            assert [e["type"] for e in tail] == ["approval.resolved", "tool.result", "turn.ended"]
            assert tail[-1]["reason"] == "interrupted"
            assert (await http.get(f"/v1/sessions/{fork['id']}/approvals")).json() == {
                "approvals": []
            }
            pending = (await http.get(f"/v1/sessions/{session_id}/approvals")).json()
            assert [a["call_id"] for a in pending["approvals"]] == [request["call_id"]]
        # The original carries on where it was.
        approval = {"type": "approval", "id": "a1", "call_id": request["call_id"]}
        ack = await client.command({**approval, "decision": "approve"})
        assert ack["status"] == "accepted", ack
        assert (await drive_turn(client))[-1]["reason"] == "completed"
    async with server.ws(fork["id"], after=len(log)) as forked:
        ack = await forked.command({"type": "user_message", "id": "m1", "content": "hello"})
        assert ack["status"] == "accepted", ack
        events = await drive_turn(forked)
    assert events[0]["type"] == "user.message"
    assert events[0]["seq"] == len(log) + 1
    assert events[-1]["reason"] == "completed"


@pytest.mark.parametrize(
    "body",
    [
        {"at_seq": -1},
        {"at_seq": "1"},
        {"at_seq": 1.5},
        {"at_seq": True},
        {"at_seq": 10_000},
        {"at_seq": 2**63 - 1},
        {"title": 5},
        {"title": ""},
        {"at_seq": 1, "agent": "ask"},
    ],
)
async def test_bad_fork_requests_are_400(server: LiveServer, body: dict[str, Any]) -> None:
    session_id = await conversation(server, "hello")
    async with server.http() as http:
        response = await http.post(f"/v1/sessions/{session_id}/fork", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert ("at_seq" in error["message"]) == ("at_seq" in body and len(body) == 1)
        assert len((await http.get("/v1/sessions")).json()["sessions"]) == 1


async def test_a_body_that_is_not_an_object_is_400(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.http() as http:
        for content in (b"[1]", b"{nope"):
            response = await http.post(
                f"/v1/sessions/{session_id}/fork",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "bad_json"


async def test_an_empty_session_forks_at_zero(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.http() as http:
        response = await http.post(f"/v1/sessions/{session_id}/fork", json={"at_seq": 0})
        assert response.status_code == 201, response.text
        fork = response.json()
        assert fork["forked_from"]["at_seq"] == 0
        assert fork["title"] == "(fork)"
        assert await all_events(http, fork["id"]) == []


async def test_someone_elses_or_an_unknown_session_is_404(server: LiveServer) -> None:
    session_id = await conversation(server, "hello")
    async with server.http(BOB) as bob:
        for path in (f"/v1/sessions/{session_id}/fork", "/v1/sessions/ses_nope/fork"):
            response = await bob.post(path, json={"at_seq": 1})
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"
        assert (await bob.get("/v1/sessions")).json()["sessions"] == []
    async with server.http(token=None) as anonymous:
        response = await anonymous.post(f"/v1/sessions/{session_id}/fork")
        assert response.status_code == 401
    async with server.http(ALICE) as alice:
        await alice.delete(f"/v1/sessions/{session_id}")
        response = await alice.post(f"/v1/sessions/{session_id}/fork")
        assert response.status_code == 404


async def test_a_fork_over_the_session_limit_is_429(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(limits=small_limits(sessions_per_principal=1)))
    session_id = await server.new_session()
    async with server.http() as http:
        response = await http.post(f"/v1/sessions/{session_id}/fork")
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "too_many_sessions"


async def test_the_replay_of_a_fork_ends_its_cut_turn(server: LiveServer) -> None:
    session_id = await conversation(server)
    async with server.http() as http:
        original = await all_events(http, session_id)
        started = next(e for e in original if e["type"] == "turn.started")
        response = await http.post(
            f"/v1/sessions/{session_id}/fork", json={"at_seq": started["seq"]}
        )
        fork = response.json()
    async with server.ws(fork["id"]) as client:
        replay = await client.until(ended)
    assert [e["type"] for e in replay] == ["user.message", "turn.started", "turn.ended"]
    assert replay[-1]["reason"] == "interrupted"
    assert replay[1]["ts"] == started["ts"]
