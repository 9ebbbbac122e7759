"""The durable event vocabulary of SPEC §3.2 as one tagged union, :data:`AgentEvent`.

The store keeps payloads as plain JSON (``sessions`` must not know these classes);
:func:`encode_event` and :func:`decode_event` are the only bridge between the two.
Envelope fields (``seq``, ``session_id``, ``ts``, ``turn_id``) are the store's
business and never appear in a payload. Optional fields that are ``None`` are
omitted on the wire. Decoding ignores unknown payload keys, so a log written by a
newer version that added a field stays readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final, Literal, TypeAlias, cast, get_args

from attrs import field, frozen

from sessions import JSON, JSONObject

from ._codec import TaggedUnion, record

TurnEndReason: TypeAlias = Literal["completed", "cancelled", "error", "max_steps", "interrupted"]
ApprovalDecision: TypeAlias = Literal["approve", "edit", "reject", "respond", "expire", "cancel"]
ResolvedBy: TypeAlias = Literal["user", "policy", "timeout", "cancel"]

TURN_END_REASONS: tuple[TurnEndReason, ...] = get_args(TurnEndReason)
APPROVAL_DECISIONS: tuple[ApprovalDecision, ...] = get_args(ApprovalDecision)
RESOLVED_BY: tuple[ResolvedBy, ...] = get_args(ResolvedBy)


def summarize(text: str, limit: int = 500) -> str:
    """*text* cut to at most *limit* characters, marked with ``…`` when cut."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


@frozen
class UserMessage:
    type: ClassVar[str] = "user.message"
    message_id: str
    content: str
    agent: str | None = None


@frozen
class TurnStarted:
    """A turn began; ``model`` is the model its main context starts with (absent in old logs)."""

    type: ClassVar[str] = "turn.started"
    agent: str
    user_message_seq: int | None = None
    model: str | None = None


@frozen
class AgentSwitched:
    type: ClassVar[str] = "agent.switched"
    from_agent: str
    to_agent: str
    reason: str


@frozen
class ModelSwitched:
    """The session's model changed (``switch_model``); ``None``: the defaults (mode, server)."""

    type: ClassVar[str] = "model.switched"
    from_model: str | None
    to_model: str | None


@frozen
class TextDeltaEvent:
    type: ClassVar[str] = "text.delta"
    message_id: str
    text: str


@frozen
class ToolCallInfo:
    """One tool call of an assistant message (kept so LLM history can be rebuilt)."""

    call_id: str
    name: str
    arguments: JSONObject

    def to_json(self) -> JSONObject:
        return TOOL_CALL_INFO.encode(self)


@frozen
class AssistantMessage:
    """A final assistant message; ``truncated`` when cut short by cancel or error.

    ``cut_off`` says the provider ended the answer early (``max_tokens``: the
    output token limit; ``content_filter``): the message is whole as the model
    sent it, but not what it meant to say. Absent when the answer ended normally.

    ``provider_data`` is the opaque data the model provider attached to its answer
    (keyed by provider name, see ``_model.ProviderDataDelta``); stored here so the
    fold can hand it back to the provider. Absent from the payload when empty.
    """

    type: ClassVar[str] = "message"
    message_id: str
    content: str
    agent: str
    truncated: bool = False
    tool_calls: tuple[ToolCallInfo, ...] = ()
    provider_data: Mapping[str, JSON] = field(factory=dict)
    cut_off: str | None = None


@frozen
class ToolCallEvent:
    type: ClassVar[str] = "tool.call"
    call_id: str
    name: str
    arguments: JSONObject


@frozen
class ToolStarted:
    """A call the runtime executes itself (an MCP server's tool): display it, never run it.

    Recorded before the call runs; its ``tool.result`` follows. ``server`` names
    the executor (the MCP server's configured name).
    """

    type: ClassVar[str] = "tool.started"
    call_id: str
    name: str
    arguments: JSONObject
    server: str


@frozen
class ApprovalRequested:
    type: ClassVar[str] = "approval.requested"
    call_id: str
    name: str
    arguments: JSONObject
    rule: str
    expires_at: float


@frozen
class ApprovalResolved:
    type: ClassVar[str] = "approval.resolved"
    call_id: str
    decision: ApprovalDecision
    by: ResolvedBy
    arguments: JSONObject | None = None
    feedback: str | None = None


@frozen
class ToolResultEvent:
    """A recorded tool result: ``content`` is what the LLM gets, ``summary`` is for display."""

    type: ClassVar[str] = "tool.result"
    call_id: str
    ok: bool
    summary: str
    content: str

    @classmethod
    def of(cls, call_id: str, ok: bool, content: str) -> ToolResultEvent:
        """A result whose summary is *content* cut for display."""
        return cls(call_id=call_id, ok=ok, summary=summarize(content), content=content)


@frozen
class QuestionAsked:
    type: ClassVar[str] = "question.asked"
    question_id: str
    text: str
    options: tuple[str, ...] | None = None


@frozen
class QuestionAnswered:
    type: ClassVar[str] = "question.answered"
    question_id: str
    text: str


@frozen
class SubtaskStarted:
    """A delegated child began; ``model`` is its own model (``new_task{model}``), if any."""

    type: ClassVar[str] = "subtask.started"
    subtask_id: str
    agent: str
    message: str
    model: str | None = None


@frozen
class SubtaskEnded:
    type: ClassVar[str] = "subtask.ended"
    subtask_id: str
    agent: str
    ok: bool
    summary: str | None = None


