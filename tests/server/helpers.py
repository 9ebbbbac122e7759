"""Test helpers: live server start-up and real WebSocket / SSE / HTTP clients."""

from __future__ import annotations

import json
import socket
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from functools import partial
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from server import Limits, ServeConfig, client, serve

ALICE = "alice-token"
BOB = "bob-token"
TOKENS = {ALICE: "alice", BOB: "bob"}

# Every wait in these tests is bounded, so a bug fails a test instead of hanging it.
STEP = 10.0


def make_config(**overrides: Any) -> ServeConfig:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db": ":memory:",
        "tokens": TOKENS,
        "scripted_pace": 0.0,
        "shutdown_grace": 2.0,
    }
    base.update(overrides)
    return ServeConfig(**base)


def small_limits(**overrides: Any) -> Limits:
    return attrs.evolve(Limits(), **overrides)


# Frames as tests see them: any JSON object (tests index into them freely).
Frame = dict[str, Any]


def as_object(value: object) -> Frame:
    assert isinstance(value, dict), value
    return value


class WsClient:
    """A WebSocket IDE client: separates durable events from ephemeral frames."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.sync: Frame | None = None
        self.pending: deque[Frame] = deque()
        self.acks: dict[str, Frame] = {}
        self.errors: list[Frame] = []
        self.heartbeats = 0
        self.last_seq = 0

    async def send(self, frame: object) -> None:
        await self.ws.send_message(json.dumps(frame))

    async def _frame(self) -> Frame:
        # Every frame a live test receives must match docs/protocol.schema.json.
        from tests.server.test_schema import SERVER_MESSAGE  # compiled once, on first use

        with trio.fail_after(STEP):
            raw = await self.ws.get_message()
        frame = as_object(json.loads(raw))
        SERVER_MESSAGE.validate(frame)
        return frame

    async def _pump_one(self) -> None:
        frame = await self._frame()
        kind = frame.get("type")
        if "seq" in frame:
            self.pending.append(frame)
        elif kind == "ack":
            command_id = frame["id"]
            assert isinstance(command_id, str)
            self.acks[command_id] = frame
        elif kind == "sync":
            self.sync = frame
        elif kind == "heartbeat":
            self.heartbeats += 1
        elif kind == "error":
            self.errors.append(frame)
        else:
            raise AssertionError(f"unexpected frame {frame}")

    async def event(self) -> Frame:
        """The next durable event; checks seqs are contiguous."""
        while not self.pending:
            await self._pump_one()
        event = self.pending.popleft()
        assert event["seq"] == self.last_seq + 1, (event, self.last_seq)
        seq = event["seq"]
        assert isinstance(seq, int)
        self.last_seq = seq
        return event

    async def synced(self) -> Frame:
        """The ``sync`` frame (always the first frame of a connection)."""
        while self.sync is None:
            await self._pump_one()
        return self.sync

    async def ack(self, command_id: str) -> Frame:
        while command_id not in self.acks:
            await self._pump_one()
        return self.acks.pop(command_id)

    async def error(self) -> Frame:
        while not self.errors:
            await self._pump_one()
        return self.errors.pop(0)

    async def command(self, frame: Frame) -> Frame:
        await self.send(frame)
        command_id = frame["id"]
        assert isinstance(command_id, str)
        return await self.ack(command_id)

    async def until(self, predicate: Callable[[Frame], bool]) -> list[Frame]:
        """Events up to and including the first one matching *predicate*."""
        events = []
        while True:
            event = await self.event()
            events.append(event)
            if predicate(event):
                return events

    async def until_type(self, type_: str) -> list[Frame]:
        return await self.until(lambda e: e["type"] == type_)


def ended(event: Frame) -> bool:
    return bool(event["type"] == "turn.ended")


async def drive_turn(client: WsClient, *, tool_result: object = "ok") -> list[Frame]:
    """Play the IDE until the turn ends: approve every request, answer every tool call."""
    events: list[Frame] = []
    n = 0
    while True:
        event = await client.event()
        events.append(event)
        n += 1
        if event["type"] == "approval.requested":
            ack = await client.command(
                {
                    "type": "approval",
                    "id": f"approve-{event['seq']}",
                    "call_id": event["call_id"],
                    "decision": "approve",
                }
            )
            assert ack["status"] == "accepted", ack
        elif event["type"] == "tool.call":
            ack = await client.command(
                {
                    "type": "tool_result",
                    "id": f"result-{event['seq']}",
                    "call_id": event["call_id"],
                    "result": tool_result,
                }
            )
            assert ack["status"] == "accepted", ack
        elif ended(event):
            return events


@attrs.define
class LiveServer:
    url: str
    config: ServeConfig
    shutdown: trio.Event

    def http(self, token: str | None = ALICE) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=STEP)

    async def new_session(self, token: str = ALICE, **body: object) -> str:
        async with self.http(token) as http:
            response = await http.post("/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        session_id = response.json()["id"]
        assert isinstance(session_id, str)
        return session_id

    def follow(
        self, session_id: str, token: str = ALICE, *, after: int = 0
    ) -> AbstractAsyncContextManager[client.Session]:
        """The public client library (``server.client``) on *session_id*: resume,
        idempotent commands, reconnects, as IDE plugins use it."""
        return client.connect(self.url, token, session_id, after=after)

    def ws_url(self, session_id: str) -> str:
        return self.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/ws"

    async def ws_handshake(self, session_id: str, token: str) -> httpx.Response:
        """A WebSocket opening handshake over plain HTTP, to see a refusal's status.

        (trio-websocket leaks its socket when a handshake is rejected.)
        """
        headers = {
            "Authorization": f"Bearer {token}",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        async with httpx.AsyncClient(base_url=self.url, timeout=STEP) as http:
            return await http.get(f"/v1/sessions/{session_id}/ws", headers=headers)

    @asynccontextmanager
    async def ws(
        self,
        session_id: str,
        token: str | None = ALICE,
        *,
        after: int = 0,
        via_header: bool = True,
        hello: Frame | None = None,
        receive_buffer: int | None = None,
    ) -> AsyncIterator[WsClient]:
        """A connected client that has sent *hello* (default: ``hello`` with *after*).

        ``receive_buffer`` shrinks the socket's receive buffer (a slow consumer).
        """
        headers = [(b"Authorization", f"Bearer {token}".encode())] if token and via_header else []
        if hello is None:
            hello = {"type": "hello", "after": after}
            if token and not via_header:
                hello["token"] = token
        url = httpx.URL(self.url)
        host, port = url.host, url.port
        assert port is not None
        # We own the TCP stream: trio-websocket does not close it when the server
        # ends the connection first (it waits for, then ignores, the TCP close).
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        try:
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        async with trio.open_nursery() as nursery, trio.SocketStream(sock) as tcp:
            ws = await wrap_client_stream(
                nursery,
                tcp,
                f"{host}:{port}",
                f"/v1/sessions/{session_id}/ws",
                extra_headers=headers,
            )
            try:
                client = WsClient(ws)
                client.last_seq = after
                await client.send(hello)
                yield client
            finally:
                with trio.move_on_after(STEP):
                    await ws.aclose()


async def start_server(nursery: trio.Nursery, config: ServeConfig) -> LiveServer:
    shutdown = trio.Event()
    url = await nursery.start(partial(serve, config, shutdown=shutdown))
    assert isinstance(url, str)
    return LiveServer(url, config, shutdown)


def parse_sse(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return fields


class SseReader:
    """Reads a ``text/event-stream`` body block by block."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines
        self.comments = 0

    async def block(self) -> dict[str, str] | None:
        """The next event's fields, or ``None`` at the end of the stream."""
        lines: list[str] = []
        with trio.fail_after(STEP):
            async for line in self._lines:
                if line == "":
                    if lines:
                        return parse_sse("\n".join(lines))
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                lines.append(line)
        return None

    async def event(self) -> Frame:
        block = await self.block()
        assert block is not None, "stream ended"
        return sse_event(block)

    async def heartbeats(self, count: int) -> None:
        """Read until *count* more comment lines arrived (and no event did)."""
        target = self.comments + count
        with trio.fail_after(STEP):
            async for line in self._lines:
                assert not line.startswith(("id:", "data:")), line
                if line.startswith(":"):
                    self.comments += 1
                    if self.comments == target:
                        return
        raise AssertionError("stream ended")


