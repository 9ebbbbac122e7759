"""One live session: its folded state, its turn queue and its single write path.

Every write of a session (its turn's and the commands') goes through
:meth:`LiveSession.commit` under the session's lock, so the derived
:class:`~agents._core._state.SessionState` folds events in exactly seq order and
a check-then-write (is this call still pending?) cannot race another command.
The state is folded from committed events only: nothing is applied that the
store did not take.

The one exception to waiting is streamed text (:meth:`LiveSession.commit_soon`):
the turn queues it under the lock and goes on, and the store's writer folds it
when it commits, in queue order. Waking the turn for every such commit cost a
task step per event. Whoever takes the lock (:meth:`LiveSession.locked`) first
waits for those folds, so every decision still sees every write queued before.

A ``LiveSession`` is not an actor with a task of its own: whoever writes (a
command in its caller's task, the turn in the supervisor's nursery) takes the
lock, so a command costs no task hop. What must outlive a request (a turn)
runs in the supervisor's nursery, never in the caller's task.
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
    OnOutcome,
    Session,
    SessionStore,
    StoreError,
    Turn,
    acquire_quickly,
    held_quickly,
    loads_object,
    now,
)

from ._core._events import UsageEvent
from ._core._mcp import MountedTools
from ._core._policy import Policy
from ._core._state import SessionState
from ._live_turn import LiveTurn, Out
from ._metrics import RuntimeMetrics


@attrs.define(eq=False)
class LiveSession:
    """Runtime state of one session: derived log state, turn queue, running turn."""

    session: Session
    state: SessionState
    store: SessionStore
    base_policy: Policy
    metrics: RuntimeMetrics
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    queue: collections.deque[LiveTurn] = attrs.field(factory=collections.deque)
    running: LiveTurn | None = None
    driving: bool = False  # a driver task runs (or closes) this session's turns
    # Another replica took the session over (a write was refused by its lease):
    # nothing more is written from here, and the registry forgets this state.
    lost: bool = False
    # The MCP tools this session's turns were offered lately: how a human's edit of
    # an MCP call's arguments is checked (the server's schema), without a round trip.
    mounted: MountedTools = attrs.field(factory=MountedTools)
    # Appends queued by commit_soon whose outcome has not come back yet, and the
    # event set when that count falls to zero.
    _unfolded: int = attrs.field(default=0, init=False)
    _folded: trio.Event = attrs.field(factory=trio.Event, init=False)

    def taken_over(self) -> bool:
        """:attr:`lost`, as a call: type checkers do not assume it unchanged after an await."""
        return self.lost

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

    @property
    def quiet(self) -> bool:
        """Nothing of the session lives outside its log: no turn, no driver, lock free."""
        return not self.busy and not self.driving and not self.lock.locked() and not self._unfolded

    def locked(self) -> _Locked:
        """``async with live.locked():`` holds :attr:`lock` with every queued text folded.

        Cancellation: as acquiring the lock; the lock is released if cancelled
        while waiting for the folds.
        """
        return _Locked(self)

    async def wait_folded(self) -> None:
        """Wait until every append queued by :meth:`commit_soon` came back.

        Cancellation: safe; nothing is waited for on behalf of anyone else.
        """
        while self._unfolded:
            await self._folded.wait()

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
        happened whole (and is folded) or not at all. The lock is released on
        cancellation.
        """
        async with self.locked():
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
        self._fold(committed, outs)
        if session is not None:
            self.session = session
        running = self.running
        if running is not None:
            if turn is not None and turn.id == running.turn_id:
                running.row = turn
                running.wake.fire()
            elif turn_id == running.turn_id:
                running.wake.fire()
        return committed

    def _fold(self, committed: Committed, outs: Sequence[Out]) -> None:
        """Fold a commit's typed events (one per out) into the state, and count them."""
        for event, out in zip(committed.events, outs, strict=True):
            self.state.apply(event, out.event)
            if isinstance(out.event, UsageEvent):
                self.metrics.count_usage(out.event)
        self.metrics.events.inc(len(committed.events))

    async def commit_soon(
        self,
        outs: Sequence[Out],
        *,
        turn_id: str,
        on_outcome: OnOutcome,
    ) -> None:
        """Queue *outs* (streamed text) for commit and return without waiting for it.

        The store's writer folds them into the state once committed, in queue
        order, then calls *on_outcome* with the outcome (a refused write folds
        nothing). Only for events no decision waits for: the running turn is not
        woken. Meant for a turn's own text (see
        :class:`~agents._text_commits.TextCommits`).

        Raises:
            StoreClosed: the store no longer takes appends (nothing queued).

        Cancellation: cancelled while waiting for the lock or for room in the
        store's queue, nothing is queued; once queued, it commits (and folds)
        whatever happens to the caller.
        """
        events = tuple(out.to_new(turn_id) for out in outs)

        def fold(outcome: Committed | StoreError) -> None:
            # In the writer's task, before it publishes; nothing here checkpoints.
            try:
                if isinstance(outcome, Committed) and not outcome.duplicate:
                    self._fold(outcome, outs)
            finally:
                # Even if the fold failed (a bug, logged by the writer): a count
                # left above zero would hold every later lock holder forever.
                self._one_folded()
                on_outcome(outcome)

        async with held_quickly(self.lock):
            if not self._unfolded:
                self._folded = trio.Event()
            self._unfolded += 1
            try:
                await self.store.submit(Append(self.session.id, events), fold)
            except BaseException:
                self._one_folded()  # not queued: nothing will come back
                raise

    def _one_folded(self) -> None:
        self._unfolded -= 1
        if not self._unfolded:
            self._folded.set()

    def close_approval(
        self, call_id: str, status: ApprovalStatus, resolution: JSONObject, by: str
    ) -> Approval | None:
        """The pending approval of *call_id*, moved to *status* (not yet written).

        ``None`` if the call has no undecided approval. Read from the folded
        state, which the store's approval row mirrors.
        """
        call = self.state.pending.get(call_id)
        current = call.approval if call is not None else None
        if current is None:
            return None
        self.metrics.approval_wait.observe(max(0.0, now() - current.requested_at))
        return attrs.evolve(current, status=status, resolution=resolution, resolved_by=by)


def _loads(text: str) -> JSONObject:
    try:
        return loads_object(text)
    except ValueError:
        return {}


class _Locked:
    """:meth:`LiveSession.locked` (a class, not a generator: it runs once per commit)."""

    __slots__ = ("_live",)

    def __init__(self, live: LiveSession) -> None:
        self._live = live

    async def __aenter__(self) -> None:
        await acquire_quickly(self._live.lock)
        try:
            await self._live.wait_folded()  # no schedule point when nothing is queued
        except BaseException:
            self._live.lock.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._live.lock.release()
