"""WebSocket transport (SPEC §3.4): ``GET /v1/sessions/{id}/ws``.

One connection = four tasks in one nursery, all ending together:

- the *streamer* follows the session's subscription (replay after
  ``hello.after``, then live) and sends each batch as it comes; when the client
  cannot keep up, the subscription's own bounded buffer overflows and the
  connection is closed with 1013 (the client resumes from its last seq);
- the *heartbeat* sends a ``heartbeat`` after ``heartbeat_interval`` of silence;
- the *reader* parses client frames, enforces size and rate limits, submits
  commands to the supervisor and sends their ``ack`` after commit;
- the *closer* ends the connection once shutdown has flushed its events.

Every sender takes the connection's send lock for each frame, so frames never
interleave; an event goes from the subscription to the socket in the task that
received it (no queue, no task hop between them).

Close codes: 1000 normal, 1001 server shutting down, 1008 bad hello, 1009 frame
over the protocol limit, 1013 slow consumer, 4401 unauthorized, 4404 no such
session. A client disconnect cancels the handler; the session's turn goes on.

Every write (events, heartbeats, the close frame) is shielded inside hypercorn, so
cancelling this handler cannot interrupt one; the transport bounds them instead: a
client that takes no byte for ``send_timeout`` is reset, which ends the handler
like a disconnect (``_tcp.py``).
"""

from __future__ import annotations

import logging
from typing import Final

import trio
from quart import Response, websocket
from quart.wrappers import Websocket
from quart_trio import QuartTrio

from agents import CommandError
from agents.events import SessionDeleted
from sessions import (
    JSON,
    JSONObject,
    Session,
    SessionNotFound,
    StoreError,
    SubscriberTooSlow,
    dumps,
    held_quickly,
)

from ._auth import bearer_token
from ._cors import OriginPolicy, websocket_origin_refused
from ._errors import ApiError, not_found, store_error, unauthorized
from ._http import load_owned
from ._json_input import INT_MAX, decode_json
from ._limits import TokenBucket
from ._responses import error_response
from ._rest import session_json
from ._state import ServerState
from ._stream import (
    Progress,
    check_cursor,
    command_id_problem,
    error_frame,
    refuse_while_draining,
    wait_closing_flushed,
)

logger = logging.getLogger("agent_runtime.ws")

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_TRY_AGAIN: Final = 1013
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_NOT_FOUND: Final = 4404


# A hello may carry the project instructions: up to 64 KiB of UTF-8, which JSON
# escaping can make up to six times longer.
MAX_HELLO_CHARS: Final = 64 * 1024 + 6 * 64 * 1024


