"""The turn supervisor: owns every turn, applies client commands, recovers on start.

Turns run in the supervisor's nursery, never in a request handler (SPEC §1.1).
Each session has one driver task at a time that runs its queued turns in order,
so at most one turn runs per session. Session state is loaded lazily, on the
first command or turn that needs it, and dropped again once the session has been
idle a while (:mod:`agents._registry`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import assert_never

import attrs
import trio

from sessions import (
    JSON,
    Append,
    Session,
    SessionStore,
    StoreError,
    Turn,
    TurnStatus,
    new_id,
    now,
)

from ._actor import LiveTurn, SessionActor
from ._config import RuntimeConfig
from ._core._commands import (
    Ack,
    Answer,
    Cancel,
    SendMessage,
    SubmitApproval,
    SubmitToolResult,
    SwitchAgent,
    parse_command,
)
from ._core._events import ErrorEvent, TurnEndReason
from ._core._model import ChatMessage, ModelClient
from ._core._modes import ModeRegistry
from ._core._policy import Policy
from ._errors import CommandError
from ._handlers import (
    cancel_queued,
    duplicate_ack,
    enqueue_message,
    record,
    submit_answer,
    submit_approval,
    submit_tool_result,
    switch_agent,
)
from ._metrics import RuntimeMetrics
from ._registry import Pin, SessionRegistry
from ._runner import TurnRunner
from ._tools import ToolCatalogue
from ._turn import ROUTER, close_turn, run_turn

log = logging.getLogger("agent_runtime.supervisor")

_WAITING = (TurnStatus.AWAITING_TOOL, TurnStatus.AWAITING_APPROVAL)


@attrs.define(eq=False)
class Supervisor:
    """Runs turns and applies commands for every session of one store.

    Use :func:`open_supervisor` to get one.
    """

    store: SessionStore
    model: ModelClient
    modes: ModeRegistry
    policy: Policy
    config: RuntimeConfig
    metrics: RuntimeMetrics
    _nursery: trio.Nursery
    tools: ToolCatalogue = attrs.field(factory=ToolCatalogue.builtin)
    _sessions: SessionRegistry = attrs.field(init=False)
    _closing: bool = False
    _retrying: set[trio.CancelScope] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self._sessions = SessionRegistry(
            self.store,
            self.policy,
            self.metrics,
            idle_ttl=self.config.session_idle_ttl,
            max_idle=self.config.max_idle_sessions,
        )

    @property
    def sessions(self) -> SessionRegistry:
        """The live session actors (read-only use: tests, metrics)."""
        return self._sessions

    # -- sessions ----------------------------------------------------------------

    async def create_session(
        self,
        owner: str,
        *,
        title: str | None = None,
        agent: str | None = None,
        max_live_sessions: int | None = None,
    ) -> Session:
        """Create a session owned by *owner* (first agent: orchestrator by default).

        Raises:
            CommandError: ``unknown_agent``.
            SessionLimitReached: *owner* already has *max_live_sessions* (checked
                atomically with the insert).
        """
        agent = agent or ROUTER
        if agent not in self.modes.names():
            raise CommandError(
                "unknown_agent", f"unknown agent {agent!r}; agents: {', '.join(self.modes.names())}"
            )
        t = now()
        session = Session(new_id("ses"), owner, " ".join((title or "").split())[:120], t, t, agent)
        await self.store.append(
            Append(session.id, session=session, max_live_sessions=max_live_sessions)
        )
        return session

    async def update_session(self, session: Session, *, title: str) -> Session:
        async with self._sessions.use(session) as actor, actor.lock:
            updated = attrs.evolve(actor.session, title=title.strip()[:120], updated_at=now())
            await actor.commit_locked(session=updated)
            return updated

    async def delete_session(self, session: Session) -> None:
        """Cancel the session's turn, drop its queue, and soft-delete it."""
        async with self._sessions.use(session) as actor:
            async with actor.lock:
                actor.queue.clear()
                running = actor.running
                if running is not None:
                    running.cancel_reason = "cancelled"
                    running.scope.cancel()
            if running is not None:
                await running.done.wait()
            async with actor.lock:
                deleted = attrs.evolve(actor.session, deleted=True, updated_at=now())
                await actor.commit_locked(session=deleted)
            self._sessions.discard(actor)

    async def history(self, session: Session) -> list[ChatMessage]:
        """The LLM-visible history of the session's main context.

        A session loaded only for this stays idle and is evicted like any other.
        """
        async with self._sessions.use(session) as actor:
            return list(actor.state.messages)

    def running_turn(self, session_id: str) -> str | None:
        actor = self._sessions.get(session_id)
        return actor.running.turn_id if actor is not None and actor.running else None

    # -- commands ------------------------------------------------------------------

    async def submit(self, session: Session, raw: JSON) -> Ack:
        """Apply one client command; the ack comes after its effect is committed.

        Never raises for bad input: refusals are acks with status ``rejected``, a
        ``code`` and a reason. A repeated command id returns the original ack
        with status ``duplicate`` and has no second effect.

        Cancellation: the command's write is atomic; if the caller is cancelled
        the command either took effect (a retry with the same id says
        ``duplicate``) or did not.
        """
        command_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            cmd = parse_command(raw)
        except CommandError as exc:
            return Ack(
                command_id if isinstance(command_id, str) else "", "rejected", str(exc), exc.code
            )
        # Idempotency is checked once, by the store, in the very append that
        # records the command (its ack and effect commit together or not at all):
        # every path below commits a command record and answers a duplicate with
        # the original ack, whatever the state now says.
        async with self._sessions.use(session) as actor:
            if isinstance(cmd, Cancel):
                return await self._cancel(actor, cmd)
            async with actor.lock:
                try:
                    ack, queued = await self._apply(actor, cmd)
                except CommandError as exc:
                    ack, queued = Ack.rejected(cmd.id, exc), None
                    committed = await actor.commit_locked(command=record(actor, ack))
                    if committed.duplicate:
                        ack = duplicate_ack(committed, cmd.id)
            if queued is not None:
                self._kick(actor)
            return ack

    async def _apply(
        self,
        actor: SessionActor,
        cmd: SendMessage | SubmitToolResult | SubmitApproval | Answer | SwitchAgent,
    ) -> tuple[Ack, LiveTurn | None]:
        if self._closing:
            raise CommandError("shutting_down", "the server is shutting down; retry after restart")
        match cmd:
            case SendMessage():
                return await enqueue_message(
                    actor,
                    self.modes,
                    command_id=cmd.id,
                    content=cmd.content,
                    agent=cmd.agent,
                    on_busy=cmd.on_busy,
                    max_queued=self.config.max_queued,
                )
            case SubmitToolResult():
                return await submit_tool_result(actor, cmd), None
            case SubmitApproval():
                return await submit_approval(actor, self.modes, cmd), None
            case Answer():
                return await submit_answer(actor, cmd), None
            case SwitchAgent():
                return await switch_agent(actor, self.modes, cmd, self.config.max_queued)
            case _:
                assert_never(cmd)

    async def _cancel(self, actor: SessionActor, cmd: Cancel) -> Ack:
        async with actor.lock:
            running = actor.running
            if cmd.turn_id is not None and (running is None or running.turn_id != cmd.turn_id):
                ack = await cancel_queued(actor, cmd.turn_id, cmd.id)
                if ack is not None:
                    return ack
                running = None
            if running is None:
                error = CommandError("no_turn", "no running turn to cancel")
                ack = Ack.rejected(cmd.id, error)
                committed = await actor.commit_locked(command=record(actor, ack))
                return duplicate_ack(committed, cmd.id) if committed.duplicate else ack
            ack = Ack.accepted(cmd.id, running.turn_id)
            committed = await actor.commit_locked(command=record(actor, ack))
            if committed.duplicate:
                return duplicate_ack(committed, cmd.id)
            running.cancel_reason = "cancelled"
            running.scope.cancel()
        # The ack follows the effect: the turn's closing events are committed.
        await running.done.wait()
        return ack

    # -- turns ---------------------------------------------------------------------

    def _kick(self, actor: SessionActor) -> None:
        if not actor.driving and actor.queue and not self._closing:
            actor.driving = True
            # Pinned before the task starts: the caller's own pin ends first.
            self._nursery.start_soon(self._drive, actor, self._sessions.pin(actor))

    async def _drive(self, actor: SessionActor, pin: Pin) -> None:
        """Run *actor*'s queued turns one after another (the session's only driver).

        Holds *pin* to the end: a session with turns (or a turn still to close)
        is never evicted.
        """
        self.metrics.active_sessions.inc()
        try:
            while actor.queue and not self._closing:
                running = actor.queue.popleft()
                actor.running = running
                actor.turns[running.turn_id] = running.row
                runner = TurnRunner(
                    actor,
                    running,
                    self.model,
                    self.modes,
                    self.config,
                    self.metrics,
                    tools=self.tools,
                )
                self.metrics.turns_started.labels(running.row.agent).inc()
                self.metrics.active_turns.inc()
                try:
                    await run_turn(runner, grace=self.config.cancel_grace)
                finally:
                    actor.running = None
                    self.metrics.active_turns.dec()
                if running.unclosed is not None:
                    # Still this session's driver: nothing else starts until it is closed.
                    await self._close_when_writable(actor, running.row, *running.unclosed)
        finally:
            actor.driving = False
            self.metrics.active_sessions.dec()
            pin.release()

    async def _close_when_writable(
        self,
        actor: SessionActor,
        turn: Turn,
        reason: TurnEndReason,
        error: ErrorEvent | None,
    ) -> None:
        """Close *turn* (with *reason*, *error*) once the store takes the write.

        Retries with exponential backoff (``config.store_retry``, doubling up to
        ten times that). Gives up at shutdown: the turn then stays open in the
        store, and restart recovery closes it.

        Cancellation: shutdown cancels the wait between attempts; an attempt
        itself is shielded (one atomic write).
        """
        delay = self.config.store_retry
        with trio.CancelScope() as scope:
            self._retrying.add(scope)
            try:
                while not self._closing:
                    await trio.sleep(delay)
                    try:
                        with trio.CancelScope(shield=True):
                            await close_turn(actor, turn, reason, error)
                    except StoreError as exc:
                        log.info("turn %s still cannot be closed: %s", turn.id, exc)
                        delay = min(2 * delay, 10 * self.config.store_retry)
                        continue
                    log.warning("turn %s closed (%s) on a retry", turn.id, reason)
                    return
            finally:
                self._retrying.discard(scope)

    async def _recover(self) -> None:
        """Restart recovery (SPEC §3.3 rule 7), reading only sessions with open turns."""
        for turn in await self.store.active_turns():
            session = await self.store.get_session(turn.session_id)
            if session is None:
                continue
            async with self._sessions.use(session) as actor:
                actor.turns[turn.id] = turn
                if turn.status is TurnStatus.QUEUED:
                    message_id = turn.state.get("message_id")
                    seq = (
                        actor.state.user_message_seqs.get(message_id)
                        if isinstance(message_id, str)
                        else None
                    )
                    actor.queue.append(LiveTurn(turn, seq))
                elif turn.status is TurnStatus.RUNNING:
                    await close_turn(actor, turn, "interrupted")
                else:
                    actor.queue.appendleft(LiveTurn(turn, None, resume=True))
                self._kick(actor)

    async def _wind_down(self, actor: SessionActor) -> None:
        """Wait for *actor*'s turn to end, suspending it as soon as it waits for an answer."""
        while (running := actor.running) is not None and not running.done.is_set():
            turn = actor.turns.get(running.turn_id)
            if turn is not None and turn.status in _WAITING:
                running.suspend = True
                running.scope.cancel()
            changed = actor.turn_changed
            async with trio.open_nursery() as nursery:
                for event in (running.done, changed):
                    nursery.start_soon(_set_then_cancel, event, nursery.cancel_scope)

    async def _end_turn(self, actor: SessionActor) -> None:
        """End *actor*'s running turn as ``interrupted`` (suspend it if it waits)."""
        running = actor.running
        if running is not None:
            turn = actor.turns.get(running.turn_id)
            running.suspend = turn is not None and turn.status in _WAITING
            running.cancel_reason = "interrupted"
            running.scope.cancel()
            await running.done.wait()

    async def wind_down(self) -> None:
        """Stop taking turns; give running ones ``shutdown_grace``, then end them.

        A turn waiting for the IDE or a human is suspended, not ended: it stays
        awaiting in the store and resumes after the restart, like after a crash.
        Every session winds down at the same time, so shutdown takes about one
        grace (plus one closing write), however many turns run. Call it while
        clients are still connected, so they see each ``turn.ended``; leaving
        :func:`open_supervisor` calls it too (a second call returns at once).

        Cancellation: shield it; the closing writes are shielded and bounded.
        """
        if self._closing:
            return
        self._closing = True
        self._sessions.stop_evictor()
        for scope in self._retrying:
            scope.cancel()
        busy = [actor for actor in self._sessions.actors() if actor.running is not None]
        with trio.move_on_after(self.config.shutdown_grace):
            async with trio.open_nursery() as nursery:
                for actor in busy:
                    nursery.start_soon(self._wind_down, actor)
        async with trio.open_nursery() as nursery:
            for actor in busy:
                nursery.start_soon(self._end_turn, actor)


async def _set_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


@asynccontextmanager
async def open_supervisor(
    store: SessionStore,
    model: ModelClient,
    *,
    modes: ModeRegistry,
    policy: Policy,
    config: RuntimeConfig,
    metrics: RuntimeMetrics | None = None,
    tools: ToolCatalogue | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a turn supervisor over *store* for the duration of the block.

    *tools* says which executor carries out each tool (default: the built-in
    control and IDE tools; mount others with :meth:`ToolCatalogue.mount`).

    On entry it recovers the store's open turns (streaming ones end as
    ``interrupted``; waiting and queued ones carry on). On exit it stops taking
    turns, lets running ones finish for ``config.shutdown_grace`` seconds, then
    ends them as ``interrupted``; turns waiting for an answer are suspended.

    Cancellation: if the block is cancelled, turns still get their shielded
    closing write (each limited to ``config.cancel_grace``).
    """
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(
            store,
            model,
            modes,
            policy,
            config,
            metrics or RuntimeMetrics(),
            nursery,
            tools or ToolCatalogue.builtin(),
        )
        await nursery.start(supervisor.sessions.run_evictor)
        await supervisor._recover()
        try:
            yield supervisor
        finally:
            with trio.CancelScope(shield=True):
                await supervisor.wind_down()
