"""The chat client's link to one session, over :mod:`server.client`.

The library catches up over REST, streams live events, reconnects with backoff and
resends unacknowledged commands with their ids (see its docstring). This module
adds what is the chat's: its connection statuses become notes ("reconnecting…
(reason)", "reconnected, resumed after seq N"), :class:`ChatState` is told when a
catch-up is complete, and failures become :class:`ChatError` in the chat's words.

Catch-up and open work: from the start of each (re)connection until every event
up to the seq it resumed after has been recorded, :class:`ChatState` hands out no
work, so a ``tool.call`` whose ``tool.result`` is further on in the log (answered
before, or by another client) is never executed. Once caught up after a
*reconnect*, an approval or question still being asked is shown again (once).
Together with the library's idempotent resends and ``ChatState.answered``, a tool
call is executed at most once per client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, assert_never

import httpx

from server import client
from server.client import (
    Backoff,
    ClientError,
    CommandError,
    Connected,
    Connecting,
    Reconnecting,
    Resumed,
    ServerBusy,
    ServerError,
    Status,
    open_session,
    raise_for_status,
)
from sessions import JSONObject

from ._state import ChatState


class ChatError(Exception):
    """A failure the client cannot recover from (bad token, unknown session, server gone)."""


class Outbox:
    """The chat's commands until acknowledged (the library's :class:`~server.client.Outbox`),
    with acks as JSON objects and an ``error`` frame as a ``rejected`` ack."""

    def __init__(self) -> None:
        self.queue = client.Outbox()

    async def send(self, frame: JSONObject) -> None:
        """Queue *frame* (which has an ``id``) and send it now if connected.

        Cancellation: once this starts, the frame is queued and will be delivered.
        """
        await self.queue.put(frame)

    async def wait_ack(self, command_id: str) -> JSONObject:
        """The server's ack for *command_id* (across reconnects).

        Cancellation: safe.
        """
        try:
            return (await self.queue.result(command_id)).frame
        except CommandError as error:
            return {
                "type": "ack",
                "id": command_id,
                "status": "rejected",
                "code": error.code,
                "message": error.message,
            }


EventHandler: TypeAlias = Callable[[JSONObject], None]
Notify: TypeAlias = Callable[[str], None]


class Link:
    """Keeps one session connected and tells the chat what happens.

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
        self.backoff = Backoff(backoff, max_backoff, attempts, liveness)
        self.instructions = instructions
        self.connections = 0
        self._catch_up_to: int | None = None  # the seq the current connection resumed after

    async def run(self) -> None:
        """Stay connected until cancelled.

        Raises:
            ChatError: the server refuses us (token, session) or stayed unreachable
                for ``attempts`` consecutive tries.

        Cancellation: closes the connection; unacknowledged commands stay queued.
        """
        try:
            async with open_session(
                self.http,
                self.token,
                self.session_id,
                after=self.state.last_seq,
                on_status=self._status,
                instructions=self.instructions,
                outbox=self.outbox.queue,
                backoff=self.backoff,
                ws_url=self.ws_url,
            ) as session:
                async for event in session.events():
                    self.on_event(event)
                    self._check_caught_up()
        except ClientError as error:
            raise ChatError(_in_words(error, session_asked=True)) from None

    def _status(self, status: Status) -> None:
        match status:
            case Connecting():
                self._catch_up_to = None
                self.state.catch_up()
            case Connected(after=seq) | Resumed(after=seq):
                self.connections += 1
                self._catch_up_to = seq
                self._check_caught_up()
            case Reconnecting(reason=reason, delay=delay):
                self.notify(
                    f"[connection lost; reconnecting… ({reason}); next try in {delay:.2g} s]"
                )
            case ServerError(code=code, message=message, command_id=None):
                self.notify(f"[server error {code}: {message}]")
            case ServerError(code=code, message=message, command_id=command_id):
                self.notify(f"[server error {code} for command {command_id}: {message}]")
            case _:
                assert_never(status)

    def _check_caught_up(self) -> None:
        """Once every event up to the resume point is recorded, the catch-up is over."""
        target = self._catch_up_to
        if target is None or self.state.last_seq < target:
            return
        self._catch_up_to = None
        reconnected = self.connections > 1
        if reconnected:
            self.notify(f"[reconnected, resumed after seq {target}]")
        self.state.caught_up(reshow=reconnected)


def _in_words(error: ClientError, *, session_asked: bool) -> str:
    """The library's *error* as the chat says it: with what the user can do about it.

    *session_asked*: the request named a session (``--session``), so a 404 means
    that session, not an endpoint the server lacks.
    """
    if error.code == "unauthorized" and error.status is not None:
        return f"{error.message}; check --token or $AGENT_RUNTIME_TOKEN"
    if error.code == "not_found" and error.status is not None:
        if session_asked:
            return f"{error.message}; omit --session to start a new one"
        return f"{error.message}; check --url"  # an endpoint this server does not have
    if error.code == "bad_response" and error.status is not None:
        return f"{error.message} (check --url)"
    return error.message


def check_response(response: httpx.Response, session_id: str | None = None) -> None:
    """Turn an HTTP error status into :class:`ChatError` or, if waiting may help, a
    retryable error; the server's own message (``{"error": {"code", "message"}}``)
    is what the user reads.

    Raises:
        ChatError: authentication failed, unknown session, or another client error.
        ServerBusy: another 5xx, or a 429 (the server may come back, or want us
            slower); the library's, a transport error, so the link retries it.
    """
    try:
        raise_for_status(response, session_id)
    except ClientError as error:
        raise ChatError(_in_words(error, session_asked=session_id is not None)) from None


# ServerBusy is the library's, named here too: what check_response raises to retry.
__all__ = ["ChatError", "EventHandler", "Link", "Notify", "Outbox", "ServerBusy", "check_response"]
