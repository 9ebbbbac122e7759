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
from typing import ClassVar, Literal, TypeAlias, assert_never

from attrs import field, frozen

from sessions import JSON, JSONObject

from ._fields import Fields, kind

TurnEndReason: TypeAlias = Literal["completed", "cancelled", "error", "max_steps", "interrupted"]
ApprovalDecision: TypeAlias = Literal["approve", "edit", "reject", "respond", "expire", "cancel"]
ResolvedBy: TypeAlias = Literal["user", "policy", "timeout", "cancel"]

TURN_END_REASONS: tuple[TurnEndReason, ...] = (
    "completed",
    "cancelled",
    "error",
    "max_steps",
    "interrupted",
)
APPROVAL_DECISIONS: tuple[ApprovalDecision, ...] = (
    "approve",
    "edit",
    "reject",
    "respond",
    "expire",
    "cancel",
)
RESOLVED_BY: tuple[ResolvedBy, ...] = ("user", "policy", "timeout", "cancel")


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
        return {"call_id": self.call_id, "name": self.name, "arguments": self.arguments}


@frozen
class AssistantMessage:
    """A final assistant message; ``truncated`` when cut short by cancel or error.

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
    """

    type: ClassVar[str] = "usage"
    prompt_tokens: int
    completion_tokens: int
    model: str
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None
    purpose: str = "chat"


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
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": self.cost,
            "calls": self.calls,
        }


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
)


def _drop_none(payload: dict[str, JSON | None]) -> JSONObject:
    return {key: value for key, value in payload.items() if value is not None}


def encode_event(ev: AgentEvent) -> tuple[str, JSONObject]:
    """The wire type and payload of *ev* (without envelope fields)."""
    data: dict[str, JSON | None]
    match ev:
        case UserMessage():
            data = {"message_id": ev.message_id, "content": ev.content, "agent": ev.agent}
        case TurnStarted():
            data = {
                "agent": ev.agent,
                "user_message_seq": ev.user_message_seq,
                "model": ev.model,
            }
        case AgentSwitched():
            data = {"from": ev.from_agent, "to": ev.to_agent, "reason": ev.reason}
        case ModelSwitched():
            # Both keys always present: null is a meaningful value ("the defaults").
            return ev.type, {"from": ev.from_model, "to": ev.to_model}
        case TextDeltaEvent():
            data = {"message_id": ev.message_id, "text": ev.text}
        case AssistantMessage():
            data = {
                "message_id": ev.message_id,
                "role": "assistant",
                "content": ev.content,
                "agent": ev.agent,
                "truncated": ev.truncated,
                "tool_calls": [call.to_json() for call in ev.tool_calls],
                # Omitted when empty: messages without it keep their old wire form.
                "provider_data": dict(ev.provider_data) or None,
            }
        case ToolCallEvent():
            data = {"call_id": ev.call_id, "name": ev.name, "arguments": ev.arguments}
        case ToolStarted():
            data = {
                "call_id": ev.call_id,
                "name": ev.name,
                "arguments": ev.arguments,
                "server": ev.server,
            }
        case ApprovalRequested():
            data = {
                "call_id": ev.call_id,
                "name": ev.name,
                "arguments": ev.arguments,
                "rule": ev.rule,
                "expires_at": ev.expires_at,
            }
        case ApprovalResolved():
            data = {
                "call_id": ev.call_id,
                "decision": ev.decision,
                "arguments": ev.arguments,
                "feedback": ev.feedback,
                "by": ev.by,
            }
        case ToolResultEvent():
            data = {
                "call_id": ev.call_id,
                "ok": ev.ok,
                "summary": ev.summary,
                "content": ev.content,
            }
        case QuestionAsked():
            options = None if ev.options is None else list[JSON](ev.options)
            data = {"question_id": ev.question_id, "text": ev.text, "options": options}
        case QuestionAnswered():
            data = {"question_id": ev.question_id, "text": ev.text}
        case SubtaskStarted():
            data = {
                "subtask_id": ev.subtask_id,
                "agent": ev.agent,
                "message": ev.message,
                "model": ev.model,
            }
        case SubtaskEnded():
            data = {
                "subtask_id": ev.subtask_id,
                "agent": ev.agent,
                "summary": ev.summary,
                "ok": ev.ok,
            }
        case UsageEvent():
            data = {
                "prompt_tokens": ev.prompt_tokens,
                "completion_tokens": ev.completion_tokens,
                "model": ev.model,
                "cached_tokens": ev.cached_tokens,
                "reasoning_tokens": ev.reasoning_tokens,
                "cost": ev.cost,  # null, not absent, when unpriced
                "purpose": ev.purpose,
            }
            if ev.cost is None:
                return ev.type, _drop_none(data) | {"cost": None}
        case ErrorEvent():
            data = {"code": ev.code, "message": ev.message, "retryable": ev.retryable}
        case TurnEnded():
            data = {
                "reason": ev.reason,
                "usage": None if ev.usage is None else ev.usage.to_json(),
                "context_tokens": ev.context_tokens,
                "context_window": ev.context_window,
            }
        case CompactionStarted():
            data = {"reason": ev.reason, "tokens_before": ev.tokens_before}
        case ContextCompacted():
            data = {
                "summary": ev.summary,
                "from_seq": ev.from_seq,
                "to_seq": ev.to_seq,
                "tokens_before": ev.tokens_before,
                "tokens_after": ev.tokens_after,
                "reason": ev.reason,
                "model": ev.model,
                "messages_replaced": ev.messages_replaced,
            }
        case _:
            assert_never(ev)
    return ev.type, _drop_none(data)


