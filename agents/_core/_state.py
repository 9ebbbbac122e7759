"""A session's conversation state, derived from its event log.

The log is the history (SPEC §2). :class:`SessionState` folds committed events, in
seq order, into what the runtime needs to continue: the LLM-visible messages of
the main context and of each subtask, the tool calls still waiting for an answer,
and the approvals remembered for the session. The same fold runs when a session
is first loaded (lazily, on first access) and after every commit, so a restarted
server knows exactly what a crashed one knew.

Events written inside a delegated subtask carry ``subtask_id`` in their payload;
they belong to that subtask's isolated context, not to the parent's history.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable

import attrs

from sessions import Approval, ApprovalStatus, Event, JSONObject, loads_object

from .._errors import PairingViolation
from ._context import ContextMeter, compacted_history, split_of
from ._events import (
    AgentEvent,
    AgentSwitched,
    ApprovalDecision,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    ContextCompacted,
    ModelSwitched,
    QuestionAsked,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallEvent,
    ToolResultEvent,
    ToolStarted,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UsageTotals,
    UserMessage,
    decode_event,
)
from ._model import ChatMessage, ToolCallRequest

SUBTASK_KEY = "subtask_id"
REMEMBER_KEY = "remember"
PARENT_CALL_KEY = "call_id"  # on subtask.started: the new_task call it answers

# The results the runtime writes itself for a call nobody answered: the fold
# recognises them, so that an answer coming too late is told how its call ended
# (cancelled, expired) rather than that somebody answered it. A client's own
# failure is always sent as "error: ..." (``submit_tool_result``), so it cannot
# be taken for one of these.
QUESTION_EXPIRED = "no answer to the question in time"
TOOL_EXPIRED = "the IDE did not return a result in time"
FORKED = "not run: the session was forked before this call finished"
_CANCELLED = "cancelled: the turn ended ("


def cancelled_text(reason: str) -> str:
    """The result of a call still open when its turn ended with *reason*."""
    return f"{_CANCELLED}{reason})"


def closed_how(content: str) -> str | None:
    """``cancelled`` / ``expired`` if *content* is a result the runtime wrote for an
    unanswered call (see :data:`QUESTION_EXPIRED`), else ``None``."""
    if content in (QUESTION_EXPIRED, TOOL_EXPIRED):
        return "expired"
    if content.startswith(_CANCELLED) or content == FORKED:
        return "cancelled"
    return None


class CallState(enum.Enum):
    REQUESTED = "requested"  # in an assistant message, not yet sent anywhere
    APPROVAL = "approval"  # waiting for a human decision
    TOOL = "tool"  # sent to the IDE, waiting for tool_result
    QUESTION = "question"  # waiting for an answer to question.asked
    APPROVED = "approved"  # a server-side call a human approved: the turn runs it next
    RUNNING = "running"  # a server-side call in progress (tool.started, no result yet)


@attrs.define(eq=False)
class PendingCall:
    """A tool call of the current turn that has no result yet."""

    call_id: str
    name: str
    arguments: str  # the model's raw JSON text
    agent: str  # the mode that made the call (its restrictions apply to edits)
    turn_id: str | None
    subtask_id: str | None
    state: CallState = CallState.REQUESTED
    # The approval asked for this call, while no decision is recorded: the one
    # place the runtime reads it from (the store's row is its durable projection).
    approval: Approval | None = None
    # Why the provider cut off the answer that made the call (message.cut_off):
    # its arguments may have been cut with it.
    cut_off: str | None = None

    def arguments_object(self) -> JSONObject:
        try:
            return loads_object(self.arguments)
        except ValueError:
            return {}


@attrs.define(eq=False)
class SessionState:
    """Everything the runtime derives from one session's log."""

    session_id: str
    last_seq: int = 0
    agent: str | None = None
    model: str | None = None  # the session's switched model (None: the defaults)
    messages: list[ChatMessage] = attrs.field(factory=list)
    subtask_messages: dict[str, list[ChatMessage]] = attrs.field(factory=dict)
    pending: dict[str, PendingCall] = attrs.field(factory=dict)
    known_calls: set[str] = attrs.field(factory=set)
    # Calls the runtime resolved because nobody answered: call_id -> cancelled / expired.
    unanswered: dict[str, str] = attrs.field(factory=dict)
    remembered: list[tuple[str, str]] = attrs.field(factory=list)  # (tool, arguments JSON)
    open_turn: str | None = None
    open_subtasks: dict[str, tuple[str, str]] = attrs.field(factory=dict)  # id -> (call, agent)
    subtask_models: dict[str, str] = attrs.field(factory=dict)  # open subtask id -> its model
    user_messages: dict[int, str] = attrs.field(factory=dict)  # seq -> content, until its turn
    user_message_seqs: dict[str, int] = attrs.field(factory=dict)  # message_id -> seq
    partial_text: dict[str, str] = attrs.field(factory=dict)  # message_id -> deltas so far
    partial_context: dict[str, str | None] = attrs.field(factory=dict)  # message_id -> subtask
    decided: dict[str, ApprovalStatus] = attrs.field(factory=dict)  # call_id -> how it ended
    pairing: dict[str | None, PairingCursor] = attrs.field(factory=dict)  # per context
    # The main context's messages come from these events (a summary: its
    # context.compacted); compaction replaces a prefix of both lists.
    message_seqs: list[int] = attrs.field(factory=list)
    summary_from: int | None = None  # messages[0] is a summary covering events from here
    compactions: int = 0
    turn_seq: int | None = None  # the open turn's turn.started
    # LLM steps the open turn took, subtasks included (its step budget, SPEC §4.1):
    # each step that went on commits one assistant message, so a turn resumed
    # after a restart goes on with what is left of its budget.
    turn_steps: int = 0
    meters: dict[str | None, ContextMeter] = attrs.field(factory=dict)  # size, per context
    cuts: dict[str, ChatMessage] = attrs.field(factory=dict)  # oversized results, cut once
    usage: UsageTotals = attrs.field(factory=UsageTotals)  # the whole session's LLM calls
    turn_usage: UsageTotals = attrs.field(
        factory=UsageTotals
    )  # the open (or last) turn's, subtasks included

    def context(self, subtask_id: str | None) -> list[ChatMessage]:
        """The LLM-visible messages of the main context or of one subtask."""
        if subtask_id is None:
            return self.messages
        return self.subtask_messages.setdefault(subtask_id, [])

    def meter(self, subtask_id: str | None) -> ContextMeter:
        meter = self.meters.get(subtask_id)
        if meter is None:
            meter = self.meters[subtask_id] = ContextMeter()
        return meter

    def _append(self, subtask_id: str | None, message: ChatMessage, seq: int) -> None:
        self.context(subtask_id).append(message)
        if subtask_id is None:
            self.message_seqs.append(seq)

    def apply_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.apply(ev)

    def apply(self, ev: Event, typed: AgentEvent | None = None) -> None:
        """Fold one committed event into the state (events arrive in seq order).

        *typed* is the event as the writer had it before encoding, when it is at
        hand (the session's own commits): it saves decoding the payload again.
        """
        if ev.seq <= self.last_seq:
            return
        self.last_seq = ev.seq
        sub = ev.data.get(SUBTASK_KEY)
        subtask_id = sub if isinstance(sub, str) else None
        if typed is None:
            try:
                typed = decode_event(ev.type, ev.data)
            except ValueError:
                return  # an event type this version does not derive state from
        ctx = self.context(subtask_id)
        match typed:
            case UserMessage():
                self.user_messages[ev.seq] = typed.content
                self.user_message_seqs[typed.message_id] = ev.seq
            case TurnStarted():
                self.open_turn = ev.turn_id
                self.turn_seq = ev.seq
                self.turn_steps = 0
                self.turn_usage = UsageTotals()
                self.agent = typed.agent
                if typed.user_message_seq is not None:
                    content = self.user_messages.pop(typed.user_message_seq, None)
                    if content is not None:
                        self._append(None, ChatMessage("user", content), ev.seq)
            case AgentSwitched():
                if subtask_id is None:
                    self.agent = typed.to_agent
                elif subtask_id in self.open_subtasks:
                    call_id, _ = self.open_subtasks[subtask_id]
                    self.open_subtasks[subtask_id] = (call_id, typed.to_agent)
            case ModelSwitched():
                self.model = typed.to_model
            case TextDeltaEvent():
                self.partial_text[typed.message_id] = (
                    self.partial_text.get(typed.message_id, "") + typed.text
                )
                self.partial_context[typed.message_id] = subtask_id
            case AssistantMessage():
                self.partial_text.pop(typed.message_id, None)
                self.partial_context.pop(typed.message_id, None)
                if not typed.truncated and ev.turn_id is not None and ev.turn_id == self.open_turn:
                    self.turn_steps += 1  # a truncated one is the turn's closing, not a step
                calls = tuple(
                    ToolCallRequest(c.call_id, c.name, json.dumps(c.arguments))
                    for c in typed.tool_calls
                )
                self._append(
                    subtask_id,
                    ChatMessage(
                        "assistant",
                        typed.content or None,
                        calls,
                        # Back to the provider that attached it, on every later call.
                        provider_data=typed.provider_data,
                    ),
                    ev.seq,
                )
                for c in calls:
                    self.known_calls.add(c.id)
                    self.pending[c.id] = PendingCall(
                        c.id,
                        c.name,
                        c.arguments,
                        typed.agent,
                        ev.turn_id,
                        subtask_id,
                        cut_off=typed.cut_off,
                    )
            case ApprovalRequested():
                self._move(typed.call_id, CallState.APPROVAL)
                call = self.pending.get(typed.call_id)
                if call is not None:
                    call.approval = Approval(
                        self.session_id,
                        typed.call_id,
                        ev.turn_id or "",
                        typed.name,
                        typed.arguments,
                        typed.rule,
                        ev.ts,
                        typed.expires_at,
                    )
            case ApprovalResolved():
                self.decided[typed.call_id] = approval_status(typed.decision, typed.by)
                call = self.pending.get(typed.call_id)
                if call is not None:
                    call.approval = None
                    if typed.decision in ("approve", "edit"):
                        # An IDE call moves on to TOOL with its tool.call (same commit);
                        # a server-side one waits here for its turn to run it.
                        call.state = CallState.APPROVED
                        if typed.arguments is not None:
                            call.arguments = json.dumps(typed.arguments)
                    remember = ev.data.get(REMEMBER_KEY)
                    if remember == "session" and typed.decision in ("approve", "edit"):
                        self.remembered.append((call.name, call.arguments))
            case ToolCallEvent():
                self._move(typed.call_id, CallState.TOOL)
            case ToolStarted():
                self._move(typed.call_id, CallState.RUNNING)
            case QuestionAsked():
                self._move(typed.question_id, CallState.QUESTION)
            case ToolResultEvent():
                self._append(
                    subtask_id,
                    ChatMessage("tool", typed.content, tool_call_id=typed.call_id),
                    ev.seq,
                )
                closed = self.pending.pop(typed.call_id, None)
                if closed is not None and not typed.ok:
                    how = closed_how(typed.content)
                    if how is not None:
                        self.unanswered[typed.call_id] = how
            case SubtaskStarted():
                parent_call = ev.data.get(PARENT_CALL_KEY)
                if isinstance(parent_call, str):
                    self.open_subtasks[typed.subtask_id] = (parent_call, typed.agent)
                if typed.model is not None:
                    self.subtask_models[typed.subtask_id] = typed.model
                self.subtask_messages[typed.subtask_id] = [ChatMessage("user", typed.message)]
            case SubtaskEnded():
                self.open_subtasks.pop(typed.subtask_id, None)
                self.subtask_models.pop(typed.subtask_id, None)
                self.subtask_messages.pop(typed.subtask_id, None)
                self.pairing.pop(typed.subtask_id, None)
            case TurnEnded():
                self.open_turn = None
                self.turn_seq = None
                self.open_subtasks.clear()
                self.subtask_models.clear()
            case UsageEvent():
                self.usage = self.usage.add(typed)
                self.turn_usage = self.turn_usage.add(typed)
                if typed.purpose == "chat":
                    # Reported for the call that sent this context as it is now
                    # (the step's message is committed after its usage).
                    self.meter(subtask_id).report(ctx, typed.prompt_tokens, len(ctx))
            case ContextCompacted():
                if subtask_id is None:
                    has_summary = self.summary_from is not None
                    split = split_of(self.message_seqs, typed.to_seq, has_summary)
                    self.messages, self.message_seqs = compacted_history(
                        self.messages, self.message_seqs, typed.summary, split, ev.seq
                    )
                    self.summary_from = typed.from_seq
                    self.compactions += 1
            case _:
                pass

    def _move(self, call_id: str, state: CallState) -> None:
        call = self.pending.get(call_id)
        if call is not None:
            call.state = state

    def unique_call_id(self, proposed: str) -> str:
        """*proposed*, or a variant of it no earlier call of this session used."""
        candidate, n = proposed, 1
        while candidate in self.known_calls:
            n += 1
            candidate = f"{proposed}_{n}"
        self.known_calls.add(candidate)
        return candidate

    def subtask_of_call(self, call_id: str) -> tuple[str, str] | None:
        """The open subtask (id, agent) started for a ``new_task`` call, if any."""
        for subtask_id, (parent_call, agent) in self.open_subtasks.items():
            if parent_call == call_id:
                return subtask_id, agent
        return None

    def subtask_depth(self, subtask_id: str | None) -> int:
        """How deep context *subtask_id* is nested: 0 for the main context, 1 for a
        subtask the main context started, 2 for one that subtask started, ...

        Followed through each open subtask's ``new_task`` call (pending while its
        subtask runs) to the context that made it; bounded, so a malformed log
        cannot loop.
        """
        depth = 0
        while subtask_id is not None and depth <= len(self.open_subtasks):
            depth += 1
            entry = self.open_subtasks.get(subtask_id)
            parent = self.pending.get(entry[0]) if entry is not None else None
            subtask_id = parent.subtask_id if parent is not None else None
        return depth

    def pending_of_turn(self, turn_id: str) -> list[PendingCall]:
        return [call for call in self.pending.values() if call.turn_id == turn_id]

    def runs_server_call(self, turn_id: str) -> bool:
        """A call of turn *turn_id* runs in the runtime right now (an MCP tool)."""
        return any(
            call.turn_id == turn_id and call.state is CallState.RUNNING
            for call in self.pending.values()
        )

    def awaits_answer(self, turn_id: str) -> bool:
        """Turn *turn_id* waits for the outside: a call of it waits for the IDE or a human.

        This is what "awaiting" means for recovery and shutdown (SPEC §3.3 rule 7),
        derived from the log; a turn that does not wait was working (streaming,
        running a step) and is closed as ``interrupted``.
        """
        return any(
            call.turn_id == turn_id and call.state in _OUTSIDE for call in self.pending.values()
        )


