"""A loopback OpenAI-compatible streaming server for the benchmarks, run as its own process.

Run: ``python -m bench.fake_llm [--tokens 200] [--tool-calls 0]``; prints
``listening on http://127.0.0.1:P/v1``. Every ``POST /v1/chat/completions`` is
answered with a ``stream: true`` completion, written as fast as the socket takes it:

- with ``--tool-calls 0``: ``--tokens`` text tokens, each ``t=<time.time_ns()> ``,
  stamped when written, so a client can measure token emitted → client received;
  back to back, or ``--pace`` seconds apart (a model generating at 1/pace tokens/s);
- with ``--tool-calls K``: while the conversation has fewer than K ``tool``
  messages after its last ``user`` message, one ``read_file {"path": "a.txt"}``
  call; then ``--tokens`` stamped text tokens (bench B2's K-round-trip turns).

Each completion ends with ``finish_reason``, a usage chunk and ``[DONE]``.
``GET /v1/stats`` answers ``{"requests": N, "body_bytes": B}``: the completions
requested so far and the bytes of their bodies (how much a client sent). The
chunk shapes come from the test fake (``tests.fakes.openai_server``); this
process exists so that the fake's CPU does not compete inside the bench client,
and so that its own CPU time can be read from ``/proc`` (it is reported).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from functools import partial

import attrs
import h11
import trio

from sessions import JSON, dumps
from tests.fakes.openai_server import (
    MODEL,
    chunk,
    finish_chunk,
    tool_chunk,
    tool_fragment,
    usage_chunk,
)

# One text chunk, as ``text_chunk(...)`` renders it, split around the content.
_TEXT_HEAD, _TEXT_TAIL = ("data: " + dumps(chunk({"content": "@TOKEN@"}).data) + "\n\n").split(
    "@TOKEN@"
)
_CALL_IDS = itertools.count(1)


def _stamped_token() -> bytes:
    return f"{_TEXT_HEAD}t={time.time_ns()} {_TEXT_TAIL}".encode()


def _event(data: dict[str, JSON]) -> bytes:
    return f"data: {dumps(data)}\n\n".encode()


_USER, _TOOL = b'"role":"user"', b'"role":"tool"'
_STATS_TARGET = b"/v1/stats"


@attrs.define
class Stats:
    """What this process was asked for, over all connections."""

    requests: int = 0
    body_bytes: int = 0


def _tool_results_since_user(body: bytes) -> int:
    """How many ``tool`` messages follow the last ``user`` one.

    Read from the tail of the compact JSON the runtime sends (an unescaped
    ``"role":"user"`` cannot occur inside a JSON string), not by parsing a long
    session's whole body: that cost the fake ~6 ms of CPU per call on the two
    cores it shares with the server under test. Other shapes are parsed.
    """
    last_user = body.rfind(_USER)
    if last_user >= 0:
        return body.count(_TOOL, last_user)
    request: JSON = json.loads(body)
    if not isinstance(request, dict):
        return 0
    messages = request.get("messages")
    if not isinstance(messages, list):
        return 0
    count = 0
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "user":
            break
        if role == "tool":
            count += 1
    return count


async def _read_request(
    conn: h11.Connection, stream: trio.SocketStream
) -> tuple[bytes, bytes] | None:
    """The target and body of the next request, or ``None`` when the client closed."""
    target = b""
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            target = event.target
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return target, bytes(body)
        else:
            return None


async def _send_stats(conn: h11.Connection, stream: trio.SocketStream, stats: Stats) -> None:
    data = dumps({"requests": stats.requests, "body_bytes": stats.body_bytes}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
    for event in (h11.Response(status_code=200, headers=headers), h11.Data(data=data)):
        await stream.send_all(conn.send(event) or b"")
    conn.send(h11.EndOfMessage())


async def _respond(
    conn: h11.Connection,
    stream: trio.SocketStream,
    body: bytes,
    tokens: int,
    tool_calls: int,
    pace: float,
) -> None:
    async def send(event: h11.Event) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
    await send(h11.Response(status_code=200, headers=headers))
    await send(h11.Data(data=_event(chunk({"role": "assistant", "content": ""}).data)))
    if tool_calls and _tool_results_since_user(body) < tool_calls:
        call = tool_fragment(
            0, call_id=f"call_b{next(_CALL_IDS)}", name="read_file", arguments='{"path":"a.txt"}'
        )
        await send(h11.Data(data=_event(tool_chunk(call).data)))
        finish, completion = "tool_calls", 10
    else:
        for i in range(tokens):
            if i and pace > 0:
                await trio.sleep(pace)
            await send(h11.Data(data=_stamped_token()))
        finish, completion = "stop", tokens
    await send(h11.Data(data=_event(finish_chunk(finish).data)))
    await send(h11.Data(data=_event(usage_chunk(100, completion, model=MODEL).data)))
    await send(h11.Data(data=b"data: [DONE]\n\n"))
    await send(h11.EndOfMessage())


async def handle(
    tokens: int, tool_calls: int, pace: float, stats: Stats, stream: trio.SocketStream
) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(conn, stream)
            if request is None:
                return
            target, body = request
            if target == _STATS_TARGET:
                await _send_stats(conn, stream, stats)
            else:
                stats.requests += 1
                stats.body_bytes += len(body)
                await _respond(conn, stream, body, tokens, tool_calls, pace)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        pass
    finally:
        await stream.aclose()


async def main(tokens: int, tool_calls: int, pace: float) -> None:
    async with trio.open_nursery() as nursery:
        serve = partial(
            trio.serve_tcp, partial(handle, tokens, tool_calls, pace, Stats()), 0, host="127.0.0.1"
        )
        listeners: list[trio.SocketListener] = await nursery.start(serve)
        host, port = listeners[0].socket.getsockname()[:2]
        print(f"listening on http://{host}:{port}/v1", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--tool-calls", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between text tokens")
    options = parser.parse_args()
    trio.run(main, options.tokens, options.tool_calls, options.pace)
