"""The turn supervisor: owns every turn, applies client commands, recovers on start.

Turns run in the supervisor's nursery, never in a request handler (SPEC §1.1).
Each session has one driver task at a time that runs its queued turns in order,
so at most one turn runs per session. Session state is loaded lazily, on the
first command or turn that needs it, and dropped again once the session has been
idle a while (:mod:`agents._registry`).

The bodies of the session methods (create, fork, update, delete, read) are in
:mod:`agents._session_admin`; restart recovery and the winding down of turns at
shutdown in :mod:`agents._restart`, the retried closing of a turn the store
refused in :mod:`agents._close_retry`. What stays here is the supervisor's own:
commands, the per-session turn drivers, and its lifetime.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import EllipsisType

import attrs
import trio

from sessions import (
    JSON,
    JSONObject,
    LeaseHeld,
    LeaseLost,
    Session,
    SessionNotFound,
    SessionStore,
    TurnStatus,
)

from . import _session_admin
from ._close_retry import close_when_writable
from ._config import RuntimeConfig
from ._core._commands import Ack, Cancel, parse_command
from ._core._model import ChatMessage, ModelClient
from ._core._model_choice import known_models
from ._core._modes import ModeRegistry
from ._core._policy import Policy
from ._core._state import SessionState
from ._errors import CommandError
from ._fork import Fork
from ._metrics import RuntimeMetrics
from ._registry import Pin, SessionRegistry
from ._replica import elsewhere, forward, forward_change, serve_replica
from ._restart import end_turn, recover, recover_orphans, wind_down_turn
from ._runner import TurnRunner
from ._session import LiveSession
from ._session_commands import apply_command, refuse
from ._tools import McpTools, ToolCatalogue
from ._turn import run_turn

log = logging.getLogger("agent_runtime.supervisor")


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
    _replica: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    # MCP servers mounted for one session (an ACP client's), by session id.
    _session_mcp: dict[str, McpTools] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self._sessions = SessionRegistry(
            self.store,
            self.policy,
            self.metrics,
            idle_ttl=self.config.session_idle_ttl,
            max_idle=self.config.max_idle_sessions,
        )
        self._sessions.on_load = self._recover_orphans

    def known_models(self) -> tuple[str, ...]:
        """The model names the configuration names, the server's first (see
        :func:`agents._core._model_choice.known_models`)."""
        return known_models(self.config.model, self.modes.modes.values(), self.config.models)

    @property
    def sessions(self) -> SessionRegistry:
        """The live sessions (read-only use: tests, metrics)."""
        return self._sessions

    # -- sessions ----------------------------------------------------------------

    async def create_session(
        self,
        owner: str,
        *,
        title: str | None = None,
        agent: str | None = None,
        max_live_sessions: int | None = None,
        instructions: str | None = None,
    ) -> Session:
        """Create a session owned by *owner* (first agent: orchestrator by default).

        *instructions* (the project's ``AGENTS.md``) become part of every mode's
        system prompt; blank ones are none.

        Raises:
            CommandError: ``unknown_agent``; ``invalid_request`` for instructions
                that are not a string of at most 64 KiB of UTF-8.
            SessionLimitReached: *owner* already has *max_live_sessions* (checked
                atomically with the insert).
        """
        return await _session_admin.create_session(
            self.store,
            self.modes,
            owner,
            title=title,
            agent=agent,
            max_live_sessions=max_live_sessions,
            instructions=instructions,
        )

    async def fork_session(
        self,
        source: Session,
        *,
        at_seq: int | None = None,
        title: str | None = None,
        max_live_sessions: int | None = None,
    ) -> Fork:
        """A new session of *source*'s owner whose log is *source*'s up to *at_seq*.

        *at_seq* defaults to the last seq; a turn open there is closed in the
        fork as ``interrupted`` (:mod:`agents._fork`). The title defaults to
        the original's with " (fork)". The fork is written in one transaction;
        *source* is only read.

        Raises:
            CommandError: ``invalid_request`` when *at_seq* is past the last event.
            SessionNotFound: *source* was deleted.
            SessionLimitReached: the owner already has *max_live_sessions*.
        """
        return await _session_admin.fork_session(
            self.store,
            self.modes,
            source,
            at_seq=at_seq,
            title=title,
            max_live_sessions=max_live_sessions,
        )

    async def update_session(
        self,
        session: Session,
        *,
        title: str | None = None,
        instructions: str | EllipsisType | None = ...,
    ) -> Session:
        """Rename *session* and/or set its instructions (``None`` clears them), in one write.

        ``...`` (the default) leaves the instructions as they are. New instructions
        apply from the session's next model call on.

        Raises:
            CommandError: ``invalid_request`` for unusable instructions.
        """
        change: JSONObject = {"change": "update", "title": title}
        if not isinstance(instructions, EllipsisType):
            change["instructions"] = instructions
        return await self._updated(session, change)

    async def set_instructions(self, session: Session, instructions: str | None) -> Session:
        """Set *session*'s instructions, writing only if they differ from the stored ones.

        What a reconnecting client that sends the same instructions again costs: a
        comparison. Returns the session as it is now.

        Raises:
            CommandError: ``invalid_request`` for unusable instructions.
        """
        change: JSONObject = {"change": "instructions", "instructions": instructions}
        return await self._updated(session, change)

    async def delete_session(self, session: Session) -> None:
        """Cancel the session's turn, drop its queue, and soft-delete it."""
        await self._change(session, {"change": "delete"})

    async def apply_change(self, session: Session, change: JSONObject) -> Session | None:
        """Apply a session row change on this replica: the session after it (``None``
        once deleted). The one path of :meth:`update_session`, :meth:`set_instructions`
        and :meth:`delete_session`, whose JSON form is what is forwarded to the
        replica running the session (:func:`agents._replica.forward_change`).

        Raises:
            CommandError: ``invalid_request`` for an unusable change.
            LeaseHeld, LeaseLost: another replica runs the session.
        """
        kind = change.get("change")
        if kind == "delete":
            await _session_admin.delete_session(self._sessions, session)
            return None
        instructions = change.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise CommandError("invalid_request", "instructions must be a string or null")
        if kind == "instructions":
            return await _session_admin.set_instructions(self._sessions, session, instructions)
        title = change.get("title")
        if kind != "update" or not (title is None or isinstance(title, str)):
            raise CommandError("invalid_request", f"not a session change: {change!r}")
        return await _session_admin.update_session(
            self._sessions,
            session,
            title=title,
            instructions=instructions if "instructions" in change else ...,
        )

    async def _updated(self, session: Session, change: JSONObject) -> Session:
        """:meth:`_change` for a change that keeps the session (not a deletion)."""
        updated = await self._change(session, change)
        if updated is None:  # deleted meanwhile
            raise SessionNotFound(session.id)
        return updated

    async def _change(self, session: Session, change: JSONObject) -> Session | None:
        try:
            return await self.apply_change(session, change)
        except (LeaseLost, LeaseHeld) as exc:
            # Another replica runs the session: its lock guards the row, and only it
            # can stop its turn. Nothing was written here.
            return await forward_change(self, session, change, exc)

    async def _state(self, session: Session) -> SessionState:
        """The session's state for a read (:func:`agents._session_admin.read_state`)."""
        return await _session_admin.read_state(self.store, self._sessions, session)

    async def history(self, session: Session) -> list[ChatMessage]:
        """The LLM-visible history of the session's main context."""
        return list((await self._state(session)).messages)

    async def usage(self, session: Session) -> JSONObject:
        """The session's usage totals (every LLM call, subtasks and compactions included)."""
        state = await self._state(session)
        totals: JSONObject = state.usage.to_json()
        totals["compactions"] = state.compactions
        return totals

    async def running_turns(self, session_ids: Sequence[str]) -> dict[str, str]:
        """The running turn of each session that has one (queued turns are not running).

        This replica's own sessions answer from memory. With several replicas a
        session run elsewhere answers from the store: its turn row, as of the
        holder's last commit (one query for all of them).

        Cancellation: safe (reads only).
        """
        running: dict[str, str] = {}
        elsewhere: list[str] = []
        for session_id in session_ids:
            live = self._sessions.get(session_id)
            if live is not None:
                if live.running is not None:
                    running[session_id] = live.running.turn_id
            elif self.store.replica is not None:
                elsewhere.append(session_id)
        if elsewhere:
            for turn in await self.store.active_turns(elsewhere):
                if turn.status is not TurnStatus.QUEUED:
                    running.setdefault(turn.session_id, turn.id)
        return running

    # -- commands ------------------------------------------------------------------

    async def submit(self, session: Session, raw: JSON, *, forwarded: bool = False) -> Ack:
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
        # every path commits a command record and answers a duplicate with the
        # original ack, whatever the state now says.
        try:
            async with self._sessions.use(session) as live:
                if self._closing and not isinstance(cmd, Cancel):
                    error = CommandError(
                        "shutting_down", "the server is shutting down; retry after restart"
                    )
                    return await refuse(live, cmd.id, error)
                try:
                    ack, queued = await apply_command(live, cmd, self.modes, self.config)
                except (LeaseLost, LeaseHeld):
                    self.step_down(live)
                    raise
                if queued is not None:
                    self._kick(live)
                return ack
        except (LeaseLost, LeaseHeld) as exc:
            # Another replica runs this session now; nothing of the command was
            # committed here. Forward it there (once: a forwarded command that
            # finds the session moved on is left for its next holder).
            if forwarded or not isinstance(raw, dict):
                return Ack(cmd.id, "rejected", elsewhere(exc), "session_elsewhere")
            return await forward(self, session, raw, exc)

    async def serve_replica(self) -> None:
        """Until wind-down (several replicas only): the duties of :mod:`agents._replica`."""
        with self._replica:
            await serve_replica(self)

    # -- turns ---------------------------------------------------------------------

    def _kick(self, live: LiveSession) -> None:
        if not live.driving and live.queue and not self._closing:
            live.driving = True
            # Pinned before the task starts: the caller's own pin ends first.
            self._nursery.start_soon(self._drive, live, self._sessions.pin(live))

    async def _drive(self, live: LiveSession, pin: Pin) -> None:
        """Run *live*'s queued turns one after another (the session's only driver).

        Holds *pin* to the end: a session with turns (or a turn still to close)
        is never evicted.
        """
        self.metrics.active_sessions.inc()
        try:
            while live.queue and not self._closing and not live.taken_over():
                running = live.queue.popleft()
                live.running = running
                runner = TurnRunner(
                    live,
                    running,
                    self.model,
                    self.modes,
                    self.config,
                    self.metrics,
                    tools=self.tools.with_session_mcp(self._session_mcp.get(live.session.id)),
                )
                self.metrics.turns_started.labels(running.row.agent).inc()
                self.metrics.active_turns.inc()
                try:
                    await run_turn(runner, grace=self.config.cancel_grace)
                finally:
                    live.running = None
                    self.metrics.active_turns.dec()
                if live.taken_over():
                    self.step_down(live)
                elif running.unclosed is not None:
                    # Still this session's driver: nothing else starts until it is closed.
                    await close_when_writable(
                        live,
                        running,
                        *running.unclosed,
                        store_retry=self.config.store_retry,
                        retrying=self._retrying,
                        closing=lambda: self._closing,
                    )
        finally:
            live.driving = False
            self.metrics.active_sessions.dec()
            pin.release()

    def step_down(self, live: LiveSession) -> None:
        """Another replica took *live*'s session over: write nothing more, forget it.

        Its queued turns are the new holder's now (they are in the store); a
        running turn was stopped without its closing write (suspended), and the
        new holder recovers it from the log like after a crash.
        """
        if not live.lost:
            log.warning("session %s: another replica took it over; stepping down", live.session.id)
        live.lost = True
        live.queue.clear()
        self._sessions.discard(live)

    def mount_mcp(self, session_id: str, tools: McpTools) -> None:
        """Offer *tools* (MCP servers) in every mode of session *session_id*, from its next turn.

        For servers that belong to one client's session (ACP's ``mcpServers``);
        the caller owns the servers and calls :meth:`unmount_mcp` before closing them.
        """
        self._session_mcp[session_id] = tools

    def unmount_mcp(self, session_id: str) -> None:
        self._session_mcp.pop(session_id, None)

    async def _recover_orphans(self, live: LiveSession) -> None:
        """Recover a just-loaded session's open turns: :func:`agents._restart.recover_orphans`."""
        await recover_orphans(self.store, live, self._kick)

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
        self._replica.cancel()
        for scope in self._retrying:
            scope.cancel()
        busy = [live for live in self._sessions.live() if live.running is not None]
        with trio.move_on_after(self.config.shutdown_grace):
            async with trio.open_nursery() as nursery:
                for live in busy:
                    nursery.start_soon(wind_down_turn, live)
        async with trio.open_nursery() as nursery:
            for live in busy:
                nursery.start_soon(end_turn, live)


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
        if store.replica is not None:
            nursery.start_soon(supervisor.serve_replica)
        await recover(store, supervisor.sessions)
        try:
            yield supervisor
        finally:
            with trio.CancelScope(shield=True):
                await supervisor.wind_down()