def _tool_calls(f: Fields) -> tuple[ToolCallInfo, ...]:
    if f.data.get("tool_calls") is None:
        return ()
    calls = []
    for i, item in enumerate(f.array("tool_calls")):
        if not isinstance(item, dict):
            raise ValueError(f"{f.where}: tool_calls[{i}] must be an object, got {kind(item)}")
        c = Fields(item, f"{f.where}: tool_calls[{i}]")
        calls.append(ToolCallInfo(c.string("call_id"), c.string("name"), c.obj("arguments")))
    return tuple(calls)


def _totals(f: Fields) -> UsageTotals:
    cost = f.data.get("cost")
    return UsageTotals(
        f.integer("prompt_tokens"),
        f.integer("completion_tokens"),
        f.integer("cached_tokens"),
        f.integer("reasoning_tokens"),
        None if cost is None else f.number("cost"),
        f.integer("calls"),
    )


def decode_event(type: str, data: JSONObject) -> AgentEvent:
    """The event of wire type *type* with payload *data*.

    Raises:
        ValueError: unknown type, or a field missing or of the wrong type (the
            message names it).
    """
    f = Fields(data, f"event {type!r}")
    match type:
        case "user.message":
            return UserMessage(f.string("message_id"), f.string("content"), f.opt_string("agent"))
        case "turn.started":
            return TurnStarted(
                f.string("agent"), f.opt_integer("user_message_seq"), f.opt_string("model")
            )
        case "agent.switched":
            return AgentSwitched(f.string("from"), f.string("to"), f.string("reason"))
        case "model.switched":
            return ModelSwitched(f.opt_string("from"), f.opt_string("to"))
        case "text.delta":
            return TextDeltaEvent(f.string("message_id"), f.string("text"))
        case "message":
            if data.get("role", "assistant") != "assistant":
                raise ValueError(f"{f.where}: field 'role' must be 'assistant'")
            return AssistantMessage(
                message_id=f.string("message_id"),
                content=f.string("content"),
                agent=f.string("agent"),
                truncated=f.boolean("truncated"),
                tool_calls=_tool_calls(f),
                provider_data=f.opt_obj("provider_data") or {},
            )
        case "tool.call":
            return ToolCallEvent(f.string("call_id"), f.string("name"), f.obj("arguments"))
        case "tool.started":
            return ToolStarted(
                f.string("call_id"), f.string("name"), f.obj("arguments"), f.string("server")
            )
        case "approval.requested":
            return ApprovalRequested(
                call_id=f.string("call_id"),
                name=f.string("name"),
                arguments=f.obj("arguments"),
                rule=f.string("rule"),
                expires_at=f.number("expires_at"),
            )
        case "approval.resolved":
            return ApprovalResolved(
                call_id=f.string("call_id"),
                decision=f.choice("decision", APPROVAL_DECISIONS),
                by=f.choice("by", RESOLVED_BY),
                arguments=f.opt_obj("arguments"),
                feedback=f.opt_string("feedback"),
            )
        case "tool.result":
            return ToolResultEvent(
                call_id=f.string("call_id"),
                ok=f.boolean("ok"),
                summary=f.string("summary"),
                content=f.string("content"),
            )
        case "question.asked":
            options = None if data.get("options") is None else f.strings("options")
            return QuestionAsked(f.string("question_id"), f.string("text"), options)
        case "question.answered":
            return QuestionAnswered(f.string("question_id"), f.string("text"))
        case "subtask.started":
            return SubtaskStarted(
                f.string("subtask_id"),
                f.string("agent"),
                f.string("message"),
                f.opt_string("model"),
            )
        case "subtask.ended":
            return SubtaskEnded(
                subtask_id=f.string("subtask_id"),
                agent=f.string("agent"),
                ok=f.boolean("ok"),
                summary=f.opt_string("summary"),
            )
        case "usage":
            cost = data.get("cost")
            return UsageEvent(
                f.integer("prompt_tokens"),
                f.integer("completion_tokens"),
                f.string("model"),
                f.opt_integer("cached_tokens"),
                f.opt_integer("reasoning_tokens"),
                None if cost is None else f.number("cost"),
                f.opt_string("purpose") or "chat",
            )
        case "error":
            return ErrorEvent(f.string("code"), f.string("message"), f.boolean("retryable"))
        case "turn.ended":
            usage = f.opt_obj("usage")
            return TurnEnded(
                f.choice("reason", TURN_END_REASONS),
                None if usage is None else _totals(Fields(usage, f"{f.where}: usage")),
                f.opt_integer("context_tokens"),
                f.opt_integer("context_window"),
            )
        case "compaction.started":
            return CompactionStarted(f.string("reason"), f.integer("tokens_before"))
        case "context.compacted":
            return ContextCompacted(
                summary=f.string("summary"),
                from_seq=f.integer("from_seq"),
                to_seq=f.integer("to_seq"),
                tokens_before=f.integer("tokens_before"),
                tokens_after=f.integer("tokens_after"),
                reason=f.string("reason"),
                model=f.string("model"),
                messages_replaced=f.integer("messages_replaced"),
            )
        case _:
            raise ValueError(f"unknown event type {type!r}")