@frozen
class UsageEvent:
    """One LLM call's tokens and price (``cost`` in US dollars; ``None`` when unpriced).

    ``purpose`` is ``"chat"`` for the turn's own steps, ``"route"`` for
    orchestrator routing and ``"compact"`` for writing a summary.

    ``estimated``: the call was cut (a cancel, an error, shutdown) after the
    model had begun to answer, so the provider never reported its usage, though
    it bills it. The tokens are the runtime's estimates instead: the request's
    size as the context meter saw it, and the text received.
    """

    type: ClassVar[str] = "usage"
    prompt_tokens: int
    completion_tokens: int
    model: str
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None
    purpose: str = "chat"
    estimated: bool = False


@frozen
class UsageTotals:
    """Usage summed over calls (a turn's, subtasks included, or a session's)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # None while no priced call was made
    calls: int = 0

    def add(self, usage: UsageEvent) -> UsageTotals:
        cost = self.cost
        if usage.cost is not None:
            cost = round((cost or 0.0) + usage.cost, 10)
        return UsageTotals(
            self.prompt_tokens + usage.prompt_tokens,
            self.completion_tokens + usage.completion_tokens,
            self.cached_tokens + (usage.cached_tokens or 0),
            self.reasoning_tokens + (usage.reasoning_tokens or 0),
            cost,
            self.calls + 1,
        )

    def to_json(self) -> JSONObject:
        return USAGE_TOTALS.encode(self)


@frozen
class CompactionStarted:
    """The turn is summarising the oldest part of its history (see ``context.compacted``)."""

    type: ClassVar[str] = "compaction.started"
    reason: str  # "threshold", "overflow" or "requested"
    tokens_before: int


@frozen
class ContextCompacted:
    """The LLM-visible history up to event ``to_seq`` is replaced by ``summary``.

    From this event on, the history the model sees is: the system prompt, this
    summary, then the messages of events after ``to_seq``, verbatim. ``from_seq``
    is the first event the summary covers (an earlier summary included).
    """

    type: ClassVar[str] = "context.compacted"
    summary: str
    from_seq: int
    to_seq: int
    tokens_before: int
    tokens_after: int
    reason: str
    model: str
    messages_replaced: int


@frozen
class ErrorEvent:
    type: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool = False


@frozen
class TurnEnded:
    type: ClassVar[str] = "turn.ended"
    reason: TurnEndReason
    usage: UsageTotals | None = None  # the turn's LLM calls, subtasks included
    # How full the model's window is for the next call (estimated): "ctx 61%".
    context_tokens: int | None = None
    context_window: int | None = None


@frozen
class SessionDeleted:
    """The session was deleted: the last event of its log.

    Committed with the write that deletes it, so every follower learns of the
    deletion in order, from whichever replica deleted it, and stops.
    """

    type: ClassVar[str] = "session.deleted"


AgentEvent: TypeAlias = (
    UserMessage
    | TurnStarted
    | AgentSwitched
    | ModelSwitched
    | TextDeltaEvent
    | AssistantMessage
    | ToolCallEvent
    | ToolStarted
    | ApprovalRequested
    | ApprovalResolved
    | ToolResultEvent
    | QuestionAsked
    | QuestionAnswered
    | SubtaskStarted
    | SubtaskEnded
    | UsageEvent
    | ErrorEvent
    | TurnEnded
    | CompactionStarted
    | ContextCompacted
    | SessionDeleted
)


# The wire form of each event (see ``_codec.record``): fields are the attributes,
# optional ones omitted when None; the table below says only what differs.
TOOL_CALL_INFO: Final = record(ToolCallInfo)
USAGE_TOTALS: Final = record(UsageTotals, always=("cost",))  # null while nothing was priced

EVENTS: Final = TaggedUnion[AgentEvent](
    (
        record(UserMessage),
        record(TurnStarted),
        record(AgentSwitched, keys={"from_agent": "from", "to_agent": "to"}),
        # Both keys always present: null is a meaningful value ("the defaults").
        record(ModelSwitched, keys={"from_model": "from", "to_model": "to"}),
        record(TextDeltaEvent),
        record(
            AssistantMessage,
            constants={"role": "assistant"},
            order=(
                *("message_id", "role", "content", "agent"),
                *("truncated", "tool_calls", "provider_data", "cut_off"),
            ),
            # Omitted when empty: messages without it keep their old wire form.
            omit_empty=("provider_data",),
        ),
        record(ToolCallEvent),
        record(ToolStarted),
        record(ApprovalRequested),
        record(ApprovalResolved, order=("call_id", "decision", "arguments", "feedback", "by")),
        record(ToolResultEvent),
        record(QuestionAsked),
        record(QuestionAnswered),
        record(SubtaskStarted),
        record(SubtaskEnded, order=("subtask_id", "agent", "summary", "ok")),
        # An unpriced call's cost is null (unknown), not absent and not 0.
        # ``estimated`` only when true: reported usage keeps its wire form.
        record(UsageEvent, null_last=("cost",), omit_empty=("estimated",)),
        record(ErrorEvent),
        record(TurnEnded),
        record(CompactionStarted),
        record(ContextCompacted),
        record(SessionDeleted),
    )
)
_BY_CLASS: Final = EVENTS.by_class
_BY_TYPE: Final = EVENTS.by_type


def encode_event(ev: AgentEvent) -> tuple[str, JSONObject]:
    """The wire type and payload of *ev* (without envelope fields)."""
    return ev.type, _BY_CLASS[ev.__class__].encode(ev)


def decode_event(type: str, data: JSONObject) -> AgentEvent:
    """The event of wire type *type* with payload *data*.

    Raises:
        ValueError: unknown type, or a field missing or of the wrong type (the
            message names it).
    """
    record = _BY_TYPE.get(type)
    if record is None:
        raise ValueError(f"unknown event type {type!r}")
    return cast(AgentEvent, record.decode(data, f"event {type!r}"))