# An approved server-side call counts: it waits for its turn to run it. A running
# one does not: the turn is working (shutdown gives it its grace), and recovery
# resolves such a call before it decides (``_closing.lost_server_calls``).
_OUTSIDE = (CallState.APPROVAL, CallState.TOOL, CallState.QUESTION, CallState.APPROVED)

_STATUS_OF: dict[ApprovalDecision, ApprovalStatus] = {
    "approve": ApprovalStatus.APPROVED,
    "edit": ApprovalStatus.EDITED,
    "reject": ApprovalStatus.REJECTED,
    "respond": ApprovalStatus.RESPONDED,
    "expire": ApprovalStatus.EXPIRED,
    "cancel": ApprovalStatus.CANCELLED,
}


def approval_status(decision: ApprovalDecision, by: str) -> ApprovalStatus:
    """The stored status an approval ends in when resolved with *decision* by *by*."""
    # An expired approval is recorded as a rejection by the timeout (SPEC §5).
    return ApprovalStatus.EXPIRED if by == "timeout" else _STATUS_OF[decision]


@attrs.define(eq=False)
class PairingCursor:
    """How far :func:`check_pairing` has checked one history list, and what it saw.

    Histories only grow between LLM calls, so each call checks only the
    messages added since the last one. A different list, or a shorter one,
    is checked again from the start.
    """

    messages: list[ChatMessage] | None = None
    checked: int = 0
    open_calls: set[str] = attrs.field(factory=set)
    answered: set[str] = attrs.field(factory=set)


