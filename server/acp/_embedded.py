"""The embedded :class:`~server.acp._link.RuntimeLink`: store and supervisor in this process.

``agent-runtime acp`` without ``--connect`` opens what ``serve`` opens (the store
``--db`` names, the model, the supervisor with the configured modes, policy and
runtime settings; the very functions of ``server/_serve.py``), minus HTTP, and
talks to them as the WebSocket handler does: commands go to
:meth:`Supervisor.submit`, events come from the store's subscription. The
principal is fixed: :data:`~server._auth.LOCAL_PRINCIPAL`, the one ``serve``'s
generated loopback token stands for, so ``agent-runtime sessions list`` and a
local ``serve`` on the same database see the editor's sessions as their own.

Only one process can open an SQLite database at a time: an editor running the
adapter and a ``serve`` on the same file exclude each other (``DatabaseInUse``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

from agents import CommandError, RuntimeMetrics, Supervisor, open_supervisor
from agents.events import SessionDeleted
from agents.mcp import McpServerConfig, McpTools, open_mcp_servers
from sessions import (
    JSONObject,
    Session,
    SessionNotFound,
    SessionStore,
    StoreError,
    SubscriberTooSlow,
)

from .._auth import LOCAL_PRINCIPAL
from .._config import ServeConfig
from .._cursor import decode_cursor, encode_cursor
from .._errors import ApiError, store_error
from .._runtime import (
    load_agents,
    open_configured_store,
    open_model,
    runtime_config,
    tool_catalogue,
)
from ._link import AgentInfo, EventSink, LinkError, ModelChoices, SessionInfo, SessionPage

# Live events a follower may fall behind by before it resumes from its cursor.
FOLLOW_BUFFER: Final = 1024


def _info(session: Session) -> SessionInfo:
    return SessionInfo(
        session.id, session.title, session.current_agent, session.created_at, session.updated_at
    )


def _link_error(error: StoreError) -> LinkError:
    api = store_error(error)
    return LinkError(api.code, api.message)


class EmbeddedLink:
    """A :class:`RuntimeLink` over *store* and *supervisor*, as *principal*.

    Use :func:`open_embedded_link` to get one from a configuration.
    """

    def __init__(
        self,
        store: SessionStore,
        supervisor: Supervisor,
        *,
        principal: str = LOCAL_PRINCIPAL,
        max_live_sessions: int | None = None,
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self._principal = principal
        self._max_live_sessions = max_live_sessions
        # The rows submit() hands the supervisor (it reloads state by id as needed).
        self._sessions: dict[str, Session] = {}

    @property
    def tool_timeout(self) -> float:
        return self._supervisor.config.tool_timeout

    async def agents(self) -> Sequence[AgentInfo]:
        return [
            AgentInfo(mode.name, mode.description) for mode in self._supervisor.modes.modes.values()
        ]

    async def models(self) -> ModelChoices | None:
        return ModelChoices(self._supervisor.config.model, self._supervisor.known_models())

    async def create_session(self, *, instructions: str | None = None) -> SessionInfo:
        try:
            session = await self._supervisor.create_session(
                self._principal,
                instructions=instructions,
                max_live_sessions=self._max_live_sessions,
            )
        except CommandError as error:
            raise LinkError(error.code, str(error)) from None
        except StoreError as error:
            raise _link_error(error) from None
        self._sessions[session.id] = session
        return _info(session)

    async def _owned(self, session_id: str) -> Session | None:
        if len(session_id) > 200:
            return None
        try:
            session = await self._store.get_session(session_id)
        except StoreError as error:
            raise _link_error(error) from None
        if session is None or session.deleted or session.owner != self._principal:
            return None
        self._sessions[session.id] = session
        return session

    async def load_session(self, session_id: str) -> SessionInfo | None:
        session = await self._owned(session_id)
        return None if session is None else _info(session)

    async def fork_session(self, session_id: str) -> SessionInfo | None:
        source = await self._owned(session_id)
        if source is None:
            return None
        try:
            fork = await self._supervisor.fork_session(
                source, max_live_sessions=self._max_live_sessions
            )
        except SessionNotFound:  # deleted since it was read
            return None
        except CommandError as error:
            raise LinkError(error.code, str(error)) from None
        except StoreError as error:
            raise _link_error(error) from None
        self._sessions[fork.session.id] = fork.session
        return _info(fork.session)

    async def delete_session(self, session_id: str) -> bool:
        session = await self._owned(session_id)
        if session is None:
            return False
        try:
            await self._supervisor.delete_session(session)
        except CommandError as error:
            raise LinkError(error.code, str(error)) from None
        except StoreError as error:
            raise _link_error(error) from None
        self._sessions.pop(session_id, None)
        return True

    async def list_sessions(self, *, cursor: str | None = None, limit: int = 50) -> SessionPage:
        try:
            before = decode_cursor(cursor) if cursor else None
        except ApiError as error:
            raise LinkError(error.code, error.message) from None
        try:
            found = await self._store.list_sessions(self._principal, limit=limit + 1, before=before)
        except StoreError as error:
            raise _link_error(error) from None
        page = found[:limit]
        next_cursor = encode_cursor(page[-1]) if len(found) > limit else None
        return SessionPage([_info(s) for s in page], next_cursor)

    async def read_events(
        self, session_id: str, *, after: int = 0, limit: int = 500
    ) -> Sequence[JSONObject]:
        try:
            events = await self._store.read_events(session_id, after=after, limit=limit)
        except StoreError as error:
            raise _link_error(error) from None
        return [event.to_json() for event in events]

    async def follow(self, session_id: str, *, after: int, sink: EventSink) -> None:
        """Follow the store's subscription; resubscribe from the cursor when too slow.

        Cancellation: safe at any point; nothing is left subscribed.
        """
        cursor = after
        while True:
            try:
                async with self._store.subscribe(
                    session_id, after=cursor, buffer=FOLLOW_BUFFER
                ) as subscription:
                    while batch := await subscription.receive_batch():
                        await sink([event.to_json() for event in batch])
                        cursor = batch[-1].seq
                        if batch[-1].type == SessionDeleted.type:
                            return  # the log's last event
                    return  # the store closed
            except SubscriberTooSlow:
                continue  # resume from the last event handed over: no gap, no duplicate
            except StoreError as error:
                raise _link_error(error) from None

    @asynccontextmanager
    async def session_mcp(
        self, session_id: str, servers: Sequence[McpServerConfig]
    ) -> AsyncIterator[None]:
        if not servers:
            yield
            return
        # The client's servers, started on first use like configured ones, and
        # stopped when the client stops following the session.
        async with open_mcp_servers(servers, self._supervisor.metrics.mcp) as running:
            self._supervisor.mount_mcp(session_id, McpTools(running))
            try:
                yield
            finally:
                self._supervisor.unmount_mcp(session_id)

    async def submit(self, session_id: str, command: JSONObject) -> JSONObject:
        session = self._sessions.get(session_id) or await self._owned(session_id)
        command_id = command.get("id")
        if session is None:
            return {
                "type": "ack",
                "id": command_id if isinstance(command_id, str) else "",
                "status": "rejected",
                "code": "not_found",
                "error": f"session {session_id!r} not found",
            }
        try:
            ack = await self._supervisor.submit(session, command)
        except StoreError as error:  # what the WebSocket handler answers with an error frame
            api = store_error(error)
            return {
                "type": "ack",
                "id": command_id if isinstance(command_id, str) else "",
                "status": "rejected",
                "code": api.code,
                "error": api.message,
            }
        return ack.to_json()


@asynccontextmanager
async def open_embedded_link(
    config: ServeConfig, *, principal: str = LOCAL_PRINCIPAL
) -> AsyncIterator[EmbeddedLink]:
    """Store (outermost), model and supervisor for *config*, as ``serve`` opens them.

    Raises (on entering):
        ConfigurationError: invalid modes, policy or provider settings.
        StoreError: the database cannot be opened (e.g. in use by a server).

    Cancellation: leaving winds the supervisor down (running turns get
    ``shutdown_grace``, waiting ones are suspended), then the store drains and
    closes; both shielded and time-limited, as in ``serve``.
    """
    modes, policy = load_agents(config)  # fails before anything is opened
    metrics = RuntimeMetrics()
    async with (
        open_configured_store(config) as store,
        open_model(config) as model,
        open_mcp_servers(config.mcp_servers, metrics.mcp) as mcp,
        open_supervisor(
            store,
            model,
            modes=modes,
            policy=policy,
            config=runtime_config(config),
            metrics=metrics,
            tools=tool_catalogue(mcp),
        ) as supervisor,
    ):
        yield EmbeddedLink(
            store,
            supervisor,
            principal=principal,
            max_live_sessions=config.limits.sessions_per_principal,
        )
