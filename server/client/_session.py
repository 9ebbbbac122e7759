"""A connected session: :func:`connect` / :func:`open_session` and :class:`Session`.

The link runs in a nursery the context manager owns; events reach the caller
through a bounded channel (when it is full the link stops reading, and the server
eventually drops the slow connection, which then resumes: nothing is lost). A
failure reconnecting cannot fix cancels the ``async with`` body and leaves it as
:class:`ClientError`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from sessions import JSONObject

from ._errors import ClientError, describe_error
from ._link import DEFAULT_BACKOFF, Backoff, Link
from ._outbox import Ack, Outbox
from ._rest import base_url, session_ws_url
from ._status import Status, StatusObserver


def _ignore(status: Status) -> None:
    del status


class Session:
    """One session's durable events and commands, across reconnects.

    Get one from :func:`connect` (or :func:`open_session`). :meth:`events` is read by
    one task; :meth:`send` may be called from any number.
    """

    def __init__(
        self,
        session_id: str,
        outbox: Outbox,
        events: trio.MemoryReceiveChannel[JSONObject],
        after: int,
    ) -> None:
        self.session_id = session_id
        self.outbox = outbox
        self._events = events
        self._last_seq = after
        self._prefix = f"cl-{secrets.token_hex(4)}"
        self._count = 0
        self._link: Link | None = None

    @property
    def last_seq(self) -> int:
        """The seq of the last event :meth:`events` yielded: the cursor to resume from."""
        return self._last_seq

    @property
    def connections(self) -> int:
        """WebSocket connections opened so far."""
        return self._link.connections if self._link is not None else 0

    def events(self) -> AsyncIterator[JSONObject]:
        """The session's durable events after the cursor, in seq order, each once,
        across reconnects; waits for new ones forever.

        Cancellation: safe; an event not yet yielded stays queued.
        """
        return _EventStream(self)

    async def _next_event(self) -> JSONObject:
        try:
            event = await self._events.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        seq = event.get("seq")
        if isinstance(seq, int):
            self._last_seq = seq
        return event

    def new_id(self) -> str:
        """A command id unique to this client."""
        self._count += 1
        return f"{self._prefix}-{self._count}"

    async def enqueue(self, command: JSONObject) -> str:
        """Queue *command* (an ``id`` is assigned if it has none) without waiting for its
        ack; it is sent now if connected and again with the same id after a reconnect,
        until acknowledged. Returns its id (for :meth:`ack`).

        Cancellation: once this starts, the command will be delivered.
        """
        command_id = command.get("id")
        if not isinstance(command_id, str):
            command_id = self.new_id()
            command = command | {"id": command_id}
        await self.outbox.put(command)
        return command_id

    async def ack(self, command_id: str) -> Ack:
        """The ack of the command *command_id* (queued with :meth:`enqueue`).

        Raises:
            CommandError: the server answered with an ``error`` frame.

        Cancellation: safe; the command stays queued.
        """
        return await self.outbox.result(command_id)

    async def send(self, command: JSONObject) -> Ack:
        """Send *command* and return its ack (``accepted``, ``duplicate`` or
        ``rejected``). An ``id`` is assigned if it has none; it is resent with that
        id across reconnects, so a command whose reply was lost is applied once and
        the reply that comes back is ``duplicate``.

        Raises:
            CommandError: the server answered with an ``error`` frame.

        Cancellation: once this starts, the command will be delivered.
        """
        return await self.ack(await self.enqueue(command))


class _EventStream:
    """:meth:`Session.events`: a plain iterator (no async generator left to finalize)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> JSONObject:
        return await self._session._next_event()


@asynccontextmanager
async def open_session(
    http: httpx.AsyncClient,
    token: str,
    session_id: str,
    *,
    after: int = 0,
    on_status: StatusObserver | None = None,
    instructions: str | None = None,
    outbox: Outbox | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    buffer: int = 1024,
    ws_url: str | None = None,
) -> AsyncIterator[Session]:
    """:func:`connect` with your own *http* client (its ``base_url`` the server's, and
    sending the token); *ws_url* defaults to the session's under that base URL.

    Raises:
        ClientError: see :func:`connect`.
    """
    send, receive = trio.open_memory_channel[JSONObject](buffer)
    session = Session(session_id, outbox or Outbox(), receive, after)
    link = Link(
        http,
        ws_url or session_ws_url(http, session_id),
        token,
        session_id,
        session.outbox,
        send.send,
        on_status or _ignore,
        after=after,
        backoff=backoff,
        instructions=instructions,
    )
    session._link = link
    failure: ClientError | None = None
    body_error: Exception | None = None

    async def run_link(cancel: trio.CancelScope) -> None:
        nonlocal failure
        try:
            await link.run()
        except ClientError as error:
            failure = error
            cancel.cancel()  # the body ends; the error leaves the ``async with``
        except Exception as error:  # not Cancelled or KeyboardInterrupt: BaseExceptions
            # An answer the link cannot read (a body that does not decode, a malformed
            # value): the protocol is not being spoken, which reconnecting cannot fix.
            failure = ClientError(
                "bad_response",
                f"unexpected answer from the server: {describe_error(error)}"
                f" ({type(error).__name__})",
            )
            failure.__cause__ = error
            cancel.cancel()

    async with send, receive, trio.open_nursery() as nursery:
        nursery.start_soon(run_link, nursery.cancel_scope)
        try:
            yield session
        except Exception as error:  # re-raised below, as itself rather than in a group
            body_error = error
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
    if failure is not None:
        raise failure


@asynccontextmanager
async def connect(
    url: str,
    token: str,
    session_id: str,
    *,
    after: int = 0,
    on_status: StatusObserver | None = None,
    instructions: str | None = None,
    outbox: Outbox | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
    buffer: int = 1024,
) -> AsyncIterator[Session]:
    """Follow *session_id* on the server at *url* (``http(s)://`` or ``ws(s)://``) as
    the principal of *token*, from seq *after*.

    Args:
        on_status: called with each :data:`Status` of the connection.
        instructions: the project's instructions, sent in every ``hello``.
        outbox: keep unacknowledged commands across ``connect`` calls.
        backoff: reconnect pauses, attempts and liveness.
        buffer: events held for :meth:`Session.events` before the link waits.

    Raises:
        ClientError: on leaving, if the server refused us (token, session), stayed
            unreachable for ``backoff.attempts`` tries, or answered what is not the
            protocol (``bad_response``); that failure cancels the body.
    """
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url(url), headers=headers, timeout=30) as http:
        async with open_session(
            http,
            token,
            session_id,
            after=after,
            on_status=on_status,
            instructions=instructions,
            outbox=outbox,
            backoff=backoff,
            buffer=buffer,
        ) as session:
            yield session
