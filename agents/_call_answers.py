"""The commands that answer a call a turn waits for: a tool result, an approval, an answer.

Each checks that the call waits for exactly that (:func:`_pending`), then commits
the answer's events with the command's record, so two commands can never both
resolve the same call. Separate from ``_session_commands.py``, which dispatches
every command and holds those that queue or steer turns.
"""

from __future__ import annotations

from sessions import JSON, ApprovalStatus, JSONObject, dumps

from ._command_acks import duplicate_ack, record
from ._core._commands import Ack, Answer, SubmitApproval, SubmitToolResult
from ._core._events import (
    ApprovalResolved,
    QuestionAnswered,
    ToolCallEvent,
    ToolResultEvent,
    summarize,
)
from ._core._mcp import is_mcp_name
from ._core._modes import ModeRegistry
from ._core._state import REMEMBER_KEY, CallState, PendingCall, SessionState
from ._core._tools import is_ide_tool, validate_arguments
from ._errors import CommandError, ToolError
from ._live_turn import Out
from ._session import LiveSession


def _result_text(result: JSON) -> str:
    return result if isinstance(result, str) else dumps(result)


_WAITS_FOR = {
    CallState.REQUESTED: "nothing from the client yet",
    CallState.APPROVAL: "an approval",
    CallState.TOOL: "a tool_result",
    CallState.QUESTION: "an answer",
    # Server-side calls (MCP): the runtime runs them; a client never answers them.
    CallState.APPROVED: "the runtime to run it (it executes on the server)",
    CallState.RUNNING: "its server-side execution to finish (it executes on the server)",
}


# Decisions that gave the call its result (after approve or edit, a tool result did).
_DECIDED_RESULT = frozenset(
    {
        ApprovalStatus.REJECTED,
        ApprovalStatus.RESPONDED,
        ApprovalStatus.EXPIRED,
        ApprovalStatus.CANCELLED,
    }
)


def _resolved(state: SessionState, call_id: str, what: str) -> str:
    """Why *call_id* takes no answer any more, in the words approvals use:
    ``already resolved (cancelled)``, ``(expired)``, ... or ``already answered``."""
    how = state.unanswered.get(call_id)  # its turn ended, or it timed out
    decided = state.decided.get(call_id)
    if how is None and decided in _DECIDED_RESULT:
        how = decided.value
    if how is None:
        return f"{what} {call_id!r} was already answered"
    return f"{what} {call_id!r} was already resolved ({how})"


def _pending(live: LiveSession, call_id: str, want: CallState, what: str) -> PendingCall:
    call = live.state.pending.get(call_id)
    if call is None:
        if call_id in live.state.known_calls:
            raise CommandError("already_resolved", _resolved(live.state, call_id, what))
        raise CommandError("unknown_call", f"no {what} {call_id!r} in this session")
    if call.state is not want:
        raise CommandError(
            "not_waiting",
            f"call {call_id!r} is not waiting for {_WAITS_FOR[want]}; "
            f"it waits for {_WAITS_FOR[call.state]}",
        )
    return call


def _refuse_decided(live: LiveSession, call_id: str) -> None:
    """Refuse a second decision on an approval with ``already_resolved``.

    After an approve the call stays pending (it now waits for its tool result), so
    only the recorded decision can tell "decided already" from "never asked".
    """
    decided = live.state.decided.get(call_id)
    if decided is not None:
        raise CommandError(
            "already_resolved", f"approval {call_id!r} was already resolved ({decided.value})"
        )


async def submit_tool_result(live: LiveSession, cmd: SubmitToolResult) -> Ack:
    call = _pending(live, cmd.call_id, CallState.TOOL, "tool call")
    ok = cmd.error is None
    # The prefix tells any model, not only the scripted one, that the call failed.
    content = f"error: {cmd.error}" if cmd.error is not None else _result_text(cmd.result)
    ack = Ack.accepted(cmd.id, call.turn_id)
    out = Out(ToolResultEvent(call.call_id, ok, summarize(content), content), call.subtask_id)
    committed = await live.commit_locked([out], turn_id=call.turn_id, command=record(live, ack))
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack


