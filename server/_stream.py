"""Pieces shared by the WebSocket and SSE streams: progress tracking and shutdown flush."""

from __future__ import annotations

from typing import Final

import trio

from agents import Ack, CommandError
from agents._core._commands import MAX_ID_LENGTH
from sessions import JSON, JSONObject

from ._errors import bad_request
from ._state import ServerState

# How long a closing server waits for a stream to deliver its committed tail.
FLUSH_TIMEOUT: Final = 2.0

# Commands that would start new work; refused once the server is draining.
_STARTS_WORK: Final = frozenset({"user_message", "switch_agent"})


async def check_cursor(state: ServerState, session_id: str, after: int) -> None:
    """Refuse a resume cursor past *session_id*'s last event (seqs run from 1, gap-free).

    No client can have seen such an event. Followed anyway, the stream would
    skip every new event up to the cursor without a word (a cursor of another
    session, or one from before a database restore).

    Raises:
        ApiError: 400 ``bad_parameter``.
    """
    if after and not await state.store.read_events(session_id, after=after - 1, limit=1):
        raise bad_request("bad_parameter", f"the cursor {after} is past the session's last event")


class Progress:
    """The last seq a stream has written to its client."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._changed = trio.Event()

    def advance(self, seq: int) -> None:
        if seq > self.seq:
            self.seq = seq
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, seq: int) -> None:
        """Return once ``self.seq >= seq``.

        Cancellation: safe; nothing is consumed.
        """
        while self.seq < seq:
            await self._changed.wait()


async def wait_closing_flushed(state: ServerState, session_id: str, progress: Progress) -> None:
    """Return once the server is closing and the client has every committed event.

    The tail is bounded by :data:`FLUSH_TIMEOUT`, so a stuck client cannot hold
    shutdown up.

    Cancellation: safe.
    """
    await state.closing.wait()
    with trio.move_on_after(FLUSH_TIMEOUT):
        tail = await state.store.read_events(session_id, after=progress.seq)
        if tail:
            await progress.wait_for(tail[-1].seq)


def refuse_while_draining(state: ServerState, command: JSONObject) -> Ack | None:
    """A rejection for commands that start new work during shutdown, else ``None``."""
    if not state.draining.is_set() or command.get("type") not in _STARTS_WORK:
        return None
    command_id = command.get("id")
    return Ack.rejected(
        command_id if isinstance(command_id, str) else "",
        CommandError("shutting_down", "the server is shutting down; retry after it restarts"),
    )


def command_id_problem(command: JSON) -> str | None:
    """Why *command* has no id an ``ack`` can answer to, or ``None`` if it has one."""
    if not isinstance(command, dict):
        return "a command is a JSON object with a string 'type' and 'id'"
    command_id = command.get("id")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID_LENGTH:
        return f"field 'id' must be a string of 1 to {MAX_ID_LENGTH} characters"
    return None


def error_frame(
    code: str, message: str, command_id: str | None = None, *, retryable: bool = False
) -> JSONObject:
    frame: JSONObject = {"type": "error", "code": code, "message": message}
    if command_id is not None:
        frame["id"] = command_id
    if retryable:
        frame["retryable"] = True
    return frame
