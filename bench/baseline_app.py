"""The framework ceiling: a minimal quart-trio app on hypercorn, no persistence, no agents.

Run: ``python -m bench.baseline_app [--port 0]``; prints ``listening on http://H:P``.
It speaks just enough of the server's protocol for the same bench clients:

- ``GET /ws`` (WebSocket): the first frame must be a ``hello`` (answered with a
  ``sync`` frame); then each ``{"type": "stream", "frames": F}`` frame is answered
  with F event frames shaped like the server's ``text.delta`` events (``seq``,
  ``session_id``, ``type``, ``ts`` = send time, ``turn_id``, ``message_id``,
  ``text``), the last one of type ``turn.ended``, sent as fast as the socket
  takes them (or, with ``"pace": P``, the text frames P seconds apart like the
  tokens of a model). An idle connection costs one waiting handler (bench B3).
- ``GET /sse?frames=F``: the same F events as ``text/event-stream``.

Same hypercorn settings as the server where they matter (no WS pings, no server
header, a 16 MiB WebSocket message cap).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request, websocket
from quart_trio import QuartTrio

from sessions import JSONObject, dumps

MAX_FRAMES = 1_000_000


def _event(seq: int, last: bool) -> JSONObject:
    event: JSONObject = {
        "seq": seq,
        "session_id": "ses_baseline",
        "type": "turn.ended" if last else "text.delta",
        "ts": time.time(),
        "turn_id": "turn_baseline",
        "message_id": "msg_baseline",
        "text": " alpha",
    }
    if last:
        event["reason"] = "completed"
    return event


def create_app() -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.accept()
        first = json.loads(await websocket.receive())
        if not isinstance(first, dict) or first.get("type") != "hello":
            await websocket.close(1008, "expected hello")
            return
        await websocket.send(dumps({"type": "sync", "after": 0}))
        seq = 0
        while True:
            command = json.loads(await websocket.receive())
            if not isinstance(command, dict) or command.get("type") != "stream":
                continue
            frames, pace = command.get("frames"), command.get("pace", 0)
            if not isinstance(frames, int) or not 0 < frames <= MAX_FRAMES:
                continue
            if not isinstance(pace, int | float) or not 0 <= pace <= 1:
                pace = 0
            for i in range(frames):
                if 2 < i < frames - 3 and pace > 0:
                    await trio.sleep(pace)  # paced like the tokens of a model
                seq += 1
                await websocket.send(dumps(_event(seq, i == frames - 1)))

    @app.get("/sse")
    async def sse() -> Response:
        frames = min(max(request.args.get("frames", 1, type=int), 1), MAX_FRAMES)

        async def body() -> AsyncIterator[bytes]:
            for seq in range(1, frames + 1):
                yield f"id: {seq}\ndata: {dumps(_event(seq, seq == frames))}\n\n".encode()

        response = Response(body(), content_type="text/event-stream")
        response.timeout = None
        return response

    return app


def hypercorn_config(host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.websocket_ping_interval = None
    config.websocket_max_message_size = 16 * 1024 * 1024
    config.include_server_header = False
    return config


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, create_app(), hypercorn_config(host, port))
        print(f"listening on {binds[0]}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    trio.run(main, options.host, options.port)