def check_pairing(messages: list[ChatMessage], cursor: PairingCursor | None = None) -> None:
    """Enforce the pairing invariant (SPEC §2) on an LLM history.

    Every assistant tool call has exactly one result, and every result answers a
    call made earlier. With a *cursor*, only the messages after the ones it has
    already checked are looked at (and the cursor moves on).

    Raises:
        PairingViolation: naming the offending call id.
    """
    if cursor is None:
        cursor = PairingCursor()
    elif cursor.messages is not messages or len(messages) < cursor.checked:
        cursor.messages, cursor.checked = None, 0
        cursor.open_calls.clear()
        cursor.answered.clear()
    start, cursor.messages = cursor.checked, messages
    try:
        _check_from(messages, start, cursor.open_calls, cursor.answered)
    except PairingViolation:
        cursor.messages = None  # whatever it saw is not to be trusted: start over
        raise
    cursor.checked = len(messages)
    if cursor.open_calls:
        raise PairingViolation(
            f"tool call(s) without a result: {', '.join(sorted(cursor.open_calls))}"
        )


def _check_from(
    messages: list[ChatMessage], start: int, open_calls: set[str], answered: set[str]
) -> None:
    # A slice, not itertools.islice: islice walks the first *start* items to skip
    # them, which made an incremental check cost the whole history again.
    for msg in messages[start:]:
        if msg.role == "assistant":
            for call in msg.tool_calls:
                if call.id in open_calls or call.id in answered:
                    raise PairingViolation(f"tool call id {call.id!r} used twice")
                open_calls.add(call.id)
        elif msg.role == "tool":
            cid = msg.tool_call_id
            if cid is None or cid not in open_calls:
                if cid in answered:
                    raise PairingViolation(f"tool call {cid!r} has more than one result")
                raise PairingViolation(f"tool result {cid!r} answers no earlier call")
            open_calls.discard(cid)
            answered.add(cid)
