"""The chat client's link to one session: catch-up, live events, an idempotent outbox, reconnects.

Each (re)connection first *catches up* over REST (``GET /v1/sessions/{id}/events``
after the last seq rendered) and only then opens the WebSocket with
``hello {after: last seq}``. During catch-up :class:`ChatState` records events but
hands out no work, so a ``tool.call`` whose ``tool.result`` is already in the log
(answered before, or by another client) is never executed, while calls, approvals
and questions still open at the end of the replay are handled as usual.

Commands go through :class:`Outbox`: each keeps its id until the server acks it and
is re-sent with the *same* id after a reconnect, so the server's idempotency makes
the resend harmless (a ``duplicate`` ack). Together with ``ChatState.answered``
this means a tool call is executed at most once per client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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

from ._state import ChatState

# Close codes after which reconnecting cannot help.
_FATAL_CLOSE: Final = {1008: "protocol error", 4401: "unauthorized", 4404: "session not found"}
_PAGE: Final = 1000
_RATE_LIMIT_PAUSE: Final = 1.0


class ChatError(Exception):
    """A failure the client cannot recover from (bad token, unknown session, server gone)."""


class ServerBusy(httpx.TransportError):
    """The server answered 5xx or 429: it is there, but waiting (and retrying) may help."""


class Outbox:
    """Commands not yet acknowledged, re-sent with their original id after a reconnect."""

    def __init__(self) -> None:
        self.pending: dict[str, JSONObject] = {}
        self.acks: dict[str, JSONObject] = {}
        self._ws: WebSocketConnection | None = None
        self._lock = trio.Lock()
        self._changed = trio.Event()

    async def send(self, frame: JSONObject) -> None:
        """Queue *frame* (which has an ``id``) and send it now if connected.

        Cancellation: once this starts, the frame is queued and will be delivered.
        """
        command_id = frame["id"]
        assert isinstance(command_id, str)
        async with self._lock:
            self.pending[command_id] = frame
            if self._ws is not None:
                await self._send(self._ws, frame)

    async def attach(self, ws: WebSocketConnection) -> None:
        """Send every unacknowledged command on *ws*, then send new ones there directly.

        Cancellation: safe; what was not sent is sent on the next attach.
        """
        async with self._lock:
            for frame in list(self.pending.values()):
                await self._send(ws, frame)
            self._ws = ws

    def detach(self) -> None:
        self._ws = None

    async def resend(self, command_id: str) -> None:
        """Send the unacknowledged command *command_id* again (same id), if connected.

        Cancellation: safe; it stays queued.
        """
        async with self._lock:
            frame = self.pending.get(command_id)
            if frame is not None and self._ws is not None:
                await self._send(self._ws, frame)

    async def _send(self, ws: WebSocketConnection, frame: JSONObject) -> None:
        try:
            await ws.send_message(json.dumps(frame))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self._ws = None  # the reader sees the close and reconnects; we re-send then

    def acked(self, ack: JSONObject) -> None:
        command_id = ack.get("id")
        if isinstance(command_id, str) and command_id in self.pending:
            del self.pending[command_id]
            self.acks[command_id] = ack
            self._changed.set()
            self._changed = trio.Event()

    async def wait_ack(self, command_id: str) -> JSONObject:
        """The server's ack for *command_id* (across reconnects).

        Cancellation: safe.
        """
        while command_id not in self.acks:
            await self._changed.wait()
        return self.acks[command_id]


EventHandler: TypeAlias = Callable[[JSONObject], None]
Notify: TypeAlias = Callable[[str], None]


class Link:
    """Keeps one session connected: catch-up over REST, live WebSocket, reconnect with backoff.

    Args:
        http: client whose ``base_url`` is the server and which sends the token.
        ws_url: the session's WebSocket URL.
        token: bearer token for the WebSocket handshake.
        on_event: called with each new durable event, in seq order, exactly once.
        notify: called with human-readable connection news.
        instructions: sent in every ``hello`` (the server stores them only when
            they differ from the session's), unless ``None``.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        ws_url: str,
        token: str,
        session_id: str,
        state: ChatState,
        outbox: Outbox,
        on_event: EventHandler,
        notify: Notify,
        *,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        attempts: int = 8,
        liveness: float = 45.0,
        instructions: str | None = None,
    ) -> None:
        self.http = http
        self.ws_url = ws_url
        self.token = token
        self.session_id = session_id
        self.state = state
        self.outbox = outbox
        self.on_event = on_event
        self.notify = notify
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.attempts = attempts
        self.liveness = liveness
        self.instructions = instructions
        self.connections = 0

    async def run(self) -> None:
        """Stay connected until cancelled.

        Raises:
            ChatError: the server refuses us (token, session) or stayed unreachable
                for ``attempts`` consecutive tries.

        Cancellation: closes the connection; unacknowledged commands stay queued.
        """
        failures = 0
        while True:
            problem: str
            try:
                await self._catch_up()
                live = await self._live()
                problem = live.reason
                if live.connected:
                    failures = 0
            except (httpx.TransportError, HandshakeError, OSError) as error:
                problem = describe_error(error)
            finally:
                # catching_up stays set after a failed catch-up: the replay was partial,
                # so open calls might already be answered further on in the log.
                self.outbox.detach()
            failures += 1
            if failures > self.attempts:
                raise ChatError(f"giving up after {self.attempts} reconnect attempts: {problem}")
            delay = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
            self.notify(f"[connection lost: {problem}; reconnecting in {delay:.2g} s]")
            await trio.sleep(delay)

    async def _catch_up(self) -> None:
        self.state.catching_up = True
        while True:
            response = await self.http.get(
                f"/v1/sessions/{self.session_id}/events",
                params={"after": self.state.last_seq, "limit": _PAGE},
            )
            check_response(response, self.session_id)
            try:
                body: JSON = response.json()
            except ValueError:
                raise ChatError(
                    f"{response.url} did not answer with JSON; is it an agent-runtime server?"
                ) from None
            page = body.get("events") if isinstance(body, dict) else None
            events = page if isinstance(page, list) else []
            for event in events:
                if isinstance(event, dict):
                    self._deliver(event)
            if not (isinstance(body, dict) and body.get("has_more") is True and events):
                break
        self.state.catching_up = False
        self.state.changed()

    def _deliver(self, event: JSONObject) -> bool:
        """Hand *event* on if it is the next seq; ``False`` on a gap (resync needed)."""
        seq = event.get("seq")
        if not isinstance(seq, int) or seq <= self.state.last_seq:
            return True
        if seq != self.state.last_seq + 1:
            return False
        self.on_event(event)
        return True

    async def _live(self) -> _Ended:
        headers = [(b"Authorization", f"Bearer {self.token}".encode())]
        connected = False
        opened: WebSocketConnection | None = None
        try:
            async with open_websocket_url(
                self.ws_url,
                extra_headers=headers,
                max_message_size=64 * 1024 * 1024,
                connect_timeout=10,
                disconnect_timeout=2,
            ) as ws:
                opened = ws
                hello: JSONObject = {"type": "hello", "after": self.state.last_seq}
                if self.instructions is not None:
                    hello["instructions"] = self.instructions
                await ws.send_message(json.dumps(hello))
                await self.outbox.attach(ws)
                self.connections += 1
                self.state.changed()
                connected = True
                reason = await self._read(ws)
                return _Ended(connected, reason)
        except ConnectionRejected as error:
            status = error.status_code
            if status in (401, 403, 404):
                body = error.body or b""
                check_response(httpx.Response(status, content=body), self.session_id)
            return _Ended(connected, f"handshake refused with HTTP {status}")
        except ConnectionClosed as error:
            return _Ended(connected, self._closed(error))
        finally:
            if opened is not None:
                await _close_stream(opened)

    def _closed(self, error: ConnectionClosed) -> str:
        if error.reason is None:
            return "connection closed"
        code, text = error.reason.code, error.reason.reason
        fatal = _FATAL_CLOSE.get(code)
        if fatal is not None:
            raise ChatError(f"the server closed the connection: {fatal} ({text})")
        return f"closed with code {code} {text or ''}".rstrip()

    async def _read(self, ws: WebSocketConnection) -> str:
        while True:
            raw: str | bytes | None = None
            with trio.move_on_after(self.liveness):
                raw = await ws.get_message()
            if raw is None:
                return f"no message or heartbeat for {self.liveness:g} s"
            try:
                frame: JSON = json.loads(raw)
            except ValueError:
                self.notify("[ignored a frame that is not JSON]")
                continue
            if not isinstance(frame, dict):
                continue
            if "seq" in frame:
                if not self._deliver(frame):
                    return f"gap after seq {self.state.last_seq}; resyncing"
                continue
            kind = frame.get("type")
            if kind == "ack":
                self.outbox.acked(frame)
            elif kind == "error":
                await self._error_frame(frame)

    async def _error_frame(self, frame: JSONObject) -> None:
        command_id = frame.get("id")
        code, message = frame.get("code"), frame.get("message")
        if isinstance(command_id, str) and command_id in self.outbox.pending:
            if code == "rate_limited":
                # Pausing the reader is fine: the server wants us slower anyway.
                await trio.sleep(_RATE_LIMIT_PAUSE)
                await self.outbox.resend(command_id)
                return
            self.outbox.acked({"type": "ack", "id": command_id, "status": "rejected", **frame})
            return
        self.notify(f"[server error {code}: {message}]")


