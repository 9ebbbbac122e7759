"""The client library when the server misbehaves: gaps in the log, handshake errors,
unclaimed command errors, unreadable answers, a close that never ends.

The real server where it can show the fault; otherwise small fakes: an
``httpx.MockTransport`` for the REST side, a trio-websocket server on port 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

from server.chat._link import Link as ChatLink
from server.chat._link import Outbox as ChatOutbox
from server.chat._state import ChatState
from server.client import (
    Backoff,
    ClientError,
    CommandError,
    Outbox,
    Reconnecting,
    ServerError,
    connect,
    open_session,
)
from server.client._link import _close_stream
from sessions import JSONObject
from tests.client.test_library import Statuses, bounded
from tests.server.helpers import ALICE, LiveServer, make_config, small_limits, start_server

QUICK = Backoff(first=0.001, longest=0.001, attempts=3)
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def event(seq: int) -> JSONObject:
    return {"seq": seq, "type": "user.message", "session_id": "ses_f", "content": str(seq)}


def rest_log(seqs: list[int], *, has_more: bool = False) -> Handler:
    """``GET .../events`` answered from a log holding *seqs*."""

    async def handle(request: httpx.Request) -> httpx.Response:
        await trio.lowlevel.checkpoint()  # as a real transport would
        after = int(request.url.params["after"])
        page = [event(seq) for seq in seqs if seq > after]
        return httpx.Response(200, json={"events": page, "has_more": has_more})

    return handle


def fake_http(handle: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://fake")


async def ws_log(nursery: trio.Nursery, seqs: Callable[[int], list[int]]) -> str:
    """A WebSocket server that streams the events ``seqs(after)`` after each hello."""

    async def handle(request: WebSocketRequest) -> None:
        ws = await request.accept()
        hello = json.loads(await ws.get_message())
        for seq in seqs(hello["after"]):
            await ws.send_message(json.dumps(event(seq)))
        await trio.sleep_forever()  # the client hangs up on the gap

    server = await nursery.start(serve_websocket, handle, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{server.port}/v1/sessions/ses_f/ws"


@pytest.mark.parametrize("has_more", [True, False])
async def test_a_gap_in_the_catch_up_is_retried_then_a_client_error(has_more: bool) -> None:
    statuses = Statuses()
    seen: list[JSONObject] = []
    async with fake_http(rest_log([1, 3], has_more=has_more)) as http:
        with bounded(), pytest.raises(ClientError) as info:
            async with open_session(
                http, ALICE, "ses_f", on_status=statuses, backoff=QUICK, ws_url="ws://127.0.0.1:1"
            ) as s:
                async for item in s.events():
                    seen.append(item)
    assert info.value.code == "gap"
    assert "gap in the event log after seq 1" in info.value.message
    assert [e["seq"] for e in seen] == [1]
    assert [r.attempt for r in statuses.seen if isinstance(r, Reconnecting)] == [1, 2, 3]


async def test_a_page_that_does_not_go_on_is_a_gap() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        await trio.lowlevel.checkpoint()
        return httpx.Response(200, json={"events": [event(1)], "has_more": True})

    async with fake_http(handle) as http:
        with bounded(), pytest.raises(ClientError) as info:
            async with open_session(http, ALICE, "ses_f", backoff=QUICK, ws_url="ws://x:1") as s:
                async for _ in s.events():
                    pass
    assert info.value.code == "gap"
    assert "does not continue the log" in info.value.message


async def test_a_gap_on_the_live_stream_is_not_a_successful_connection(
    nursery: trio.Nursery,
) -> None:
    ws_url = await ws_log(nursery, lambda after: [s for s in (1, 2, 4) if s > after])  # no 3
    statuses = Statuses()
    seen: list[JSONObject] = []
    async with fake_http(rest_log([])) as http:
        with bounded(), pytest.raises(ClientError) as info:
            async with open_session(
                http, ALICE, "ses_f", on_status=statuses, backoff=QUICK, ws_url=ws_url
            ) as s:
                async for item in s.events():
                    seen.append(item)
    assert info.value.code == "gap"
    assert "gap after seq 2" in info.value.message
    assert [e["seq"] for e in seen] == [1, 2]  # progress, then none: counted from there
    assert [r.attempt for r in statuses.seen if isinstance(r, Reconnecting)] == [1, 2, 3]


async def test_a_gap_after_progress_is_retried_afresh(nursery: trio.Nursery) -> None:
    ws_url = await ws_log(nursery, lambda after: [after + 1, after + 3])  # always one, then a gap
    statuses = Statuses()
    seen: list[object] = []
    async with fake_http(rest_log([])) as http:
        with bounded():
            async with open_session(
                http, ALICE, "ses_f", on_status=statuses, backoff=QUICK, ws_url=ws_url
            ) as s:
                async for item in s.events():
                    seen.append(item["seq"])
                    if len(seen) > 2 * QUICK.attempts:
                        break
    assert seen == list(range(1, 2 * QUICK.attempts + 2))
    assert {r.attempt for r in statuses.seen if isinstance(r, Reconnecting)} == {1}


async def test_a_handshake_error_is_the_connections_not_a_commands(server: LiveServer) -> None:
    session_id = await server.new_session()
    outbox = Outbox()
    await outbox.put({"type": "user_message", "id": "m1", "content": "hi"})  # sent after hello
    statuses = Statuses()
    too_long = "x" * (65 * 1024)  # over the 64 KiB of instructions: bad_hello
    with bounded(), pytest.raises(ClientError) as info:
        async with connect(
            server.url, ALICE, session_id, outbox=outbox, instructions=too_long, on_status=statuses
        ):
            await trio.sleep_forever()
    assert not isinstance(info.value, CommandError)
    assert info.value.code == "bad_hello"
    assert "instructions" in info.value.message
    assert "m1" in outbox.pending  # still to deliver, not answered by the refusal
    errors = [s for s in statuses.seen if isinstance(s, ServerError)]
    assert [(e.code, e.command_id) for e in errors] == [("bad_hello", None)]


async def test_an_error_for_a_command_nobody_waits_for_is_reported(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(limits=small_limits(max_message_bytes=1024)))
    session_id = await server.new_session()
    statuses = Statuses()
    big: JSONObject = {"type": "user_message", "content": "x" * 2000}
    with bounded():
        async with connect(server.url, ALICE, session_id, on_status=statuses) as s:
            command_id = await s.enqueue(big)  # fire and forget
            await statuses.until(ServerError)
            [reported] = statuses.of(ServerError)
            assert isinstance(reported, ServerError)
            assert (reported.code, reported.command_id) == ("too_large", command_id)
            with pytest.raises(CommandError):  # waited for: raised, not reported too
                await s.send(big)
            ack = await s.send({"type": "tool_result", "call_id": "nope", "result": 1})
            assert ack.status == "rejected"
    assert len(statuses.of(ServerError)) == 1


async def test_the_chat_shows_an_unclaimed_command_error() -> None:
    notes: list[str] = []

    def ignore(item: JSONObject) -> None:
        del item

    async with fake_http(rest_log([])) as http:
        link = ChatLink(
            http, "ws://x:1", ALICE, "ses_f", ChatState(), ChatOutbox(), ignore, notes.append
        )
        link._status(ServerError("too_large", "frame over 1024 bytes", "cl-1"))
        link._status(ServerError("bad_json", "not JSON"))
    assert notes == [
        "[server error too_large for command cl-1: frame over 1024 bytes]",
        "[server error bad_json: not JSON]",
    ]


async def test_an_unreadable_answer_is_a_client_error() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        await trio.lowlevel.checkpoint()
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")

    async with fake_http(handle) as http:
        with bounded(), pytest.raises(ClientError) as info:
            async with open_session(http, ALICE, "ses_f", backoff=QUICK, ws_url="ws://x:1"):
                await trio.sleep_forever()
    assert info.value.code == "bad_response"
    assert "DecodingError" in info.value.message


async def test_closing_a_stream_toward_a_vanished_peer_is_bounded(
    mock_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    async def stuck() -> None:
        await release.wait()  # an SSL close whose peer never answers

    ws = cast(WebSocketConnection, SimpleNamespace(_stream=SimpleNamespace(aclose=stuck)))
    done = trio.Event()

    async def close() -> None:
        await _close_stream(ws)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(1.9)
        await trio.testing.wait_all_tasks_blocked()
        early = done.is_set()
        mock_clock.jump(0.2)
        await trio.testing.wait_all_tasks_blocked()
        bounded_close = done.is_set()
        release.set()
    assert (early, bounded_close) == (False, True)


@pytest.fixture
async def server(nursery: trio.Nursery) -> LiveServer:
    return await start_server(nursery, make_config())
