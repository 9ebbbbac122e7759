"""WebSocket transport against the live server with the scripted model."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed

from agents._providers._scripted import stream_words
from tests.server.gates import hold, nothing_held, release, released, until_held
from tests.server.helpers import (
    ALICE,
    BOB,
    Frame,
    LiveServer,
    WsClient,
    drive_turn,
    ended,
    make_config,
    open_sse,
    small_limits,
    start_server,
)


def types(events: list[Frame]) -> list[object]:
    return [e["type"] for e in events]


async def test_ide_conversation_then_replay(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        ack = await client.command(
            {"type": "user_message", "id": "m1", "content": "create hello.py with print('hi')"}
        )
        assert ack == {"type": "ack", "id": "m1", "status": "accepted", "turn_id": ack["turn_id"]}
        events = await drive_turn(client)
        assert client.sync is not None
        assert client.sync["after"] == 0
    seen = types(events)
    # user message → routing (its call's usage) → coder asks approval → tool runs in
    # the IDE → answer
    assert seen[:4] == ["user.message", "turn.started", "usage", "agent.switched"]
    assert events[2]["purpose"] == "route"
    order = ["agent.switched", "approval.requested", "approval.resolved", "tool.call"]
    order += ["tool.result", "message", "turn.ended"]
    positions = [max(i for i, t in enumerate(seen) if t == name) for name in order]
    assert positions == sorted(positions), seen
    switched = events[3]
    assert (switched["from"], switched["to"]) == ("orchestrator", "coder")
    call = next(e for e in events if e["type"] == "tool.call")
    assert call["name"] == "write_file"
    assert call["arguments"] == {"path": "hello.py", "content": "print('hi')"}
    assert "text.delta" in seen[seen.index("tool.result") :]
    assert events[-1]["reason"] == "completed"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["turn_id"] == ack["turn_id"] for e in events[1:])

    async with server.ws(session_id, after=0) as replay:
        again = await replay.until(ended)
    assert again == events


async def test_hello_token_instead_of_header(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id, via_header=False) as client:
        ack = await client.command({"type": "user_message", "id": "a", "content": "explain x"})
        assert ack["status"] == "accepted"
        events = await client.until(ended)
        assert events[-1]["reason"] == "completed"


async def test_reconnect_mid_stream_without_gap_or_duplicate(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as watcher:
        async with server.ws(session_id) as client:
            await client.command(
                {"type": "user_message", "id": "s", "content": hold("reconnect", 40, 40)}
            )
            first = await client.until_type("turn.started")
        # Disconnected mid-turn; the turn keeps running meanwhile, up to its gate: the
        # watcher sees every word before the gate committed, so the turn is held.
        seen = await until_held(watcher.event, 40)
        assert seen[: len(first)] == first
        async with server.ws(session_id, after=client.last_seq) as again:
            # Reconnected mid-stream: first the replay of what this client missed...
            replayed = [await again.event() for _ in range(len(seen) - len(first))]
            assert replayed == seen[len(first) :]
            assert "text.delta" in types(replayed)
            # ...then, once the stream goes on, the rest of the turn live.
            assert await release(server, "reconnect") == released("reconnect")
            rest = await again.until(ended)
    assert replayed[0]["seq"] == first[-1]["seq"] + 1
    assert "text.delta" in types(rest)
    assert rest[-1]["reason"] == "completed"
    received = first + replayed + rest
    message = next(e for e in received if e["type"] == "message")
    assert message["content"] == stream_words(80)
    text = "".join(e["text"] for e in received if e["type"] == "text.delta")
    assert text == message["content"]
    async with server.http() as http:
        log = (await http.get(f"/v1/sessions/{session_id}/events?limit=1000")).json()["events"]
    assert received == log


async def test_pending_approval_survives_disconnect(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m", "content": "create a.py with x"})
        events = await client.until_type("approval.requested")
    call_id = events[-1]["call_id"]
    async with server.http() as http:
        pending = (await http.get(f"/v1/sessions/{session_id}/approvals")).json()["approvals"]
    assert [a["call_id"] for a in pending] == [call_id]
    async with server.ws(session_id) as client:
        replayed = await client.until_type("approval.requested")
        assert replayed == events
        approval = {"type": "approval", "id": "ok", "call_id": call_id, "decision": "approve"}
        assert (await client.command(approval))["status"] == "accepted"
        rest = await drive_turn(client)
    assert rest[-1]["reason"] == "completed"


async def test_cancel_during_a_held_stream(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        ack = await client.command(
            {"type": "user_message", "id": "m", "content": hold("cancel", 20, 480)}
        )
        await until_held(client.event, 20)
        # The reply is held at its gate, so no model pacing is in what is timed here:
        # from the cancel command to turn.ended is the server's own cancel path.
        started = trio.current_time()
        cancel = await client.command({"type": "cancel", "id": "c", "turn_id": ack["turn_id"]})
        assert cancel["status"] == "accepted"
        rest = await client.until(ended)
        # SPEC §3.3 rule 5: a cancel finishes within 1 s (a guarantee, not a tuning).
        assert trio.current_time() - started < 1.0
    assert rest[-1]["reason"] == "cancelled"
    message = next(e for e in rest if e["type"] == "message")
    assert message["truncated"] is True
    content = message["content"]
    assert content == stream_words(20)  # everything before the gate, nothing after it
    async with server.http() as http:
        history = (await http.get(f"/v1/sessions/{session_id}/messages")).json()["messages"]
    assert history[-1]["role"] == "assistant"
    assert history[-1]["content"] == content
    # The cancel closed the model's stream as well: nothing holds the gate any more.
    assert await release(server, "cancel") == nothing_held("cancel")


async def test_on_busy_reject_queue_interrupt(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        first = await client.command(
            {"type": "user_message", "id": "1", "content": hold("first", 10, 10)}
        )
        await until_held(client.event, 10)
        # Held: the first turn is provably still running for both commands.
        rejected = await client.command(
            {"type": "user_message", "id": "2", "content": "explain a", "on_busy": "reject"}
        )
        assert (rejected["status"], rejected["code"]) == ("rejected", "busy")
        assert "send it again with a new id" in rejected["error"]  # "2" stays refused
        again = await client.command(
            {"type": "user_message", "id": "2", "content": "explain a", "on_busy": "queue"}
        )
        assert again == rejected
        wrong = await client.command({"type": "cancel", "id": "c", "turn_id": "turn_nope"})
        assert wrong["error"] == (
            f"turn 'turn_nope' is neither running nor queued (running: {first['turn_id']!r})"
        )
        queued = await client.command(
            {"type": "user_message", "id": "3", "content": "explain b", "on_busy": "queue"}
        )
        assert queued["status"] == "accepted"
        assert await release(server, "first") == released("first")
        end_first = (await client.until(ended))[-1]
        assert (end_first["turn_id"], end_first["reason"]) == (first["turn_id"], "completed")
        end_queued = (await client.until(ended))[-1]
        assert (end_queued["turn_id"], end_queued["reason"]) == (queued["turn_id"], "completed")

        busy = await client.command(
            {"type": "user_message", "id": "4", "content": hold("busy", 10, 290)}
        )
        await until_held(client.event, 10)
        interrupting = await client.command(
            {"type": "user_message", "id": "5", "content": "explain c", "on_busy": "interrupt"}
        )
        assert interrupting["status"] == "accepted"
        events = await client.until(lambda e: ended(e) and e["turn_id"] == interrupting["turn_id"])
    endings = {e["turn_id"]: e["reason"] for e in events if ended(e)}
    assert endings[busy["turn_id"]] in ("cancelled", "interrupted")
    assert endings[interrupting["turn_id"]] == "completed"
    # The interrupted turn's model stream was closed, not left waiting at its gate.
    assert await release(server, "busy") == nothing_held("busy")


async def test_same_command_id_twice_has_one_effect(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        frame = {"type": "user_message", "id": "same", "content": "explain twice"}
        first = await client.command(frame)
        await client.until(ended)
        second = await client.command(frame)
    assert first["status"] == "accepted"
    assert second["status"] == "duplicate"
    assert second["turn_id"] == first["turn_id"]
    async with server.http() as http:
        log = (await http.get(f"/v1/sessions/{session_id}/events?limit=1000")).json()["events"]
    assert [e["type"] for e in log].count("user.message") == 1


async def test_heartbeat_when_idle(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(heartbeat_interval=0.05))
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        while client.heartbeats < 2:
            await client._pump_one()


async def test_bad_frames_get_errors_and_connection_stays_usable(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.ws.send_message("{not json")
        assert (await client.error())["code"] == "bad_json"
        await client.ws.send_message('["an", "array"]')
        assert (await client.error())["code"] == "invalid_command"
        await client.send({"type": "user_message", "content": "no id"})
        assert (await client.error())["code"] == "invalid_command"
        await client.send({"type": "user_message", "id": "x" * 201, "content": "long id"})
        assert (await client.error())["message"] == (
            "field 'id' must be a string of 1 to 200 characters"
        )
        unknown = await client.command({"type": "launch_rockets", "id": "x1"})
        assert (unknown["status"], unknown["code"]) == ("rejected", "unknown_command")
        wrong = await client.command({"type": "user_message", "id": "x2", "content": 42})
        assert (wrong["status"], wrong["code"]) == ("rejected", "invalid_command")
        assert "content" in str(wrong["error"])
        orphan = await client.command(
            {"type": "tool_result", "id": "x3", "call_id": "call_nope", "result": "r"}
        )
        assert (orphan["status"], orphan["code"]) == ("rejected", "unknown_call")
        await client.ws.send_message("x" * (1024 * 1024 + 1))
        assert (await client.error())["code"] == "too_large"
        # Still usable after all of that:
        ok = await client.command({"type": "user_message", "id": "x4", "content": "explain y"})
        assert ok["status"] == "accepted"
        assert (await client.until(ended))[-1]["reason"] == "completed"


async def test_duplicate_tool_result_is_rejected(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m", "content": "read notes.txt"})
        call = (await client.until_type("tool.call"))[-1]
        result = {"type": "tool_result", "call_id": call["call_id"], "result": "hello"}
        assert (await client.command({**result, "id": "r1"}))["status"] == "accepted"
        again = await client.command({**result, "id": "r2"})
        assert (again["status"], again["code"]) == ("rejected", "already_resolved")
        assert (await client.until(ended))[-1]["reason"] == "completed"


async def test_huge_frame_is_refused_and_other_sessions_are_unaffected(
    server: LiveServer,
) -> None:
    victim = await server.new_session()
    bystander = await server.new_session()
    async with server.ws(bystander) as other, server.ws(victim) as client:
        await client.ws.send_message("x" * (10 * 1024 * 1024))
        error = await client.error()
        assert error["code"] == "too_large"
        assert "1048576" in str(error["message"])
        ack = await other.command({"type": "user_message", "id": "b", "content": "explain z"})
        assert ack["status"] == "accepted"
        assert (await other.until(ended))[-1]["reason"] == "completed"
        ack = await client.command({"type": "user_message", "id": "v", "content": "explain v"})
        assert ack["status"] == "accepted"


async def test_rate_limit_per_connection(nursery: trio.Nursery) -> None:
    config = make_config(limits=small_limits(commands_per_second=1.0))
    server = await start_server(nursery, config)
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        for i in range(3):
            await client.send({"type": "cancel", "id": f"c{i}"})
        error = await client.error()
    assert error["code"] == "rate_limited"
    assert error["id"] == "c2"


async def expect_close(client: WsClient) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client._pump_one()
    reason = closed.value.reason
    assert reason is not None
    return reason.code


async def test_auth_and_ownership(server: LiveServer) -> None:
    session_id = await server.new_session(ALICE)
    for token, status, code in (("wrong", 401, "unauthorized"), (BOB, 404, "not_found")):
        response = await server.ws_handshake(session_id, token)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
    response = await server.ws_handshake("ses_missing", ALICE)
    assert response.status_code == 404
    async with server.ws(session_id, token=None) as anonymous:
        assert (await anonymous.error())["code"] == "unauthorized"
        assert await expect_close(anonymous) == 4401
    async with server.ws(session_id, token=BOB, via_header=False) as bob:
        assert (await bob.error())["code"] == "not_found"
        assert await expect_close(bob) == 4404
    async with server.ws("ses_missing", via_header=False) as missing:
        assert await expect_close(missing) == 4404


async def test_a_delete_ends_every_open_stream_of_the_session(server: LiveServer) -> None:
    """Deleted by another client mid-turn: the WebSocket and the SSE stream open on
    it get the turn's end and ``session.deleted``, then close (4404) and end; the
    session cannot come back through them."""
    session_id = await server.new_session()
    url = f"/v1/sessions/{session_id}/events"
    async with (
        server.ws(session_id) as before,
        server.http() as http,
        open_sse(server, url, {"Authorization": f"Bearer {ALICE}"}) as (_, sse),
    ):
        await before.command({"type": "user_message", "id": "m", "content": hold("del", 3)})
        await until_held(before.event, 3)
        assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
        tail = await before.until_type("session.deleted")
        assert [(e["type"], e.get("reason")) for e in tail[-2:]] == [
            ("turn.ended", "cancelled"),
            ("session.deleted", None),
        ]
        assert "turn_id" not in tail[-1]
        assert await expect_close(before) == 4404
        streamed = [await sse.event() for _ in range(before.last_seq)]
        assert [e["seq"] for e in streamed] == list(range(1, before.last_seq + 1))
        assert streamed[-1]["type"] == "session.deleted"
        assert await sse.block() is None  # the stream ended
        assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 404
        listed = (await http.get("/v1/sessions")).json()["sessions"]
        assert session_id not in [s["id"] for s in listed]
        assert (await http.get(url)).status_code == 404
        assert (await server.ws_handshake(session_id, ALICE)).status_code == 404
    assert await release(server, "del") == nothing_held("del")  # the gate let go


async def test_a_cursor_past_the_last_event_is_refused_on_every_transport(
    server: LiveServer,
) -> None:
    session_id = await server.new_session()
    async with server.ws(session_id) as client:
        await client.command({"type": "user_message", "id": "m", "content": "explain x"})
        last = (await client.until(ended))[-1]["seq"]
    async with server.ws(session_id, after=last) as caught_up:  # the last one is fine
        await caught_up.command({"type": "cancel", "id": "c"})  # answered: the stream is up
        assert caught_up.sync is not None and caught_up.sync["after"] == last
    async with server.ws(session_id, after=last + 1) as ahead:
        error = await ahead.error()
        assert (error["code"], error["message"]) == (
            "bad_hello",
            f"hello.after: the cursor {last + 1} is past the session's last event",
        )
        assert await expect_close(ahead) == 1008
    async with server.http() as http:
        url = f"/v1/sessions/{session_id}/events"
        for params, headers in (
            ({"after": last + 1}, {}),
            ({"stream": 1}, {"Last-Event-ID": str(last + 1)}),
        ):
            response = await http.get(url, params=params, headers=headers)
            assert response.status_code == 400
            assert response.json()["error"] == {
                "code": "bad_parameter",
                "message": f"the cursor {last + 1} is past the session's last event",
            }
        page = (await http.get(url, params={"after": last})).json()
        assert (page["events"], page["next_after"]) == ([], last)


async def test_first_frame_must_be_hello(server: LiveServer) -> None:
    session_id = await server.new_session()
    not_hello: Frame = {"type": "user_message", "id": "1", "content": "hi"}
    async with server.ws(session_id, hello=not_hello) as client:
        assert (await client.error())["code"] == "bad_hello"
        assert await expect_close(client) == 1008


async def test_slow_consumer_is_closed_1013_then_resumes(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(subscriber_buffer=16, send_buffer=1))
    session_id = await server.new_session()
    async with server.ws(session_id, receive_buffer=4096) as slow:
        async with server.ws(session_id) as watcher:
            ack = await watcher.command(
                {"type": "user_message", "id": "m", "content": "stream 5000 words"}
            )
            # The slow client reads nothing until the whole turn is committed.
            log = await watcher.until(ended)
        received = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(await slow.event())
    reason = closed.value.reason
    assert reason is not None and reason.code == 1013
    assert received == log[: len(received)]
    async with server.ws(session_id, after=slow.last_seq) as resumed:
        rest = await resumed.until(ended)
    assert received + rest == log
    assert rest[-1]["turn_id"] == ack["turn_id"]
