"""SSE + HTTP POST transport (SPEC §3.4) for clients that cannot use WebSocket.

- ``GET /v1/sessions/{id}/events`` with ``Accept: text/event-stream`` (or
  ``?stream=1``) streams events after ``Last-Event-ID`` / ``?after=``: ``id:`` is
  the seq, ``event:`` the type (``agent.error`` for ``error``, see :func:`sse_name`),
  ``data:`` the JSON envelope; ``: hb`` comments keep idle streams alive. Without
  it, the same path answers one JSON page.
- ``POST /v1/sessions/{id}/commands``: one JSON command → its JSON ``ack``.
- ``POST /v1/sessions/{id}/messages``: sends a ``user_message``; with
  ``Accept: text/event-stream`` streams that turn's events until its ``turn.ended``.

Events already queued are written as one body chunk. A stream that falls behind
ends (``EventSource`` reconnects with ``Last-Event-ID``); nothing is dropped. One
that takes no byte for ``send_timeout`` is reset by the transport (``_tcp.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import trio
from quart import Response, request
from quart_trio import QuartTrio

from agents import Ack
from agents.events import SessionDeleted
from sessions import Event, JSONObject, Session, SubscriberTooSlow, new_id

from ._errors import RETRY_AFTER_BY_CODE, ApiError, bad_request
from ._http import (
    authenticate,
    int_arg,
    owned_session,
    parse_int,
    rate_limit,
    read_json,
    read_json_object,
)
from ._responses import BodyWriter, StreamResponse, json_response
from ._rest import events_page
from ._state import ServerState
from ._stream import (
    Progress,
    check_cursor,
    command_id_problem,
    refuse_while_draining,
    wait_closing_flushed,
)

EVENT_STREAM: Final = "text/event-stream"
ERROR_EVENT_NAME: Final = "agent.error"
HEARTBEAT: Final = b": hb\n\n"
_SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# Rejected acks as HTTP statuses: malformed input is 400, shutdown 503, everything
# else (busy, unknown call id, already resolved...) conflicts with the session's state.
_BAD_INPUT: Final = frozenset(
    {"bad_json", "invalid_command", "unknown_command", "invalid_arguments", "unknown_agent"}
)
_STATUS_BY_CODE: Final = {
    "rate_limited": 429,
    "shutting_down": 503,
    "session_elsewhere": 503,
    "storage_unavailable": 503,
}


def wants_stream() -> bool:
    accept = request.headers.get("Accept", "")
    return EVENT_STREAM in accept or request.args.get("stream") in ("1", "true")


def sse_name(event_type: str) -> str:
    """The SSE event name of a durable event: its type, but never ``error``.

    A browser's ``EventSource`` fires its connection-error handler for an event
    named ``error``, so a page could not tell a model error from a dropped
    connection; the durable ``error`` event is named :data:`ERROR_EVENT_NAME`
    (its JSON ``type`` stays ``"error"``).
    """
    return ERROR_EVENT_NAME if event_type == "error" else event_type


def format_event(event: Event) -> bytes:
    data = event.wire()
    return f"id: {event.seq}\nevent: {sse_name(event.type)}\ndata: {data}\n\n".encode()


def ack_response(ack: Ack) -> Response:
    body = ack.to_json()
    if ack.status != "rejected":
        return json_response(body)
    code = ack.code or "rejected"
    status = 400 if code in _BAD_INPUT else _STATUS_BY_CODE.get(code, 409)
    error: JSONObject = {"code": code, "message": ack.error or "rejected"}
    retry_after = RETRY_AFTER_BY_CODE.get(code)
    if retry_after is not None:
        error["retryable"] = True  # as an ApiError says it (ApiError.to_json)
    response = json_response({"error": error, "ack": body}, status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _start_seq() -> int:
    """The resume cursor: ``Last-Event-ID`` wins over ``?after=``.

    Raises:
        ApiError: 400 when either is not a non-negative integer.
    """
    last_id = request.headers.get("Last-Event-ID")
    if last_id:
        return parse_int(last_id, "Last-Event-ID (an event seq)")
    return int_arg("after", 0)


class EventStream:
    """One SSE response body: replay after a cursor, then live, until told to stop.

    With ``turn_id`` only that turn's events are written and the stream ends
    after its ``turn.ended``.
    """

    def __init__(
        self, state: ServerState, session: Session, after: int, turn_id: str | None = None
    ) -> None:
        self.state = state
        self.session = session
        self.progress = Progress(after)
        self.turn_id = turn_id
        self._user_messages: dict[int, Event] = {}

    async def run(self, write: BodyWriter) -> None:
        """Write events until the turn ends, the store closes, or the server shuts down.

        Cancellation: a client disconnect cancels this; the turn is unaffected.
        """
        self.state.metrics.sse_streams.inc()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._close_on_shutdown, nursery.cancel_scope)
                await self._follow(write)
                nursery.cancel_scope.cancel()
        finally:
            self.state.metrics.sse_streams.dec()

    async def _close_on_shutdown(self, scope: trio.CancelScope) -> None:
        await wait_closing_flushed(self.state, self.session.id, self.progress)
        scope.cancel()

    async def _follow(self, write: BodyWriter) -> None:
        state = self.state
        async with state.store.subscribe(
            self.session.id, after=self.progress.seq, buffer=state.config.subscriber_buffer
        ) as subscription:
            while True:
                batch: Sequence[Event] | None = None
                with trio.move_on_after(state.config.heartbeat_interval):
                    try:
                        batch = await subscription.receive_batch()
                    except SubscriberTooSlow:
                        state.metrics.slow_consumers.labels("sse").inc()
                        return
                if batch is None:
                    await write(HEARTBEAT)
                    continue
                if not batch:
                    return
                if await self._write_batch(write, batch):
                    return

    async def _write_batch(self, write: BodyWriter, batch: Sequence[Event]) -> bool:
        """Write *batch* as one chunk; ``True`` once the followed turn has ended
        or the session was deleted (its ``session.deleted`` was written)."""
        ended = False
        chunks: list[bytes] = []
        for event in batch:
            if self.turn_id is not None:
                if not self._in_turn(event, chunks):
                    continue
                ended = event.type == "turn.ended"
            chunks.append(format_event(event))
            if ended:
                break
        if chunks:
            await write(b"".join(chunks))
            self.state.metrics.events_sent.labels("sse").inc(len(chunks))
        self.progress.advance(batch[-1].seq)
        return ended or batch[-1].type == SessionDeleted.type  # the log's last event

    def _in_turn(self, event: Event, chunks: list[bytes]) -> bool:
        """Whether *event* belongs to the followed turn.

        The user message is committed before its turn exists, without a turn id;
        it is held back until ``turn.started`` names its seq, then written first.
        """
        if event.turn_id is None:
            if event.type == "user.message":
                self._user_messages[event.seq] = event
                while len(self._user_messages) > 64:
                    del self._user_messages[min(self._user_messages)]
            return False
        if event.turn_id != self.turn_id:
            return False
        if event.type == "turn.started":
            seq = event.data.get("user_message_seq")
            message = self._user_messages.pop(seq, None) if isinstance(seq, int) else None
            if message is not None:
                chunks.append(format_event(message))
        return True


async def _submit(state: ServerState, session: Session, command: JSONObject) -> Ack:
    ack = refuse_while_draining(state, command)
    if ack is None:
        ack = await state.supervisor.submit(session, command)
    state.metrics.commands.labels("http", ack.status).inc()
    return ack


def register(app: QuartTrio, state: ServerState) -> None:
    @app.get("/v1/sessions/<session_id>/events")
    async def get_events(session_id: str) -> Response:
        if not wants_stream():
            session = await owned_session(state, authenticate(state), session_id)
            return await events_page(state, session)
        principal = authenticate(state, allow_query_token=True)
        session = await owned_session(state, principal, session_id)
        after = _start_seq()
        await check_cursor(state, session.id, after)
        stream = EventStream(state, session, after)
        return StreamResponse(stream.run, content_type=EVENT_STREAM, headers=_SSE_HEADERS)

    @app.post("/v1/sessions/<session_id>/commands")
    async def post_command(session_id: str) -> Response:
        principal = authenticate(state)
        session = await owned_session(state, principal, session_id)
        command = await read_json()
        problem = command_id_problem(command)
        if problem is not None:
            raise bad_request("invalid_command", problem)
        assert isinstance(command, dict)
        rate_limit(state, principal)
        return ack_response(await _submit(state, session, command))

    @app.post("/v1/sessions/<session_id>/messages")
    async def post_message(session_id: str) -> Response:
        principal = authenticate(state)
        session = await owned_session(state, principal, session_id)
        body = await read_json_object()
        unknown = sorted(body.keys() - {"content", "id", "agent", "on_busy"})
        if unknown:
            raise bad_request("invalid_request", f"unknown field(s) {', '.join(unknown)}")
        command: JSONObject = {"type": "user_message", **body}
        command.setdefault("id", new_id("msg"))
        rate_limit(state, principal)
        after = int_arg("after", 0)
        ack = await _submit(state, session, command)
        if ack.status == "rejected" or not wants_stream():
            return ack_response(ack)
        if ack.turn_id is None:
            raise ApiError(409, "no_turn", "the message did not start or queue a turn")
        # The turn's events come after *after* (0 unless the client knows better);
        # the replay filters by turn id, so an older cursor costs only reading.
        stream = EventStream(state, session, after, turn_id=ack.turn_id)
        return StreamResponse(stream.run, content_type=EVENT_STREAM, headers=_SSE_HEADERS)
