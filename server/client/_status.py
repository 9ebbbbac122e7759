"""What a :class:`~server.client.Session`'s connection is doing, for its observer.

The link reports, in this order for each connection: :class:`Connecting`, then
(after catching up over REST and opening the WebSocket) :class:`Connected` the
first time or :class:`Resumed` after a reconnect; when it drops,
:class:`Reconnecting` with the reason and the pause before the next try.
:class:`ServerError` is an ``error`` frame that answered no command of ours.
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
    """An ``error`` frame about no command of ours (docs/protocol.md §7); the
    connection stays usable."""

    code: str
    message: str


Status: TypeAlias = Connecting | Connected | Resumed | Reconnecting | ServerError
StatusObserver: TypeAlias = Callable[[Status], None]
