"""What a :class:`~server.client.Session`'s connection is doing, for its observer.

The link reports, in this order for each connection: :class:`Connecting`, then
(after catching up over REST and opening the WebSocket) :class:`Connected` the
first time or :class:`Resumed` after a reconnect; when it drops,
:class:`Reconnecting` with the reason and the pause before the next try.
:class:`ServerError` is an ``error`` frame that answered no command of ours, or
answered one nobody waits for (a command queued without waiting for its ack): then
it names the command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import attrs


@attrs.frozen
class Connecting:
    """Attempt *attempt* (from 1) to catch up and connect is starting."""

    attempt: int


@attrs.frozen
class Connected:
    """The first connection is live; the events up to seq *after* were handed on."""

    after: int


@attrs.frozen
class Resumed:
    """Connected again after a loss; the live stream resumes after seq *after*."""

    after: int


@attrs.frozen
class Reconnecting:
    """The connection was lost (*reason*); the next try starts in *delay* seconds."""

    reason: str
    delay: float
    attempt: int


@attrs.frozen
class ServerError:
    """An ``error`` frame (docs/protocol.md §7) about no command of ours, or about
    *command_id* when no caller waits for that command's answer (it was queued with
    ``enqueue`` and its ack not asked for yet). The connection stays usable, except
    after a handshake error (``bad_hello``, ``unauthorized``, ``not_found``), which
    then ends the session as :class:`~server.client.ClientError`."""

    code: str
    message: str
    command_id: str | None = None


Status: TypeAlias = Connecting | Connected | Resumed | Reconnecting | ServerError
StatusObserver: TypeAlias = Callable[[Status], None]