@attrs.frozen
class _Ended:
    connected: bool
    reason: str


async def _close_stream(ws: WebSocketConnection) -> None:
    """Close *ws*'s TCP stream, which trio-websocket 0.12 leaves open after an abnormal
    closure (the peer vanished without a close frame): ``aclose()`` then returns early.
    """
    with trio.CancelScope(shield=True):
        await ws._stream.aclose()  # idempotent; no public handle on the stream exists


def check_response(response: httpx.Response, session_id: str | None = None) -> None:
    """Turn an HTTP error status into :class:`ChatError` or, if waiting may help, a
    retryable error; the server's own message (``{"error": {"code", "message"}}``)
    is what the user reads.

    Raises:
        ChatError: authentication failed, unknown session, or another client error.
        ServerBusy: a 5xx or 429 answer (the server may come back, or want us
            slower); a transport error, so the link retries it.
    """
    status = response.status_code
    if status < 400:
        return
    code, message = _error_body(response)
    tag = f"HTTP {status} {code}" if code else f"HTTP {status}"
    if status == 401:
        raise ChatError(
            f"the server refused the token ({tag}: {message or 'unauthorized'}); "
            "check --token or $AGENT_RUNTIME_TOKEN"
        )
    if status == 404 and session_id is not None:
        raise ChatError(
            f"no session {session_id!r} for this token ({tag}); omit --session to start a new one"
        )
    if status >= 500 or status == 429:
        raise ServerBusy(f"{message or response.reason_phrase} ({tag})")
    raise ChatError(f"{message or response.reason_phrase or 'request refused'} ({tag})")


def _error_body(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(code, message)`` of the server's error body, when it has one."""
    try:
        body: JSON = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    fields = error if isinstance(error, dict) else body
    code, message = fields.get("code"), fields.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) and message else None,
    )


def describe_error(error: BaseException) -> str:
    """*error* in words, with its cause unless that says nothing new.

    (httpx wraps an ``OSError`` whose text it repeats; saying it twice helps nobody.)
    """
    text = str(error)
    cause = error.__cause__ or error.__context__
    reason = str(cause) if cause is not None else ""
    if not text:
        return reason or type(error).__name__
    if reason and reason not in text and text not in reason:
        return f"{text} ({reason})"
    return text if len(text) >= len(reason) else reason
