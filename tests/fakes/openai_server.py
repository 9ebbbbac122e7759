"""A real loopback HTTP/1.1 server speaking the OpenAI streaming protocol.

Used by the provider tests, the live server tests and the benchmarks (SPEC §5, §8):
each request to ``POST /v1/chat/completions`` is answered by the next scripted
:data:`Behaviour` — a stream of chunks with pauses, stalls or an abrupt drop, an
HTTP error reply, or a hang-up before any response. Every request is recorded.

Synchronise with the fake through its events (:attr:`FakeOpenAI.stalled`,
:attr:`FakeOpenAI.disconnected`, :meth:`FakeOpenAI.wait_for_requests`), never by
sleeping. It runs on real sockets, so never combine it with ``autojump_clock``.

Usage::

    fake = await nursery.start(serve_fake_openai, [stream_text("Hello", " world")])
    client = OpenAIClient(fake.base_url, "fake-model")
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeAlias

import h11
import trio
from attrs import field, frozen

from sessions import JSON, JSONObject, dumps

MODEL = "fake-model"


@frozen
class Chunk:
    """One ``data: <json>`` event."""

    data: JSONObject


@frozen
class Raw:
    """Bytes written as they are (malformed chunks, comments, odd line endings)."""

    text: str


@frozen
class Done:
    """The ``data: [DONE]`` terminator."""


@frozen
class Pause:
    """Wait before the next step (a slow upstream; not for synchronisation)."""

    seconds: float


@frozen
class Stall:
    """Send nothing more until the client disconnects (a half-open upstream)."""


@frozen
class Drop:
    """Close the connection mid-body, without the chunked-encoding terminator."""


Step: TypeAlias = Chunk | Raw | Done | Pause | Stall | Drop


@frozen
class Stream:
    """A ``200 text/event-stream`` response made of *steps*."""

    steps: tuple[Step, ...]


@frozen
class Reply:
    """A plain JSON response, e.g. an error status."""

    status: int
    body: JSONObject = field(factory=dict)
    headers: tuple[tuple[str, str], ...] = ()


@frozen
class HangUp:
    """Close the connection after reading the request, before any response."""


Behaviour: TypeAlias = Stream | Reply | HangUp
Script: TypeAlias = Sequence[Behaviour] | Callable[["RecordedRequest"], Behaviour]


@frozen
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    def json(self) -> JSONObject:
        value: JSON = json.loads(self.raw)
        assert isinstance(value, dict), "request body is not a JSON object"
        return value


# -- chunk builders ---------------------------------------------------------------


def chunk(delta: JSONObject, finish_reason: str | None = None, *, model: str = MODEL) -> Chunk:
    """A ``chat.completion.chunk`` with one choice."""
    return Chunk(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def text_chunk(text: str) -> Chunk:
    return chunk({"content": text})


def tool_fragment(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> JSONObject:
    """One entry of ``delta.tool_calls``; id and name belong in a call's first fragment."""
    function: JSONObject = {"arguments": arguments}
    out: JSONObject = {"index": index, "function": function}
    if call_id is not None:
        out["id"] = call_id
        out["type"] = "function"
    if name is not None:
        function["name"] = name
    return out


def tool_chunk(*fragments: JSONObject) -> Chunk:
    return chunk({"tool_calls": list(fragments)})


def finish_chunk(reason: str = "stop") -> Chunk:
    return chunk({}, reason)


def usage_chunk(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    model: str = MODEL,
    cached_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> Chunk:
    """The final, choice-less chunk sent with ``stream_options.include_usage``.

    *cached_tokens* and *reasoning_tokens* add OpenAI's ``prompt_tokens_details``
    and ``completion_tokens_details`` objects.
    """
    usage: JSONObject = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
        }
    return Chunk({"id": "chatcmpl-fake", "model": model, "choices": [], "usage": usage})


def stream_text(*tokens: str, finish: str = "stop", usage: tuple[int, int] | None = None) -> Stream:
    """A complete, well-formed text completion streamed token by token."""
    steps: list[Step] = [chunk({"role": "assistant", "content": ""})]
    steps += [text_chunk(token) for token in tokens]
    steps.append(finish_chunk(finish))
    if usage is not None:
        steps.append(usage_chunk(*usage))
    steps.append(Done())
    return Stream(tuple(steps))


def error_reply(status: int, message: str, *, retry_after: float | None = None) -> Reply:
    headers = () if retry_after is None else (("retry-after", f"{retry_after:g}"),)
    error: JSONObject = {"message": message, "type": "fake_error", "code": status}
    return Reply(status, {"error": error}, headers)


