"""Session administration: creating, forking, updating, deleting and reading sessions.

The bodies of :class:`~agents._supervisor.Supervisor`'s session methods (which
keep their documented contracts); separate from the supervisor because none of
this runs or drives a turn: each is one write (or one read) of the session row
and its log, under the live session's lock where it changes a loaded session.
"""

from __future__ import annotations

from types import EllipsisType

import attrs

from sessions import Append, Session, SessionNotFound, SessionStore, new_id, now

from ._core._events import SessionDeleted
from ._core._modes import ModeRegistry
from ._core._prompt import instructions_problem, normal_instructions
from ._core._state import SessionState
from ._errors import CommandError
from ._fork import Fork, plan_fork, read_prefix
from ._live_turn import Out
from ._registry import SessionRegistry
from ._turn import ROUTER


async def create_session(
    store: SessionStore,
    modes: ModeRegistry,
    owner: str,
    *,
    title: str | None,
    agent: str | None,
    max_live_sessions: int | None,
    instructions: str | None,
) -> Session:
    """The body of :meth:`~agents.Supervisor.create_session` (documented there)."""
    agent = ROUTER if agent is None else agent
    if agent not in modes.names():
        raise CommandError(
            "unknown_agent", f"unknown agent {agent!r}; agents: {', '.join(modes.names())}"
        )
    instructions = checked_instructions(instructions)
    t = now()
    session = Session(
        new_id("ses"),
        owner,
        " ".join((title or "").split())[:120],
        t,
        t,
        agent,
        instructions=instructions,
    )
    await store.append(Append(session.id, session=session, max_live_sessions=max_live_sessions))
    return session


async def fork_session(
    store: SessionStore,
    modes: ModeRegistry,
    source: Session,
    *,
    at_seq: int | None,
    title: str | None,
    max_live_sessions: int | None,
) -> Fork:
    """The body of :meth:`~agents.Supervisor.fork_session` (documented there)."""
    # The row as stored: the caller's copy may predate a rename or a switch.
    current = await store.get_session(source.id)
    if current is None:
        raise SessionNotFound(source.id)
    prefix = await read_prefix(store, source.id, at_seq)
    fork = plan_fork(current, prefix, title=title, agents=modes.names(), ts=now())
    await store.import_session(fork.session, fork.events, max_live_sessions=max_live_sessions)
    return fork


async def update_session(
    sessions: SessionRegistry,
    session: Session,
    *,
    title: str | None,
    instructions: str | EllipsisType | None,
) -> Session:
    """The body of :meth:`~agents.Supervisor.update_session` (documented there)."""
    checked = (
        instructions
        if isinstance(instructions, EllipsisType)
        else checked_instructions(instructions)
    )
    async with sessions.use(session) as live, live.locked():
        updated = attrs.evolve(
            live.session,
            title=live.session.title if title is None else title.strip()[:120],
            instructions=(
                live.session.instructions if isinstance(checked, EllipsisType) else checked
            ),
            updated_at=now(),
        )
        await live.commit_locked(session=updated)
        return updated


async def set_instructions(
    sessions: SessionRegistry, session: Session, instructions: str | None
) -> Session:
    """The body of :meth:`~agents.Supervisor.set_instructions` (documented there)."""
    wanted = checked_instructions(instructions)
    loaded = sessions.get(session.id)
    current = loaded.session if loaded is not None else session
    if current.instructions == wanted:
        return current
    async with sessions.use(session) as live, live.locked():
        if live.session.instructions == wanted:
            return live.session
        updated = attrs.evolve(live.session, instructions=wanted, updated_at=now())
        await live.commit_locked(session=updated)
        return updated


async def delete_session(sessions: SessionRegistry, session: Session) -> None:
    """The body of :meth:`~agents.Supervisor.delete_session` (documented there)."""
    async with sessions.use(session) as live:
        async with live.locked():
            live.queue.clear()
            running = live.running
            if running is not None:
                running.stop("cancelled")
        if running is not None:
            await running.done.wait()
        async with live.locked():
            deleted = attrs.evolve(live.session, deleted=True, updated_at=now())
            # The log's last event: followers (an idle WebSocket, an SSE stream,
            # on any replica) learn of the deletion in order and stop.
            await live.commit_locked([Out(SessionDeleted())], session=deleted)
        sessions.discard(live)


async def read_state(
    store: SessionStore, sessions: SessionRegistry, session: Session
) -> SessionState:
    """The session's state for a read: loaded (and kept idle, evicted like any
    other). With several replicas a read never takes the session's lease (that
    would move the session to wherever it is read): it uses the live state if
    this replica runs the session, else folds the log."""
    if store.replica is not None:
        return await sessions.fold(session)
    async with sessions.use(session) as live:
        return live.state


def checked_instructions(value: object) -> str | None:
    """*value* as a session stores it (blank: ``None``).

    Raises:
        CommandError: ``invalid_request``, saying why.
    """
    problem = instructions_problem(value)
    if problem is not None:
        raise CommandError("invalid_request", problem)
    assert value is None or isinstance(value, str)
    return normal_instructions(value)
