"""One session kept connected: catch-up over REST, the live WebSocket, reconnects.

Each (re)connection first *catches up* over REST (``GET /v1/sessions/{id}/events``
after the last seq handed on) and only then opens the WebSocket with
``hello {after: last seq}`` (docs/protocol.md §2), so a long absence is read in
large pages rather than replayed through the socket. Events are handed on in seq
order, each once: older ones are dropped, and a gap (a seq that is not last + 1)
ends the connection, which resumes from the last good seq; a gap that stays
(``backoff.attempts`` tries in a row without an event handed on) is a
:class:`ClientError` ``gap``. The outbox sends its unacknowledged commands on
every new connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias

import attrs
import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from sessions import JSON, JSONObject

from ._errors import ClientError, CommandError, describe_error
from ._outbox import Ack, Outbox
from ._rest import raise_for_status, read_events
from ._status import Connected, Connecting, Reconnecting, Resumed, ServerError, StatusObserver

# Close codes after which reconnecting cannot help.
_FATAL_CLOSE: Final = {
    1008: ("protocol_error", "protocol error"),
    4401: ("unauthorized", "unauthorized"),
    4404: ("not_found", "session not found"),
}
_MAX_MESSAGE: Final = 64 * 1024 * 1024
# After a retryable error frame (rate limited, storage unavailable), before resending.
_RETRY_PAUSE: Final = 1.0
# Error frames about the handshake (docs/protocol.md §7), never about a command:
# the connection is refused and closes next.
_HANDSHAKE_ERRORS: Final = frozenset({"bad_hello", "unauthorized", "not_found"})
# How long closing a connection's TCP stream may hold up leaving (the peer may be gone).
_CLOSE_TIMEOUT: Final = 2.0

EventSink: TypeAlias = Callable[[JSONObject], Awaitable[None]]


@attrs.frozen
class Backoff:
    """How the link retries: *first* seconds, doubling up to *longest*; gives up after
    *attempts* consecutive failed tries; a connection silent for *liveness* seconds
    (the server sends heartbeats every 15) counts as lost."""

    first: float = 0.25
    longest: float = 5.0
    attempts: int = 8
    liveness: float = 45.0

    def delay(self, failures: int) -> float:
        return min(self.first * 2.0 ** (failures - 1), self.longest)


DEFAULT_BACKOFF: Final = Backoff()


class Link:
    """Keeps *session_id* connected and hands its durable events to *sink*.

    Args:
        http: client whose ``base_url`` is the server and which sends the token.
        ws_url: the session's WebSocket URL.
        after: hand on the events after this seq.
        instructions: sent in every ``hello`` (stored only when they differ), unless ``None``.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        ws_url: str,
        token: str,
        session_id: str,
        outbox: Outbox,
        sink: EventSink,
        observe: StatusObserver,
        *,
        after: int = 0,
        backoff: Backoff = DEFAULT_BACKOFF,
        instructions: str | None = None,
    ) -> None:
        self.http = http
        self.ws_url = ws_url
        self.token = token
        self.session_id = session_id
        self.outbox = outbox
        self.sink = sink
        self.observe = observe
        self.cursor = after  # the last seq handed to the sink
        self.backoff = backoff
        self.instructions = instructions
        self.connections = 0

    async def run(self) -> None:
        """Stay connected until cancelled.

        Raises:
            ClientError: the server refuses us (token, session, protocol), stayed
                unreachable for ``backoff.attempts`` consecutive tries (``unavailable``)
                or its event log kept a gap that long (``gap``).

        Cancellation: closes the connection; unacknowledged commands stay queued.
        """
        failures = 0
        while True:
            self.observe(Connecting(failures + 1))
            start = self.cursor
            problem: str
            gap = False
            try:
                await self._catch_up()
                live = await self._live()
                problem, gap = live.reason, live.gap
                if live.connected and not gap:
                    failures = 0
            except _Gap as error:
                problem, gap = str(error), True
            except (httpx.TransportError, HandshakeError, OSError) as error:
                problem = describe_error(error)
            finally:
                self.outbox.detach()
            if gap and self.cursor > start:
                failures = 0  # events were handed on before the gap: progress
            failures += 1
            if failures > self.backoff.attempts:
                raise ClientError(
                    "gap" if gap else "unavailable",
                    f"giving up after {self.backoff.attempts} reconnect attempts: {problem}",
                )
            delay = self.backoff.delay(failures)
            self.observe(Reconnecting(problem, delay, failures))
            await trio.sleep(delay)

    async def _catch_up(self) -> None:
        """Hand on the REST pages after the cursor.

        Raises:
            _Gap: a page skips a seq, or says there is more without continuing the log.
        """
        while True:
            after = self.cursor
            page = await read_events(self.http, self.session_id, after)
            for event in page.events:
                if not await self._deliver(event):
                    raise _Gap(f"gap in the event log after seq {self.cursor}; resyncing")
            if not page.has_more:
                return
            if self.cursor == after:
                raise _Gap(f"the page of events after seq {after} does not continue the log")

    async def _deliver(self, event: JSONObject) -> bool:
        """Hand *event* on if it is the next seq; ``False`` on a gap (resync needed)."""
        seq = event.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= self.cursor:
            return True
        if seq != self.cursor + 1:
            return False
        await self.sink(event)
        self.cursor = seq
        return True

    async def _live(self) -> _Ended:
        headers = [(b"Authorization", f"Bearer {self.token}".encode())]
        connected = False
        opened: WebSocketConnection | None = None
        try:
            async with open_websocket_url(
                self.ws_url,
                extra_headers=headers,
                max_message_size=_MAX_MESSAGE,
                connect_timeout=10,
                disconnect_timeout=2,
            ) as ws:
                opened = ws
                hello: JSONObject = {"type": "hello", "after": self.cursor}
                if self.instructions is not None:
                    hello["instructions"] = self.instructions
                await ws.send_message(json.dumps(hello))
                await self.outbox.attach(ws)
                self.connections += 1
                connected = True
                self.observe(
                    Connected(self.cursor) if self.connections == 1 else Resumed(self.cursor)
                )
                outcome = await self._read(ws)
        except ConnectionRejected as error:
            status = error.status_code
            if status in (401, 403, 404):
                raise_for_status(httpx.Response(status, content=error.body or b""), self.session_id)
            return _Ended(connected, f"handshake refused with HTTP {status}")
        except ConnectionClosed as error:
            return _Ended(connected, _closed(error))
        finally:
            if opened is not None:
                await _close_stream(opened)
        if isinstance(outcome, ClientError):
            raise outcome
        return outcome

    async def _read(self, ws: WebSocketConnection) -> _Ended | ClientError:
        """Handle frames until the connection should be given up; why (or the refusal
        to raise once it is closed)."""
        while True:
            raw: str | bytes | None = None
            with trio.move_on_after(self.backoff.liveness):
                raw = await ws.get_message()
            if raw is None:
                return _Ended(True, f"no message or heartbeat for {self.backoff.liveness:g} s")
            try:
                frame: JSON = json.loads(raw)
            except ValueError:
                self.observe(ServerError("bad_frame", "ignored a frame that is not JSON"))
                continue
            if not isinstance(frame, dict):
                continue
            if "seq" in frame:
                if not await self._deliver(frame):
                    return _Ended(True, f"gap after seq {self.cursor}; resyncing", gap=True)
                continue
            kind = frame.get("type")
            if kind == "ack":
                ack = Ack.from_frame(frame)
                if ack is not None:
                    self.outbox.answered(ack)
            elif kind == "error":
                refused = await self._error_frame(frame)
                if refused is not None:
                    return refused

    async def _error_frame(self, frame: JSONObject) -> ClientError | None:
        """Handle an ``error`` frame; the refusal it is if the handshake failed."""
        command_id, code, message = frame.get("id"), frame.get("code"), frame.get("message")
        code = code if isinstance(code, str) else "error"
        message = message if isinstance(message, str) else ""
        if code in _HANDSHAKE_ERRORS and not isinstance(command_id, str):
            self.observe(ServerError(code, message))
            return ClientError(code, f"the server refused the connection: {message} ({code})")
        if not isinstance(command_id, str):
            command_id = self.outbox.oldest_in_flight()
        if command_id is None or command_id not in self.outbox.pending:
            self.observe(ServerError(code, message))
            return None
        if code == "rate_limited" or frame.get("retryable") is True:
            self.outbox.retry_later(command_id)
            # Pausing the reader is fine: the server wants us slower anyway.
            await trio.sleep(_RETRY_PAUSE)
            await self.outbox.resend(command_id)
            return None
        if not self.outbox.answered(CommandError(code, message, command_id)):
            # Nobody waits for this answer (a command enqueued without waiting for its
            # ack): say so, or it would never be seen.
            self.observe(ServerError(code, message, command_id))
        return None


@attrs.frozen
class _Ended:
    connected: bool
    reason: str
    gap: bool = False  # the stream skipped a seq: no progress to count as a success


class _Gap(Exception):
    """The REST event log skips a seq (or does not go on): resync, counted as a failure."""


def _closed(error: ConnectionClosed) -> str:
    """Why the server closed, in words.

    Raises:
        ClientError: a close after which reconnecting cannot help.
    """
    if error.reason is None:
        return "connection closed"
    code, text = error.reason.code, error.reason.reason
    fatal = _FATAL_CLOSE.get(code)
    if fatal is not None:
        raise ClientError(fatal[0], f"the server closed the connection: {fatal[1]} ({text})")
    return f"closed with code {code} {text or ''}".rstrip()


async def _close_stream(ws: WebSocketConnection) -> None:
    """Close *ws*'s TCP stream, which trio-websocket 0.12 leaves open after an abnormal
    closure (the peer vanished without a close frame): ``aclose()`` then returns early.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
        await ws._stream.aclose()  # idempotent; no public handle on the stream exists