async def submit_approval(live: LiveSession, modes: ModeRegistry, cmd: SubmitApproval) -> Ack:
    _refuse_decided(live, cmd.call_id)
    call = _pending(live, cmd.call_id, CallState.APPROVAL, "approval")
    sub = call.subtask_id
    extra: dict[str, JSON] = {REMEMBER_KEY: cmd.remember} if cmd.remember == "session" else {}
    outs: list[Out]
    match cmd.decision:
        case "approve":
            status = ApprovalStatus.APPROVED
            arguments = call.arguments_object()
            outs = [
                Out(ApprovalResolved(call.call_id, "approve", cmd.by), sub, extra),
                *_sent_to_ide(call, arguments),
            ]
        case "edit":
            status = ApprovalStatus.EDITED
            try:
                if is_mcp_name(call.name):
                    arguments = live.mounted.check_named(call.name, cmd.arguments or {})
                else:
                    arguments = validate_arguments(call.name, cmd.arguments or {})
                    modes.check_call(call.agent, call.name, arguments)
            except ToolError as exc:
                raise CommandError("invalid_arguments", f"edited arguments refused: {exc}") from exc
            verdict = live.policy.evaluate(call.name, arguments)
            if verdict.action == "deny":
                # An edit must not smuggle in what the policy forbids outright.
                raise CommandError(
                    "invalid_arguments", f"edited arguments refused: {verdict.rule_text}"
                )
            outs = [
                Out(ApprovalResolved(call.call_id, "edit", cmd.by, arguments), sub, extra),
                *_sent_to_ide(call, arguments),
            ]
        case "reject":
            status = ApprovalStatus.REJECTED
            text = f"rejected by user: {cmd.feedback}" if cmd.feedback else "rejected by user"
            outs = [
                Out(ApprovalResolved(call.call_id, "reject", cmd.by, None, cmd.feedback), sub),
                Out(ToolResultEvent(call.call_id, False, summarize(text), text), sub),
            ]
        case "respond":
            status = ApprovalStatus.RESPONDED
            text = _result_text(cmd.result)
            outs = [
                Out(ApprovalResolved(call.call_id, "respond", cmd.by), sub),
                Out(ToolResultEvent(call.call_id, True, summarize(text), text), sub),
            ]
    resolution: dict[str, JSON] = {"decision": cmd.decision, "remember": cmd.remember}
    approval = live.close_approval(call.call_id, status, resolution, cmd.by)
    if approval is None:
        raise CommandError("already_resolved", f"approval {call.call_id!r} is not pending")
    ack = Ack.accepted(cmd.id, call.turn_id)
    committed = await live.commit_locked(
        outs, turn_id=call.turn_id, approval=approval, command=record(live, ack)
    )
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack


def _sent_to_ide(call: PendingCall, arguments: JSONObject) -> list[Out]:
    """The ``tool.call`` an approved IDE call is sent with; nothing for a server-side one.

    A server-side call (an MCP tool) is run by its turn, which wakes on the
    decision and records ``tool.started`` itself: the command only decides.
    """
    if not is_ide_tool(call.name):
        return []
    return [Out(ToolCallEvent(call.call_id, call.name, arguments), call.subtask_id)]


async def submit_answer(live: LiveSession, cmd: Answer) -> Ack:
    call = _pending(live, cmd.question_id, CallState.QUESTION, "question")
    ack = Ack.accepted(cmd.id, call.turn_id)
    outs = [
        Out(QuestionAnswered(call.call_id, cmd.text), call.subtask_id),
        Out(ToolResultEvent(call.call_id, True, summarize(cmd.text), cmd.text), call.subtask_id),
    ]
    committed = await live.commit_locked(outs, turn_id=call.turn_id, command=record(live, ack))
    return duplicate_ack(committed, cmd.id) if committed.duplicate else ack
