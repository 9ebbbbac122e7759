"""One turn of a live session, from queued to closed, and what it commits."""

from __future__ import annotations

import attrs
import trio

from sessions import JSONObject, NewEvent, Turn

from ._core._budget import ModelLimits
from ._core._events import AgentEvent, ErrorEvent, TurnEndReason, encode_event
from ._core._model import ModelDelta, UsageDelta
from ._core._state import SUBTASK_KEY
from ._signal import Signal


@attrs.frozen
class Out:
    """An event to commit, with the payload extras that are not part of its class."""

    event: AgentEvent
    subtask_id: str | None = None
    extra: JSONObject = attrs.field(factory=dict)

    def to_new(self, turn_id: str | None) -> NewEvent:
        wire_type, data = encode_event(self.event)
        if self.subtask_id is not None:
            # Not over a subtask frame's own ``subtask_id``: a nested subtask's
            # ``subtask.started`` / ``subtask.ended`` name the child, not its parent.
            data.setdefault(SUBTASK_KEY, self.subtask_id)
        for key, value in self.extra.items():
            data.setdefault(key, value)
        return NewEvent(wire_type, data, turn_id)


@attrs.frozen
class AnsweringCall:
    """An LLM call the model has begun to answer and whose usage is not reported yet.

    If the turn closes with it still open (cut by a cancel, an error or
    shutdown), its usage is *estimated* from this (the provider bills it all
    the same): see :func:`~agents._closing.final_closings`.
    """

    model: str
    prompt_tokens: int  # the request as the context meter estimated it
    limits: ModelLimits  # its prices
    subtask_id: str | None = None
    purpose: str = "chat"  # as its usage would have said (see UsageEvent)


@attrs.define(eq=False)
class Answering:
    """Keeps one LLM call in a turn's :attr:`LiveTurn.answering` while the model answers.

    :meth:`saw` each delta: the call is in from the first until its usage
    (or :meth:`began` at its first and :meth:`settled` at its usage).
    :meth:`settled` also when the stream ended in full (a provider that reports
    no usage is not estimated). Until then, :attr:`cut` is true.
    """

    calls: dict[str, AnsweringCall]
    key: str
    call: AnsweringCall
    started: bool = False

    def began(self) -> None:
        if not self.started:
            self.started = True
            self.calls[self.key] = self.call

    def saw(self, delta: ModelDelta) -> None:
        self.began()
        if isinstance(delta, UsageDelta):
            self.settled()

    def settled(self) -> None:
        """Its usage came, or its answer ended in full: nothing to estimate."""
        self.calls.pop(self.key, None)

    @property
    def cut(self) -> bool:
        """The model began to answer and its usage never came."""
        return self.key in self.calls


@attrs.define(eq=False)
class LiveTurn:
    """One turn of a live session, from queued to closed.

    Created when the turn is queued (or found open by restart recovery, with
    ``resume``); its session's driver runs it inside :attr:`scope`, which a
    cancel, an interrupt or shutdown cancels through :meth:`stop`. :attr:`row`
    is the turn as last committed: queued, running (``turn.started``) or ended;
    whether it waits for the IDE or a human is derived from the log
    (:meth:`~agents._core._state.SessionState.awaits_answer`), not stored.
    :attr:`wake` fires whenever something the turn may wait for was committed
    (an answer to one of its calls, a change of its row) and once more when it
    is done: the turn and whoever waits for it learn of changes through it, not
    by polling shared state.
    """

    row: Turn
    user_message_seq: int | None
    resume: bool = False
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    wake: Signal = attrs.field(factory=Signal)
    cancel_reason: TurnEndReason = "cancelled"
    suspend: bool = False  # shutdown: leave a waiting turn open so it resumes after restart
    # Set when the closing write did not happen (the store refused it, or it took
    # longer than the grace): how to close the turn when the store allows.
    unclosed: tuple[TurnEndReason, ErrorEvent | None] | None = None
    # The main context's estimated size for its next call, and the model's window.
    context: tuple[int, int] | None = None
    # message_id -> its call, from the model's first delta until its usage came.
    answering: dict[str, AnsweringCall] = attrs.field(factory=dict)

    @property
    def turn_id(self) -> str:
        return self.row.id

    def stop(self, reason: TurnEndReason, *, suspend: bool = False) -> None:
        """End the turn with *reason* (or, with *suspend*, leave it open in the store)."""
        self.cancel_reason = reason
        self.suspend = suspend
        self.scope.cancel()

    def finish(self) -> None:
        """The closing write was attempted: release everyone waiting for the turn."""
        self.done.set()
        self.wake.fire()
