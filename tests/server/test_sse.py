"""SSE + HTTP POST transport against the live server, with httpx as the client."""

from __future__ import annotations

import json

import httpx
import trio

from agents._providers._scripted import stream_words
from tests.server.gates import hold, release, released, until_held
from tests.server.helpers import (
    ALICE,
    BOB,
    Frame,
    LiveServer,
    make_config,
    open_sse,
    read_sse,
    small_limits,
    sse_event,
    start_server,
)

SSE = {"Accept": "text/event-stream"}
AUTH = {"Authorization": f"Bearer {ALICE}"}


async def answer(http: httpx.AsyncClient, session_id: str, event: Frame) -> None:
    """Do what an IDE does for *event*: approve requests, run tool calls."""
    command: Frame
    if event["type"] == "approval.requested":
        command = {"type": "approval", "call_id": event["call_id"], "decision": "approve"}
    elif event["type"] == "tool.call":
        command = {"type": "tool_result", "call_id": event["call_id"], "result": "done"}
    else:
        return
    command["id"] = f"answer-{event['seq']}"
    response = await http.post(f"/v1/sessions/{session_id}/commands", json=command)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"


async def run_turn(server: LiveServer, session_id: str, content: str) -> list[Frame]:
    """Send *content* with POST /messages and read its stream to the end; the log."""
    async with (
        server.http() as http,
        http.stream(
            "POST", f"/v1/sessions/{session_id}/messages", json={"content": content}, headers=SSE
        ) as response,
        read_sse(response) as reader,
    ):
        while await reader.block() is not None:
            pass
        log = (await http.get(f"/v1/sessions/{session_id}/events")).json()["events"]
    assert isinstance(log, list)
    assert log[-1]["type"] == "turn.ended"
    return log


