"""A Python client for agent-runtime sessions: resume, idempotent commands, reconnects.

:func:`connect` follows one session (docs/protocol.md): it catches up over REST
from a cursor, then streams live events over the WebSocket, and reconnects with
backoff when the connection drops, resuming after the last event it handed on,
so :meth:`Session.events` has no gap and no duplicate. :meth:`Session.send` gives
each command an id and sends it again with that id on every reconnect until it is
acknowledged; the server applies it once and answers a resend ``duplicate``. An
observer (``on_status``) hears :class:`Connecting`, :class:`Connected`,
:class:`Reconnecting` (with the reason), :class:`Resumed` (after seq N) and
:class:`ServerError`. What reconnecting cannot fix ends the ``async with`` with
:class:`ClientError`; an ``error`` frame answering a command raises
:class:`CommandError` from ``send``.

An IDE-side executor that answers every ``read_file`` call with the file's
contents and every other call with an error::

    import trio
    from pathlib import Path
    from server.client import connect

    async def executor(url: str, token: str, session_id: str) -> None:
        async with connect(url, token, session_id) as session:
            async for event in session.events():
                if event["type"] == "tool.call":
                    answer = {"type": "tool_result", "call_id": event["call_id"]}
                    if event["name"] == "read_file":
                        answer["result"] = Path(event["arguments"]["path"]).read_text()
                    else:
                        answer["error"] = f"{event['name']} is not supported here"
                    await session.send(answer)

(A real one confines paths to its workspace and skips calls whose ``tool.result``
is already in the log when it starts from an old cursor.)

Modules: ``_session`` (:func:`connect`, :class:`Session`), ``_link`` (catch-up, the
WebSocket, reconnects), ``_outbox`` (:class:`Outbox`, :class:`Ack`), ``_rest`` (URLs,
error bodies and :func:`raise_for_status`, the event log), ``_status`` (connection
statuses), ``_errors``.
"""

from ._errors import ClientError, CommandError, ServerBusy, describe_error
from ._link import Backoff
from ._outbox import Ack, AckStatus, Outbox
from ._rest import base_url, error_body, raise_for_status
from ._session import Session, connect, open_session
from ._status import (
    Connected,
    Connecting,
    Reconnecting,
    Resumed,
    ServerError,
    Status,
    StatusObserver,
)

__all__ = [
    "Ack",
    "AckStatus",
    "Backoff",
    "ClientError",
    "CommandError",
    "Connected",
    "Connecting",
    "Outbox",
    "Reconnecting",
    "Resumed",
    "ServerBusy",
    "ServerError",
    "Session",
    "Status",
    "StatusObserver",
    "base_url",
    "connect",
    "describe_error",
    "error_body",
    "open_session",
    "raise_for_status",
]