@asynccontextmanager
async def read_sse(response: httpx.Response) -> AsyncIterator[SseReader]:
    """Lines of an httpx streaming *response*; only for streams the test reads to the end.

    (httpx's nested line/byte generators cannot all be closed early; trio would
    report the inner ones to the GC. :func:`open_sse` is for early disconnects.)
    """
    lines = response.aiter_lines()
    assert isinstance(lines, AsyncGenerator)
    async with aclosing(lines):
        yield SseReader(lines)


class RawSse:
    """A minimal HTTP/1.1 client for one ``text/event-stream`` GET, read line by line.

    Class-based (no async generators), so hanging up mid-stream leaves nothing
    half-iterated behind.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._raw = bytearray()
        self._body = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}

    async def _fill(self) -> bool:
        data = await self._stream.receive_some(65536)
        self._raw += data
        return bool(data)

    async def read_head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            assert await self._fill(), "connection closed before the response head"
        head, _, rest = bytes(self._raw).partition(b"\r\n\r\n")
        self._raw = bytearray(rest)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        assert self.headers.get("transfer-encoding") == "chunked", self.headers

    async def _chunk(self) -> bytes | None:
        while b"\r\n" not in self._raw:
            if not await self._fill():
                return None
        size_line, _, rest = bytes(self._raw).partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return None
        self._raw = bytearray(rest)
        while len(self._raw) < size + 2:
            assert await self._fill(), "connection closed inside a chunk"
        chunk = bytes(self._raw[:size])
        del self._raw[: size + 2]
        return chunk

    def __aiter__(self) -> RawSse:
        return self

    async def __anext__(self) -> str:
        while b"\n" not in self._body:
            chunk = await self._chunk()
            if chunk is None:
                raise StopAsyncIteration
            self._body += chunk
        line, _, rest = bytes(self._body).partition(b"\n")
        self._body = bytearray(rest)
        return line.decode().rstrip("\r")


@asynccontextmanager
async def open_sse(
    server: LiveServer, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[RawSse, SseReader]]:
    """GET *path* as an event stream; leaving the block hangs up."""
    url = httpx.URL(server.url)
    assert url.port is not None
    lines = [f"GET {path} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines += ["Accept: text/event-stream", "", ""]
    async with await trio.open_tcp_stream(url.host, url.port) as stream:
        await stream.send_all("\r\n".join(lines).encode())
        raw = RawSse(stream)
        with trio.fail_after(STEP):
            await raw.read_head()
        yield raw, SseReader(raw)


def sse_event(block: dict[str, str]) -> Frame:
    """The JSON event of an SSE block, checking ``id:`` and ``event:`` agree with it."""
    event = as_object(json.loads(block["data"]))
    assert block["id"] == str(event["seq"])
    assert block["event"] == event["type"]
    return event