async def test_conversation_over_post_messages_stream(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.http() as http:
        body = {"content": "create hello.py with print('hi')", "id": "m1"}
        async with http.stream(
            "POST", f"/v1/sessions/{session_id}/messages", json=body, headers=SSE
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async with read_sse(response) as reader:
                events = []
                while (block := await reader.block()) is not None:
                    event = sse_event(block)
                    events.append(event)
                    await answer(http, session_id, event)
        log = (await http.get(f"/v1/sessions/{session_id}/events")).json()["events"]
    assert events[0]["type"] == "user.message"
    assert events[-1]["type"] == "turn.ended"
    assert events[-1]["reason"] == "completed"
    assert events == log
    kinds = [e["type"] for e in events]
    for expected in ("agent.switched", "approval.requested", "tool.call", "message"):
        assert expected in kinds


async def test_get_stream_replays_then_follows_live(server: LiveServer) -> None:
    session_id = await server.new_session()
    async with server.http() as http:
        first = await http.post(
            f"/v1/sessions/{session_id}/messages", json={"content": hold("sse", 40, 40)}
        )
        assert first.status_code == 200
        turn_id = first.json()["turn_id"]
        url = f"/v1/sessions/{session_id}/events"
        received: list[Frame] = []
        async with open_sse(server, url, AUTH) as (_, watcher):
            async with open_sse(server, url, AUTH) as (raw, reader):
                assert raw.status == 200
                assert raw.headers["content-type"].startswith("text/event-stream")
                while not received or received[-1]["type"] != "turn.started":
                    received.append(await reader.event())
            # Hung up mid-turn. The turn streams on to its gate meanwhile: the watcher
            # sees every word before the gate committed, so the turn is held.
            seen = await until_held(watcher.event, 40)
        # Reconnect where we stopped, as EventSource does.
        resume = {**AUTH, "Last-Event-ID": str(received[-1]["seq"])}
        async with open_sse(server, url, resume) as (_, reader):
            # First the replay of what was committed while we were away...
            while len(received) < len(seen):
                received.append(await reader.event())
            assert received == seen
            # ...then, once the stream goes on, the rest of the turn live.
            assert await release(server, "sse") == released("sse")
            while received[-1]["type"] != "turn.ended":
                received.append(await reader.event())
        log = (await http.get(url, params={"limit": 1000})).json()["events"]
    assert received == log
    assert received[-1]["turn_id"] == turn_id
    assert received[-1]["reason"] == "completed"
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    live = received[len(seen) :]
    assert "text.delta" in [e["type"] for e in live]
    text = "".join(e["text"] for e in received if e["type"] == "text.delta")
    assert text == stream_words(80)


async def test_after_param_access_token_and_heartbeat(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(heartbeat_interval=0.05))
    session_id = await server.new_session()
    log = await run_turn(server, session_id, "explain it")
    path = f"/v1/sessions/{session_id}/events?after=2&stream=1&access_token={ALICE}"
    async with open_sse(server, path) as (raw, reader):
        assert raw.status == 200
        tail = [await reader.event() for _ in range(len(log) - 2)]
        assert tail == log[2:]
        # Nothing else happens now: the idle stream carries heartbeat comments.
        await reader.heartbeats(2)


async def test_stream_auth_and_ownership(server: LiveServer) -> None:
    session_id = await server.new_session(ALICE)
    url = f"/v1/sessions/{session_id}/events"
    async with server.http(token=None) as anonymous:
        assert (await anonymous.get(url, headers=SSE)).status_code == 401
        response = await anonymous.get(url, headers=SSE, params={"access_token": "nope"})
        assert response.status_code == 401
        response = await anonymous.get(url, headers=SSE, params={"access_token": BOB})
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "session not found"}}
        # ?access_token= is for EventSource only, not for the JSON API.
        assert (await anonymous.get(url, params={"access_token": ALICE})).status_code == 401
    async with server.http(BOB) as bob:
        assert (await bob.get(url, headers=SSE)).status_code == 404
        response = await bob.post(f"/v1/sessions/{session_id}/messages", json={"content": "hi"})
        assert response.status_code == 404
        command = {"type": "cancel", "id": "c"}
        response = await bob.post(f"/v1/sessions/{session_id}/commands", json=command)
        assert response.status_code == 404
    async with server.http() as alice:
        response = await alice.get(url, headers={**SSE, "Last-Event-ID": "x"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_parameter"


async def test_commands_endpoint_bad_input(server: LiveServer) -> None:
    session_id = await server.new_session()
    other = await server.new_session()
    url = f"/v1/sessions/{session_id}/commands"
    async with server.http() as http:
        response = await http.post(
            url, content=b"{oops", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_json"
        response = await http.post(url, json=[1, 2])
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_command"
        response = await http.post(url, json={"type": "fly", "id": "f"})
        assert response.status_code == 400
        body = response.json()
        assert body["error"]["code"] == "unknown_command"
        assert body["ack"]["status"] == "rejected"
        response = await http.post(url, json={"type": "answer", "id": "a", "question_id": 7})
        assert response.status_code == 400
        assert "question_id" in response.json()["error"]["message"]
        orphan = {"type": "tool_result", "id": "t", "call_id": "call_9", "result": None}
        response = await http.post(url, json=orphan)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "unknown_call"
        # Sent again (a lost answer), the refusal is answered as it was: not a 200.
        again = await http.post(url, json=orphan)
        assert (again.status_code, again.json()) == (409, response.json())
        # A 10 MiB body is refused from its declared length, before it is read.
        status, body = await post_declaring_length(server, url, 10 * 1024 * 1024)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "too_large"
        response = await http.post(
            "/v1/sessions/ses_nope/commands", json={"type": "cancel", "id": "x"}
        )
        assert response.status_code == 404
        # The other session is unaffected by all of that.
        response = await http.post(
            f"/v1/sessions/{other}/messages", json={"content": "explain q", "id": "q"}
        )
        assert response.status_code == 200
        assert response.json()["status"] == "accepted"
        again = await http.post(
            f"/v1/sessions/{other}/messages", json={"content": "explain q", "id": "q"}
        )
        assert again.json()["status"] == "duplicate"


async def post_declaring_length(server: LiveServer, path: str, length: int) -> tuple[int, bytes]:
    """POST with ``Content-Length: length`` and no body yet; the status and body.

    (Raw TCP: httpx would keep pushing the body after the server answered, and
    its abandoned body iterator would be reported to the GC.)
    """
    url = httpx.URL(server.url)
    assert url.port is not None
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Authorization: Bearer {ALICE}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    async with await trio.open_tcp_stream(url.host, url.port) as stream:
        await stream.send_all(head.encode())
        response = b""
        with trio.fail_after(10):
            # The server answers at once, without waiting for the body.
            while b"\r\n\r\n" not in response:
                response += await stream.receive_some(65536)
            head_bytes, _, body = response.partition(b"\r\n\r\n")
            headers = head_bytes.decode("latin-1").lower()
            assert "connection: close" in headers
            length = int(headers.split("content-length:")[1].split("\r\n")[0])
            while len(body) < length:
                body += await stream.receive_some(65536)
    return int(headers.split()[1]), body


async def test_http_commands_are_rate_limited(nursery: trio.Nursery) -> None:
    config = make_config(limits=small_limits(commands_per_second=1.0))
    server = await start_server(nursery, config)
    session_id = await server.new_session()
    async with server.http() as http:
        statuses = []
        for i in range(3):
            response = await http.post(
                f"/v1/sessions/{session_id}/commands", json={"type": "cancel", "id": f"c{i}"}
            )
            statuses.append(response.status_code)
    assert statuses[-1] == 429
    assert response.headers["Retry-After"] == "1"  # a command's worth of the bucket
    assert response.json()["error"]["retryable"] is True
