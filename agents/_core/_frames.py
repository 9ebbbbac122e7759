"""The ephemeral frames of docs/protocol.md §7 (never stored), declared like events.

``server/_ws.py`` builds and parses these frames itself; these declarations are
what the JSON Schema (``_schema.py``) says about them, and the live tests check
every frame the server sends against that schema.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from attrs import frozen

from ._codec import Record, record


@frozen
class Hello:
    """The client's first WebSocket frame: resume cursor, token, project instructions.

    ``instructions`` absent leaves the stored ones alone; ``null`` clears them.
    """

    type: ClassVar[str] = "hello"
    after: int = 0
    token: str | None = None
    instructions: str | None = None


@frozen
class SessionView:
    """A session as the REST API and ``sync`` show it."""

    id: str
    owner: str
    title: str | None
    created_at: float
    updated_at: float
    current_agent: str
    instructions: str | None
    running_turn: str | None


@frozen
class Sync:
    """The server's answer to ``hello``: the session, and the cursor the replay starts from."""

    type: ClassVar[str] = "sync"
    session: SessionView
    after: int


@frozen
class Heartbeat:
    """Sent after a quiet interval, so idle connections stay open."""

    type: ClassVar[str] = "heartbeat"


@frozen
class ErrorFrame:
    """A frame the server could not treat as a command (no ``seq``: not the ``error`` event)."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    id: str | None = None
    retryable: bool = False


SESSION_VIEW: Final = record(SessionView)
HELLO: Final = record(Hello, null_ok=("instructions",))
CLIENT_FRAMES: Final[tuple[Record[Hello], ...]] = (HELLO,)
SERVER_FRAMES: Final[tuple[Record[Any], ...]] = (
    record(Sync),
    record(Heartbeat),
    record(ErrorFrame, omit_empty=("retryable",)),  # only ever sent as true
)
