"""Graceful shutdown of an in-process server: streams see every turn end, then close."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from trio_websocket import ConnectionClosed

from server import serve
from tests.server.helpers import ALICE, STEP, LiveServer, ended, make_config, open_sse


async def test_shutdown_ends_turns_then_closes_streams() -> None:
    config = make_config(scripted_pace=0.01, shutdown_grace=0.3)
    shutdown = trio.Event()
    with trio.fail_after(STEP):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(
                partial(serve, config, shutdown=shutdown, handle_signals=False)
            )
            server = LiveServer(url, config, shutdown)
            session_id = await server.new_session()
            path = f"/v1/sessions/{session_id}/events"
            async with (
                server.ws(session_id) as client,
                open_sse(server, path, {"Authorization": f"Bearer {ALICE}"}) as (_, sse),
            ):
                ack = await client.command(
                    {"type": "user_message", "id": "m", "content": "stream 3000 words"}
                )
                await client.until_type("text.delta")
                shutdown.set()
                # The streaming turn outlives the grace period: it is interrupted,
                # and connected clients still see its end before their streams close.
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