class _Close(Exception):
    def __init__(self, code: int, reason: str, error_code: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error_code = error_code


class Connection:
    """One accepted WebSocket connection bound to one session."""

    def __init__(
        self, state: ServerState, ws: Websocket, session: Session, shown: JSONObject, after: int
    ) -> None:
        self.state = state
        self.ws = ws
        self.session = session
        self._shown = shown  # the session as the sync frame shows it
        self.progress = Progress(after)
        self.bucket = TokenBucket(state.config.limits.commands_per_second)
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self._scope = trio.CancelScope()
        self._send_lock = trio.Lock()
        self._last_sent = trio.current_time()
        self._deleted = False  # a command found the session deleted: close after the answer

    def finish(self, code: int, reason: str) -> None:
        """End the connection with *code* (the first reason given wins)."""
        if not self._scope.cancel_called:
            self.close_code, self.close_reason = code, reason
            self._scope.cancel()

    async def run(self) -> None:
        """Serve the connection until it must close; then close it with the chosen code.

        Cancellation: a client disconnect cancels this; nothing is left running.
        """
        sync: JSONObject = {
            "type": "sync",
            "session": self._shown,
            "after": self.progress.seq,
        }
        with self._scope:
            await self._send(dumps(sync))  # always the first frame
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stream)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._reader)
                nursery.start_soon(self._close_on_shutdown)
        with trio.move_on_after(1):
            await self.ws.close(self.close_code, self.close_reason)

    async def _send(self, text: str) -> None:
        async with held_quickly(self._send_lock):
            await self.ws.send(text)
            self._last_sent = trio.current_time()

    async def _heartbeat(self) -> None:
        # Its own task, sleeping until the connection has been silent for the
        # interval: timing the streamer's every wait instead cost a deadline per
        # batch on the per-event path.
        heartbeat = dumps({"type": "heartbeat"})
        interval = self.state.config.heartbeat_interval
        while True:
            await trio.sleep_until(self._last_sent + interval)
            if trio.current_time() >= self._last_sent + interval:
                await self._send(heartbeat)

    async def _stream(self) -> None:
        state = self.state
        sent = state.metrics.events_sent.labels("ws")
        async with state.store.subscribe(
            self.session.id, after=self.progress.seq, buffer=state.config.subscriber_buffer
        ) as subscription:
            while True:
                try:
                    batch = await subscription.receive_batch()
                except SubscriberTooSlow as error:
                    state.metrics.slow_consumers.labels("ws").inc()
                    self.finish(
                        CLOSE_TRY_AGAIN, f"slow consumer; resume after seq {error.last_seq}"
                    )
                    return
                if not batch:
                    self.finish(CLOSE_GOING_AWAY, "server shutting down")
                    return
                # Blocks while the client is behind; the subscription's bounded
                # buffer then overflows and is reported above.
                for event in batch:
                    await self._send(event.wire())
                self.progress.advance(batch[-1].seq)
                sent.inc(len(batch))
                if batch[-1].type == SessionDeleted.type:
                    # The log's last event: deleted by another client (or replica).
                    self.finish(CLOSE_NOT_FOUND, "session deleted")
                    return

    async def _reader(self) -> None:
        while True:
            message = await self.ws.receive()
            frame = await self._handle(message)
            if frame is not None:
                await self._send(dumps(frame))
            if self._deleted:
                self.finish(CLOSE_NOT_FOUND, "session not found")
                return

    async def _handle(self, message: str | bytes) -> JSONObject | None:
        state = self.state
        limit = state.config.limits.max_message_bytes
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > limit:
            state.metrics.client_errors.labels("too_large").inc()
            return error_frame("too_large", f"frame of {size} bytes exceeds the limit of {limit}")
        try:
            command: JSON = decode_json(message, "frame")
        except ApiError as error:
            state.metrics.client_errors.labels(error.code).inc()
            return error_frame(error.code, error.message)
        problem = command_id_problem(command)
        if problem is not None:
            state.metrics.client_errors.labels("invalid_command").inc()
            return error_frame("invalid_command", problem)
        assert isinstance(command, dict)
        command_id = command.get("id")
        assert isinstance(command_id, str)
        if not self.bucket.try_acquire():
            state.metrics.client_errors.labels("rate_limited").inc()
            limit_cps = state.config.limits.commands_per_second
            return error_frame(
                "rate_limited", f"more than {limit_cps:g} commands per second", command_id
            )
        ack = refuse_while_draining(state, command)
        if ack is None:
            try:
                ack = await state.supervisor.submit(self.session, command)
            except SessionNotFound:
                # Deleted since this connection opened: say so, then close as a
                # hello for it would have been (nothing more will happen in it).
                state.metrics.client_errors.labels("not_found").inc()
                self._deleted = True
                return error_frame("not_found", "session not found", command_id)
            except StoreError as error:
                # The storage refused the write (disk full): say so, keep the connection.
                api = store_error(error)
                state.metrics.client_errors.labels(api.code).inc()
                return error_frame(api.code, api.message, command_id, retryable=api.retryable)
            except Exception:
                # submit() answers bad input with rejected acks; this is a bug. Keep
                # the connection (and every other session) alive and say so.
                logger.exception("command failed", extra={"session_id": self.session.id})
                state.metrics.internal_errors.inc()
                return error_frame("internal", "internal server error", command_id)
        state.metrics.commands.labels("ws", ack.status).inc()
        return ack.to_json()

    async def _close_on_shutdown(self) -> None:
        await wait_closing_flushed(self.state, self.session.id, self.progress)
        self.finish(CLOSE_GOING_AWAY, "server shutting down")


