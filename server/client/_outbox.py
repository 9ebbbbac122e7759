"""Commands until the server acknowledges them: :class:`Ack` and :class:`Outbox`.

Each command keeps its ``id`` until its ack arrives and is sent again with the
*same* id on every new connection, so a command whose reply was lost is applied
once: the server answers the resend with ``status: "duplicate"`` (docs/protocol.md
§1, §5).
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from typing import Final, Literal, TypeAlias

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from sessions import JSONObject

from ._errors import CommandError

AckStatus: TypeAlias = Literal["accepted", "duplicate", "rejected"]
# Answers nobody asked for yet (fire-and-forget commands): the newest are kept.
_KEPT_ANSWERS: Final = 1000


@attrs.frozen
class Ack:
    """The server's acknowledgement of one command (docs/protocol.md §5).

    ``duplicate`` means the id was seen before: the original effect stands and the
    fields are the original ack's. ``rejected`` comes with ``code`` and ``error``.
    """

    id: str
    status: AckStatus
    turn_id: str | None = None
    code: str | None = None
    error: str | None = None
    frame: JSONObject = attrs.field(factory=dict, eq=False)

    @classmethod
    def from_frame(cls, frame: JSONObject) -> Ack | None:
        """The ack *frame* is, or ``None`` if it is not a well-formed one."""
        command_id, value = frame.get("id"), frame.get("status")
        if not isinstance(command_id, str):
            return None
        status: AckStatus
        match value:
            case "accepted" | "duplicate" | "rejected":
                status = value
            case _:
                return None
        turn_id, code, error = frame.get("turn_id"), frame.get("code"), frame.get("error")
        return cls(
            command_id,
            status,
            turn_id if isinstance(turn_id, str) else None,
            code if isinstance(code, str) else None,
            error if isinstance(error, str) else None,
            frame,
        )


Answer: TypeAlias = Ack | CommandError


class Outbox:
    """Unacknowledged commands, sent on the current connection and again on each new one.

    One outbox may outlive a connection (pass it to successive
    :func:`~server.client.connect` calls): what was not acknowledged is sent when
    the next one opens.
    """

    def __init__(self) -> None:
        self._pending: dict[str, JSONObject] = {}
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._waiting: Counter[str] = Counter()  # callers of result(), by command id
        # Sent on the current connection and not answered there, oldest first: the
        # server answers a connection's frames in the order it reads them, so an
        # ``error`` frame without an id (``too_large``, ``bad_json``) is the oldest's.
        self._in_flight: deque[str] = deque()
        self._ws: WebSocketConnection | None = None
        self._lock = trio.Lock()
        self._changed = trio.Event()

    @property
    def pending(self) -> Mapping[str, JSONObject]:
        """The commands sent (or to send) whose answer has not come, by id."""
        return self._pending

    async def put(self, command: JSONObject) -> None:
        """Queue *command* (which has a string ``id``) and send it now if connected.

        Cancellation: once this starts, the command is queued and will be delivered.
        """
        command_id = command.get("id")
        if not isinstance(command_id, str):
            raise ValueError("a command needs a string 'id'")
        async with self._lock:
            self._pending[command_id] = command
            if self._ws is not None:
                await self._send(self._ws, command)

    async def attach(self, ws: WebSocketConnection) -> None:
        """Send every unacknowledged command on *ws*, then new ones there directly.

        Cancellation: safe; what was not sent is sent on the next attach.
        """
        async with self._lock:
            self._in_flight.clear()
            for command in list(self._pending.values()):
                await self._send(ws, command)
            self._ws = ws

    def detach(self) -> None:
        """The connection is gone: queue commands until the next :meth:`attach`."""
        self._ws = None
        self._in_flight.clear()

    def oldest_in_flight(self) -> str | None:
        """The command an answer without an id is about (see ``_in_flight``)."""
        for command_id in self._in_flight:
            if command_id in self._pending:
                return command_id
        return None

    def retry_later(self, command_id: str) -> None:
        """The server asked for *command_id* again later (rate limited): its send is answered."""
        self._discard_in_flight(command_id)

    def _discard_in_flight(self, command_id: str) -> None:
        if command_id in self._in_flight:
            self._in_flight.remove(command_id)

    async def resend(self, command_id: str) -> None:
        """Send the unacknowledged command *command_id* again (same id), if connected.

        Cancellation: safe; it stays queued.
        """
        async with self._lock:
            command = self._pending.get(command_id)
            if command is not None and self._ws is not None:
                await self._send(self._ws, command)

    async def _send(self, ws: WebSocketConnection, command: JSONObject) -> None:
        try:
            await ws.send_message(json.dumps(command))
            self._in_flight.append(str(command["id"]))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            self._ws = None  # the reader sees the close and reconnects; we resend then

    def answered(self, answer: Answer) -> bool:
        """The server's answer to a pending command (an ack, or an error frame); whether
        a caller of :meth:`result` is waiting for it (``True`` too if it is not ours, or
        answered already: nothing is left unclaimed then)."""
        command_id = answer.id if isinstance(answer, Ack) else answer.command_id
        self._discard_in_flight(command_id)
        if self._pending.pop(command_id, None) is None:
            return True  # not ours, or answered already (a resend's second ack)
        self._answers[command_id] = answer
        while len(self._answers) > _KEPT_ANSWERS:
            self._answers.popitem(last=False)
        self._changed.set()
        self._changed = trio.Event()
        return self._waiting[command_id] > 0

    async def result(self, command_id: str) -> Ack:
        """The server's ack for *command_id*, waiting across reconnects if need be.

        Each answer is handed out once; only the newest answers nobody asked for are kept.

        Raises:
            CommandError: the server answered with an ``error`` frame instead.
            KeyError: *command_id* is neither pending nor answered.

        Cancellation: safe; the answer stays available.
        """
        self._waiting[command_id] += 1
        try:
            while command_id not in self._answers:
                if command_id not in self._pending:
                    raise KeyError(command_id)
                await self._changed.wait()
        finally:
            self._waiting[command_id] -= 1
            if not self._waiting[command_id]:
                del self._waiting[command_id]
        answer = self._answers.pop(command_id)
        if isinstance(answer, CommandError):
            raise answer
        return answer
