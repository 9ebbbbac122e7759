"""Graceful shutdown of an in-process server: streams see every turn end, then close."""

from __future__ import annotations

from functools import partial

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from server import serve
from tests.server.gates import hold, until_held
from tests.server.helpers import (
    ALICE,
    STEP,
    LiveServer,
    ended,
    make_config,
    open_sse,
    small_limits,
)


async def test_shutdown_ends_turns_then_closes_streams() -> None:
    # The grace period is real time (serve() waits on the real clock); 0.3 s keeps the
    # test short. The turn outlives it by construction: it is held at a gate.
    config = make_config(shutdown_grace=0.3)
    shutdown = trio.Event()
    with trio.fail_after(STEP):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, config, shutdown=shutdown))
            server = LiveServer(url, config, shutdown)
            session_id = await server.new_session()
            path = f"/v1/sessions/{session_id}/events"
            async with (
                server.ws(session_id) as client,
                open_sse(server, path, {"Authorization": f"Bearer {ALICE}"}) as (_, sse),
            ):
                ack = await client.command(
                    {"type": "user_message", "id": "m", "content": hold("shutdown", 5, 5)}
                )
                await until_held(client.event, 5)
                shutdown.set()
                # The streaming turn (held, never released) outlives the grace period:
                # it is interrupted, and connected clients still see its end before
                # their streams close.
                end = (await client.until(ended))[-1]
                assert (end["turn_id"], end["reason"]) == (ack["turn_id"], "interrupted")
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await client.event()
                reason = closed.value.reason
                assert reason is not None and reason.code == 1001
                streamed = []
                while (block := await sse.block()) is not None:
                    streamed.append(block)
                assert streamed[-1]["event"] == "turn.ended"
        # serve() returned on its own: the nursery closed without being cancelled.
        assert not nursery.cancel_scope.cancel_called


async def test_shutdown_closes_idle_keep_alive_connections() -> None:
    config = make_config(shutdown_grace=2.0)
    shutdown = trio.Event()
    headers = {"Authorization": f"Bearer {ALICE}"}
    async with httpx.AsyncClient(headers=headers, timeout=STEP) as http:
        with trio.fail_after(STEP + config.shutdown_grace):
            async with trio.open_nursery() as nursery:
                url = await nursery.start(partial(serve, config, shutdown=shutdown))
                # A completed request leaves the connection idle in httpx's pool.
                response = await http.get(f"{url}/v1/sessions")
                assert response.status_code == 200
                assert response.headers.get("connection") != "close"
                started = trio.current_time()
                shutdown.set()
        # Nothing was running: the idle connection must not hold the exit up to
        # hypercorn's graceful_timeout (grace + flush + slack).
        assert trio.current_time() - started < config.shutdown_grace
        assert not nursery.cancel_scope.cancel_called


async def test_a_connection_answered_with_connection_close_is_closed() -> None:
    config = make_config(limits=small_limits(max_message_bytes=1024))
    shutdown = trio.Event()
    with trio.fail_after(STEP + config.shutdown_grace):
        async with trio.open_nursery() as nursery:
            url = httpx.URL(await nursery.start(partial(serve, config, shutdown=shutdown)))
            assert url.port is not None
            async with await trio.open_tcp_stream(url.host, url.port) as stream:
                body = b"x" * 4096
                head = (
                    f"POST /v1/sessions HTTP/1.1\r\nHost: {url.netloc.decode()}\r\n"
                    f"Authorization: Bearer {ALICE}\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                await stream.send_all(head.encode() + body)
                # 413 with "Connection: close": the server must then close the socket.
                response = b""
                with trio.fail_after(STEP):
                    while chunk := await stream.receive_some(65536):
                        response += chunk
                assert response.startswith(b"HTTP/1.1 413 ")
                started = trio.current_time()
                shutdown.set()
        assert trio.current_time() - started < config.shutdown_grace