async def _hello(state: ServerState, ws: Websocket) -> JSONObject:
    """The client's first frame, which must be ``hello``.

    Raises:
        _Close: no valid hello in time.
    """
    message: str | bytes | None = None
    with trio.move_on_after(state.config.hello_timeout):
        message = await ws.receive()
    if message is None:
        raise _Close(CLOSE_POLICY, "expected a hello frame")
    if len(message) > MAX_HELLO_CHARS:
        raise _Close(CLOSE_POLICY, "hello frame too large")
    try:
        hello: JSON = decode_json(message, "hello frame")
    except ApiError as error:
        raise _Close(CLOSE_POLICY, error.message) from None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        raise _Close(CLOSE_POLICY, 'the first frame must be {"type": "hello"}')
    after = hello.get("after", 0)
    if after is None:
        after = 0
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= INT_MAX:
        raise _Close(CLOSE_POLICY, f"hello.after must be an integer between 0 and {INT_MAX}")
    token = hello.get("token")
    if token is not None and not isinstance(token, str):
        raise _Close(CLOSE_POLICY, "hello.token must be a string")
    instructions = hello.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _Close(CLOSE_POLICY, "hello.instructions must be a string or null")
    return hello


async def _open(state: ServerState, hello: JSONObject, session: Session) -> Session:
    """*session* with the hello's ``instructions`` set, if it has any and they differ.

    Raises:
        _Close: the instructions are refused, or the store cannot write them.
    """
    if "instructions" not in hello:
        return session
    instructions = hello.get("instructions")
    assert instructions is None or isinstance(instructions, str)
    try:
        return await state.supervisor.set_instructions(session, instructions)
    except CommandError as error:
        raise _Close(CLOSE_POLICY, f"hello: {error}") from None
    except StoreError as error:
        api = store_error(error)
        close = CLOSE_NOT_FOUND if api.status == 404 else CLOSE_TRY_AGAIN
        raise _Close(close, api.message, api.code) from None


async def _serve(state: ServerState, ws: Websocket, session_id: str, principal: str | None) -> None:
    try:
        hello = await _hello(state, ws)
        if principal is None:
            token = hello.get("token")
            principal = state.auth.principal(token if isinstance(token, str) else None)
            if principal is None:
                raise _Close(CLOSE_UNAUTHORIZED, "missing or invalid token")
        session = await load_owned(state, principal, session_id)
        if session is None:
            raise _Close(CLOSE_NOT_FOUND, "session not found")
        session = await _open(state, hello, session)
        after = hello.get("after") or 0
        assert isinstance(after, int)
        try:
            await check_cursor(state, session.id, after)
        except ApiError as error:
            raise _Close(CLOSE_POLICY, f"hello.after: {error.message}") from None
        try:
            shown = await session_json(state, session)
        except StoreError as error:  # with replicas, its running turn is a store read
            api = store_error(error)
            raise _Close(CLOSE_TRY_AGAIN, api.message, api.code) from None
    except _Close as close:
        code = close.error_code or {
            CLOSE_UNAUTHORIZED: "unauthorized",
            CLOSE_NOT_FOUND: "not_found",
        }.get(close.code, "bad_hello")
        state.metrics.client_errors.labels(code).inc()
        with trio.move_on_after(1):
            await ws.send(dumps(error_frame(code, close.reason)))
            await ws.close(close.code, close.reason)
        return
    await Connection(state, ws, session, shown, after).run()


def register(app: QuartTrio, state: ServerState) -> None:
    origins = OriginPolicy(state.config.cors_origins)

    @app.websocket("/v1/sessions/<session_id>/ws")
    async def session_ws(session_id: str) -> Response | None:
        # A bad Authorization header is refused at the handshake, like REST; a
        # token in hello is checked after accepting (browsers cannot set headers).
        principal: str | None = None
        origin, host = websocket.headers.get("Origin"), websocket.headers.get("Host")
        if websocket_origin_refused(origins, origin, host):
            state.metrics.client_errors.labels("origin_not_allowed").inc()
            return error_response(
                ApiError(403, "origin_not_allowed", f"origin {origin!r} may not connect")
            )
        header = websocket.headers.get("Authorization")
        if header is not None:
            principal = state.auth.principal(bearer_token(header))
            if principal is None:
                return error_response(unauthorized())
            if await load_owned(state, principal, session_id) is None:
                return error_response(not_found())
        await websocket.accept()
        state.metrics.ws_connections.inc()
        try:
            await _serve(state, websocket, session_id, principal)
        finally:
            state.metrics.ws_connections.dec()
        return None