def context_overflow_reply(limit: int = 4096) -> Reply:
    """OpenAI's answer to a request longer than the model's context window of *limit*."""
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {limit + 904} tokens. Please reduce the length of the messages."
    )
    error: JSONObject = {
        "message": message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return Reply(400, {"error": error})


# -- the server -------------------------------------------------------------------


class FakeOpenAI:
    """Handle of a running fake: its URL, the requests it saw, and sync points."""

    def __init__(self, script: Script) -> None:
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.stalled = trio.Event()
        """Set when a :class:`Stall` step is reached."""
        self.disconnected = trio.Event()
        """Set when a client goes away in the middle of a response."""
        self._script = script
        self._arrived = trio.Event()
        self.connections = 0
        """How many TCP connections clients opened (keep-alive reuses one)."""

    async def wait_for_requests(self, count: int) -> None:
        """Return once at least *count* requests were received.

        Cancellation: safe to cancel; nothing is consumed.
        """
        while len(self.requests) < count:
            await self._arrived.wait()

    def _behaviour(self, request: RecordedRequest) -> Behaviour:
        if not request.path.endswith("/chat/completions"):
            return error_reply(404, f"fake openai: no route {request.method} {request.path}")
        if callable(self._script):
            return self._script(request)
        n = sum(1 for r in self.requests if r.path.endswith("/chat/completions"))
        if n > len(self._script):
            return error_reply(500, f"fake openai: script exhausted after {len(self._script)}")
        return self._script[n - 1]

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _read_request(conn, stream)
                if request is None:
                    return
                self.requests.append(request)
                self._arrived.set()
                self._arrived = trio.Event()
                if not await self._respond(conn, stream, self._behaviour(request)):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.disconnected.set()
        except h11.RemoteProtocolError:
            pass
        finally:
            await stream.aclose()

    async def _respond(self, conn: h11.Connection, stream: trio.SocketStream, b: Behaviour) -> bool:
        """Answer one request; ``False`` when the connection must close afterwards."""

        async def send(event: h11.Event) -> None:
            data = conn.send(event)
            if data:
                await stream.send_all(data)

        match b:
            case HangUp():
                return False
            case Reply():
                payload = dumps(b.body).encode()
                headers = [("content-type", "application/json")]
                headers += [("content-length", str(len(payload))), *b.headers]
                await send(h11.Response(status_code=b.status, headers=headers))
                await send(h11.Data(data=payload))
                await send(h11.EndOfMessage())
                return True
            case Stream():
                headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
                await send(h11.Response(status_code=200, headers=headers))
                for step in b.steps:
                    match step:
                        case Chunk():
                            await send(h11.Data(data=f"data: {dumps(step.data)}\n\n".encode()))
                        case Raw():
                            await send(h11.Data(data=step.text.encode()))
                        case Done():
                            await send(h11.Data(data=b"data: [DONE]\n\n"))
                        case Pause():
                            await trio.sleep(step.seconds)
                        case Stall():
                            self.stalled.set()
                            await _wait_for_eof(stream)
                            self.disconnected.set()
                            return False
                        case Drop():
                            return False
                await send(h11.EndOfMessage())
                return True


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> RecordedRequest | None:
    """The next complete request, or ``None`` if the client closed the connection."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            headers = {k.decode().lower(): v.decode() for k, v in head.headers}
            return RecordedRequest(head.method.decode(), head.target.decode(), headers, bytes(body))
        else:
            return None


async def _wait_for_eof(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def serve_fake_openai(
    script: Script,
    *,
    task_status: trio.TaskStatus[FakeOpenAI] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *script* on ``127.0.0.1`` (a free port) until cancelled.

    Started with ``await nursery.start(serve_fake_openai, script)``, which returns
    the :class:`FakeOpenAI` handle; its ``base_url`` ends in ``/v1``.

    Cancellation: cancelling the task closes the listener and every connection.
    """
    fake = FakeOpenAI(script)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, fake.handle_connection, 0, host="127.0.0.1")
        listeners: list[trio.SocketListener] = await nursery.start(serve)
        host, port = listeners[0].socket.getsockname()[:2]
        fake.base_url = f"http://{host}:{port}/v1"
        task_status.started(fake)


@asynccontextmanager
async def open_fake_openai(script: Script) -> AsyncIterator[FakeOpenAI]:
    """Run a fake for the duration of the block.

    Cancellation: leaving the block stops the server and closes its connections.
    """
    async with trio.open_nursery() as nursery:
        fake: FakeOpenAI = await nursery.start(serve_fake_openai, script)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
