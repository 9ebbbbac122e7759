"""One session's live runtime state and its single, serialised write path.

Every write of a session (the turn runner's and the command handlers') goes
through :meth:`SessionActor.commit` under the actor's lock, so the derived
:class:`~agents._state.SessionState` folds events in exactly seq order and a
check-then-write (is this call still pending?) cannot race another command.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import attrs
import trio

from sessions import (
    Append,
    Approval,
    ApprovalStatus,
    CommandRecord,
    Committed,
    JSONObject,
    NewEvent,
    Session,
    SessionStore,
    Turn,
    loads_object,
    now,
)

from ._core._events import AgentEvent, ErrorEvent, TurnEndReason, encode_event
from ._core._policy import Policy
from ._core._state import SUBTASK_KEY, SessionState
from ._metrics import RuntimeMetrics


@attrs.frozen
class Out:
    """An event to commit, with the payload extras that are not part of its class."""

    event: AgentEvent
    subtask_id: str | None = None
    extra: JSONObject = attrs.field(factory=dict)

    def to_new(self, turn_id: str | None) -> NewEvent:
        wire_type, data = encode_event(self.event)
        if self.subtask_id is not None:
            data[SUBTASK_KEY] = self.subtask_id
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return NewEvent(wire_type, data, turn_id)


@attrs.define(eq=False)
class LiveTurn:
    """One turn of a live session, from queued to closed.

    Created when the turn is queued (or found open by restart recovery, with
    ``resume``); its session's driver runs it inside :attr:`scope`, which a
    cancel, an interrupt or shutdown cancels, choosing :attr:`cancel_reason`;
    :attr:`done` is set once its closing write was attempted. :attr:`row` is
    the turn as last committed by the turn itself.
    """

    row: Turn
    user_message_seq: int | None
    resume: bool = False
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    cancel_reason: TurnEndReason = "cancelled"
    suspend: bool = False  # shutdown: leave a waiting turn open so it resumes after restart
    # Set when the closing write did not happen (the store refused it, or it took
    # longer than the grace): how to close the turn when the store allows.
    unclosed: tuple[TurnEndReason, ErrorEvent | None] | None = None

    @property
    def turn_id(self) -> str:
        return self.row.id


@attrs.define(eq=False)
class SessionActor:
    """Runtime state of one session: derived log state, turn queue, running turn."""

    session: Session
    state: SessionState
    store: SessionStore
    base_policy: Policy
    metrics: RuntimeMetrics
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    queue: collections.deque[LiveTurn] = attrs.field(factory=collections.deque)
    running: LiveTurn | None = None
    driving: bool = False
    turns: dict[str, Turn] = attrs.field(factory=dict)
    turn_changed: trio.Event = attrs.field(factory=trio.Event)  # replaced on every change
    # Set (and replaced) whenever committed events were folded into the state: a
    # turn waiting for a call's answer re-reads the pure state when it fires.
    state_changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def policy(self) -> Policy:
        """The configured policy plus every ``remember: session`` allow of this session."""
        policy = self.base_policy
        for tool, arguments in self.state.remembered:
            policy = policy.with_session_allow(tool, _loads(arguments))
        return policy

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queue)

    async def commit(
        self,
        outs: Sequence[Out] = (),
        *,
        turn_id: str | None = None,
        turn: Turn | None = None,
        approval: Approval | None = None,
        session: Session | None = None,
        command: CommandRecord | None = None,
    ) -> Committed:
        """Commit *outs* (and the row updates) atomically; fold them into the state.

        Cancellation: the store's append is atomic, so a cancelled commit either
        happened whole (and is folded the next time the state catches up) or not at
        all. The lock is released on cancellation.
        """
        async with self.lock:
            return await self.commit_locked(
                outs,
                turn_id=turn_id,
                turn=turn,
                approval=approval,
                session=session,
                command=command,
            )

    async def commit_locked(
        self,
        outs: Sequence[Out] = (),
        *,
        turn_id: str | None = None,
        turn: Turn | None = None,
        approval: Approval | None = None,
        session: Session | None = None,
        command: CommandRecord | None = None,
    ) -> Committed:
        """:meth:`commit` for a caller that already holds :attr:`lock`."""
        events = tuple(out.to_new(turn_id) for out in outs)
        # Shielded so a commit that happens is always folded into the state: a
        # cancelled waiter would otherwise leave the state behind the log (the
        # wait is one group-commit batch, so cancellation stays prompt).
        with trio.CancelScope(shield=True):
            committed = await self.store.append(
                Append(
                    self.session.id,
                    events,
                    session=session,
                    command=command,
                    turn=turn,
                    approval=approval,
                )
            )
        if committed.duplicate:
            return committed
        # Every event write of a session passes here, under the lock and shielded,
        # so the committed events always follow the folded state without a gap.
        # Fold the typed events this commit already has: no decode of what was
        # just encoded (a duplicate returned above; otherwise one event per out).
        for event, out in zip(committed.events, outs, strict=True):
            self.state.apply(event, out.event)
        if committed.events:
            self.state_changed.set()
            self.state_changed = trio.Event()
        if session is not None:
            self.session = session
        if turn is not None:
            if turn.status.active:
                self.turns[turn.id] = turn
            else:
                self.turns.pop(turn.id, None)
            self.turn_changed.set()
            self.turn_changed = trio.Event()
        self.metrics.events.inc(len(committed.events))
        return committed

    async def close_approval(
        self, call_id: str, status: ApprovalStatus, resolution: JSONObject, by: str
    ) -> Approval | None:
        """The stored pending approval of *call_id*, moved to *status* (not yet written)."""
        current = await self.store.get_approval(self.session.id, call_id)
        if current is None or current.status is not ApprovalStatus.PENDING:
            return None
        self.metrics.approval_wait.observe(max(0.0, now() - current.requested_at))
        return attrs.evolve(current, status=status, resolution=resolution, resolved_by=by)


def _loads(text: str) -> JSONObject:
    try:
        return loads_object(text)
    except ValueError:
        return {}
