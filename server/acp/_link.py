"""The adapter's one seam to the runtime: :class:`RuntimeLink`.

The ACP adapter translates; it never runs turns itself. Everything it needs of a
runtime is the few calls below, in the vocabulary of docs/protocol.md (commands
§4, acks §5, events §6 as the JSON objects the wire carries), so the same adapter
runs over two implementations:

- embedded (``_embedded.py``, the default): the store and the turn supervisor in
  this process, called exactly as the WebSocket handler calls them;
- connected (``--connect URL``, to come, in its own module): a running server,
  over REST for sessions and the WebSocket (or SSE + POST) for commands and
  events.

An implementation owns the principal (embedded: a fixed local one; connected: the
token's), retries and reconnects; the adapter sees sessions of that principal
only. There is no "close session": following a session ends when its
:meth:`RuntimeLink.follow` call is cancelled, which is all a client going away
means for the runtime (turns go on, SPEC §3.3 rule 6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from attrs import frozen

from agents.mcp import McpServerConfig
from sessions import JSONObject

EventSink = Callable[[Sequence[JSONObject]], Awaitable[None]]


class LinkError(Exception):
    """The runtime could not do what was asked; *code* is one of docs/protocol.md §9."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@frozen
class AgentInfo:
    """One agent (mode) as ``GET /v1/agents`` lists it: what ACP calls a session mode."""

    name: str
    description: str


@frozen
class ModelChoices:
    """The models a session can switch to, as ``GET /v1/models`` lists them: the
    server's *default* and every name the configuration names (*default* first)."""

    default: str
    names: tuple[str, ...]


@frozen
class SessionInfo:
    """A session as ``GET /v1/sessions/{id}`` shows it (the fields the adapter uses)."""

    id: str
    title: str
    current_agent: str
    created_at: float
    updated_at: float


@frozen
class SessionPage:
    """One page of sessions, newest first; *next_cursor* fetches the next (``None``: last)."""

    sessions: Sequence[SessionInfo]
    next_cursor: str | None


class RuntimeLink(Protocol):
    """What the ACP adapter asks of a runtime (see the module docstring).

    Every method may raise :class:`LinkError` when the runtime is unreachable or
    refuses (e.g. ``storage_unavailable``); none raises for a well-formed command
    the runtime refuses: that is a ``rejected`` ack.

    Cancellation: every call may be cancelled; a cancelled :meth:`submit` either
    took effect or did not (resubmitting the same command id says ``duplicate``).
    """

    @property
    def tool_timeout(self) -> float:
        """Seconds the runtime waits for an IDE tool result before failing the call."""
        ...

    async def agents(self) -> Sequence[AgentInfo]:
        """The agents a session can switch to, in the runtime's order."""
        ...

    async def models(self) -> ModelChoices | None:
        """The models to offer for ``switch_model``; ``None`` when the runtime does not
        list them (a server older than ``GET /v1/models``)."""
        ...

    async def create_session(self, *, instructions: str | None = None) -> SessionInfo:
        """A new session (first agent: the runtime's default) with project *instructions*."""
        ...

    async def load_session(self, session_id: str) -> SessionInfo | None:
        """The session, or ``None`` if it does not exist (or is not this principal's)."""
        ...

    async def fork_session(self, session_id: str) -> SessionInfo | None:
        """A new session whose log is the session's so far (``POST .../fork``: a turn
        open there is closed in the fork as interrupted, the title gains " (fork)");
        ``None`` if there is no such session (or it is not this principal's)."""
        ...

    async def list_sessions(self, *, cursor: str | None = None, limit: int = 50) -> SessionPage:
        """This principal's sessions, newest first, from *cursor* (an earlier page's)."""
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session (its turn cancelled, its queue dropped; its log ends with
        ``session.deleted``); ``False`` if it does not exist (or is not this principal's)."""
        ...

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 500
    ) -> Sequence[JSONObject]:
        """Up to *limit* committed events with ``seq > after``, oldest first."""
        ...

    async def follow(self, session_id: str, *, after: int, sink: EventSink) -> None:
        """Hand every committed event after *after* to *sink*, in seq order, forever.

        Batches are never empty and never overlap or leave gaps; a slow *sink*
        only delays them (the link resumes from its cursor when it falls behind).
        Returns when the runtime shuts down, or once the session's last event,
        ``session.deleted``, was handed over.
        """
        ...

    async def submit(self, session_id: str, command: JSONObject) -> JSONObject:
        """Apply one command (docs/protocol.md §4); its ack (§5), after the effect commits."""
        ...

    def session_mcp(
        self, session_id: str, servers: Sequence[McpServerConfig]
    ) -> AbstractAsyncContextManager[None]:
        """Mount the client's MCP *servers* into session *session_id* while the block runs.

        Their tools are offered in every mode of that session, under the approval
        policy, as long as the client follows it (ACP's ``mcpServers``).
        """
        ...
