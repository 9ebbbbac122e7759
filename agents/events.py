"""The durable events of a session's log, as typed values (docs/protocol.md §6).

``decode_event`` turns a stored or received event payload into one of these;
``encode_event`` is its inverse. Clients (the terminal client, benchmarks) use
this module to read a session's log.
"""

from ._core._events import (
    AgentEvent,
    AgentSwitched,
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    ErrorEvent,
    QuestionAnswered,
    QuestionAsked,
    SessionDeleted,
    SubtaskEnded,
    SubtaskStarted,
    TextDeltaEvent,
    ToolCallEvent,
    ToolCallInfo,
    ToolResultEvent,
    ToolStarted,
    TurnEnded,
    TurnStarted,
    UsageEvent,
    UserMessage,
    decode_event,
    encode_event,
    summarize,
)

__all__ = [
    "AgentEvent",
    "AgentSwitched",
    "ApprovalRequested",
    "ApprovalResolved",
    "AssistantMessage",
    "ErrorEvent",
    "QuestionAnswered",
    "QuestionAsked",
    "SessionDeleted",
    "SubtaskEnded",
    "SubtaskStarted",
    "TextDeltaEvent",
    "ToolCallEvent",
    "ToolCallInfo",
    "ToolResultEvent",
    "ToolStarted",
    "TurnEnded",
    "TurnStarted",
    "UsageEvent",
    "UserMessage",
    "decode_event",
    "encode_event",
    "summarize",
]
